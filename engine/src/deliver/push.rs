//! `[[push]]` targets: where a stream is pushed out as MPEG-TS over UDP
//! (the sending side lives in the worker, `http_worker/udp_push.rs`).
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

/// Where a push sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Destination.
    pub addr: SocketAddrV4,
    /// RTP-wrap each datagram.
    pub rtp: bool,
    /// Multicast TTL.
    pub ttl: u32,
    /// Outgoing interface for multicast: a name or an IPv4 address.
    pub iface: Option<String>,
}

impl PushTarget {
    /// Parse `tsudp://ADDR:PORT?ttl=N&iface=X` / `tsrtp://…`.
    pub fn parse(url: &str) -> Result<PushTarget, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: expected tsudp://ADDR:PORT"))?;
        let rtp = match scheme {
            "tsudp" | "udp" => false,
            "tsrtp" | "rtp" => true,
            s => return Err(format!("{url:?}: unknown push scheme {s:?}")),
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let addr: SocketAddrV4 = hostport
            .parse()
            .map_err(|_| format!("{url:?}: expected IPv4ADDR:PORT"))?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(format!("{url:?}: needs a destination address and port"));
        }
        let mut t = PushTarget {
            addr,
            rtp,
            ttl: 1,
            iface: None,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "ttl" => {
                    t.ttl = v
                        .parse()
                        .ok()
                        .filter(|&n| (1..=255).contains(&n))
                        .ok_or_else(|| format!("{url:?}: ttl={v:?}: 1..=255"))?
                }
                "iface" | "interface" if !v.is_empty() => t.iface = Some(v.to_string()),
                _ => return Err(format!("{url:?}: unknown option {k:?}")),
            }
        }
        Ok(t)
    }

    /// A connected UDP socket for this target (TTL, outgoing interface).
    pub fn open(&self) -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_nonblocking(true)?;
        let _ = s.set_send_buffer_size(1 << 20);
        if self.addr.ip().is_multicast() {
            s.set_multicast_ttl_v4(self.ttl)?;
            s.set_multicast_loop_v4(true)?;
            if let Some(i) = &self.iface {
                let a = match i.parse::<Ipv4Addr>() {
                    Ok(a) => a,
                    Err(_) => crate::ingest::interface_ipv4(i)?,
                };
                s.set_multicast_if_v4(&a)?;
            }
        } else {
            s.set_ttl_v4(self.ttl.max(64))?;
        }
        s.connect(&SocketAddr::V4(self.addr).into())?;
        Ok(s)
    }
}

/// Whether push rule `pattern` covers stream `name`: the exact name, or
/// `base+` for every `base+anything`.
pub fn push_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(base) => name
            .strip_prefix(base)
            .is_some_and(|r| r.len() > 1 && r.starts_with('+')),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_rules_match_names_and_wildcards() {
        assert!(push_matches("live+", "live+alice"));
        assert!(!push_matches("live+", "live"));
        assert!(!push_matches("live+", "livex+a"));
        assert!(push_matches("news", "news"));
        assert!(!push_matches("news", "news+a"));
    }

    #[test]
    fn push_targets_parse() {
        let t = PushTarget::parse("tsudp://239.1.1.1:5000?ttl=4&iface=eth1").unwrap();
        assert_eq!(t.addr, "239.1.1.1:5000".parse().unwrap());
        assert_eq!((t.ttl, t.iface.as_deref(), t.rtp), (4, Some("eth1"), false));
        assert!(PushTarget::parse("tsrtp://10.0.0.1:5004").unwrap().rtp);
        for bad in [
            "tsudp://:5000",
            "tsudp://1.2.3.4:0",
            "x://1.2.3.4:1",
            "tsudp://1.2.3.4:1?ttl=0",
        ] {
            assert!(PushTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
