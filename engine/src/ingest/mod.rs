//! Stream sources that bring media in without a publisher connecting: a
//! `[[stream]] source = "..."` URL says where the stream's media comes from.
//!
//! | URL | what |
//! |---|---|
//! | `push://` (default) | a publisher pushes it (RTMP) |
//! | `tsudp://GROUP:PORT` | MPEG-TS over UDP, multicast (IGMP join) |
//! | `tsudp://:PORT`, `tsudp://ADDR:PORT` | MPEG-TS over UDP, unicast |
//! | `tsrtp://...` | the same, each datagram RTP-wrapped (RFC 2250 / SMPTE 2022) |
//! | `ts-exec:COMMAND LINE` | MPEG-TS on the standard output of a command Spate runs ([`exec`]) |
//! | `http://HOST[:PORT]/PATH` | MPEG-TS pulled from an HTTP response body (e.g. another server's `/<s>.ts`) |
//!
//! Options (query): `iface=NAME` or `iface=ADDR` (the interface a multicast
//! group is joined on; default: the kernel's choice by route), `source=ADDR`
//! (source-specific multicast), `rcvbuf=BYTES` (socket receive buffer,
//! default 4 MiB).
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

pub mod exec;

/// Where a stream's media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUrl {
    /// Publishers push it (RTMP).
    Push,
    /// MPEG-TS datagrams.
    TsUdp(UdpSource),
    /// MPEG-TS read from a command's standard output.
    TsExec(ExecSource),
    /// MPEG-TS pulled over HTTP (the body of a `GET`).
    TsHttp(HttpSource),
}

/// An `http://` source: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSource {
    /// The URL as configured (logs show it).
    pub url: String,
    /// Host as written, without brackets (a name, an IPv4 or IPv6 literal).
    pub host: String,
    /// Port (80 when the URL has none).
    pub port: u16,
    /// The `Host:` header value (`host`, `[v6]`, with `:port` unless 80).
    pub authority: String,
    /// Request target: path and query (`/` when the URL has none).
    pub path: String,
}

impl HttpSource {
    /// Parse `http://HOST[:PORT][/PATH][?QUERY]`; the error says what is
    /// wrong. No credentials, no fragment; HOST is a name, an IPv4 literal
    /// or a bracketed IPv6 literal.
    pub fn parse(url: &str) -> Result<HttpSource, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: expected http://HOST[:PORT]/PATH"))?;
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (auth, path) = rest.split_at(cut);
        if auth.contains('@') {
            return Err(format!("{url:?}: credentials in the URL are not supported"));
        }
        if path.contains('#') {
            return Err(format!("{url:?}: a fragment (#...) is not supported"));
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(format!("{url:?}: spaces or control characters in the path"));
        }
        let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unterminated [IPv6 literal]"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{url:?}: {h:?} is not an IPv6 address"));
            }
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| {
                        format!("{url:?}: expected :PORT after the IPv6 literal")
                    })?),
                ),
            }
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            }
        };
        if host.is_empty()
            || !auth.starts_with('[')
                && !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!("{url:?}: bad host {host:?}"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p: &u16| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        };
        let shown = if auth.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = if port == 80 {
            shown
        } else {
            format!("{shown}:{port}")
        };
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(HttpSource {
            url: url.to_string(),
            host: host.to_string(),
            port,
            authority,
            path,
        })
    }

    /// The address when the host is an IP literal (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Where a redirect's `Location` points: an absolute `http://` URL, or
    /// an absolute path on the same host.
    pub fn redirect(&self, location: &str) -> Result<HttpSource, String> {
        if location.starts_with('/') && !location.starts_with("//") {
            let mut next = self.clone();
            next.path = location.to_string();
            next.url = format!("http://{}{location}", self.authority);
            return Ok(next);
        }
        HttpSource::parse(location)
    }
}

/// A `ts-exec:` source: the command Spate runs (no shell) and reads MPEG-TS
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSource {
    /// The command line as configured (after `ts-exec:`).
    pub command: String,
    /// The program and its arguments: the command line split on whitespace,
    /// `"..."` grouping (see [`split_command_line`]).
    pub argv: Vec<String>,
}

/// Split a command line into arguments without a shell: arguments are
/// separated by whitespace; a double-quoted part may hold whitespace and
/// joins the text around it (`-vf "scale=640:360"` → `-vf`, `scale=640:360`;
/// `a"b c"d` → `ab cd`; `""` is an empty argument); inside quotes `\"` is a
/// quote and `\\` a backslash. Nothing else is special: no variables, globs,
/// pipes or redirections.
pub fn split_command_line(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' => quoted = false,
                '\\' => match chars.clone().next() {
                    Some(n @ ('"' | '\\')) => {
                        chars.next();
                        cur.push(n);
                    }
                    _ => cur.push('\\'),
                },
                c => cur.push(c),
            }
        } else if c == '"' {
            quoted = true;
            in_arg = true;
        } else if c.is_whitespace() {
            if in_arg {
                args.push(std::mem::take(&mut cur));
                in_arg = false;
            }
        } else {
            cur.push(c);
            in_arg = true;
        }
    }
    if quoted {
        return Err("unterminated double quote".into());
    }
    if in_arg {
        args.push(cur);
    }
    if args.first().is_none_or(|p| p.is_empty()) {
        return Err("no command".into());
    }
    Ok(args)
}

/// An MPEG-TS over UDP source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpSource {
    /// Address to bind: the group for multicast, the local address (or
    /// 0.0.0.0) for unicast.
    pub addr: SocketAddrV4,
    /// Datagrams carry an RTP header before the TS packets.
    pub rtp: bool,
    /// Interface for the multicast join: a name (`eth1`) or an address.
    pub iface: Option<String>,
    /// Source-specific multicast: only this sender.
    pub source: Option<Ipv4Addr>,
    /// SO_RCVBUF, bytes.
    pub rcvbuf: usize,
}

impl UdpSource {
    /// Whether the address is a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.addr.ip().is_multicast()
    }
}

impl std::fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceUrl::Push => write!(f, "push://"),
            SourceUrl::TsUdp(u) => {
                write!(f, "{}://{}", if u.rtp { "tsrtp" } else { "tsudp" }, u.addr)
            }
            SourceUrl::TsHttp(h) => write!(f, "{}", h.url),
            SourceUrl::TsExec(e) => {
                // Log lines carry this: long command lines are cut.
                const SHOWN: usize = 60;
                match e.command.char_indices().nth(SHOWN) {
                    Some((cut, _)) => write!(f, "ts-exec:{}…", &e.command[..cut]),
                    None => write!(f, "ts-exec:{}", e.command),
                }
            }
        }
    }
}

/// Default SO_RCVBUF of a UDP source (4 MiB: ~4 s of an 8 Mbps stream).
pub const DEFAULT_RCVBUF: usize = 4 << 20;

impl SourceUrl {
    /// Parse a source URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<SourceUrl, String> {
        if url.is_empty() || url == "push://" || url == "push" {
            return Ok(SourceUrl::Push);
        }
        if let Some(command) = url.strip_prefix("ts-exec:") {
            let command = command.trim();
            let argv = split_command_line(command).map_err(|e| format!("{url:?}: {e}"))?;
            return Ok(SourceUrl::TsExec(ExecSource {
                command: command.to_string(),
                argv,
            }));
        }
        if url.starts_with("http://") {
            return HttpSource::parse(url).map(SourceUrl::TsHttp);
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: expected scheme://..."))?;
        let rtp = match scheme {
            "tsudp" | "udp" => false,
            "tsrtp" | "rtp" => true,
            "https" => {
                return Err(format!(
                    "{url:?}: https sources are not supported (no TLS client); use http://"
                ));
            }
            "srt" => {
                return Err(format!("{url:?}: {scheme} sources are not supported yet"));
            }
            s => return Err(format!("{url:?}: unknown source scheme {s:?}")),
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: expected HOST:PORT or :PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{url:?}: bad port {port:?}"))?;
        let ip: Ipv4Addr = if host.is_empty() {
            Ipv4Addr::UNSPECIFIED
        } else {
            host.parse()
                .map_err(|_| format!("{url:?}: {host:?} is not an IPv4 address"))?
        };
        let mut src = UdpSource {
            addr: SocketAddrV4::new(ip, port),
            rtp,
            iface: None,
            source: None,
            rcvbuf: DEFAULT_RCVBUF,
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "iface" | "interface" if !v.is_empty() => src.iface = Some(v.to_string()),
                "source" => {
                    src.source = Some(
                        v.parse()
                            .map_err(|_| format!("{url:?}: source={v:?} is not an IPv4 address"))?,
                    )
                }
                "rcvbuf" => {
                    src.rcvbuf = v
                        .parse()
                        .ok()
                        .filter(|&n: &usize| (64 * 1024..=256 << 20).contains(&n))
                        .ok_or_else(|| format!("{url:?}: rcvbuf={v:?}: 65536..=268435456"))?
                }
                _ => return Err(format!("{url:?}: unknown option {k:?}")),
            }
        }
        if src.source.is_some() && !src.is_multicast() {
            return Err(format!("{url:?}: source= needs a multicast group"));
        }
        Ok(SourceUrl::TsUdp(src))
    }
}

/// Open and bind a UDP source's socket, joining its group.
pub fn open_udp(src: &UdpSource) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Best effort: the kernel caps it at net.core.rmem_max (spate-tune
    // says so).
    let _ = s.set_recv_buffer_size(src.rcvbuf);
    s.bind(&SocketAddr::V4(src.addr).into())?;
    if src.is_multicast() {
        let group = *src.addr.ip();
        let iface = match src.iface.as_deref() {
            None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
            Some(name) => match name.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => InterfaceIndexOrAddress::Address(a),
                Ok(IpAddr::V6(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "iface: an IPv6 address for an IPv4 group",
                    ));
                }
                Err(_) => InterfaceIndexOrAddress::Index(interface_index(name)?),
            },
        };
        match src.source {
            Some(sender) => {
                let a = match iface {
                    InterfaceIndexOrAddress::Address(a) => a,
                    InterfaceIndexOrAddress::Index(_) => interface_address(src.iface.as_deref())?,
                };
                s.join_ssm_v4(&sender, &group, &a)?
            }
            None => s.join_multicast_v4_n(&group, &iface)?,
        }
    }
    Ok(s)
}

fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "iface name with NUL"))?;
    // SAFETY: c is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ));
    }
    Ok(i)
}

/// The first IPv4 address of an interface (SSM joins take an address).
fn interface_address(name: Option<&str>) -> io::Result<Ipv4Addr> {
    match name {
        None => Ok(Ipv4Addr::UNSPECIFIED),
        Some(n) => interface_ipv4(n),
    }
}

/// The first IPv4 address of the interface called `name`.
pub fn interface_ipv4(name: &str) -> io::Result<Ipv4Addr> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills ifap with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() == name.as_bytes()
            && !ifa.ifa_addr.is_null()
            // SAFETY: ifa_addr is non-null and points at a sockaddr.
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            // SAFETY: the family is AF_INET, so it is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
        p = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name:?} has no IPv4 address"),
        )
    })
}

/// The TS bytes of one datagram: all of it, or after the RTP header
/// (version 2, CSRCs and header extension skipped, padding removed). `None`
/// for a datagram that is not RTP when RTP was expected.
pub fn ts_payload(datagram: &[u8], rtp: bool) -> Option<&[u8]> {
    if !rtp {
        return Some(datagram);
    }
    if datagram.len() < 12 || datagram[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(datagram[0] & 0x0F);
    let mut off = 12 + 4 * cc;
    if datagram[0] & 0x10 != 0 {
        let ext = datagram.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = datagram.len();
    if datagram[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*datagram.last()?))?;
    }
    datagram.get(off..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls_parse_and_errors_name_the_problem() {
        assert_eq!(SourceUrl::parse("").unwrap(), SourceUrl::Push);
        assert_eq!(SourceUrl::parse("push://").unwrap(), SourceUrl::Push);
        let SourceUrl::TsUdp(u) =
            SourceUrl::parse("tsudp://239.1.1.1:5000?iface=eth1&source=10.0.0.5").unwrap()
        else {
            panic!()
        };
        assert!(u.is_multicast() && !u.rtp);
        assert_eq!(u.iface.as_deref(), Some("eth1"));
        assert_eq!(u.source, Some(Ipv4Addr::new(10, 0, 0, 5)));
        let SourceUrl::TsUdp(u) = SourceUrl::parse("tsrtp://:5004").unwrap() else {
            panic!()
        };
        assert!(u.rtp && !u.is_multicast());
        assert_eq!(u.addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5004));
        for (bad, why) in [
            ("tsudp://1.2.3.4", "HOST:PORT"),
            ("tsudp://:0", "bad port"),
            ("tsudp://x:5", "not an IPv4"),
            ("tsudp://:5?foo=1", "unknown option"),
            ("tsudp://1.2.3.4:5?source=1.1.1.1", "multicast"),
            ("gopher://x:1", "unknown source scheme"),
            ("https://x/a.ts", "not supported"),
            ("srt://x:1", "not supported yet"),
            ("http://u:p@x/a.ts", "credentials"),
            ("http://x:0/a.ts", "bad port"),
            ("http://x:99999/a.ts", "bad port"),
            ("http:///a.ts", "bad host"),
            ("http://[::1/a.ts", "unterminated"),
            ("http://[zz]/a.ts", "not an IPv6"),
            ("http://x/a b.ts", "spaces"),
            ("http://x/a.ts#f", "fragment"),
            ("ts-exec:", "no command"),
            ("ts-exec:  ", "no command"),
            ("ts-exec:ffmpeg -vf \"scale", "unterminated"),
        ] {
            let e = SourceUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn http_sources_parse() {
        let SourceUrl::TsHttp(h) = SourceUrl::parse("http://127.0.0.1:8080/live+o.ts").unwrap()
        else {
            panic!()
        };
        assert_eq!((h.host.as_str(), h.port), ("127.0.0.1", 8080));
        assert_eq!(h.authority, "127.0.0.1:8080");
        assert_eq!(h.path, "/live+o.ts");
        assert_eq!(h.literal(), Some("127.0.0.1:8080".parse().unwrap()));
        let h = HttpSource::parse("http://origin.example").unwrap();
        assert_eq!((h.port, h.path.as_str()), (80, "/"));
        assert_eq!(h.authority, "origin.example");
        assert_eq!(h.literal(), None);
        let h = HttpSource::parse("http://[::1]:81?x=1").unwrap();
        assert_eq!((h.host.as_str(), h.path.as_str()), ("::1", "/?x=1"));
        assert_eq!(h.authority, "[::1]:81");
        assert_eq!(h.literal(), Some("[::1]:81".parse().unwrap()));
        let r = h.redirect("/other.ts").unwrap();
        assert_eq!(
            (r.url.as_str(), r.path.as_str()),
            ("http://[::1]:81/other.ts", "/other.ts")
        );
        let r = h.redirect("http://10.0.0.1/b.ts").unwrap();
        assert_eq!(r.literal(), Some("10.0.0.1:80".parse().unwrap()));
        assert!(h.redirect("https://x/").is_err());
        assert!(h.redirect("//x/y").is_err());
    }

    #[test]
    fn ts_exec_command_lines_split_without_a_shell() {
        let SourceUrl::TsExec(e) =
            SourceUrl::parse("ts-exec:ffmpeg -re  -i \"my file.ts\" -f mpegts -").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            e.argv,
            ["ffmpeg", "-re", "-i", "my file.ts", "-f", "mpegts", "-"]
        );
        assert_eq!(e.command, "ffmpeg -re  -i \"my file.ts\" -f mpegts -");
        let split = |s: &str| split_command_line(s).unwrap();
        assert_eq!(split("a\"b c\"d  \"\""), ["ab cd", ""]);
        assert_eq!(split(r#"x "a \"q\" \\ \n""#), ["x", r#"a "q" \ \n"#]);
        assert_eq!(
            split("$HOME *.ts | x > y"),
            ["$HOME", "*.ts", "|", "x", ">", "y"]
        );
        assert!(split_command_line("\"\" x").is_err(), "empty program");
        let long = format!("ts-exec:{}", "x".repeat(100));
        let shown = SourceUrl::parse(&long).unwrap().to_string();
        assert!(shown.ends_with('…') && shown.len() < 80, "{shown}");
    }

    #[test]
    fn rtp_headers_are_stripped() {
        let mut d = vec![0x80, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        d.extend_from_slice(&[0x47; 188]);
        assert_eq!(ts_payload(&d, true).unwrap().len(), 188);
        // CSRC count 1 + extension of one word.
        let mut e = vec![
            0x91, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 0, 0, 0, 1, 7, 7, 7, 7,
        ];
        e.extend_from_slice(&[0x47; 188]);
        assert_eq!(ts_payload(&e, true).unwrap(), &[0x47; 188][..]);
        assert!(ts_payload(&[0x47; 188], true).is_none());
        assert!(ts_payload(&[0x80, 0, 0], true).is_none());
        assert_eq!(ts_payload(&[1, 2, 3], false).unwrap(), &[1, 2, 3]);
    }
}
