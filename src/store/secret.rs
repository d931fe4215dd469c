//! A secret file the operator named (a CA key, a TSIG secret, a password file), opened as
//! fleetcert trusts one.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;

/// A secret file the operator named (a CA key, a TSIG secret, a password file) that fleetcert
/// will not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Nothing at the path.
    #[error("does not exist")]
    Missing,
    /// A symbolic link: it could lead to any file the running user may read.
    #[error(
        "is a symbolic link: give the path of the file itself (a link could lead fleetcert to \
         any file it may read)"
    )]
    Link,
    /// The system refused or failed.
    #[error("cannot be read: {0}")]
    Unreadable(io::Error),
    /// A directory, a FIFO, a device.
    #[error("is not a regular file")]
    NotAFile,
    /// Owned by someone other than the running user or root, who could change it at will.
    #[error(
        "belongs to uid {owner}, not to root or the user fleetcert runs as (uid {us}): its \
         owner could change the secret; chown it to one of them"
    )]
    Owner { owner: u32, us: u32 },
}

/// Opens a secret the operator named, for reading, as fleetcert trusts one: the file itself,
/// never a symbolic link (`O_NOFOLLOW`), never blocking on a FIFO, a regular file owned by
/// the running user or root. Its mode is each caller's to check, on the returned metadata
/// (of what was opened, not of a path that could be swapped in between).
pub(crate) fn open_secret(path: &Path) -> Result<(File, std::fs::Metadata), SecretError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = File::options()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => SecretError::Missing,
            _ if err.raw_os_error() == Some(Errno::ELOOP as i32) => SecretError::Link,
            _ => SecretError::Unreadable(err),
        })?;
    let meta = file.metadata().map_err(SecretError::Unreadable)?;
    if !meta.file_type().is_file() {
        return Err(SecretError::NotAFile);
    }
    let us = nix::unistd::geteuid().as_raw();
    if meta.uid() != us && meta.uid() != 0 {
        return Err(SecretError::Owner {
            owner: meta.uid(),
            us,
        });
    }
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use nix::unistd::Uid;

    use super::*;

    #[test]
    fn a_secret_is_the_file_itself_and_belongs_to_root_or_the_running_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(open_secret(&secret).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("link");
        assert!(matches!(open_secret(&link), Err(SecretError::Link)));
        assert!(matches!(
            open_secret(&dir.path().join("missing")),
            Err(SecretError::Missing)
        ));
        assert!(matches!(
            open_secret(dir.path()),
            Err(SecretError::NotAFile)
        ));
        // Another user's file: only root can give one away, as the tests run in CI.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&secret, Some(Uid::from_raw(4242)), None).expect("chown");
            let err = open_secret(&secret).expect_err("foreign owner");
            assert!(
                matches!(err, SecretError::Owner { owner: 4242, .. }),
                "{err}"
            );
        }
    }
}
