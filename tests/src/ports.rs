//! Free TCP ports for servers under test.
use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// A TCP port that is free on 127.0.0.1 right now and has not been handed out
/// before in this process.
///
/// Ports come from 20000..32000, below Linux's default ephemeral range
/// (32768..60999), so the clients' own outgoing ports (curl, raw sockets) do
/// not collide with a port picked for a server that has not bound it yet.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    // A cheap per-process random start, so parallel test processes (several
    // test binaries, or a developer's second `cargo test`) spread out.
    let mut x = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        let mut used = used.lock().unwrap_or_else(|e| e.into_inner());
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            used.insert(port);
            return port;
        }
    }
    // Fall back to the kernel's choice.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}
