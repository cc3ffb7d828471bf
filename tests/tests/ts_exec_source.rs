//! `ts-exec:` sources: spate runs a command (here an ffmpeg test-pattern
//! generator: testsrc2 + sine, H.264 + AAC, `-f mpegts -`) and serves the
//! MPEG-TS it writes on stdout like any live stream.
//!
//! - On demand (the default): nothing runs until the first viewer asks; the
//!   first request waits for the stream (HLS: for its first segment) and
//!   succeeds without a retry; `on_demand_idle` after the last viewer the
//!   command is stopped.
//! - `always_on = true`: running from startup, whoever watches.
//! - Bad commands (exits at once, never writes, writes garbage, does not
//!   exist): each is logged with the source's name and restarted with a
//!   doubling backoff, its stream stays offline (404, after the wait for an
//!   on-demand one), and a healthy stream on the same server plays
//!   meanwhile. SIGTERM kills every command and spate exits 0.
use std::time::{Duration, Instant};

use spate_tests::{
    FlvViewer, Spate, SpateBuilder, TAG_AUDIO, TAG_VIDEO, TestStream, assert_probe, curl,
    decode_for, ffmpeg_bin, ffprobe_streams, wait_until,
};

const W: u32 = 640;
const H: u32 = 360;

/// The generator's command line (no shell: arguments split on spaces).
fn generator() -> String {
    let stream = TestStream {
        seconds: 3600,
        ..TestStream::sized(W, H)
    };
    let mut line = vec![ffmpeg_bin().to_string()];
    line.extend(stream.args());
    line.extend(["-f", "mpegts", "-"].map(String::from));
    assert!(
        line.iter().all(|a| !a.contains([' ', '"'])),
        "the generator's arguments need no quoting: {line:?}"
    );
    line.join(" ")
}

fn exec_stream(b: SpateBuilder, name: &str, command: &str, always_on: bool) -> SpateBuilder {
    let source = format!("ts-exec:{command}");
    let source = toml_string(&source);
    if always_on {
        b.stream(name, &[("source", &source), ("always_on", "true")])
    } else {
        b.stream(name, &[("source", &source)])
    }
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Processes whose parent is `pid`: (pid, command name).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && state != "Z" {
            out.push((child, comm));
        }
    }
    out.sort();
    out
}

/// Whether process `pid` still runs as `comm` (not gone, not a zombie).
fn running(pid: u32, comm: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let name = stat
            .find('(')
            .zip(stat.rfind(')'))
            .map(|(o, c)| &stat[o + 1..c]);
        let state = stat
            .rfind(')')
            .and_then(|c| stat[c + 1..].split_whitespace().next());
        name == Some(comm) && state != Some("Z")
    })
}

fn ffmpeg_children(s: &Spate) -> Vec<u32> {
    children_of(s.pid())
        .into_iter()
        .filter(|(_, comm)| comm == "ffmpeg")
        .map(|(pid, _)| pid)
        .collect()
}

fn log_lines_of<'a>(log: &'a str, stream: &str) -> Vec<&'a str> {
    let tag = format!("source {stream} (");
    log.lines().filter(|l| l.contains(&tag)).collect()
}

#[test]
fn on_demand_source_starts_with_the_first_viewer_and_stops_when_idle() {
    let mut s = exec_stream(
        Spate::builder()
            .label("ts_exec_on_demand")
            .live("on_demand_idle", "2.0")
            .live("on_demand_wait", "15.0")
            .live("reconnect_grace", "1.0"),
        "gen",
        &generator(),
        false,
    )
    .start();

    // Nobody asked: nothing runs.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        children_of(s.pid()),
        vec![],
        "a command runs before any viewer asked:\n{}",
        s.stderr()
    );
    assert!(!s.stderr().contains("started"), "{}", s.stderr());

    // The first request waits for the first segment and succeeds as is.
    let master = s.url("/hls/gen/index.m3u8");
    let t0 = Instant::now();
    let probed = ffprobe_streams(s.dir(), &master);
    let waited = t0.elapsed();
    let probed = probed.unwrap_or_else(|e| {
        panic!(
            "the first ffprobe of an on-demand stream failed: {e}\nserver log:\n{}",
            s.stderr()
        )
    });
    assert!(probed.iter().any(|p| p.codec_name == "h264"), "{probed:?}");
    assert!(
        waited > Duration::from_millis(500),
        "the first request did not wait for the stream ({waited:?})"
    );
    assert_eq!(ffmpeg_children(&s).len(), 1, "{:?}", children_of(s.pid()));
    assert_probe(s.dir(), &master, Some((W, H)), true);
    decode_for(s.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);
    let flv = s.url("/gen.flv");
    decode_for(s.dir(), &flv, 4, Duration::from_secs(30)).assert_clean(3.0);
    let running_pid = ffmpeg_children(&s)[0];

    // The viewers left: on_demand_idle (2 s) later the command is stopped.
    assert!(
        wait_until(Duration::from_secs(15), || !running(running_pid, "ffmpeg")),
        "the command still runs 15 s after the last viewer left:\n{}",
        s.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(5), || ffmpeg_children(&s).is_empty()),
        "{:?}",
        children_of(s.pid())
    );
    let log = s.stderr();
    let lines = log_lines_of(&log, "gen");
    assert!(
        lines.iter().any(|l| l.contains("no viewers for 2 s")),
        "no log line says why the command was stopped:\n{log}"
    );
    assert!(lines.iter().any(|l| l.contains("offline")), "{log}");
    // (A request would start it again: the log tells.)
    assert!(
        wait_until(Duration::from_secs(10), || s
            .stderr()
            .contains("stream gen ended")),
        "the stream did not end after its command stopped:\n{}",
        s.stderr()
    );

    // An HTTP-FLV viewer brings it back (on whichever core it lands).
    let before = s.stderr().matches("started \"").count();
    let r = curl(s.dir(), &["--max-time", "8"], &flv);
    assert_eq!(r.status, 200, "{}\n{}", r.stderr, s.stderr());
    assert!(
        r.body.starts_with(b"FLV") && r.body.len() > 20_000,
        "{} bytes of FLV",
        r.body.len()
    );
    assert!(s.stderr().matches("started \"").count() > before);
    assert!(
        wait_until(Duration::from_secs(15), || ffmpeg_children(&s).is_empty()),
        "the command still runs after the FLV viewer left:\n{}",
        s.stderr()
    );

    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(30)).expect("spate exits");
    assert!(status.success(), "{status:?}\n{}", s.stderr());
}

#[test]
fn always_on_source_runs_from_startup_without_viewers() {
    let s = exec_stream(
        Spate::builder()
            .label("ts_exec_always_on")
            .live("on_demand_idle", "1.0"),
        "allday",
        &generator(),
        true,
    )
    .start();
    assert!(
        wait_until(Duration::from_secs(10), || ffmpeg_children(&s).len() == 1),
        "the always-on command did not start:\n{}",
        s.stderr()
    );
    let pid = ffmpeg_children(&s)[0];
    assert!(
        wait_until(Duration::from_secs(20), || s
            .stderr()
            .contains("publishing allday")),
        "{}",
        s.stderr()
    );
    // No viewer for well past on_demand_idle: it keeps running.
    std::thread::sleep(Duration::from_secs(4));
    assert!(running(pid, "ffmpeg"), "{}", s.stderr());
    assert!(
        !s.stderr().contains("stopping the command"),
        "{}",
        s.stderr()
    );
    let master = s.url("/hls/allday/index.m3u8");
    assert_eq!(s.get("/hls/allday/index.m3u8").status, 200);
    assert_probe(s.dir(), &master, Some((W, H)), true);

    // HTTP-FLV viewers of a TS source start at a keyframe on every track:
    // ffmpeg's TS muxer puts audio hundreds of ms behind video, and audio
    // stamped before the keyframe (sent after it) made the viewer's stream
    // start with audio, which ffmpeg's 30 fps rounding turned into repeated
    // frame times ("non monotonically increasing dts"), now and then.
    for i in 0..3 {
        let v = FlvViewer::start(s.addr(), "/allday.flv");
        std::thread::sleep(Duration::from_millis(1500));
        let log = v.stop();
        let first = log.media().next().map(|r| r.tag);
        assert!(
            first.is_some_and(|t| t.kind == TAG_VIDEO && t.keyframe),
            "viewer {i}: first media tag {first:?} is not a video keyframe: {}",
            log.summary()
        );
        let start = first.map_or(0, |t| t.timestamp);
        let early = log
            .media()
            .find(|r| r.tag.kind == TAG_AUDIO && r.tag.timestamp < start);
        assert!(
            early.is_none(),
            "viewer {i}: audio stamped {:?} ms before its first keyframe ({start} ms): {}",
            early.map(|r| start - r.tag.timestamp),
            log.summary()
        );
        assert!(log.media().count() > 40, "viewer {i}: {}", log.summary());
    }
}

#[test]
fn bad_commands_are_retried_with_backoff_while_a_healthy_stream_plays() {
    let bad = [
        ("quits", "/bin/false"),
        ("silent", "sleep 1000"),
        ("garbage", "head -c 1000000 /dev/urandom"),
        ("missing", "/nonexistent/spate-test-program --flag"),
    ];
    let mut b = Spate::builder()
        .label("ts_exec_bad")
        .live("on_demand_idle", "3.0")
        .live("on_demand_wait", "8.0")
        .live("source_timeout", "2.0")
        .live("reconnect_grace", "1.0");
    for (name, cmd) in bad {
        b = exec_stream(b, name, cmd, true);
    }
    b = exec_stream(b, "lazyquits", "/bin/false", false);
    b = exec_stream(b, "good", &generator(), false);
    let mut s = b.start();

    // The healthy on-demand stream plays while the bad ones flap.
    let master = s.url("/hls/good/index.m3u8");
    assert_probe(s.dir(), &master, Some((W, H)), true);
    decode_for(s.dir(), &master, 6, Duration::from_secs(60)).assert_clean(3.0);

    // An on-demand stream whose command fails: the request waits
    // on_demand_wait, then 404.
    let t0 = Instant::now();
    let r = s.curl(&["--max-time", "20"], "/hls/lazyquits/index.m3u8");
    let waited = t0.elapsed();
    assert_eq!(r.status, 404, "{}", s.stderr());
    assert!(
        waited >= Duration::from_millis(7500),
        "answered after {waited:?}, before on_demand_wait"
    );
    assert!(
        log_lines_of(&s.stderr(), "lazyquits")
            .iter()
            .any(|l| l.contains("restarting in")),
        "{}",
        s.stderr()
    );

    // Each bad always-on source: logged with its name, restarted after 1,
    // 2, 4 s...; its stream is not live.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, _) in bad {
        loop {
            let log = s.stderr();
            let lines = log_lines_of(&log, name);
            let delays: Vec<u64> = lines
                .iter()
                .filter_map(|l| l.split("restarting in ").nth(1))
                .filter_map(|r| r.split(' ').next()?.parse().ok())
                .collect();
            if delays.starts_with(&[1, 2, 4]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: restart delays {delays:?}, want 1, 2, 4...\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        for path in [format!("/hls/{name}/index.m3u8"), format!("/{name}.flv")] {
            let r = s.curl(&["--max-time", "5"], &path);
            assert_eq!(r.status, 404, "{path}: {}", s.stderr());
        }
    }
    let log = s.stderr();
    let why = |name: &str, what: &str| {
        assert!(
            log_lines_of(&log, name).iter().any(|l| l.contains(what)),
            "{name}: no log line with {what:?}:\n{log}"
        );
    };
    why("quits", "exit status: 1");
    why("silent", "no output for 2 s");
    why("garbage", "bytes skipped");
    why("garbage", "without going live");
    why("missing", "cannot start");
    why("missing", "No such file");

    // Still healthy.
    decode_for(s.dir(), &master, 4, Duration::from_secs(60)).assert_clean(2.0);

    // SIGTERM: every command is killed, spate exits 0.
    let children = children_of(s.pid());
    assert!(
        children.iter().any(|(_, c)| c == "ffmpeg"),
        "the healthy stream's command should still run: {children:?}"
    );
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(30)).expect("spate exits");
    assert!(status.success(), "{status:?}\n{}", s.stderr());
    for (pid, comm) in &children {
        assert!(
            !running(*pid, comm),
            "{comm} (pid {pid}) survived spate's shutdown"
        );
    }
}
