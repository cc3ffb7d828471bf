//! SO_REUSEPORT listeners, one per worker, so the kernel spreads new
//! connections over the workers without a shared accept queue.
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Someone already listens there.
    #[error("{addr} is already in use by another process")]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Any other failure.
    #[error("cannot listen on {addr}: {source}")]
    Other {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// Whether this host lets us give a TCP socket the congestion control
/// `name` (the kernel knows it and, for an unprivileged process, allows it):
/// the error says which and where to look.
pub fn check_congestion(name: &str) -> io::Result<()> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_tcp_congestion(name.as_bytes()).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) => {
                "not available (see /proc/sys/net/ipv4/tcp_available_congestion_control; a module may need loading)"
            }
            Some(libc::EPERM) => {
                "not allowed for this process (see net.ipv4.tcp_allowed_congestion_control)"
            }
            _ => "refused",
        };
        io::Error::new(e.kind(), format!("{name:?}: {why}: {e}"))
    })
}

/// Open `count` listeners on `addr` with SO_REUSEPORT, with the congestion
/// control `congestion` (empty = the host's default), which the connections
/// they accept inherit.
///
/// SO_REUSEPORT lets a second process of the same user join our port
/// silently, so a plain bind (without the option) is tried first to detect a
/// port that is already taken.
pub fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
    congestion: &str,
) -> Result<Vec<Socket>, ListenError> {
    let err = |source: io::Error| {
        if source.kind() == io::ErrorKind::AddrInUse {
            ListenError::InUse { addr }
        } else {
            ListenError::Other { addr, source }
        }
    };
    {
        let probe = new_socket(addr).map_err(err)?;
        probe.set_reuse_address(true).map_err(err)?;
        probe.bind(&addr.into()).map_err(err)?;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let s = new_socket(addr).map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        // Accepted sockets inherit TCP_NODELAY: responses leave at once,
        // with MSG_MORE doing the coalescing where it matters.
        s.set_tcp_nodelay(true).map_err(err)?;
        if !congestion.is_empty() {
            s.set_tcp_congestion(congestion.as_bytes()).map_err(err)?;
        }
        s.bind(&addr.into()).map_err(err)?;
        s.listen(4096).map_err(err)?;
        out.push(s);
    }
    Ok(out)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_cloexec(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_bind_of_a_taken_port_is_in_use() {
        let first = reuseport_listeners("127.0.0.1:0".parse().unwrap(), 2, "").unwrap();
        let addr = first[0].local_addr().unwrap().as_socket().unwrap();
        // Same process, same user, SO_REUSEPORT: still refused, by the probe.
        let e = reuseport_listeners(addr, 1, "").unwrap_err();
        assert!(matches!(e, ListenError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("in use"));
    }

    #[test]
    fn congestion_control_is_set_on_listeners_and_checked() {
        // reno is built into every kernel.
        let l = reuseport_listeners("127.0.0.1:0".parse().unwrap(), 1, "reno").unwrap();
        let name = l[0].tcp_congestion().unwrap();
        assert_eq!(name.split(|&b| b == 0).next().unwrap(), b"reno");
        check_congestion("reno").unwrap();
        let e = check_congestion("no-such-cc").unwrap_err();
        assert!(e.to_string().contains("not available"), "{e}");
    }
}
