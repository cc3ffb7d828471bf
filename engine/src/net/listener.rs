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

/// Open `count` listeners on `addr` with SO_REUSEPORT.
///
/// SO_REUSEPORT lets a second process of the same user join our port
/// silently, so a plain bind (without the option) is tried first to detect a
/// port that is already taken.
pub fn reuseport_listeners(addr: SocketAddr, count: usize) -> Result<Vec<Socket>, ListenError> {
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
        let first = reuseport_listeners("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap().as_socket().unwrap();
        // Same process, same user, SO_REUSEPORT: still refused, by the probe.
        let e = reuseport_listeners(addr, 1).unwrap_err();
        assert!(matches!(e, ListenError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("in use"));
    }
}
