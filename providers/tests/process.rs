//! The process provider against real `sh` processes.

mod common;
use common::{CLUSTER_ID, names, spec, wait_until};
use flotilla_providers::{ListedWorker, ProcessConfig, ProcessProvider, ProviderError, WorkerProvider};
use std::time::Duration;

#[tokio::test]
async fn runs_steps_in_order_captures_output_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let s = spec(1, &["echo $GREETING from $FLOTILLA_JOB_ID", "echo second >&2"]);
    let name = p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.steps_finished, vec![(0, 0), (1, 0)]);
    assert!(o.started && !o.lost);
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(
        out,
        "$ echo $GREETING from $FLOTILLA_JOB_ID\nhi from 1\n$ echo second >&2\nsecond\n"
    );
    assert_eq!(o.output_bytes, out.len() as u64);
    assert_eq!(p.read_output(&name, 8, 8).await.unwrap(), b"GREETING");
    p.remove(&name).await.unwrap();
    assert!(!p.observe(&name).await.unwrap().exists);
}

#[tokio::test]
async fn a_failing_step_stops_the_worker_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let name = p.create(&spec(2, &["true", "exit 7", "echo never"])).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(7));
    assert_eq!(o.steps_finished, vec![(0, 0), (1, 7)]);
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert!(!out.contains("never"), "{out}");
}

#[tokio::test]
async fn creating_twice_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().join("workers"))).unwrap();
    let step = format!("echo run >> {}", marker.display());
    let s = spec(3, &[&step]);
    let (a, b) = tokio::join!(p.create(&s), p.create(&s));
    assert_eq!(a.unwrap(), b.unwrap());
    wait_until(&p, &s.name(), "exit", |o| o.exit_code.is_some()).await;
    p.create(&s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    assert_eq!(
        p.list().await.unwrap(),
        vec![ListedWorker {
            name: s.name(),
            cluster_id: Some(CLUSTER_ID.into())
        }]
    );

    // Once removed, the attempt is never started again, even by a late create (a deposed
    // leader acting on an old state); the chaos harness caught such a double run.
    p.remove(&s.name()).await.unwrap();
    let e = p.create(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Rejected(_)), "{e:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn terminate_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let name = p.create(&spec(4, &["sleep 300 & sleep 300"])).await.unwrap();
    wait_until(&p, &name, "start", |o| o.started).await;
    assert!(p.terminate(&name).await.unwrap());
    let o = p.observe(&name).await.unwrap();
    assert!(
        o.lost && o.exit_code.is_none(),
        "killed wrapper leaves no exit status: {o:?}"
    );
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", &dir.path().to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        leftovers.stdout.is_empty(),
        "processes survived: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
    assert!(p.terminate(&name).await.unwrap(), "terminating again is a no-op");
}

#[tokio::test]
async fn images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let mut s = spec(5, &["true"]);
    s.image = Some("alpine".into());
    assert!(p.create(&s).await.is_err());
    assert!(p.list().await.unwrap().is_empty());
}

/// Two clusters given one work directory under one name: the second never adopts, starts
/// over or lists as its own a worker the first created.
#[tokio::test]
async fn a_worker_of_another_cluster_is_refused_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().join("workers"))).unwrap();
    let ours = spec(4, &[&format!("echo ran >> {}", marker.display())]);
    p.create(&ours).await.unwrap();
    wait_until(&p, &ours.name(), "exit", |o| o.exit_code.is_some()).await;

    let mut theirs = ours.clone();
    theirs.cluster_id = Some("0123456789abcdef0123456789abcdef".into());
    let e = p.create(&theirs).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Rejected(m) if m.contains(CLUSTER_ID) && m.contains("--cluster-name")),
        "{e:?}"
    );
    let listed = p.list().await.unwrap();
    assert_eq!(names(listed.clone()), vec![ours.name()]);
    assert!(listed[0].is_foreign(theirs.cluster_id.as_deref()));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}

/// A job gets none of the node's environment (cargo's variables stand for its credentials and
/// configuration here): only a search path, a home in its own directory, and its variables.
#[tokio::test]
async fn a_job_sees_none_of_the_nodes_environment() {
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO_")),
        "the test runs under cargo, whose variables it looks for"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let s = spec(5, &["env | cut -d= -f1 | sort", "echo \"home=$HOME\""]);
    let name = p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert!(!out.contains("CARGO_"), "{out}");
    for expected in ["FLOTILLA_JOB_ID", "GREETING", "HOME", "PATH"] {
        assert!(out.lines().any(|l| l == expected), "{expected} missing: {out}");
    }
    let home = dir.path().join(&name).join("work");
    assert!(out.contains(&format!("home={}", home.display())), "{out}");
}

#[tokio::test]
async fn a_secret_reaches_the_jobs_environment_and_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().to_path_buf())).unwrap();
    let value = "proc-secret-7f3a9c1e";
    // The step compares without naming the value itself.
    let mut s = spec(
        6,
        &["test \"$DB_PASSWORD\" = \"proc-secret-$(echo 7f3a9c1e)\" && echo matched"],
    );
    s.secret_env
        .insert("DB_PASSWORD".into(), flotilla_providers::SecretValue::new(value.into()));
    let name = p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert!(out.ends_with("matched\n"), "{out}");
    // Nothing the provider wrote holds it (the output would, had the job printed it: the
    // leader masks that before it is committed).
    let mut written = Vec::new();
    let mut stack = vec![dir.path().join(&name)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                written.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    for (path, bytes) in &written {
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "{}",
            path.display()
        );
    }
}

#[tokio::test]
async fn a_secret_file_is_on_a_tmpfs_readable_by_the_job_and_gone_with_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (a tmpfs) is needed");
    let mut config = ProcessConfig::new(dir.path().to_path_buf());
    config.secrets_dir = shm.path().join("secrets");
    let p = ProcessProvider::new(config).unwrap();
    let value = "-----BEGIN KEY-----\nfile-secret-4b1d\n-----END KEY-----\n";
    let mut s = spec(
        8,
        &[
            "test -f \"$DEPLOY_KEY\" && test \"$(cat \"$DEPLOY_KEY\"; echo .)\" = \"$(printf '%s.' \"$EXPECTED\")\" && echo same",
            "stat -c %a \"$DEPLOY_KEY\"",
        ],
    );
    s.env.insert("EXPECTED".into(), value.into());
    s.secret_files
        .insert("DEPLOY_KEY".into(), flotilla_providers::SecretValue::new(value.into()));
    let name = p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(o.exit_code, Some(0), "{out}");
    assert!(out.contains("\nsame\n") && out.ends_with("\n400\n"), "{out}");
    let file = shm.path().join("secrets").join(&name).join("DEPLOY_KEY");
    assert!(flotilla_providers::on_tmpfs(&file).unwrap());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), value);
    p.remove(&name).await.unwrap();
    assert!(!file.exists() && !file.parent().unwrap().exists());
}

#[tokio::test]
async fn secret_files_on_a_disk_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProcessConfig::new(dir.path().join("workers"));
    // The source tree is on a disk.
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    config.secrets_dir = disk.path().join("secrets");
    let p = ProcessProvider::new(config).unwrap();
    let marker = dir.path().join("ran");
    let step = format!("touch {}", marker.display());
    let mut s = spec(9, &[&step]);
    s.secret_files.insert(
        "KEY".into(),
        flotilla_providers::SecretValue::new("on-disk-never".into()),
    );
    let err = p.create(&s).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected(m) if m.contains("not on a tmpfs")),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists());
    assert!(std::fs::read_dir(disk.path().join("secrets")).unwrap().next().is_none());
}

#[tokio::test]
async fn a_job_run_as_another_user_owns_its_work_directory_and_nothing_of_the_nodes() {
    // The tests run as root on a Debian host, which has `nobody` (65534).
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("node-only");
    std::fs::write(&private, "the node's key").unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (a tmpfs) is needed");
    // Temporary directories are the node's alone; the job's user must reach what is inside.
    for d in [dir.path(), shm.path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    }
    let mut config = ProcessConfig::new(dir.path().join("workers"));
    config.secrets_dir = shm.path().join("secrets");
    config.run_as = Some(flotilla_providers::RunAs::resolve("nobody").unwrap());
    let p = ProcessProvider::new(config).unwrap();
    let read_private = format!(
        "if cat {} 2>/dev/null; then echo read-it; else echo refused; fi",
        private.display()
    );
    let mut s = spec(
        10,
        &[
            "id -u; id -G",
            "echo built > artefact && cat artefact",
            // The files the node reads back cannot be replaced or read by the job.
            "if ln -sf /etc/shadow ../output.log 2>/dev/null; then echo replaced; else echo kept; fi",
            "if { echo 0 > ../exit_code; } 2>/dev/null; then echo forged; else echo not-forged; fi",
            &read_private,
            "cat \"$TOKEN_FILE\"; echo",
            "exit 3",
        ],
    );
    s.secret_files.insert(
        "TOKEN_FILE".into(),
        flotilla_providers::SecretValue::new("nobody-reads-this".into()),
    );
    let name = p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(o.exit_code, Some(3), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("$ ")).collect();
    assert_eq!(
        lines,
        [
            "65534",
            "65534",
            "built",
            "kept",
            "not-forged",
            "refused",
            "nobody-reads-this"
        ],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    let work = dir.path().join("workers").join(&name).join("work");
    assert_eq!(std::fs::metadata(work.join("artefact")).unwrap().uid(), 65534);
    p.remove(&name).await.unwrap();
    assert!(!work.exists());
}

/// Packs `paths` of worker `name`, the blob written into `dir`.
async fn collect(
    p: &ProcessProvider,
    name: &str,
    paths: &[&str],
    dir: &std::path::Path,
) -> Result<flotilla_providers::artifact_archive::Packed, ProviderError> {
    let request = flotilla_providers::ArtifactRequest {
        purpose: flotilla_providers::uploads::CollectPurpose::Artifacts,
        paths: paths.iter().map(|s| s.to_string()).collect(),
        dest: dir.join(format!("blob-{}", paths.join("+").replace('/', "_"))),
        limits: flotilla_providers::artifact_archive::PackLimits {
            max_packed_bytes: 1 << 20,
        },
    };
    p.collect_artifacts(name, &request).await
}

#[tokio::test]
async fn an_exited_workers_files_are_packed_and_unpacked_into_a_new_worker() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProcessProvider::new(ProcessConfig::new(dir.path().join("workers"))).unwrap();
    let name = p
        .create(&spec(
            21,
            &["mkdir -p out && echo built > out/app && ln -s app out/link"],
        ))
        .await
        .unwrap();
    wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let packed = collect(&p, &name, &["out"], dir.path()).await.unwrap();
    let err = collect(&p, &name, &["out", "missing"], dir.path()).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected(m) if m.contains("artifacts.paths[1] \"missing\" does not exist")),
        "{err}"
    );
    // The next worker finds them before its first step.
    let mut next = spec(22, &["cat out/app && readlink out/link"]);
    next.inputs = vec![dir.path().join("blob-out")];
    assert_eq!(
        flotilla_providers::artifact_archive::digest_of(&next.inputs[0]).unwrap(),
        packed.digest
    );
    let name = p.create(&next).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let out = String::from_utf8(p.read_output(&name, 0, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(o.exit_code, Some(0), "{out}");
    assert!(out.contains("built\n") && out.contains("app\n"), "{out}");
}

#[tokio::test]
async fn a_job_run_as_another_user_cannot_have_the_node_pack_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("node-only");
    std::fs::write(&private, "the node's key").unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let mut config = ProcessConfig::new(dir.path().join("workers"));
    config.run_as = Some(flotilla_providers::RunAs::resolve("nobody").unwrap());
    let p = ProcessProvider::new(config).unwrap();
    // A hard link cannot be made to a file the user cannot read; a directory link to the
    // node's directory can, and a leftover process could swap one in while files are read.
    let steps = format!(
        "mkdir -p out && echo mine > out/mine && ln -s {} out/escape && ln -s {} linked",
        private.display(),
        dir.path().display()
    );
    let name = p.create(&spec(23, &[&steps])).await.unwrap();
    wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let blobs = tempfile::tempdir().unwrap();
    // Through the linked directory: refused before anything is read.
    let err = collect(&p, &name, &["linked/node-only"], blobs.path())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected(m) if m.contains("outside")),
        "{err}"
    );
    // The tree, read as the job's user: its own file, the link as a link.
    collect(&p, &name, &["out"], blobs.path()).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    flotilla_providers::artifact_archive::unpack(&blobs.path().join("blob-out"), files.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(files.path().join("out/mine")).unwrap(),
        "mine\n"
    );
    let link = std::fs::symlink_metadata(files.path().join("out/escape")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was followed");
    // What the job's user cannot read is not read for it: a file only the node may read,
    // standing where a swapped-in link would lead, fails the packing instead.
    let work = dir.path().join("workers").join(&name).join("work");
    std::fs::create_dir(work.join("theirs")).unwrap();
    std::fs::copy(&private, work.join("theirs/key")).unwrap();
    std::fs::set_permissions(work.join("theirs"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let err = collect(&p, &name, &["theirs"], blobs.path()).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected(m) if m.contains("as nobody") && m.contains("Permission denied")),
        "{err}"
    );
}
