//! MPEG-TS over UDP in: ffmpeg sends H.264 + AAC TS datagrams (1316 bytes,
//! as encoders and headends do) to a `[[stream]] source = "tsudp://..."`,
//! and spate serves the stream like a pushed one: HLS and HTTP-FLV decode
//! with zero errors in ffprobe/ffmpeg.
//!
//! Unicast runs on the host's loopback. Multicast runs only inside a
//! private network namespace this test creates (loopback with the multicast
//! flag and a 239.0.0.0/8 route), never on the host's interfaces; it needs
//! root (CI is root) and says so loudly otherwise.
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use spate_tests::{
    ChildGuard, HlsPlaylist, Spate, SpateBuilder, TestStream, assert_probe, curl, decode_for,
    ffmpeg_bin, in_private_netns, multicast_on_loopback, resolve_url, wait_until,
};

const W: u32 = 640;
const H: u32 = 360;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// ffmpeg sending a test stream as MPEG-TS to `url` (`udp://…` or
/// `rtp://…` with `format`) for `seconds`.
fn send_ts(dir: &std::path::Path, url: &str, format: &str, seconds: u32) -> ChildGuard {
    let stream = TestStream {
        seconds,
        ..TestStream::sized(W, H)
    };
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(stream.args());
    if format == "mpegts" {
        cmd.args(["-mpegts_flags", "+resend_headers"]);
    }
    cmd.args(["-f", format, url]);
    ChildGuard::spawn(cmd, dir, "send-ts")
}

fn source_server(label: &str, name: &str, source: &str) -> SpateBuilder {
    Spate::builder()
        .label(label)
        .live("source_timeout", "1.0")
        .live("reconnect_grace", "1.0")
        .stream(name, &[("source", &format!("\"{source}\""))])
}

/// Wait until the stream's HLS media playlist lists at least `n` segments;
/// returns the media playlist URL.
fn wait_hls_segments(s: &Spate, name: &str, n: usize, sender: &mut ChildGuard) -> String {
    let master = s.url(&format!("/hls/{name}/index.m3u8"));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    loop {
        assert!(
            sender.running(),
            "the sender stopped early: {}\nserver log:\n{}",
            sender.stderr(),
            s.stderr()
        );
        let r = curl(s.dir(), &["--max-time", "5"], &master);
        if r.status == 200
            && let Ok(m) = HlsPlaylist::parse(&String::from_utf8_lossy(&r.body))
            && let Some(v) = m.variants.first()
        {
            let media = resolve_url(&master, &v.uri);
            let r = curl(s.dir(), &["--max-time", "5"], &media);
            if let Ok(p) = HlsPlaylist::parse(&String::from_utf8_lossy(&r.body)) {
                if p.segments.len() >= n {
                    return media;
                }
                last = format!("{} segments", p.segments.len());
            }
        } else {
            last = format!("master: status {}", r.status);
        }
        assert!(
            Instant::now() < deadline,
            "no {n} HLS segments of {name} within 40 s ({last})\nserver log:\n{}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_outputs_decode(s: &Spate, name: &str) {
    let master = s.url(&format!("/hls/{name}/index.m3u8"));
    assert_probe(s.dir(), &master, Some((W, H)), true);
    decode_for(s.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);
    let flv = s.url(&format!("/{name}.flv"));
    assert_probe(s.dir(), &flv, Some((W, H)), true);
    decode_for(s.dir(), &flv, 4, Duration::from_secs(30)).assert_clean(3.0);
}

#[test]
fn unicast_ts_over_udp_is_served_as_hls_and_flv_after_garbage_datagrams() {
    let port = free_udp_port();
    let s = source_server("udp_unicast", "udpin", &format!("tsudp://127.0.0.1:{port}")).start();
    // Garbage first: random-looking datagrams, a truncated packet, a
    // lone sync byte. The source counts them and keeps listening.
    let g = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(1 + i * 7 % 1400))
            .map(|j| (j.wrapping_mul(31).wrapping_add(i)) as u8)
            .collect();
        g.send_to(&junk, ("127.0.0.1", port)).unwrap();
    }
    g.send_to(&[0x47, 0x40, 0x00], ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.get("/hls/udpin/index.m3u8").status,
        404,
        "garbage made a stream"
    );

    let mut sender = send_ts(
        s.dir(),
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        "mpegts",
        40,
    );
    wait_hls_segments(&s, "udpin", 2, &mut sender);
    assert_outputs_decode(&s, "udpin");
    assert!(
        s.stderr().contains("source udpin"),
        "the source's log lines name it:\n{}",
        s.stderr()
    );

    // The sender stops: after source_timeout + reconnect_grace the stream
    // ends; a new sender brings it back.
    sender.kill();
    assert!(
        wait_until(Duration::from_secs(15), || s
            .get("/hls/udpin/index.m3u8")
            .status
            == 404),
        "stream still live 15 s after its source went quiet:\n{}",
        s.stderr()
    );
    assert!(s.stderr().contains("offline"), "{}", s.stderr());
    let mut again = send_ts(
        s.dir(),
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        "mpegts",
        30,
    );
    wait_hls_segments(&s, "udpin", 2, &mut again);
    decode_for(
        s.dir(),
        &s.url("/hls/udpin/index.m3u8"),
        4,
        Duration::from_secs(60),
    )
    .assert_clean(2.0);
}

#[test]
fn rtp_wrapped_ts_is_unwrapped() {
    let port = free_udp_port();
    let s = source_server("udp_rtp", "rtpin", &format!("tsrtp://127.0.0.1:{port}")).start();
    let mut sender = send_ts(
        s.dir(),
        &format!("rtp://127.0.0.1:{port}"),
        "rtp_mpegts",
        40,
    );
    wait_hls_segments(&s, "rtpin", 2, &mut sender);
    assert_outputs_decode(&s, "rtpin");
}

#[test]
fn multicast_ts_in_a_private_namespace_is_served() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "\n\n*** multicast_ts_in_a_private_namespace_is_served needs root (a private network \
             namespace for multicast); run the tests as root, as CI does.\n\n"
        );
    }
    let result = in_private_netns(|| {
        // Multicast on this namespace's loopback only.
        multicast_on_loopback()?;
        let s = source_server("udp_multicast", "mcast", "tsudp://239.1.1.1:5000?iface=lo").start();
        let mut sender = send_ts(
            s.dir(),
            "udp://239.1.1.1:5000?pkt_size=1316&ttl=1&localaddr=127.0.0.1",
            "mpegts",
            40,
        );
        wait_hls_segments(&s, "mcast", 2, &mut sender);
        assert_outputs_decode(&s, "mcast");
        Ok::<(), String>(())
    });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("namespace setup failed: {e}"),
        Err(e) => panic!("cannot create a network namespace: {e}"),
    }
}
