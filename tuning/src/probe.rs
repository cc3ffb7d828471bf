//! What this kernel's io_uring can do for Spate, asked of the kernel itself:
//! a small ring is set up, its opcode probe read, a sparse direct-descriptor
//! table registered. Multishot accept/receive and provided buffer rings have
//! no opcode of their own to probe; they are inferred from the kernel
//! version (5.19 / 6.0), and the report says so.
use io_uring::{IoUring, Probe, opcode};

/// The answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingProbe {
    /// `io_uring_setup` worked (`None`), or why not.
    pub setup_error: Option<String>,
    /// (operation, supported) for every opcode Spate submits.
    pub opcodes: Vec<(&'static str, bool)>,
    /// A sparse fixed-file table (direct descriptors) could be registered.
    pub direct_descriptors: bool,
}

/// Run the probe on this kernel.
pub fn run() -> RingProbe {
    let ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            return RingProbe {
                setup_error: Some(e.to_string()),
                opcodes: Vec::new(),
                direct_descriptors: false,
            };
        }
    };
    let mut probe = Probe::new();
    let probed = ring.submitter().register_probe(&mut probe).is_ok();
    let has = |code: u8| probed && probe.is_supported(code);
    let opcodes = vec![
        ("accept", has(opcode::Accept::CODE)),
        ("recv", has(opcode::Recv::CODE)),
        ("send", has(opcode::Send::CODE)),
        ("sendmsg", has(opcode::SendMsg::CODE)),
        ("send_zc", has(opcode::SendZc::CODE)),
        ("splice", has(opcode::Splice::CODE)),
        ("openat2", has(opcode::OpenAt2::CODE)),
        ("close", has(opcode::Close::CODE)),
        ("timeout", has(opcode::Timeout::CODE)),
        ("read", has(opcode::Read::CODE)),
        ("async_cancel", has(opcode::AsyncCancel::CODE)),
        ("socket", has(opcode::Socket::CODE)),
        ("connect", has(opcode::Connect::CODE)),
        ("fixed_fd_install", has(opcode::FixedFdInstall::CODE)),
    ];
    let direct_descriptors = ring.submitter().register_files_sparse(16).is_ok();
    RingProbe {
        setup_error: None,
        opcodes,
        direct_descriptors,
    }
}

/// Opcodes Spate cannot run without (the rest have fallbacks).
pub const REQUIRED: &[&str] = &[
    "accept",
    "recv",
    "send",
    "sendmsg",
    "openat2",
    "close",
    "timeout",
    "read",
    "async_cancel",
];
