//! Passing a file descriptor over a Unix socket (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Send `fd` with a single marker byte.
pub fn send_fd(stream: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"F")];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receive a descriptor sent by [`send_fd`]. The received descriptor is
/// close-on-exec.
pub fn recv_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    if msg.bytes != 1 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before the descriptor"));
    }
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut fds = fds.into_iter();
            if let Some(first) = fds.next() {
                for extra in fds {
                    // SAFETY: the kernel just installed `extra` in our table
                    // for us; nothing else owns it, so closing it here is the
                    // only release.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: (1) the kernel installed `first` in this process's
                // descriptor table as part of this recvmsg; (2) no other
                // `OwnedFd` wraps it, so ownership is unique.
                return Ok(unsafe { OwnedFd::from_raw_fd(first) });
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "expected a file descriptor"))
}
