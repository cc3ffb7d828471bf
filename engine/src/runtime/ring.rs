//! One io_uring per worker, with completion tokens.
//!
//! Every submission carries a [`Token`] in its `user_data`: an operation kind,
//! a slot in the owner's slab and that slot's generation. A completion whose
//! generation no longer matches the slot belongs to a connection that is gone
//! and is only accounted for, never acted on.
use std::io;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

/// `user_data` of a submission: kind (8 bits) | generation (24 bits) | slot (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(pub u64);

impl Token {
    /// Build a token.
    pub const fn new(kind: u8, slot: u32, generation: u32) -> Self {
        Token(((kind as u64) << 56) | (((generation & 0x00FF_FFFF) as u64) << 32) | slot as u64)
    }
    /// Operation kind.
    pub const fn kind(self) -> u8 {
        (self.0 >> 56) as u8
    }
    /// Slot in the owner's slab.
    pub const fn slot(self) -> u32 {
        self.0 as u32
    }
    /// Generation of the slot when the operation was submitted (24 bits).
    pub const fn generation(self) -> u32 {
        ((self.0 >> 32) & 0x00FF_FFFF) as u32
    }
}

/// What the running kernel's ring supports, probed once at startup.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// IORING_OP_SEND_ZC.
    pub send_zc: bool,
    /// IORING_OP_SPLICE.
    pub splice: bool,
    /// IORING_OP_OPENAT2.
    pub openat2: bool,
    /// IORING_OP_SOCKET (direct-descriptor sockets for clients).
    pub socket: bool,
    /// IORING_OP_FIXED_FD_INSTALL (a direct descriptor into the fd table).
    pub fd_install: bool,
}

/// An io_uring owned by one thread.
pub struct Ring {
    uring: IoUring,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring with `entries` submission slots and a sparse direct-descriptor
    /// table of `files` slots. Must be created on the thread that uses it
    /// (single issuer, deferred task running).
    pub fn new(entries: u32, files: u32) -> io::Result<Self> {
        let uring = IoUring::builder()
            .setup_cqsize(entries * 8)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_submit_all()
            .build(entries)
            .or_else(|_| {
                // Older kernels: without the task-run flags.
                IoUring::builder().setup_cqsize(entries * 8).build(entries)
            })?;
        if files > 0 {
            uring.submitter().register_files_sparse(files)?;
        }
        Ok(Self { uring })
    }

    /// Probe which optional opcodes the kernel has.
    pub fn features(&self) -> Features {
        let mut probe = Probe::new();
        if self.uring.submitter().register_probe(&mut probe).is_err() {
            return Features {
                send_zc: false,
                splice: false,
                openat2: false,
                socket: false,
                fd_install: false,
            };
        }
        Features {
            send_zc: probe.is_supported(opcode::SendZc::CODE),
            splice: probe.is_supported(opcode::Splice::CODE),
            openat2: probe.is_supported(opcode::OpenAt2::CODE),
            socket: probe.is_supported(opcode::Socket::CODE),
            fd_install: probe.is_supported(opcode::FixedFdInstall::CODE),
        }
    }

    /// Queue a submission, flushing the queue to the kernel first when full.
    ///
    /// # Safety
    /// Every buffer, path or struct the entry points to must stay valid and
    /// unmoved until its completion arrives.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: the caller guarantees the entry's pointers outlive the
            // operation (this function's contract).
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                return;
            }
            // Queue full: hand what is queued to the kernel and retry.
            if let Err(e) = self.uring.submit()
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                tracing::error!("io_uring submit failed: {e}");
            }
        }
    }

    /// Submit everything queued and wait for at least `want` completions.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        match self.uring.submit_and_wait(want) {
            Ok(n) => Ok(n),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// [`submit_and_wait`](Self::submit_and_wait), returning after `timeout`
    /// at the latest (IORING_ENTER_EXT_ARG, Linux 5.11+): the loop's way to
    /// wake for paced sends without a timer operation per deadline.
    pub fn submit_and_wait_timeout(
        &mut self,
        want: usize,
        timeout: Option<std::time::Duration>,
    ) -> io::Result<usize> {
        let Some(t) = timeout else {
            return self.submit_and_wait(want);
        };
        let ts = io_uring::types::Timespec::from(t);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(want, &args) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Move the completions available now into `out` (cleared first).
    pub fn drain_completions(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        out.clear();
        let mut cq = self.uring.completion();
        cq.sync();
        for cqe in &mut cq {
            out.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }

    /// The submitter, for registrations.
    pub fn submitter(&self) -> io_uring::Submitter<'_> {
        self.uring.submitter()
    }
}

/// `IORING_CQE_F_MORE`: a multishot operation stays armed.
pub fn more(flags: u32) -> bool {
    cqueue::more(flags)
}

/// `IORING_CQE_F_NOTIF`: this is a zero-copy send's buffer-release notice.
pub fn notif(flags: u32) -> bool {
    cqueue::notif(flags)
}

/// The provided-buffer id a completion consumed, if any.
pub fn buffer_id(flags: u32) -> Option<u16> {
    cqueue::buffer_select(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let t = Token::new(7, 123_456, 0x00AB_CDEF);
        assert_eq!(t.kind(), 7);
        assert_eq!(t.slot(), 123_456);
        assert_eq!(t.generation(), 0x00AB_CDEF);
        let t = Token::new(255, u32::MAX, 0xFFFF_FFFF);
        assert_eq!(
            (t.kind(), t.slot(), t.generation()),
            (255, u32::MAX, 0x00FF_FFFF)
        );
    }

    #[test]
    fn ring_with_direct_table_starts_and_nops() {
        let mut ring = Ring::new(64, 128).expect("io_uring available");
        let nop = opcode::Nop::new().build().user_data(Token::new(1, 2, 3).0);
        // SAFETY: a NOP points to no memory.
        unsafe { ring.push(&nop) };
        ring.submit_and_wait(1).unwrap();
        let mut out = Vec::new();
        ring.drain_completions(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(Token(out[0].0), Token::new(1, 2, 3));
    }
}
