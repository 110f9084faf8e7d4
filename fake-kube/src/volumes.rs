//! Secret and emptyDir volumes, as the simulated kubelet provides them. A real kubelet mounts
//! a tmpfs at the container's `mountPath` holding one file per item of the Secret, and an
//! emptyDir every container of the pod shares; the fake runs containers on the host without
//! a mount namespace, so each volume is a directory in the pod's own temporary directory
//! (`volumes/<name>`, the same for every container of the pod), and the container's
//! variables, arguments and working directory that name a mount path are pointed at it. A
//! missing Secret or key fails the pod's start, as `CreateContainerConfigError` would.

use crate::cluster::Cluster;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use std::path::{Path, PathBuf};

/// Where each secret volume mount of `container` lives: `(mount path, host directory)`.
pub(crate) type Mounts = Vec<(String, PathBuf)>;

/// Writes the volumes `container` mounts under `root` (the pod's directory): a Secret's
/// files, or an emptyDir's directory (made once, shared by the pod's containers).
pub(crate) fn materialize(
    cluster: &Cluster,
    namespace: &str,
    spec: &PodSpec,
    container: &Container,
    root: &Path,
) -> Result<Mounts, String> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        let dir = root.join("volumes").join(&mount.name);
        if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            mounts.push((mount.mount_path.clone(), dir));
            continue;
        }
        let Some(source) = volume.secret.as_ref() else {
            continue;
        };
        let name = source.secret_name.clone().unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for item in source.items.iter().flatten() {
            let value = cluster
                .secret_value(namespace, &name, &item.key)
                .ok_or_else(|| format!("secret {name:?} has no key {:?}", item.key))?;
            if item.path.contains("..") || item.path.starts_with('/') {
                return Err(format!("item path {:?} leaves the volume", item.path));
            }
            let path = dir.join(&item.path);
            std::fs::write(&path, value).map_err(|e| e.to_string())?;
            let mode = item.mode.or(source.default_mode).unwrap_or(0o644);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32 & 0o777))
                .map_err(|e| e.to_string())?;
        }
        mounts.push((mount.mount_path.clone(), dir));
    }
    Ok(mounts)
}

/// `value` with a leading mount path replaced by its host directory.
pub(crate) fn translate(value: String, mounts: &Mounts) -> String {
    for (mount_path, dir) in mounts {
        if let Some(rest) = value.strip_prefix(mount_path.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_a_mount_are_translated() {
        let mounts = vec![("/run/s".to_string(), PathBuf::from("/tmp/pod/volumes/s"))];
        assert_eq!(translate("/run/s/KEY".into(), &mounts), "/tmp/pod/volumes/s/KEY");
        assert_eq!(translate("/run/s".into(), &mounts), "/tmp/pod/volumes/s");
        assert_eq!(translate("/run/secrets".into(), &mounts), "/run/secrets");
        assert_eq!(translate("plain".into(), &mounts), "plain");
    }
}
