//! Configuration reload (`SIGHUP`) with real clients: ffmpeg publishing over
//! RTMP, an HTTP-FLV viewer reading raw FLV tags, a UDP socket receiving a
//! push. A reload applies stream, push and naming changes without dropping
//! publishers or viewers of unchanged streams; a bad file is refused and the
//! running configuration stays.
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use spate_tests::{
    FlvViewer, Spate, SpateBuilder, TestStream, ViewerLog, decode_for, free_port, publish,
    wait_until,
};

fn live_server(label: &str) -> SpateBuilder {
    Spate::builder().label(label).stream("live", &[])
}

/// Rewrite the server's config file with `edit` applied, send SIGHUP, and
/// wait for the log line saying how it went (`reloaded` or `refused`).
fn reload(s: &Spate, edit: impl FnOnce(String) -> String, expect: &str) {
    let before = s.stderr().matches("SIGHUP:").count();
    let text = std::fs::read_to_string(s.config_path()).expect("read config");
    std::fs::write(s.config_path(), edit(text)).expect("write config");
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .stderr()
            .matches("SIGHUP:")
            .count()
            > before),
        "no reload log line within 10 s of SIGHUP:\n{}",
        s.stderr()
    );
    let last = s
        .stderr()
        .lines()
        .rfind(|l| l.contains("SIGHUP:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains(expect),
        "reload log line does not say {expect:?}: {last}\n{}",
        s.stderr()
    );
}

/// The viewer's media arrived without a gap: no two consecutive video tags
/// more than `max_gap` apart in arrival time, and timestamps never went back
/// by more than a frame interval's slack.
fn assert_no_gap(log: &ViewerLog, max_gap: Duration, what: &str) {
    let video: Vec<_> = log.video().filter(|r| !r.tag.config).collect();
    assert!(
        video.len() > 30,
        "{what}: too little video: {}",
        log.summary()
    );
    let mut max_ts = 0u32;
    for w in video.windows(2) {
        let gap = w[1].at.saturating_sub(w[0].at);
        assert!(
            gap <= max_gap,
            "{what}: {gap:?} between two video tags (at {:?} and {:?}); the stream stalled\n{}",
            w[0].at,
            w[1].at,
            log.summary()
        );
        assert!(
            w[1].tag.timestamp + 1000 >= max_ts,
            "{what}: timestamp went back from {max_ts} to {}",
            w[1].tag.timestamp
        );
        max_ts = max_ts.max(w[1].tag.timestamp);
    }
}

#[test]
fn reload_adds_a_stream_while_a_viewer_of_another_keeps_decoding() {
    let s = live_server("reload_add").start();
    let mut live = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 40,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut live, Duration::from_secs(20));
    let viewer = FlvViewer::start(s.addr(), "/live.flv");
    assert!(
        wait_until(Duration::from_secs(10), || viewer.log().video().count()
            > 20),
        "viewer got no video: {}",
        viewer.log().summary()
    );

    // A real decoder watches `live` across the reload too.
    let decoder = {
        let (dir, url) = (s.dir().to_path_buf(), s.flv_url("live"));
        std::thread::spawn(move || decode_for(&dir, &url, 12, Duration::from_secs(60)))
    };

    // `news` is not configured yet: its publisher is refused.
    let mut early = publish(
        s.dir(),
        &s.rtmp_url("live", "news"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    let status = early
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("unconfigured `news` still publishing:\n{}", early.stderr()));
    assert!(
        !status.success(),
        "publishing an unconfigured stream exited 0"
    );

    reload(
        &s,
        |t| format!("{t}\n[[stream]]\nname = \"news\"\n"),
        "configuration reloaded",
    );
    assert!(
        s.stderr().contains("streams added: news"),
        "reload summary does not name the new stream:\n{}",
        s.stderr()
    );
    let mut news = publish(
        s.dir(),
        &s.rtmp_url("live", "news"),
        &TestStream {
            pattern: "smptebars",
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("news", &mut news, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));

    let log = viewer.stop();
    assert!(
        log.ended.is_none(),
        "the viewer of `live` was cut off by the reload: {}",
        log.summary()
    );
    assert_no_gap(
        &log,
        Duration::from_millis(1500),
        "viewer of live across the reload",
    );
    // ffmpeg decoded `live` from before the reload to after it: no error,
    // and as many seconds of media as it watched.
    decoder.join().expect("decoder thread").assert_clean(10.0);
    assert!(
        live.running(),
        "the publisher of `live` died: {}",
        live.stderr()
    );
}

#[test]
fn a_bad_config_file_is_refused_and_the_running_one_stays() {
    let s = live_server("reload_bad").start();
    let mut live = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut live, Duration::from_secs(20));
    let viewer = FlvViewer::start(s.addr(), "/live.flv");
    reload(
        &s,
        |t| format!("{t}\n[[stream]]\nname = \"news\"\nbuffer_secnds = 3\n"),
        "reload refused",
    );
    let line = s
        .stderr()
        .lines()
        .rfind(|l| l.contains("reload refused"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("buffer_secnds"),
        "the refusal does not name the bad key: {line}"
    );
    // The old configuration is in force: `news` is still refused...
    let mut news = publish(s.dir(), &s.rtmp_url("live", "news"), &TestStream::default());
    let status = news
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("`news` accepted after a refused reload:\n{}", news.stderr()));
    assert!(!status.success());
    // ...and `live` kept flowing to its viewer.
    std::thread::sleep(Duration::from_secs(2));
    let log = viewer.stop();
    assert!(log.ended.is_none(), "viewer cut off: {}", log.summary());
    assert_no_gap(
        &log,
        Duration::from_millis(1500),
        "viewer across the refused reload",
    );
}

#[test]
fn reload_starts_and_stops_a_push_of_a_live_stream() {
    let s = live_server("reload_push").start();
    let mut live = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 40,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live", &mut live, Duration::from_secs(20));
    let port = free_port();
    let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind UDP receiver");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    // Nothing is pushed before the rule exists.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert!(
            sock.recv(&mut buf).is_err(),
            "datagrams arrived before any [[push]] rule"
        );
    }
    let rule = format!("\n[[push]]\nstream = \"live\"\ntarget = \"tsudp://127.0.0.1:{port}\"\n");
    let with_rule = {
        let rule = rule.clone();
        move |t: String| format!("{t}{rule}")
    };
    reload(&s, with_rule, "configuration reloaded");
    let mut packets = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while packets < 200 && Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            assert!(
                n % 188 == 0 && buf[0] == 0x47,
                "a pushed datagram of {n} bytes is not MPEG-TS (first byte {:#x})",
                buf[0]
            );
            packets += n / 188;
        }
    }
    assert!(
        packets >= 200,
        "only {packets} TS packets arrived within 10 s of adding the push rule\n{}",
        s.stderr()
    );
    // Removing the rule stops the push.
    reload(&s, move |t| t.replace(&rule, ""), "configuration reloaded");
    std::thread::sleep(Duration::from_millis(500));
    while sock.recv(&mut buf).is_ok() {}
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(2) {
        assert!(
            sock.recv(&mut buf).is_err(),
            "datagrams still arrive after the push rule was removed"
        );
    }
    assert!(live.running(), "the publisher died: {}", live.stderr());
}

#[test]
fn reload_removing_a_stream_disconnects_its_publisher() {
    let s = live_server("reload_remove").stream("news", &[]).start();
    let mut live = publish(s.dir(), &s.rtmp_url("live", "live"), &TestStream::default());
    let mut news = publish(s.dir(), &s.rtmp_url("live", "news"), &TestStream::default());
    s.wait_flv_live("live", &mut live, Duration::from_secs(20));
    s.wait_flv_live("news", &mut news, Duration::from_secs(20));
    let viewer = FlvViewer::start(s.addr(), "/live.flv");
    reload(
        &s,
        |t| t.replace("[[stream]]\nname = \"news\"\n", ""),
        "configuration reloaded",
    );
    let status = news.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
        panic!(
            "the publisher of the removed stream is still connected:\n{}",
            s.stderr()
        )
    });
    assert!(
        !status.success(),
        "ffmpeg exited 0 after being disconnected"
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = viewer.stop();
    assert!(
        log.ended.is_none(),
        "viewer of live cut off: {}",
        log.summary()
    );
    assert_no_gap(&log, Duration::from_millis(1500), "viewer of live");
    assert!(
        live.running(),
        "the publisher of live died: {}",
        live.stderr()
    );
}
