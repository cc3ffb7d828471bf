//! A minimal HTTP/1.1 response reader for raw-socket tests (pipelining,
//! stalled heads, many concurrent keep-alive clients), where curl would hide
//! what happens on the wire.
use std::io::{self, BufRead, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connect with a 10 s connect timeout and 60 s read/write timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connect with `SO_RCVBUF` set to `rcvbuf` bytes before the handshake, so
/// the advertised window stays small and a slow reader really holds the
/// server back (instead of the kernel buffering megabytes on loopback).
/// Timeouts as in [`connect`].
pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we own; from here on TcpStream owns and closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let size = rcvbuf as libc::c_int;
    // SAFETY: fd is a live socket; the option value points at a c_int that
    // outlives the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: fd is a live socket; sin is a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// The whole status line.
    pub status_line: String,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// Body (empty for HEAD, 1xx, 204, 304).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response head",
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(bad(
            "response head line unterminated or longer than 64 KiB".into()
        ));
    }
    let s = String::from_utf8(line).map_err(|e| bad(format!("non-UTF-8 head: {e}")))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// Read one response. `head_request`: the request was HEAD (no body follows
/// whatever Content-Length says). Bodies are framed by Content-Length, chunked
/// encoding, or (neither) the end of the connection.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<RawResponse> {
    let status_line = read_line(r)?;
    if !status_line.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("no status code in {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without colon: {line:?}")))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = RawResponse {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(resp);
    }
    if let Some(cl) = resp.header("content-length") {
        let len: usize = cl
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            if !read_line(r)?.is_empty() {
                return Err(bad("chunk not followed by CRLF".into()));
            }
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}
