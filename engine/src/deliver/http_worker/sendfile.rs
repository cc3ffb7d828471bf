//! `file_send = "sendfile"`: file bodies (static files, segments) by
//! `sendfile(2)` from the worker's loop, the way nginx sends them.
//!
//! Why: on loopback (and for any receiver on this host) `send` copies every
//! body into socket buffers, while `sendfile` queues references to the page
//! cache (or the segment store's memfd pages); io_uring's SPLICE avoids the
//! copy too but is always punted to io-wq threads. `sendfile` needs a regular
//! descriptor, and connections are direct descriptors (no process fd), so
//! the first file body of a connection installs its socket into the process
//! fd table once (`IORING_OP_FIXED_FD_INSTALL`, close-on-exec) and keeps that
//! fd until the connection closes. The socket is made non-blocking, so a full
//! send buffer returns `EAGAIN`; the loop then waits for `POLLOUT` through
//! the ring and goes on. io_uring's own operations on the direct descriptor
//! are unaffected by `O_NONBLOCK` (they pass their own flags).
//!
//! The installed fds are bounded (`[http] sendfile_descriptors`, by default
//! what the process fd limit leaves after a reserve, split between the
//! workers): past the budget, or if an install fails, a connection's bodies
//! go by `send` from the mapping, so the per-process fd limit never caps
//! connections.
use std::os::fd::RawFd;

/// Completion kind: `IORING_OP_FIXED_FD_INSTALL` of a connection.
pub(super) const FD_INSTALL: u8 = 18;
/// Completion kind: the connection's socket is writable again.
pub(super) const POLL_OUT: u8 = 19;

/// Descriptors the process keeps besides sendfile's (files, memfds, pipes,
/// sources, the API, logs), when the budget is derived from the fd limit.
const RESERVE: u64 = 2048;

/// The regular descriptors installed for this worker's connections, by
/// direct-descriptor index.
#[derive(Debug)]
pub(super) struct SysFds {
    fds: Vec<RawFd>,
    /// Installs still allowed (in flight ones already counted).
    left: usize,
    warned: bool,
}

impl SysFds {
    /// `budget` installs at most, for a table of `table` direct descriptors.
    pub(super) fn new(table: u32, budget: usize) -> Self {
        Self {
            fds: vec![-1; table as usize],
            left: budget,
            warned: false,
        }
    }

    /// The budget per worker: `configured`, or (0 = auto) what the fd
    /// limit leaves after a reserve, split between `workers`.
    pub(super) fn budget(configured: u32, workers: usize) -> usize {
        if configured > 0 {
            return configured as usize;
        }
        (crate::net::nofile_limit().saturating_sub(RESERVE) / workers.max(1) as u64) as usize
    }

    /// The installed descriptor of direct descriptor `fd`.
    pub(super) fn get(&self, fd: u32) -> Option<RawFd> {
        self.fds.get(fd as usize).copied().filter(|&s| s >= 0)
    }

    /// Take one install from the budget (false: none left).
    pub(super) fn reserve(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// An install failed or came back for a closed connection: give its
    /// budget back (and close what it installed).
    pub(super) fn unreserve(&mut self, installed: Option<RawFd>) {
        if let Some(s) = installed {
            // SAFETY: the install completion handed us this descriptor and
            // nothing else holds it.
            unsafe { libc::close(s) };
        }
        self.left += 1;
    }

    /// Whether the "install failed" warning was already logged.
    pub(super) fn warn_once(&mut self) -> bool {
        !std::mem::replace(&mut self.warned, true)
    }

    /// Keep `sys` (just installed, for direct descriptor `fd`), made
    /// non-blocking.
    pub(super) fn set(&mut self, fd: u32, sys: RawFd) {
        // SAFETY: plain fcntls on a descriptor the install just gave us. If
        // O_NONBLOCK cannot be set, the descriptor is not used (a blocking
        // sendfile would stall the loop).
        let ok = unsafe {
            let fl = libc::fcntl(sys, libc::F_GETFL);
            fl >= 0 && libc::fcntl(sys, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
        };
        match self.fds.get_mut(fd as usize) {
            Some(slot) if ok && *slot < 0 => *slot = sys,
            _ => self.unreserve(Some(sys)),
        }
    }

    /// The connection on direct descriptor `fd` closes: close its installed
    /// descriptor, if any.
    pub(super) fn release(&mut self, fd: u32) {
        if let Some(slot) = self.fds.get_mut(fd as usize)
            && *slot >= 0
        {
            let s = std::mem::replace(slot, -1);
            self.unreserve(Some(s));
        }
    }
}

impl Drop for SysFds {
    fn drop(&mut self) {
        for &s in &self.fds {
            if s >= 0 {
                // SAFETY: installed descriptors are owned by this table.
                unsafe { libc::close(s) };
            }
        }
    }
}

/// What one non-blocking write did.
pub(super) enum Wrote {
    /// This many bytes went out.
    Bytes(u64),
    /// The send buffer is full: wait for POLLOUT.
    Full,
    /// The peer is gone or the socket failed.
    Failed(std::io::Error),
}

fn outcome(r: isize) -> Wrote {
    if r >= 0 {
        return Wrote::Bytes(r as u64);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Wrote::Full,
        _ => Wrote::Failed(e),
    }
}

/// `send(2)` of `head` (the response head) without blocking; `more` while a
/// body follows, so head and body leave in the same segments.
pub(super) fn send_head(sys: RawFd, head: &[u8], more: bool) -> Wrote {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    // SAFETY: `head` is a live slice; the kernel only reads `head.len()`
    // bytes of it.
    outcome(unsafe { libc::send(sys, head.as_ptr().cast(), head.len(), flags) })
}

/// `sendfile(2)` of `len` bytes of `src` from `offset`, without blocking.
pub(super) fn send_file(sys: RawFd, src: RawFd, offset: u64, len: u64) -> Wrote {
    let mut off = offset as libc::off_t;
    // SAFETY: both descriptors are open (the transfer keeps the source
    // alive; the installed socket lives until its connection closes); `off`
    // is a live local the kernel advances.
    outcome(unsafe { libc::sendfile(sys, src, &mut off, len as usize) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_taken_and_given_back() {
        let mut s = SysFds::new(4, 2);
        assert!(s.reserve());
        assert!(s.reserve());
        assert!(!s.reserve(), "budget of 2");
        s.unreserve(None);
        assert!(s.reserve());
        assert_eq!(s.get(1), None);
    }

    #[test]
    fn installed_descriptor_is_nonblocking_and_closed_on_release() {
        let mut fds = [0; 2];
        // SAFETY: a 2-int array for pipe2.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let mut s = SysFds::new(4, 1);
        assert!(s.reserve());
        s.set(2, fds[1]);
        assert_eq!(s.get(2), Some(fds[1]));
        // SAFETY: fcntl on a descriptor this test owns.
        let fl = unsafe { libc::fcntl(fds[1], libc::F_GETFL) };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
        s.release(2);
        assert_eq!(s.get(2), None);
        // SAFETY: as above; the write end is closed now.
        assert_eq!(unsafe { libc::fcntl(fds[1], libc::F_GETFL) }, -1);
        assert!(s.reserve(), "released budget is back");
        // SAFETY: the read end is still ours.
        unsafe { libc::close(fds[0]) };
    }
}
