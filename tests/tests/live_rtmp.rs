//! Live streaming end to end: ffmpeg publishes H.264 + AAC over RTMP; ffprobe,
//! ffmpeg and raw sockets (parsing FLV tags) watch over RTMP and HTTP-FLV.
//!
//! Every publish is a real-time (`-re`) libx264 `ultrafast` encode, so each
//! test takes the seconds it watches; sizes are small where they do not
//! matter, because tests run two at a time on a 2-core machine.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use spate_tests::{
    ChildGuard, FlvViewer, Json, ProbedStream, Spate, SpateBuilder, TAG_AUDIO, TAG_VIDEO,
    TestStream, ViewerLog, browser_dir, connect_small_window, ffmpeg_bin, ffmpeg_decode,
    ffprobe_streams, node_module_file, pseudo_random_bytes, publish, run_node_script, wait_until,
};

/// A server with `[[stream]] name = "live"` (so `live` and `live+*` may be
/// published) and the harness defaults (2 workers, free HTTP and RTMP ports).
fn live_server(label: &str) -> SpateBuilder {
    Spate::builder().label(label).stream("live", &[])
}

/// Media timestamps never go back by more than `slack_ms` below the largest
/// seen so far.
fn assert_monotonic(log: &ViewerLog, slack_ms: u32, what: &str) {
    let mut max = 0u32;
    for (i, r) in log.media().enumerate() {
        assert!(
            r.tag.timestamp + slack_ms >= max,
            "{what}: media tag #{i} (kind {}, at {:?}) has timestamp {} ms, {} ms behind the largest so far ({max} ms)\n{}",
            r.tag.kind,
            r.at,
            r.tag.timestamp,
            max - r.tag.timestamp,
            log.summary()
        );
        max = max.max(r.tag.timestamp);
    }
}

/// ffprobe `url` and check it is exactly h264 `w`x`h` + aac 48000 Hz stereo.
fn assert_h264_aac(s: &Spate, url: &str, w: u32, h: u32) {
    let streams = ffprobe_streams(s.dir(), url).unwrap_or_else(|e| panic!("{e}"));
    let video = ProbedStream {
        codec_type: "video".into(),
        codec_name: "h264".into(),
        width: w,
        height: h,
        ..ProbedStream::default()
    };
    let audio = ProbedStream {
        codec_type: "audio".into(),
        codec_name: "aac".into(),
        sample_rate: 48000,
        channels: 2,
        ..ProbedStream::default()
    };
    let mut got = streams.clone();
    got.sort_by(|a, b| b.codec_type.cmp(&a.codec_type));
    assert_eq!(
        got,
        vec![video, audio],
        "ffprobe {url}: want exactly h264 {w}x{h} + aac 48000 Hz stereo"
    );
}

/// A GET of `path` on a fresh connection: the status code.
fn status_of(s: &Spate, path: &str) -> u16 {
    let r = s.curl(&["--max-time", "10"], path);
    r.assert_transfer_ok();
    r.status
}

#[test]
fn publish_h264_aac_and_play_over_rtmp_and_http_flv() {
    let s = live_server("live_basic").server("workers", "2").start();
    let mut publisher = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 30,
            ..TestStream::sized(640, 360)
        },
    );
    s.wait_flv_live("live", &mut publisher, Duration::from_secs(20));

    let v = FlvViewer::start(s.addr(), "/live.flv");
    let rtmp = s.rtmp_url("live", "live");
    let flv = s.flv_url("live");
    for url in [&rtmp, &flv] {
        assert_h264_aac(&s, url, 640, 360);
    }
    for url in [&rtmp, &flv] {
        let out = ffmpeg_decode(s.dir(), url, 5, Duration::from_secs(40));
        assert!(
            out.success() && out.stderr.trim().is_empty(),
            "`{}`: want exit 0 and no output, got {:?} after {:?}:\n{}",
            out.command,
            out.status,
            out.elapsed,
            out.stderr
        );
        assert!(
            out.elapsed >= Duration::from_secs(2),
            "`{}` ended after {:?}: it cannot have decoded 5 s of a live stream",
            out.command,
            out.elapsed
        );
    }
    let log = v.stop();
    assert_eq!(log.status, 200, "{}", log.summary());
    let ctype = log
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ctype, Some("video/x-flv"), "{:?}", log.headers);
    assert!(log.ended.is_none(), "viewer cut off: {}", log.summary());
    assert_monotonic(&log, 1000, "HTTP-FLV viewer");
    assert!(
        publisher.running(),
        "the publisher stopped before the test ended: {:?}\n{}",
        publisher.try_exit(),
        publisher.stderr()
    );
}

#[test]
fn wildcard_streams_published_at_once_stay_separate() {
    let s = live_server("live_wildcards").start();
    let mut a = publish(
        s.dir(),
        &s.rtmp_url("live", "live+a"),
        &TestStream {
            seconds: 30,
            ..TestStream::sized(640, 360)
        },
    );
    let mut b = publish(
        s.dir(),
        &s.rtmp_url("live", "live+b"),
        &TestStream {
            pattern: "smptebars",
            tone: 440,
            seconds: 30,
            ..TestStream::sized(320, 240)
        },
    );
    s.wait_flv_live("live+a", &mut a, Duration::from_secs(20));
    s.wait_flv_live("live+b", &mut b, Duration::from_secs(20));
    assert_h264_aac(&s, &s.flv_url("live+a"), 640, 360);
    assert_h264_aac(&s, &s.flv_url("live+b"), 320, 240);
    assert_h264_aac(&s, &s.rtmp_url("live", "live+b"), 320, 240);
    assert_h264_aac(&s, &s.rtmp_url("live", "live+a"), 640, 360);
    // The base name itself is not being published.
    assert_eq!(status_of(&s, "/live.flv"), 404);
    assert!(a.running() && b.running(), "a publisher stopped early");
}

#[test]
fn unknown_stream_names_are_refused_and_idle_streams_are_404() {
    let s = live_server("live_unknown").start();
    let stream = TestStream {
        seconds: 20,
        ..TestStream::default()
    };
    let mut p = publish(s.dir(), &s.rtmp_url("x", "other"), &stream);
    let status = p.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
        panic!(
            "publishing an unconfigured name is still running after 15 s:\n{}",
            p.stderr()
        )
    });
    assert!(
        !status.success(),
        "publishing `other` (not a configured stream) exited 0"
    );
    assert_eq!(status_of(&s, "/other.flv"), 404);
    assert_eq!(status_of(&s, "/live.flv"), 404, "nothing publishes live");
    assert_eq!(status_of(&s, "/live+x.flv"), 404);
    // RTMP play of a stream that is not live fails quickly.
    let started = Instant::now();
    let probe = ffprobe_streams(s.dir(), &s.rtmp_url("live", "live"));
    assert!(
        probe.is_err(),
        "ffprobe of a stream nobody publishes succeeded: {probe:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "RTMP play of a non-live stream took {:?} to fail",
        started.elapsed()
    );
    drop(s);

    // With accept_unknown_streams, the same publish is accepted.
    let s = live_server("live_unknown_ok")
        .live("accept_unknown_streams", "true")
        .start();
    let mut p = publish(s.dir(), &s.rtmp_url("x", "other"), &stream);
    s.wait_flv_live("other", &mut p, Duration::from_secs(20));
}

#[test]
fn second_publisher_is_refused_while_the_first_keeps_flowing() {
    let s = live_server("live_second").start();
    let mut first = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 40,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut first, Duration::from_secs(20));
    let viewer = FlvViewer::start(s.addr(), "/live.flv");
    assert!(
        wait_until(Duration::from_secs(10), || viewer.log().video().count()
            > 10),
        "viewer got no video: {}",
        viewer.log().summary()
    );

    let mut second = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            pattern: "smptebars",
            seconds: 40,
            ..TestStream::sized(640, 360)
        },
    );
    let status = second
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| {
            panic!(
                "a second publisher of `live` is still running after 15 s:\n{}",
                second.stderr()
            )
        });
    assert!(!status.success(), "the second publisher exited 0");
    assert!(
        first.running(),
        "the first publisher died when a second one tried: {:?}\n{}",
        first.try_exit(),
        first.stderr()
    );

    let mark = viewer.elapsed();
    let before = viewer.log().max_ts_since(Duration::ZERO).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(4));
    let log = viewer.log();
    assert!(log.ended.is_none(), "viewer cut off: {}", log.summary());
    let after = log.max_ts_since(mark).unwrap_or(0);
    assert!(
        after >= before + 2000,
        "viewer's stream stalled after the refused publish: newest timestamp {before} ms before, {after} ms 4 s later\n{}",
        log.summary()
    );
    assert_monotonic(&log, 1000, "viewer across the refused publish");
    // Still the first publisher's stream (320x240, not the second's 640x360).
    assert_h264_aac(&s, &s.flv_url("live"), 320, 240);
}

#[test]
fn publisher_reconnecting_within_the_grace_keeps_viewers() {
    let s = live_server("live_reconnect")
        .live("reconnect_grace", "5.0")
        .start();
    let stream = TestStream {
        seconds: 40,
        ..TestStream::default()
    };
    let mut first = publish(s.dir(), &s.rtmp_url("live", "live"), &stream);
    s.wait_flv_live("live", &mut first, Duration::from_secs(20));

    let viewer = FlvViewer::start(s.addr(), "/live.flv");
    // ffmpeg decoding across the gap; -progress reports how much it decoded.
    let mut cmd = std::process::Command::new(ffmpeg_bin());
    cmd.args(["-nostdin", "-v", "error", "-i", &s.flv_url("live")])
        .args(["-t", "14", "-f", "null", "-progress", "pipe:1", "-"]);
    let mut decoder = ChildGuard::spawn(cmd, s.dir(), "decode-gap");

    std::thread::sleep(Duration::from_secs(4));
    let before = viewer.log();
    assert!(
        before.video().count() > 30,
        "viewer got little video before the gap: {}",
        before.summary()
    );
    first.kill();
    let gap_start = viewer.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = publish(s.dir(), &s.rtmp_url("live", "live"), &stream);
    let second_start = viewer.elapsed();

    // Watch 8 s of the second publish.
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        second.running(),
        "the reconnecting publisher was refused or died: {:?}\n{}",
        second.try_exit(),
        second.stderr()
    );
    let log = viewer.log();
    assert!(
        log.ended.is_none(),
        "the HTTP-FLV viewer was disconnected across the publisher's reconnect (gap from {gap_start:?} to {second_start:?}): {}",
        log.summary()
    );
    let after: Vec<_> = log.media().filter(|r| r.at > second_start).collect();
    let video_after = after.iter().filter(|r| r.tag.kind == TAG_VIDEO).count();
    let span = match (after.first(), after.last()) {
        (Some(a), Some(b)) => b.tag.timestamp.saturating_sub(a.tag.timestamp),
        _ => 0,
    };
    assert!(
        video_after >= 90 && span >= 4000,
        "after the reconnect the viewer got {video_after} video tags spanning {span} ms of media, want >= 90 and >= 4000 ms: {}",
        log.summary()
    );
    assert_monotonic(&log, 1000, "viewer across the reconnect");
    // No jump far into the future either: the reconnect gap was ~1.5 s.
    let mut prev: Option<u32> = None;
    for r in log.media() {
        if let Some(p) = prev {
            assert!(
                r.tag.timestamp <= p + 5000,
                "timestamp jumps forward {} ms (from {p} to {}) at {:?}: {}",
                r.tag.timestamp - p,
                r.tag.timestamp,
                r.at,
                log.summary()
            );
        }
        prev = Some(prev.map_or(r.tag.timestamp, |p| p.max(r.tag.timestamp)));
    }
    assert!(
        log.tags
            .iter()
            .any(|r| r.at > second_start && r.tag.kind == TAG_VIDEO && r.tag.keyframe),
        "no keyframe after the reconnect: {}",
        log.summary()
    );

    // ffmpeg decoded through the gap: it ran to -t 14 (or at least well past
    // the gap) and exited 0.
    let status = decoder.wait_exit(Duration::from_secs(30));
    let progress = decoder.stdout();
    let out_time_s = progress
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    assert!(
        status.is_some_and(|s| s.success()) && out_time_s >= 11.0,
        "ffmpeg decoding across the reconnect: exit {status:?}, decoded {out_time_s:.1} s of media (want >= 11 s); its errors:\n{}",
        decoder.stderr()
    );
    drop(viewer);

    // Once the publisher is gone for longer than the grace, the stream ends:
    // a viewer is closed and the URL is 404.
    let late = FlvViewer::start(s.addr(), "/live.flv");
    assert!(
        wait_until(Duration::from_secs(5), || late.log().video().count() > 0),
        "{}",
        late.log().summary()
    );
    second.kill();
    let killed = late.elapsed();
    assert!(
        wait_until(Duration::from_secs(15), || late.log().ended.is_some()),
        "viewer still connected 15 s after the publisher left (grace 5 s): {}",
        late.log().summary()
    );
    let ended_after = late
        .log()
        .ended_at
        .unwrap_or_default()
        .saturating_sub(killed);
    assert!(
        ended_after >= Duration::from_secs(3),
        "viewer closed {ended_after:?} after the publisher left; the grace is 5 s"
    );
    assert_eq!(status_of(&s, "/live.flv"), 404);
}

#[test]
fn twenty_http_flv_viewers_all_receive_the_stream() {
    let s = live_server("live_many").server("workers", "2").start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut p, Duration::from_secs(20));
    let viewers: Vec<FlvViewer> = (0..20)
        .map(|_| FlvViewer::start(s.addr(), "/live.flv"))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    for (i, v) in viewers.into_iter().enumerate() {
        let log = v.stop();
        assert_eq!(log.status, 200, "viewer {i}: {}", log.summary());
        assert!(
            log.flv_header,
            "viewer {i}: no FLV header: {}",
            log.summary()
        );
        assert!(log.ended.is_none(), "viewer {i} cut off: {}", log.summary());
        let first_video = log.video().next().map(|r| r.tag);
        assert!(
            first_video.is_some_and(|t| t.config && t.codec == 7),
            "viewer {i}: first video tag is not an AVC sequence header: {first_video:?}; {}",
            log.summary()
        );
        let first_frame = log.video().find(|r| !r.tag.config).map(|r| r.tag);
        assert!(
            first_frame.is_some_and(|t| t.keyframe),
            "viewer {i}: first video frame is not a keyframe: {first_frame:?}"
        );
        assert!(
            log.tags
                .iter()
                .any(|r| r.tag.kind == TAG_AUDIO && r.tag.config),
            "viewer {i}: no AAC sequence header: {}",
            log.summary()
        );
        let frames = log.video().filter(|r| !r.tag.config).count();
        assert!(
            frames >= 45,
            "viewer {i}: {frames} video frames in 4 s at 30 fps: {}",
            log.summary()
        );
        assert_monotonic(&log, 1000, &format!("viewer {i}"));
    }
}

#[test]
fn viewer_that_stops_reading_is_dropped_while_others_keep_up() {
    let s = live_server("live_stalled")
        .http("send_timeout", "3")
        .start();
    // 8 Mbit/s constant: the server's kernel send buffer (up to tcp_wmem's
    // 4 MiB) fills in ~4 s, after which its sends stop making progress. At
    // testsrc's usual ~1 Mbit/s that takes 30 s, before send_timeout can even
    // start counting.
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 40,
            bitrate: "8M",
            cbr: true,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut p, Duration::from_secs(20));

    let good = FlvViewer::start(s.addr(), "/live.flv");
    let mut stalled = connect_small_window(s.addr(), 4096).expect("connect");
    stalled
        .write_all(b"GET /live.flv HTTP/1.1\r\nHost: spate\r\n\r\n")
        .expect("send GET");
    let started = Instant::now();
    // Never read; wait for the server to give up on it (send_timeout 3 s, or
    // the live window), as its log says, or 20 s.
    let said = wait_until(Duration::from_secs(20), || {
        let log = s.stderr();
        log.contains("made no progress") || log.contains("fell out") || log.contains("dropping")
    });
    let waited = started.elapsed();
    assert!(
        said,
        "a viewer that stopped reading was not dropped within {waited:?} (send_timeout 3 s): \
         spate never logged `made no progress`, `dropping` or `fell out`"
    );
    // Now read: what the kernel buffered, then EOF or reset. A connection the
    // server still serves would deliver the live stream forever.
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let read_deadline = Instant::now() + Duration::from_secs(10);
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        if Instant::now() > read_deadline {
            break format!("still open after reading {total} bytes for 10 s");
        }
        match stalled.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => total += n,
            Err(e) => break format!("error: {e}"),
        }
    };
    assert!(
        end == "EOF" || end.contains("reset") || end.contains("error"),
        "spate logged dropping the stalled viewer after {waited:?}, but its socket is not closed: {end}"
    );
    assert!(
        !end.contains("timed out") && !end.contains("Resource temporarily"),
        "a viewer that stopped reading for {waited:?} was not dropped: read {end}"
    );
    let _ = stalled.shutdown(Shutdown::Both);

    // Meanwhile the good viewer received the stream in real time.
    let elapsed = good.elapsed();
    let log = good.stop();
    assert!(
        log.ended.is_none(),
        "good viewer cut off: {}",
        log.summary()
    );
    let span = match (log.media().next(), log.media().last()) {
        (Some(a), Some(b)) => {
            Duration::from_millis(u64::from(b.tag.timestamp.saturating_sub(a.tag.timestamp)))
        }
        _ => Duration::ZERO,
    };
    assert!(
        span + Duration::from_secs(3) >= elapsed,
        "the good viewer got {span:?} of media in {elapsed:?}: it was held back\n{}",
        log.summary()
    );
    assert_monotonic(&log, 1000, "good viewer");
}

/// Read until EOF/error; the time it took, or None if still open after
/// `limit`.
fn wait_closed(sock: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 8192];
    while start.elapsed() < limit {
        match sock.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn garbage_and_stalled_handshakes_are_closed_and_the_server_keeps_serving() {
    let mut s = live_server("live_garbage")
        .rtmp("setup_timeout", "2")
        .start();
    let rtmp = s.rtmp_addr();

    // 2 KiB of random bytes (first byte not an RTMP version: 3, or 6).
    let mut junk = pseudo_random_bytes(2048, 0x5eed);
    junk[0] = 0xf1;
    let mut c1 = TcpStream::connect(rtmp).expect("connect rtmp");
    let _ = c1.write_all(&junk);

    // A valid handshake, then 2 KiB of random chunk-stream bytes.
    let mut c2 = TcpStream::connect(rtmp).expect("connect rtmp");
    let mut hello = vec![3u8];
    hello.extend(pseudo_random_bytes(1536, 7));
    c2.write_all(&hello).expect("send C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    c2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c2.read_exact(&mut s0s1s2)
        .expect("server answers C0+C1 with S0+S1+S2");
    assert_eq!(s0s1s2[0], 3, "S0 is not version 3");
    let _ = c2.write_all(&s0s1s2[1..1537]); // C2 echoes S1
    let _ = c2.write_all(&pseudo_random_bytes(2048, 8));

    // Half a C1, then nothing.
    let mut c3 = TcpStream::connect(rtmp).expect("connect rtmp");
    let mut half = vec![3u8];
    half.extend(pseudo_random_bytes(700, 9));
    c3.write_all(&half).expect("send half a C1");
    let c3_start = Instant::now();
    // Nothing at all.
    let mut c4 = TcpStream::connect(rtmp).expect("connect rtmp");
    let c4_start = Instant::now();

    for (name, sock) in [("random bytes", &mut c1), ("random chunks", &mut c2)] {
        let t = wait_closed(sock, Duration::from_secs(10));
        assert!(
            t.is_some(),
            "connection that sent {name} still open 10 s later"
        );
    }
    for (name, sock, start) in [
        ("half a handshake", &mut c3, c3_start),
        ("nothing", &mut c4, c4_start),
    ] {
        let t = wait_closed(sock, Duration::from_secs(12));
        let waited = start.elapsed();
        assert!(
            t.is_some(),
            "connection that sent {name} still open after {waited:?} (setup_timeout 2 s)"
        );
        assert!(
            waited >= Duration::from_millis(1500),
            "connection that sent {name} closed after {waited:?}, before setup_timeout (2 s)"
        );
    }

    assert!(s.try_exit().is_none(), "spate exited after bad RTMP input");
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 20,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut p, Duration::from_secs(20));
    assert_h264_aac(&s, &s.flv_url("live"), 320, 240);
}

#[test]
fn mpegts_js_in_headless_chromium_plays_http_flv() {
    let s = live_server("live_browser").start();
    // The player page and mpegts.js come from spate's own static root, so
    // the page needs nothing but 127.0.0.1 (play_live.mjs aborts, and fails
    // on, any other host).
    std::fs::copy(
        node_module_file("mpegts.js/dist/mpegts.js"),
        s.root().join("mpegts.js"),
    )
    .expect("copy mpegts.js");
    std::fs::copy(
        browser_dir().join("player.html"),
        s.root().join("player.html"),
    )
    .expect("copy player.html");
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 60,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut p, Duration::from_secs(20));
    let page = s.url("/player.html?src=/live.flv");
    let out = run_node_script(
        s.dir(),
        "play_live.mjs",
        &[&page, "5", "40"],
        Duration::from_secs(75),
    );
    let line = out.stdout.lines().last().unwrap_or("");
    let result = Json::parse(line).unwrap_or_else(|e| {
        panic!(
            "play_live.mjs printed no result ({e}); exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status, out.stdout, out.stderr
        )
    });
    let num = |k: &str| result.get(k).and_then(Json::as_f64).unwrap_or(0.0);
    assert!(
        out.success() && result.get("ok") == Some(&Json::Bool(true)),
        "mpegts.js did not play /live.flv for 5 s (exit {:?}): {line}\nstderr:\n{}",
        out.status,
        out.stderr
    );
    assert!(num("advanced") >= 5.0, "{line}");
    assert_eq!(
        (num("videoWidth"), num("videoHeight")),
        (320.0, 240.0),
        "decoded picture size: {line}"
    );
    assert!(p.running(), "publisher stopped early");
}

/// Arrivals of a viewer's media tags, grouped into bursts: tags that arrived
/// within 3 ms of the previous one belong to its burst (one send from the
/// server reaches a reader in one or a few reads). Returns the bursts'
/// arrival times.
fn bursts(log: &ViewerLog, from: Duration) -> Vec<Duration> {
    let mut out: Vec<Duration> = Vec::new();
    let mut last: Option<Duration> = None;
    for r in log.media().filter(|r| r.at >= from) {
        if last.is_none_or(|l| r.at - l > Duration::from_millis(3)) {
            out.push(r.at);
        }
        last = Some(r.at);
    }
    out
}

/// Watch `/live.flv` of a fresh server with `[live] viewer_coalesce_ms` set
/// to `coalesce` for 5 s after a 1 s settle: (media tags, bursts, longest
/// gap between bursts, the log).
fn watch_with_coalesce(coalesce: u32) -> (usize, Vec<Duration>, ViewerLog) {
    let label = format!("live_coalesce_{coalesce}");
    let s = live_server(&label)
        .live("viewer_coalesce_ms", &coalesce.to_string())
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut p, Duration::from_secs(20));
    let v = FlvViewer::start(s.addr(), "/live.flv");
    if coalesce > 0 {
        let out = ffmpeg_decode(s.dir(), &s.flv_url("live"), 4, Duration::from_secs(40));
        assert!(
            out.success() && out.stderr.trim().is_empty(),
            "coalesce {coalesce}: `{}`: want exit 0 and no output, got {:?}:\n{}",
            out.command,
            out.status,
            out.stderr
        );
    }
    while v.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = v.stop();
    assert_eq!(log.status, 200, "{}", log.summary());
    assert!(log.ended.is_none(), "viewer cut off: {}", log.summary());
    assert_monotonic(&log, 1000, &label);
    let from = Duration::from_secs(1);
    let tags = log.media().filter(|r| r.at >= from).count();
    (tags, bursts(&log, from), log)
}

#[test]
fn viewer_coalesce_sends_each_viewer_one_batch_per_interval() {
    // Without coalescing every frame goes out as it arrives: 30 video and
    // ~47 audio frames a second, most of them in their own send.
    let (tags0, bursts0, log0) = watch_with_coalesce(0);
    let rate0 = bursts0.len() as f64 / 5.0;
    assert!(
        tags0 >= 300 && rate0 >= 25.0,
        "coalesce 0: {tags0} media tags in {:.1} bursts/s over 5 s; want >= 300 tags and >= 25 bursts/s (frames sent as they arrive)\n{}",
        rate0,
        log0.summary()
    );
    // With 100 ms the same stream arrives about 10 times a second, every
    // frame still there, none held much longer than the interval.
    let (tags, bursts100, log) = watch_with_coalesce(100);
    let rate = bursts100.len() as f64 / 5.0;
    let longest = bursts100
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!(
        "coalesce 0: {tags0} tags, {rate0:.1} bursts/s; coalesce 100: {tags} tags, {rate:.1} bursts/s, longest gap {longest:?}"
    );
    assert!(
        tags >= 300,
        "coalesce 100: {tags} media tags in 5 s; want >= 300 (all of a 77-frame/s stream)\n{}",
        log.summary()
    );
    assert!(
        (5.0..=12.0).contains(&rate),
        "coalesce 100: {rate:.1} bursts/s (tags {tags}); want 5..=12 (one send per 100 ms), uncoalesced was {rate0:.1}/s\n{}",
        log.summary()
    );
    assert!(
        longest <= Duration::from_millis(400),
        "coalesce 100: {longest:?} between two bursts; frames were held far longer than the interval\n{}",
        log.summary()
    );
}
