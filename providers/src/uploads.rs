//! What a worker sends back by itself when the leader cannot read its files (a Kubernetes
//! pod, whose workspace lives and dies on a Kubernetes node). The pod's `collect` container
//! (`flotilla-node put-files`, from the helper image) waits for the job's steps to end,
//! packs the declared paths as `artifact_archive::pack` does for the other providers,
//! uploads each blob to a node with the attempt's upload grant and leaves an `UploadReport`
//! as its termination message; the provider's `collect_artifacts` reads that report, and
//! the leader takes the blob from the node that received it.
//!
//! The types here are that conversation: what to upload (`Uploads`, one variable of the
//! collect container), where (`upload_url`), and what came of it (`UploadReport`).

use serde::{Deserialize, Serialize};

/// What a collection packs: a job's artifacts or its cache (one of each per attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectPurpose {
    Artifacts,
    Cache,
}

impl CollectPurpose {
    /// The job's field that declares it, and the path segment of its upload.
    pub fn field(self) -> &'static str {
        match self {
            CollectPurpose::Artifacts => "artifacts",
            CollectPurpose::Cache => "cache",
        }
    }

    pub fn parse(text: &str) -> Option<CollectPurpose> {
        match text {
            "artifacts" => Some(CollectPurpose::Artifacts),
            "cache" => Some(CollectPurpose::Cache),
            _ => None,
        }
    }
}

/// The files one purpose packs once the steps are over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSpec {
    /// Relative to the workspace, as the job declared them.
    pub paths: Vec<String>,
    /// Packed also when a step failed (`artifacts.when: always`); otherwise only after
    /// success.
    pub always: bool,
    /// The largest blob accepted (the per-job limit the leader would pack under).
    pub max_packed_bytes: u64,
}

impl UploadSpec {
    /// Whether steps that ended with `exit_code` leave files worth packing.
    pub fn wanted_after(&self, exit_code: i32) -> bool {
        exit_code == 0 || self.always
    }
}

/// What a worker that sends its own files back uploads after its steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploads {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<UploadSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<UploadSpec>,
}

impl Uploads {
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_none() && self.cache.is_none()
    }

    pub fn get(&self, purpose: CollectPurpose) -> Option<&UploadSpec> {
        match purpose {
            CollectPurpose::Artifacts => self.artifacts.as_ref(),
            CollectPurpose::Cache => self.cache.as_ref(),
        }
    }

    /// The spec of `purpose`, taken out.
    pub fn take(self, purpose: CollectPurpose) -> Option<UploadSpec> {
        match purpose {
            CollectPurpose::Artifacts => self.artifacts,
            CollectPurpose::Cache => self.cache,
        }
    }
}

/// What came of one purpose's upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UploadOutcome {
    /// A node holds the blob under its digest.
    Uploaded {
        digest: String,
        size_bytes: u64,
        entries: u32,
    },
    /// The steps ended with `exit_code`, after which nothing is packed.
    Skipped { exit_code: i32 },
    /// Why nothing was uploaded (a path missing, a limit passed, no node took it).
    Failed { reason: String },
}

/// The collect container's termination message: one outcome per purpose it was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<UploadOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<UploadOutcome>,
}

impl UploadReport {
    pub fn get(&self, purpose: CollectPurpose) -> Option<&UploadOutcome> {
        match purpose {
            CollectPurpose::Artifacts => self.artifacts.as_ref(),
            CollectPurpose::Cache => self.cache.as_ref(),
        }
    }

    pub fn set(&mut self, purpose: CollectPurpose, outcome: UploadOutcome) {
        match purpose {
            CollectPurpose::Artifacts => self.artifacts = Some(outcome),
            CollectPurpose::Cache => self.cache = Some(outcome),
        }
    }
}

/// Kubernetes keeps at most this much of a termination message; a report's reasons are cut
/// so that both fit.
pub const MAX_REASON_BYTES: usize = 1024;

/// The variables the collect container reads: the `Uploads` as JSON, the attempt's upload
/// grant, the file the job's wrapper writes its exit code to, and the file its report goes
/// to (the container's termination message).
pub const UPLOADS_VAR: &str = "FLOTILLA_UPLOADS";
pub const UPLOAD_GRANT_VAR: &str = "FLOTILLA_UPLOAD_GRANT";
pub const EXIT_FILE_VAR: &str = "FLOTILLA_EXIT_FILE";
pub const REPORT_FILE_VAR: &str = "FLOTILLA_REPORT_FILE";

/// Where blob `digest` of `purpose` is uploaded on the node whose source URL is
/// `source_url` (`…/attempts/<n>/source`).
pub fn upload_url(source_url: &str, purpose: CollectPurpose, digest: &str) -> String {
    let base = source_url.strip_suffix("/source").unwrap_or(source_url);
    format!("{base}/uploads/{}/{digest}", purpose.field())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written_and_names_its_purposes() {
        let mut report = UploadReport::default();
        report.set(
            CollectPurpose::Artifacts,
            UploadOutcome::Uploaded {
                digest: "ab".repeat(32),
                size_bytes: 10,
                entries: 2,
            },
        );
        report.set(CollectPurpose::Cache, UploadOutcome::Skipped { exit_code: 3 });
        let text = serde_json::to_string(&report).unwrap();
        assert!(text.contains(r#""outcome":"uploaded""#), "{text}");
        let back: UploadReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert_eq!(
            upload_url("https://n:1/v1/jobs/7/attempts/2/source", CollectPurpose::Cache, "ff"),
            "https://n:1/v1/jobs/7/attempts/2/uploads/cache/ff"
        );
        assert_eq!(CollectPurpose::parse("artifacts"), Some(CollectPurpose::Artifacts));
        assert_eq!(CollectPurpose::parse("logs"), None);
        let spec = UploadSpec {
            paths: vec!["out".into()],
            always: false,
            max_packed_bytes: 1,
        };
        assert!(spec.wanted_after(0) && !spec.wanted_after(1));
        assert!(UploadSpec { always: true, ..spec }.wanted_after(1));
    }
}
