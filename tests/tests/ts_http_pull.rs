//! `http://` pull sources: an edge spate with `[[stream]] source =
//! "http://origin/live+o.ts"` reads the origin's progressive MPEG-TS and
//! serves it like any live stream (HLS and HTTP-FLV decode with zero
//! errors); when the origin's publisher goes away the edge's stream goes
//! offline and comes back when it does. Bad origins (a 404, garbage, a 200
//! with a garbage body, one that never answers) are each logged with the
//! source's name, retried with a doubling backoff, and disturb nothing else.
//! Redirects are followed and a chunked body (a proxy of the test's own
//! re-framing the origin's) decodes as cleanly; a host name is resolved.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spate_tests::{Spate, TestStream, assert_probe, decode_for, publish, wait_until};

const W: u32 = 640;
const H: u32 = 360;

fn stream() -> TestStream {
    TestStream {
        seconds: 600,
        ..TestStream::sized(W, H)
    }
}

fn log_lines_of<'a>(log: &'a str, stream: &str) -> Vec<&'a str> {
    let tag = format!("source {stream} (");
    log.lines().filter(|l| l.contains(&tag)).collect()
}

/// Wait until `name`'s HLS playlist is served, then for a few more
/// segments.
fn wait_live(s: &Spate, name: &str) {
    let path = format!("/hls/{name}/index.m3u8");
    assert!(
        wait_until(Duration::from_secs(40), || s.get(&path).status == 200),
        "{name} did not go live:\n{}",
        s.stderr()
    );
    std::thread::sleep(Duration::from_secs(4));
}

/// The reconnect delays the log shows for source `name`.
fn delays(log: &str, name: &str) -> Vec<u64> {
    log_lines_of(log, name)
        .iter()
        .filter_map(|l| l.split("reconnecting in ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn edge_pulls_the_origin_and_reconnects_after_it_comes_back() {
    let origin = Spate::builder()
        .label("pull_origin")
        .stream("live", &[])
        .live("reconnect_grace", "1.0")
        .start();
    let mut publisher = publish(origin.dir(), &origin.rtmp_url("live", "live+o"), &stream());
    assert!(
        wait_until(Duration::from_secs(20), || origin
            .stderr()
            .contains("publishing live+o")),
        "the origin did not go live:\n{}",
        origin.stderr()
    );
    let source = format!("\"http://127.0.0.1:{}/live+o.ts\"", origin.port());
    let edge = Spate::builder()
        .label("pull_edge")
        .live("source_timeout", "2.0")
        .live("reconnect_grace", "1.0")
        .stream("edge", &[("source", &source)])
        .start();

    let master = edge.url("/hls/edge/index.m3u8");
    let flv = edge.flv_url("edge");
    wait_live(&edge, "edge");
    assert_probe(edge.dir(), &master, Some((W, H)), true);
    decode_for(edge.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);
    assert_probe(edge.dir(), &flv, Some((W, H)), true);
    decode_for(edge.dir(), &flv, 4, Duration::from_secs(30)).assert_clean(3.0);
    let log = edge.stderr();
    assert!(
        log_lines_of(&log, "edge")
            .iter()
            .any(|l| l.contains("connected to 127.0.0.1:") && l.contains("HTTP 200")),
        "{log}"
    );

    // The origin's publisher goes: the edge's source goes offline and keeps
    // trying.
    publisher.kill();
    assert!(
        wait_until(Duration::from_secs(20), || log_lines_of(
            &edge.stderr(),
            "edge"
        )
        .iter()
        .any(|l| l.contains("offline"))),
        "the edge did not take the source offline:\n{}",
        edge.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(20), || edge
            .stderr()
            .contains("HTTP 404")),
        "the edge did not retry (and get a 404) while the origin was down:\n{}",
        edge.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(15), || edge
            .stderr()
            .contains("stream edge ended")),
        "{}",
        edge.stderr()
    );
    assert_eq!(edge.get("/edge.flv").status, 404);

    // Back: the edge reconnects and its stream is live again.
    let connects = |s: &Spate| s.stderr().matches("HTTP 200,").count();
    let before = connects(&edge);
    let _publisher = publish(origin.dir(), &origin.rtmp_url("live", "live+o"), &stream());
    assert!(
        wait_until(Duration::from_secs(60), || connects(&edge) > before),
        "the edge did not reconnect to the origin:\n{}",
        edge.stderr()
    );
    wait_live(&edge, "edge");
    assert_probe(edge.dir(), &master, Some((W, H)), true);
    decode_for(edge.dir(), &master, 4, Duration::from_secs(60)).assert_clean(2.0);
}

/// A TCP listener of the test's own: `answer` handles each connection (on
/// its own thread); returns the port and the connection count.
fn bad_origin(answer: fn(TcpStream)) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            c.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || answer(conn));
        }
    });
    (port, count)
}

fn read_request(c: &mut TcpStream) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let _ = c.read(&mut buf);
}

/// Pseudo-random bytes (never a TS sync pattern for long).
fn noise(seed: &mut u64, out: &mut [u8]) {
    for b in out {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = (*seed >> 24) as u8;
    }
}

#[test]
fn bad_origins_are_logged_and_retried_while_another_stream_plays() {
    let (p404, n404) = bad_origin(|mut c| {
        read_request(&mut c);
        let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    });
    let (pgarbage, ngarbage) = bad_origin(|mut c| {
        read_request(&mut c);
        let mut b = [0u8; 4096];
        noise(&mut 0x1234_5678_9abc_def1, &mut b);
        b[0] = 0x01;
        let _ = c.write_all(&b);
    });
    let (pbody, nbody) = bad_origin(|mut c| {
        read_request(&mut c);
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n");
        let mut seed = 0x0bad_cafe_f00d_u64;
        let mut b = [0u8; 16 * 1024];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            noise(&mut seed, &mut b);
            if c.write_all(&b).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let (psilent, nsilent) = bad_origin(|c| {
        // Accepts, reads nothing, answers nothing, until the peer goes.
        let mut c = c;
        let mut buf = [0u8; 4096];
        let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    });
    let src = |port: u16| format!("\"http://127.0.0.1:{port}/live+o.ts\"");
    let mut edge = Spate::builder()
        .label("pull_bad")
        .stream("good", &[])
        .live("source_timeout", "2.0")
        .live("reconnect_grace", "1.0")
        .stream("notfound", &[("source", &src(p404))])
        .stream("garbage", &[("source", &src(pgarbage))])
        .stream("noise", &[("source", &src(pbody))])
        .stream("silent", &[("source", &src(psilent))])
        .start();
    let _good = publish(edge.dir(), &edge.rtmp_url("live", "good"), &stream());
    let master = edge.url("/hls/good/index.m3u8");
    wait_live(&edge, "good");
    assert_probe(edge.dir(), &master, Some((W, H)), true);
    decode_for(edge.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);

    // Each is logged with its name and retried after 1, 2 (, 4) s.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, want) in [
        ("notfound", &[1, 2, 4][..]),
        ("garbage", &[1, 2, 4]),
        ("noise", &[1, 2]),
        ("silent", &[1, 2]),
    ] {
        loop {
            let log = edge.stderr();
            let d = delays(&log, name);
            if d.starts_with(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: reconnect delays {d:?}, want {want:?}...\n{}",
                log_lines_of(&log, name).join("\n")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        for path in [format!("/hls/{name}/index.m3u8"), format!("/{name}.flv")] {
            let r = edge.curl(&["--max-time", "5"], &path);
            assert_eq!(r.status, 404, "{path}: {}", edge.stderr());
        }
    }
    let log = edge.stderr();
    let why = |name: &str, what: &str| {
        assert!(
            log_lines_of(&log, name).iter().any(|l| l.contains(what)),
            "{name}: no log line with {what:?}:\n{log}"
        );
    };
    why("notfound", "HTTP 404 Not Found from 127.0.0.1:");
    why("garbage", "bad response head");
    why("noise", "bytes skipped");
    why("noise", "without going live");
    why("silent", "no response head within 10 s");
    for (name, n) in [
        ("notfound", &n404),
        ("garbage", &ngarbage),
        ("noise", &nbody),
        ("silent", &nsilent),
    ] {
        assert!(n.load(Ordering::Relaxed) >= 2, "{name}: connections {n:?}");
    }

    // Still healthy.
    decode_for(edge.dir(), &master, 4, Duration::from_secs(60)).assert_clean(2.0);
    edge.signal(libc::SIGTERM);
    let status = edge
        .wait_exit(Duration::from_secs(30))
        .expect("spate exits");
    assert!(status.success(), "{status:?}\n{}", edge.stderr());
}

/// Serve the origin's `path` again, re-framed as a chunked body (one chunk
/// per read from the origin).
fn chunking_proxy(origin: u16, path: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = conn;
                read_request(&mut c);
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", origin)) else {
                    return;
                };
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                if up.write_all(req.as_bytes()).is_err() {
                    return;
                }
                // Skip the origin's head.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match up.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if !head.starts_with(b"HTTP/1.1 200") {
                    let _ = c.write_all(&head);
                    return;
                }
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                let mut buf = [0u8; 7000];
                loop {
                    let n = match up.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = c.write_all(b"0\r\n\r\n");
                            return;
                        }
                        Ok(n) => n,
                    };
                    let mut chunk = format!("{n:x};x=y\r\n").into_bytes();
                    chunk.extend_from_slice(&buf[..n]);
                    chunk.extend_from_slice(b"\r\n");
                    if c.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn redirects_and_chunked_bodies_are_followed() {
    let origin = Spate::builder()
        .label("pull_chunked_origin")
        .stream("live", &[])
        .start();
    let _publisher = publish(origin.dir(), &origin.rtmp_url("live", "live+o"), &stream());
    assert!(
        wait_until(Duration::from_secs(20), || origin
            .stderr()
            .contains("publishing live+o")),
        "the origin did not go live:\n{}",
        origin.stderr()
    );
    let proxy = chunking_proxy(origin.port(), "/live+o.ts");
    // Two redirects (absolute URLs, the second to another port); relative
    // ones are in the engine's unit tests.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let redirector = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = if req.starts_with("GET /first ") {
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{redirector}/second\r\nContent-Length: 0\r\n\r\n"
                )
            } else {
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{proxy}/live+o.ts\r\nContent-Length: 0\r\n\r\n"
                )
            };
            let _ = c.write_all(answer.as_bytes());
        }
    });
    let source = format!("\"http://127.0.0.1:{redirector}/first\"");
    // A host name: resolved off the loop.
    let by_name = format!("\"http://localhost:{}/live+o.ts\"", origin.port());
    let edge = Spate::builder()
        .label("pull_chunked_edge")
        .live("source_timeout", "2.0")
        .stream("chunked", &[("source", &source)])
        .stream("byname", &[("source", &by_name)])
        .start();
    wait_live(&edge, "chunked");
    wait_live(&edge, "byname");
    assert!(
        log_lines_of(&edge.stderr(), "byname")
            .iter()
            .any(|l| l.contains("HTTP 200, close-delimited body")),
        "{}",
        edge.stderr()
    );
    let master = edge.url("/hls/chunked/index.m3u8");
    assert_probe(edge.dir(), &master, Some((W, H)), true);
    decode_for(edge.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);
    let log = edge.stderr();
    let lines = log_lines_of(&log, "chunked");
    for want in [
        "HTTP 302 from 127.0.0.1:",
        "redirected to http://127.0.0.1:",
        "HTTP 307 from",
        "HTTP 200, chunked body",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "no log line with {want:?}:\n{log}"
        );
    }
    assert!(!log.contains("bad chunked body"), "{log}");
}
