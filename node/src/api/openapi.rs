//! The OpenAPI 3 document served at `/v1/openapi.json`, from `#[utoipa::path]` annotations on
//! the handlers. A test checks it against the router's route table in both directions.
//!
//! Request bodies are described by the `*Doc` schemas below: the domain types live in the pure
//! state-machine crate, which takes no dependency for documentation. The test
//! `openapi_matches_routes` also checks that a serialized domain spec uses only documented fields.

use super::{
    artifacts, attempt_source, attempt_upload, caches, cluster, events, health, hooks, jobs, join, limits, notifiers,
    pipelines, pools, repositories, retention, schedules, secrets, tenants, tokens,
};
use axum::Json;
use std::collections::BTreeMap;
use utoipa::{IntoResponses, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flotilla API",
        version = "1",
        description = "Submit and follow pipelines; operate the cluster."
    ),
    paths(
        pipelines::submit,
        pipelines::list,
        pipelines::get_one,
        pipelines::cancel,
        pipelines::rerun,
        jobs::list,
        jobs::get_one,
        jobs::cancel,
        jobs::approve,
        jobs::logs,
        artifacts::show,
        artifacts::archive,
        caches::list,
        caches::clear_one,
        caches::clear_all,
        jobs::why_pending,
        attempt_source::source,
        attempt_source::inputs,
        attempt_source::cache,
        attempt_upload::upload,
        events::stream,
        pools::list,
        pools::register,
        pools::drain,
        pools::remove,
        tenants::list,
        tenants::set_quota,
        tenants::clear_quota,
        retention::get,
        retention::set_default,
        retention::clear_default,
        retention::set_tenant,
        retention::clear_tenant,
        limits::get,
        limits::update,
        cluster::status,
        cluster::init,
        cluster::add_member,
        cluster::remove_member,
        cluster::transfer_leader,
        cluster::state_digest,
        join::create,
        join::ca,
        tokens::bootstrap,
        tokens::create,
        tokens::list,
        tokens::revoke,
        secrets::set,
        secrets::delete,
        secrets::list,
        secrets::rotate_keys,
        repositories::list,
        repositories::get_one,
        repositories::put,
        repositories::remove,
        repositories::run,
        hooks::receive,
        schedules::list,
        notifiers::list,
        notifiers::put,
        notifiers::remove,
        schedules::put,
        schedules::remove,
        health::live,
        health::ready,
        health::metrics,
        openapi_json,
    ),
    components(schemas(
        attempt_upload::UploadReceived,
        PipelineSpecDoc,
        JobSpecDoc,
        ResourcesDoc,
        RetryPolicyDoc,
        ArtifactsSpecDoc,
        CacheSpecDoc,
        PoolSpecDoc,
        AddMemberDoc,
        ErrorBodyDoc,
        ErrorDoc,
        TokenBootstrapDoc,
        TokenCreateDoc,
        DrainDoc,
        QuotaDoc,
        RetentionPolicyDoc,
        SecretDoc,
        RepositoryDoc,
        RunDoc,
        RerunDoc,
        ScheduleDoc,
        NotifierDoc,
        CreateJoinTokenDoc,
        LimitsDoc,
        TransferLeaderDoc
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The document: the handlers' annotations, plus the error statuses that layers shared by
/// many routes can return and each route's permission (from the route table), declared here
/// once rather than on every handler.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let mut doc = ApiDoc::openapi();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    // An attempt's source grant (`source::grant`), sent as a bearer by a pod's source container.
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme("grant", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    let permissions = super::route_permissions();
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_id = path.contains('{');
        for (method, op) in [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::DELETE, &mut item.delete),
        ] {
            let Some(op) = op else { continue };
            let permission = permissions
                .iter()
                .find(|(p, m, _)| p == path && *m == method)
                .map(|(_, _, permission)| *permission);
            if let Some(needed) = permission.filter(|p| *p != super::Permission::Public) {
                op.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
                let note = format!("Needs a token: {} (with --auth tokens).", needed.describe());
                op.description = Some(match op.description.take() {
                    Some(d) => format!("{d}\n\n{note}"),
                    None => note,
                });
                let responses = &mut op.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| error_response("no token, or an unknown, revoked or expired one").into());
                responses
                    .entry("403".into())
                    .or_insert_with(|| error_response("the token's role does not admit this route").into());
                responses.entry("503".into()).or_insert_with(|| {
                    error_response("this node knows no token yet (not caught up with its cluster); retry").into()
                });
            }
            let responses = &mut op.responses.responses;
            let mut add = |status: u16, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description).into());
            };
            // Every route passes the concurrency limit.
            add(429, "overloaded; retry after Retry-After seconds");
            if has_id {
                add(400, "bad parameter");
            }
            if op.request_body.is_some() {
                for (status, description) in [
                    (400, "malformed body"),
                    (408, "the body did not arrive in time"),
                    (413, "body too large"),
                    (415, "neither JSON nor YAML"),
                    (422, "the body has the wrong shape"),
                    (
                        503,
                        "busy: the body could not be parsed in time; retry after Retry-After seconds",
                    ),
                ] {
                    add(status, description);
                }
            }
        }
    }
    doc
}

/// The errors of every route that takes parameters and needs the cluster: a parameter it
/// cannot read, and no leader to commit through (or to confirm a linearizable read with).
/// Named once here and listed in the handlers' `responses(...)`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum StandardErrors {
    #[response(status = 400, description = "bad parameter")]
    BadParameter(ErrorBodyDoc),
    #[response(status = 503, description = "no leader or not ready")]
    NotReady(ErrorBodyDoc),
}

/// The answer of a route whose `{id}` names nothing.
#[derive(IntoResponses)]
#[response(status = 404, description = "unknown id")]
#[allow(dead_code)]
pub struct UnknownId(ErrorBodyDoc);

/// The answer of a route whose `{id}` (or its output) the retention policy removed.
#[derive(IntoResponses)]
#[response(status = 410, description = "removed by the retention policy")]
#[allow(dead_code)]
pub struct RemovedId(ErrorBodyDoc);

fn error_response(description: &str) -> utoipa::openapi::Response {
    let content = utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")));
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

/// A pipeline: a name and a DAG of jobs.
#[derive(ToSchema)]
#[schema(as = PipelineSpec)]
#[allow(dead_code)]
pub struct PipelineSpecDoc {
    name: String,
    jobs: Vec<JobSpecDoc>,
}

/// One job. Names: ASCII letters, digits, `-`, `_`, `.`, at most 128 bytes.
#[derive(ToSchema)]
#[schema(as = JobSpec)]
#[allow(dead_code)]
pub struct JobSpecDoc {
    name: String,
    /// Container image; absent runs the steps on the worker host (process provider).
    image: Option<String>,
    /// Shell steps, run in order; the first failing step fails the attempt (`script` in files).
    steps: Vec<String>,
    env: Option<BTreeMap<String, String>>,
    /// Environment variables set from the tenant's secrets: variable name to secret name.
    /// Their values are masked in the job's output.
    secrets: Option<BTreeMap<String, String>>,
    /// Secrets as files: variable name to secret name; the variable holds the path of a file
    /// (on a tmpfs) with the value.
    secret_files: Option<BTreeMap<String, String>>,
    /// Names of jobs of the same pipeline that must finish first.
    needs: Option<Vec<String>>,
    resources: ResourcesDoc,
    /// Pool labels the job requires (`labels` in files).
    constraints: Option<BTreeMap<String, String>>,
    /// Higher runs first (-1000..=1000, default 0).
    priority: Option<i32>,
    /// Milliseconds or a duration string such as `"30m"` (`timeout` in files). Default 1 hour.
    timeout_ms: Option<u64>,
    retry: Option<RetryPolicyDoc>,
    /// A failure of this job does not fail its dependants or its pipeline.
    allow_failure: Option<bool>,
    /// Runs the job once per combination of these values, each exported as an environment
    /// variable; the jobs are named `<name>-<value>...`.
    matrix: Option<BTreeMap<String, Vec<String>>>,
    /// Runs the job only when this condition holds (`$FLOTILLA_BRANCH == "main" && ...`),
    /// decided at submission; otherwise it is SKIPPED with the reason, and so is every job
    /// that needs it (docs/pipeline.md).
    #[schema(rename = "if")]
    condition: Option<String>,
    /// Waits in AWAITING_APPROVAL until approved (`POST /v1/jobs/{id}/approve`).
    manual: Option<bool>,
    /// For a manual job: the least role that may approve it (default `submitter`).
    approval_role: Option<String>,
    /// Files of the workspace kept when the job ends; the jobs that need it receive them
    /// unpacked in their workspace before their first step (docs/pipeline.md).
    artifacts: Option<ArtifactsSpecDoc>,
    /// Files of the workspace restored from the tenant's cache of the same key before the
    /// first step, and saved to it after success (docs/pipeline.md).
    cache: Option<CacheSpecDoc>,
}

#[derive(ToSchema)]
#[schema(as = CacheSpec)]
#[allow(dead_code)]
pub struct CacheSpecDoc {
    /// The cache's name within the tenant: letters, digits, `.`, `_`, `-`, at most 160 bytes.
    key: String,
    /// In a repository's pipeline file only: repository files (lock files) whose contents
    /// the key depends on; the node appends their digest to `key`. At most 8.
    files: Option<Vec<String>>,
    /// Files or directories relative to the workspace (no wildcards, no `..`), at most 32.
    paths: Vec<String>,
    /// `pull-push` (default), `pull` (restore only) or `push` (save only).
    policy: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = ArtifactsSpec)]
#[allow(dead_code)]
pub struct ArtifactsSpecDoc {
    /// Files or directories relative to the workspace (no wildcards, no `..`), at most 64.
    paths: Vec<String>,
    /// How long they are kept after the job ends: milliseconds or `"7d"` (`expire_in` in
    /// files). Default 30 days, at most 365.
    expire_in_ms: Option<u64>,
    /// `on_success` (default) or `always` (also when a step failed).
    when: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = Resources)]
#[allow(dead_code)]
pub struct ResourcesDoc {
    cpu_millis: u64,
    memory_mib: u64,
    gpus: Option<u32>,
}

#[derive(ToSchema)]
#[schema(as = RetryPolicy)]
#[allow(dead_code)]
pub struct RetryPolicyDoc {
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
}

/// A worker pool. `provider` is one of process, docker, kubernetes, sim.
#[derive(ToSchema)]
#[schema(as = PoolSpec)]
#[allow(dead_code)]
pub struct PoolSpecDoc {
    name: String,
    provider: String,
    capacity: ResourcesDoc,
    max_workers: u32,
    labels: Option<BTreeMap<String, String>>,
    /// Provider settings; the `kubernetes` provider takes `node_selector` (`k=v,...`),
    /// `service_account`, `image_pull_secrets` (comma-separated) and `tolerations`
    /// (`key=value:Effect,...`).
    settings: Option<BTreeMap<String, String>>,
}

#[derive(ToSchema)]
#[schema(as = AddMember)]
#[allow(dead_code)]
pub struct AddMemberDoc {
    id: u64,
    raft_addr: String,
    api_addr: String,
    /// The node's data directory as it reports at `GET /v1/cluster` (16 hex digits); optional,
    /// the leader asks the node.
    #[schema(nullable = false, pattern = "^[0-9a-f]{16}$")]
    incarnation: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = TokenBootstrap)]
#[allow(dead_code)]
pub struct TokenBootstrapDoc {
    /// The secret to use (`flt_` and 64 lowercase hex digits); a random one when absent.
    secret: Option<String>,
}

#[derive(ToSchema)]
#[schema(as = TokenCreate)]
#[allow(dead_code)]
pub struct TokenCreateDoc {
    name: String,
    /// `viewer`, `submitter`, `operator` or `admin`.
    role: String,
    /// Tenants it may act in; absent or empty: every tenant.
    tenants: Option<Vec<String>>,
    /// Lifetime in milliseconds; absent: until revoked.
    ttl_ms: Option<u64>,
}

#[derive(ToSchema)]
#[schema(as = Drain)]
#[allow(dead_code)]
pub struct DrainDoc {
    /// `true` (the default): place nothing more on the pool; `false`: place again.
    draining: Option<bool>,
}

#[derive(ToSchema)]
#[schema(as = CreateJoinToken)]
#[allow(dead_code)]
pub struct CreateJoinTokenDoc {
    /// Seconds the token may be used for: default 3600, at most 86400.
    ttl_s: Option<u64>,
}

#[derive(ToSchema)]
#[schema(as = Quota)]
#[allow(dead_code)]
pub struct QuotaDoc {
    cpu_millis: u64,
    memory_mib: u64,
    gpus: Option<u32>,
    max_running_jobs: u32,
    /// The highest priority the tenant's jobs may ask for (a submission asking more gets 422
    /// naming the job's `priority`); absent: as high as the limits allow.
    max_priority: Option<i32>,
}

/// A retention policy: at least one field. Ages are milliseconds or text with a unit
/// (`"30d"`, `"12h"`), at most 100 years, counted from a pipeline's finish.
#[derive(ToSchema)]
#[schema(as = RetentionPolicy)]
#[allow(dead_code)]
pub struct RetentionPolicyDoc {
    /// A finished pipeline is removed with its jobs and output this long after it finished.
    #[schema(minimum = 0, maximum = 3_153_600_000_000_u64)]
    max_age_ms: Option<u64>,
    /// At most this many finished pipelines of a tenant are kept; the oldest go first.
    max_pipelines: Option<u64>,
    /// The output of a finished pipeline's jobs is removed this long after it finished.
    #[schema(minimum = 0, maximum = 3_153_600_000_000_u64)]
    output_max_age_ms: Option<u64>,
    /// Output bytes kept per job of the tenant, in place of the limit `max_log_bytes_per_job`;
    /// past them output is dropped, never sent through the log, and the truncation noted.
    #[schema(minimum = 0, maximum = 1_073_741_824_u64)]
    output_max_bytes_per_job: Option<u64>,
}

/// A secret's new value: 8 to 65,536 bytes of UTF-8 text. Stored sealed; no route returns it.
#[derive(ToSchema)]
#[schema(as = Secret)]
#[allow(dead_code)]
pub struct SecretDoc {
    value: String,
}

/// A repository's settings (`PUT /v1/repos/{name}`).
#[derive(ToSchema)]
#[schema(as = Repository)]
#[allow(dead_code)]
pub struct RepositoryDoc {
    /// `https://`, `http://` or `git://`; no credentials inside.
    url: String,
    /// `github`, `gitlab`, `gitea` (Forgejo too) or `git`.
    forge: String,
    /// Default `.flotilla.yml`.
    pipeline_path: Option<String>,
    /// The name of the tenant secret holding the webhook's shared secret.
    webhook_secret: String,
    /// The name of the tenant secret holding a token to fetch with and to post commit
    /// statuses with.
    credentials: Option<String>,
    /// The forge's API root for commit statuses; default derived from `url`.
    status_api: Option<String>,
}

/// A notifier's settings (`PUT /v1/notifiers/{name}`).
#[derive(ToSchema)]
#[schema(as = Notifier)]
#[allow(dead_code)]
pub struct NotifierDoc {
    /// `https://` or `http://`, no credentials inside.
    url: String,
    /// The tenant secret that signs each delivery.
    secret: String,
    /// The pipeline states it hears about (`RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELLED`); default all.
    on: Option<Vec<String>>,
}

/// A schedule's settings (`PUT /v1/schedules/{name}`).
#[derive(ToSchema)]
#[schema(as = Schedule)]
#[allow(dead_code)]
pub struct ScheduleDoc {
    /// A repository of the tenant.
    repository: String,
    branch: String,
    /// Five fields (minute hour day month weekday) or six (seconds first), UTC.
    cron: String,
    /// `skip` (default) or `run_once`: what to do about times missed with no leader.
    missed: Option<String>,
}

/// What `POST /v1/pipelines/{id}/rerun` runs again.
#[derive(ToSchema)]
#[schema(as = Rerun)]
#[allow(dead_code)]
pub struct RerunDoc {
    /// Only the jobs that did not succeed and what depends on them (default `false`: all).
    failed_only: Option<bool>,
}

/// What `POST /v1/repos/{name}/run` runs: a branch, a tag or a commit.
#[derive(ToSchema)]
#[schema(as = Run)]
#[allow(dead_code)]
pub struct RunDoc {
    branch: Option<String>,
    tag: Option<String>,
    /// A full commit id; with a branch or tag, the ref the jobs see.
    commit: Option<String>,
}

/// Every limit, as `GET /v1/limits` answers them under `limits` (all fields required).
#[derive(ToSchema)]
#[schema(as = Limits)]
#[allow(dead_code)]
pub struct LimitsDoc(BTreeMap<String, serde_json::Value>);

#[derive(ToSchema)]
#[schema(as = TransferLeader)]
#[allow(dead_code)]
pub struct TransferLeaderDoc {
    /// Id of the voter that should lead.
    to: u64,
}

/// Every error response.
#[derive(ToSchema)]
#[schema(as = ErrorBody)]
#[allow(dead_code)]
pub struct ErrorBodyDoc {
    error: ErrorDoc,
}

#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorDoc {
    code: String,
    message: String,
    /// The offending field or header, when there is one.
    field: Option<String>,
    /// The line of a submitted YAML file the error points at.
    line: Option<usize>,
}
