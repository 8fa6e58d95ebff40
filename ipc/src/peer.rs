//! Who may connect: a private socket directory and a uid check.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The uid and pid of the process at the other end of `stream` (`SO_PEERCRED`).
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
    let creds = getsockopt(stream, PeerCredentials)?;
    Ok((creds.uid(), creds.pid()))
}

/// Whether the peer runs as the same user as this process.
pub fn peer_is_same_user(stream: &UnixStream) -> io::Result<bool> {
    Ok(peer_credentials(stream)?.0 == nix::unistd::geteuid().as_raw())
}

/// Create `dir` (and its parents) with mode 0700 and check that it is ours and
/// private: a socket inside it is reachable by this user only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} belongs to another user", dir.display()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
