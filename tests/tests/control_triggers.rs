//! MistServer-compatible triggers end to end: handler scripts in plain shell
//! and PHP (php-cli) run by the real server, ffmpeg publishing over RTMP,
//! curl and raw sockets watching.
//!
//! Handlers are written into a scratch directory at runtime; the ones that
//! record what they got append their argv and stdin to a file there.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spate_tests::{
    ChildGuard, FlvViewer, ScratchDir, Spate, SpateBuilder, TestStream, curl, publish, wait_until,
};

/// Write an executable script.
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// A `[[trigger]]` table.
fn trigger(on: &str, handler: &str, extra: &str) -> String {
    format!(
        "[[trigger]]\non = {}\nhandler = {}\n{extra}\n",
        toml_str(on),
        toml_str(handler)
    )
}

fn server(label: &str) -> SpateBuilder {
    Spate::builder().label(label).stream("live", &[])
}

/// The social-streaming flow: key `abc123` is user `alice`; the handler
/// answers the URL of `live+alice`; other keys get an empty answer.
fn push_rewrite_flow(label: &str, handler_toml: String, calls: &Path) {
    let s = server(label).extra_toml(&handler_toml).start();
    let url = s.rtmp_url("live", "abc123");
    let mut p = publish(
        s.dir(),
        &url,
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+alice", &mut p, Duration::from_secs(20));
    // What the handler got: the full RTMP URL, then the peer's address.
    let got = std::fs::read_to_string(calls).unwrap_or_default();
    let first = got.split("\n---\n").next().unwrap_or("");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("ARGV: RTMP_PUSH_REWRITE"),
        "handler argv/stdin: {got:?}"
    );
    assert_eq!(lines.get(1).copied(), Some(url.as_str()), "{got:?}");
    assert_eq!(lines.get(2).copied(), Some("127.0.0.1"), "{got:?}");
    // The key itself is not a stream.
    let v = FlvViewer::start(s.addr(), "/abc123.flv");
    wait_until(Duration::from_secs(3), || v.log().status != 0);
    assert_eq!(v.stop().status, 404);
    // An unknown key: rejected, and ffmpeg fails.
    let mut bad = publish(
        s.dir(),
        &s.rtmp_url("live", "wrongkey"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    let status = bad
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("ffmpeg with an unknown key still runs\n{}", s.stderr()));
    assert!(
        !status.success(),
        "ffmpeg with an unknown key exited successfully\n{}",
        bad.stderr()
    );
    assert!(
        s.stderr().contains("RTMP_PUSH_REWRITE refused the push"),
        "{}",
        s.stderr()
    );
    // alice is still live.
    assert!(p.try_exit().is_none(), "alice's publisher stopped");
    s.wait_flv_live("live+alice", &mut p, Duration::from_secs(10));
}

#[test]
fn rtmp_push_rewrite_in_shell_maps_stream_keys_to_users() {
    let dir = ScratchDir::new("trig-sh");
    let calls = dir.path().join("calls");
    let h = script(
        dir.path(),
        "rewrite.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\nprintf 'ARGV: %s\\n%s\\n---\\n' \"$*\" \"$in\" >> {calls}\nurl=$(printf '%s\\n' \"$in\" | head -n 1)\nkey=${{url##*/}}\ncase \"$key\" in\n  abc123) echo \"rtmp://127.0.0.1/live/live+alice\" ;;\n  *) echo \"\" ;;\nesac\n",
            calls = calls.display()
        ),
    );
    push_rewrite_flow(
        "trig_sh",
        trigger("RTMP_PUSH_REWRITE", &h.display().to_string(), ""),
        &calls,
    );
}

#[test]
fn rtmp_push_rewrite_in_php_maps_stream_keys_to_users() {
    let dir = ScratchDir::new("trig-php");
    let calls = dir.path().join("calls");
    let h = script(
        dir.path(),
        "rewrite.php",
        &format!(
            r#"<?php
// A social-streaming site's RTMP_PUSH_REWRITE: stream key -> user.
$users = ["abc123" => "alice", "def456" => "bob"];
$payload = stream_get_contents(STDIN);
file_put_contents({calls:?}, "ARGV: " . implode(" ", array_slice($argv, 1)) . "\n" . $payload . "\n---\n", FILE_APPEND);
$lines = explode("\n", $payload);
$url = $lines[0];
$key = substr($url, strrpos($url, "/") + 1);
if (isset($users[$key])) {{
    echo "rtmp://127.0.0.1/live/live+" . $users[$key] . "\n";
}} else {{
    echo "\n";
}}
"#,
            calls = calls.display().to_string()
        ),
    );
    push_rewrite_flow(
        "trig_php",
        trigger(
            "RTMP_PUSH_REWRITE",
            "/usr/bin/php",
            &format!("args = [{}]", toml_str(&h.display().to_string())),
        ),
        &calls,
    );
}

/// Entries a recording handler appended (`ARGV: ...` line, then stdin).
fn entries(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split("\n---\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn recorder(dir: &Path, name: &str, answer: &str) -> (PathBuf, PathBuf) {
    let file = dir.join(format!("{name}.log"));
    let h = script(
        dir,
        &format!("{name}.sh"),
        &format!(
            "#!/bin/sh\nin=$(cat)\nprintf 'ARGV: %s\\n%s\\n---\\n' \"$*\" \"$in\" >> {}\necho {answer}\n",
            file.display()
        ),
    );
    (h, file)
}

#[test]
fn stream_buffer_fires_full_on_publish_and_empty_after_unpublish() {
    let dir = ScratchDir::new("trig-buf");
    let (h, file) = recorder(dir.path(), "buffer", "");
    let s = server("trig_buffer")
        .extra_toml(&trigger(
            "STREAM_BUFFER",
            &h.display().to_string(),
            "streams = [\"live\"]",
        ))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+buf"),
        &TestStream {
            seconds: 5,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+buf", &mut p, Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(10), || entries(&file)
            .iter()
            .any(|e| e.contains("\nlive+buf\nFULL\n"))),
        "no FULL: {:?}\n{}",
        entries(&file),
        s.stderr()
    );
    p.wait_exit(Duration::from_secs(20))
        .expect("the 5 s publisher ends");
    assert!(
        wait_until(Duration::from_secs(10), || entries(&file)
            .iter()
            .any(|e| e.ends_with("\nEMPTY"))),
        "no EMPTY: {:?}\n{}",
        entries(&file),
        s.stderr()
    );
    let all = entries(&file);
    let states: Vec<Vec<&str>> = all.iter().map(|e| e.lines().collect()).collect();
    // Exact lines: trigger name as the argument; stream; state; health
    // JSON for every state but EMPTY.
    let full = states
        .iter()
        .find(|l| l.get(2) == Some(&"FULL"))
        .expect("FULL");
    assert_eq!(full[0], "ARGV: STREAM_BUFFER");
    assert_eq!(full[1], "live+buf");
    assert_eq!(full.len(), 4, "{full:?}");
    assert!(
        full[3].starts_with('{') && full[3].ends_with('}') && full[3].contains("\"buffer\":"),
        "health JSON: {:?}",
        full[3]
    );
    let last = states.last().expect("entries");
    assert_eq!(last, &vec!["ARGV: STREAM_BUFFER", "live+buf", "EMPTY"]);
    // FULL came before EMPTY, once each.
    let order: Vec<&str> = states
        .iter()
        .filter_map(|l| l.get(2).copied())
        .filter(|s| *s == "FULL" || *s == "EMPTY")
        .collect();
    assert_eq!(order.first(), Some(&"FULL"), "{order:?}");
    assert_eq!(
        order.iter().filter(|s| **s == "EMPTY").count(),
        1,
        "{order:?}"
    );
}

/// Status of `GET path` (a live FLV body is cut after 2 s: the status
/// line is what counts).
fn status_of(s: &Spate, path: &str) -> u16 {
    curl(s.dir(), &["--max-time", "2"], &s.url(path)).status
}

#[test]
fn user_new_denies_with_403_allows_with_200_and_is_cached_per_session() {
    let dir = ScratchDir::new("trig-user");
    let calls = dir.path().join("calls");
    let h = script(
        dir.path(),
        "user_new.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\nprintf '%s\\n---\\n' \"$in\" >> {}\ncase \"$in\" in\n  *tkn=evil*) echo false ;;\n  *) echo true ;;\nesac\n",
            calls.display()
        ),
    );
    let s = server("trig_user")
        .extra_toml(&trigger("USER_NEW", &h.display().to_string(), ""))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+u"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    // wait_flv_live's own requests are a session too (no token).
    s.wait_flv_live("live+u", &mut p, Duration::from_secs(20));
    assert_eq!(status_of(&s, "/live+u.flv?tkn=good"), 200, "{}", s.stderr());
    assert_eq!(status_of(&s, "/live+u.flv?tkn=evil"), 403, "{}", s.stderr());
    assert_eq!(status_of(&s, "/live+u.flv?tkn=good"), 200);
    assert_eq!(status_of(&s, "/live+u.flv?tkn=evil"), 403);
    assert_eq!(status_of(&s, "/hls/live+u/index.m3u8?tkn=evil"), 403);
    let got = entries(&calls);
    let good: Vec<&String> = got.iter().filter(|e| e.contains("tkn=good")).collect();
    let evil: Vec<&String> = got.iter().filter(|e| e.contains("tkn=evil")).collect();
    assert_eq!(good.len(), 1, "USER_NEW for tkn=good not cached: {got:?}");
    // FLV and HLS are separate sessions only by connector when no token is
    // given; with a token, one session.
    assert_eq!(evil.len(), 1, "USER_NEW for tkn=evil not cached: {got:?}");
    // The payload, in MistServer's order: stream, address, connection id,
    // connector, request URL, session id.
    let lines: Vec<&str> = good[0].lines().collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], "live+u");
    assert_eq!(lines[1], "127.0.0.1");
    assert!(
        lines[2].parse::<u64>().is_ok(),
        "connection id {:?}",
        lines[2]
    );
    assert_eq!(lines[3], "FLV");
    assert!(
        lines[4].starts_with("http://127.0.0.1:") && lines[4].ends_with("/live+u.flv?tkn=good"),
        "{:?}",
        lines[4]
    );
    assert!(lines[5].parse::<u64>().is_ok(), "session id {:?}", lines[5]);
    // A newline smuggled into the stream name (a decoded %0A) cannot add
    // payload lines.
    status_of(&s, "/hls/x%0A10.9.9.9/index.m3u8?tkn=inj");
    let inj: Vec<String> = entries(&calls)
        .into_iter()
        .filter(|e| e.contains("tkn=inj"))
        .collect();
    let lines: Vec<&str> = inj[0].lines().collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0], "x%0A10.9.9.9");
    assert_eq!(lines[1], "127.0.0.1");
}

#[test]
fn misbehaving_handlers_get_their_default_and_the_server_keeps_serving() {
    let dir = ScratchDir::new("trig-bad");
    let hang = script(dir.path(), "hang.sh", "#!/bin/sh\nsleep 30\necho true\n");
    let crash = script(
        dir.path(),
        "crash.sh",
        "#!/bin/sh\necho true\nkill -SEGV $$\n",
    );
    let big = script(
        dir.path(),
        "big.sh",
        "#!/bin/sh\nhead -c 4000000 /dev/zero | tr '\\0' 'y'\n",
    );
    let garbage = script(dir.path(), "garbage.sh", "#!/bin/sh\necho banana\n");
    let missing = dir.path().join("no-such-handler");
    // Every handler would let the viewer in if it were believed (hang,
    // crash, big) or refuse it as MistServer reads "banana" (garbage); the
    // defaults say the opposite, so the status shows which applied.
    let mut toml = String::new();
    for (stream, h, default) in [
        ("hang", &hang, "false"),
        ("crash", &crash, "false"),
        ("big", &big, "false"),
        ("garbage", &garbage, "true"),
        ("missing", &missing, "false"),
    ] {
        toml.push_str(&trigger(
            "USER_NEW",
            &h.display().to_string(),
            &format!(
                "streams = [{}]\ntimeout = 1.0\ndefault = {}",
                toml_str(stream),
                toml_str(default)
            ),
        ));
    }
    toml.push_str("[triggers]\nmax_response_bytes = 65536\n");
    let s = Spate::builder().label("trig_bad").extra_toml(&toml).start();
    let t0 = Instant::now();
    // Not live: an admitted viewer gets 404, a refused one 403.
    assert_eq!(status_of(&s, "/hls/hang/index.m3u8"), 403, "{}", s.stderr());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "the hanging handler was waited for {took:?}"
    );
    assert_eq!(
        status_of(&s, "/hls/crash/index.m3u8"),
        403,
        "{}",
        s.stderr()
    );
    assert_eq!(status_of(&s, "/hls/big/index.m3u8"), 403, "{}", s.stderr());
    assert_eq!(
        status_of(&s, "/hls/garbage/index.m3u8"),
        404,
        "{}",
        s.stderr()
    );
    assert_eq!(
        status_of(&s, "/hls/missing/index.m3u8"),
        403,
        "{}",
        s.stderr()
    );
    // Other requests were served all along, and still are.
    let r = curl(s.dir(), &[], &s.url("/index.html"));
    assert_eq!(r.status, 200, "{}", s.stderr());
    let log = s.stderr();
    for reason in ["[timeout]", "[exit]", "[too_large]", "[garbage]", "[spawn]"] {
        assert!(log.contains(reason), "no {reason} failure logged:\n{log}");
    }
    // The hanging handler's process group was killed: no `sleep 30` left.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &hang.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "hanging handler still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_flood_of_viewers_never_runs_more_than_max_concurrent_handlers() {
    let dir = ScratchDir::new("trig-flood");
    let running = dir.path().join("running");
    std::fs::create_dir_all(&running).expect("mkdir");
    let seen = dir.path().join("seen");
    // Each run registers itself in `running`, records how many runs are
    // there, sleeps, and leaves.
    let h = script(
        dir.path(),
        "slow.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\ntouch {r}/$$\nls {r} | wc -l >> {seen}\nsleep 0.3\nrm -f {r}/$$\necho true\n",
            r = running.display(),
            seen = seen.display()
        ),
    );
    let s = Spate::builder()
        .label("trig_flood")
        .extra_toml(&format!(
            "{}[triggers]\nmax_concurrent = 2\nmax_queued = 1000\n",
            trigger("USER_NEW", &h.display().to_string(), "timeout = 30.0")
        ))
        .start();
    let url = s.url("/hls/flood/index.m3u8");
    let t0 = Instant::now();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let url = format!("{url}?tkn=v{i}");
            let d = s.dir().to_path_buf();
            std::thread::spawn(move || curl(&d, &["--max-time", "30"], &url).status)
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("curl thread"))
        .collect();
    let took = t0.elapsed();
    // Admitted (true), not live: 404 each; none hung.
    assert!(
        statuses.iter().all(|&st| st == 404),
        "{statuses:?}\n{}",
        s.stderr()
    );
    assert!(took < Duration::from_secs(25), "flood took {took:?}");
    let counts: Vec<usize> = std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(counts.len(), 16, "handler runs: {counts:?}");
    let most = counts.iter().copied().max().unwrap_or(0);
    assert!(
        most <= 2,
        "{most} handlers ran at once (max_concurrent = 2): {counts:?}"
    );
    assert!(most == 2, "the handlers never ran two at once: {counts:?}");
    // 16 runs of 0.3 s, two at a time: at least 2.4 s.
    assert!(
        took >= Duration::from_millis(2300),
        "flood took only {took:?}"
    );
}

#[test]
fn conn_play_over_http_to_a_php_server_refuses_rtmp_players_and_admits_flv_viewers() {
    let dir = ScratchDir::new("trig-http");
    let calls = dir.path().join("calls");
    // The handler is a PHP page served by php's own web server: the
    // payload is the POST body, the trigger name in X-Trigger.
    std::fs::write(
        dir.path().join("hook.php"),
        format!(
            r#"<?php
$payload = file_get_contents("php://input");
$trigger = $_SERVER["HTTP_X_TRIGGER"] ?? "";
file_put_contents({calls:?}, $_SERVER["REQUEST_METHOD"] . " " . $trigger . "\n" . $payload . "\n---\n", FILE_APPEND);
$lines = explode("\n", $payload);
$deny = ($lines[2] ?? "") === "RTMP" && strpos($lines[3] ?? "", "/deny/") !== false;
echo ($trigger === "CONN_PLAY" && $deny) ? "false" : "true";
"#,
            calls = calls.display().to_string()
        ),
    )
    .expect("hook.php");
    let port = spate_tests::free_port();
    let mut cmd = std::process::Command::new("php");
    cmd.args(["-S", &format!("127.0.0.1:{port}"), "-t"])
        .arg(dir.path());
    let _php = ChildGuard::spawn(cmd, dir.path(), "php-server");
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "php -S did not start"
    );
    let s = server("trig_http")
        .extra_toml(&trigger(
            "CONN_PLAY",
            &format!("http://127.0.0.1:{port}/hook.php"),
            "",
        ))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+show"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+show", &mut p, Duration::from_secs(20));
    // RTMP play through app `deny`: refused with an RTMP error, ffprobe
    // fails.
    let probed = spate_tests::ffprobe_streams(s.dir(), &s.rtmp_url("deny", "live+show"));
    assert!(probed.is_err(), "RTMP play was not refused: {probed:?}");
    assert!(
        s.stderr()
            .contains("CONN_PLAY refused viewer of live+show (RTMP)"),
        "{}",
        s.stderr()
    );
    // Through app `live`: admitted after the answer, and plays.
    let probed = spate_tests::ffprobe_streams(s.dir(), &s.rtmp_url("live", "live+show"))
        .unwrap_or_else(|e| panic!("RTMP play refused: {e}\n{}", s.stderr()));
    assert!(probed.iter().any(|p| p.codec_name == "h264"), "{probed:?}");
    // HTTP-FLV: admitted (the FLV viewer above already was).
    assert_eq!(status_of(&s, "/live+show.flv"), 200, "{}", s.stderr());
    let got = entries(&calls);
    let rtmp: Vec<&String> = got.iter().filter(|e| e.contains("\nRTMP\n")).collect();
    assert!(!rtmp.is_empty(), "{got:?}");
    let lines: Vec<&str> = rtmp[0].lines().collect();
    assert_eq!(lines[0], "POST CONN_PLAY");
    assert_eq!(lines[1], "live+show");
    assert_eq!(lines[2], "127.0.0.1");
    assert_eq!(lines[3], "RTMP");
    assert_eq!(lines[4], s.rtmp_url("deny", "live+show"));
}

#[test]
fn push_out_start_redirects_a_push_and_push_end_reports_it() {
    let dir = ScratchDir::new("trig-push");
    let configured = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let redirected = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&configured, &redirected] {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
    }
    let configured_url = format!("tsudp://{}", configured.local_addr().expect("addr"));
    let redirected_url = format!("tsudp://{}", redirected.local_addr().expect("addr"));
    let (start, start_log) = recorder(dir.path(), "start", &redirected_url);
    let (end, end_log) = recorder(dir.path(), "end", "");
    let s = Spate::builder()
        .label("trig_push")
        .stream("live", &[("reconnect_grace", "0.5")])
        .push("live+", &configured_url)
        .extra_toml(&trigger("PUSH_OUT_START", &start.display().to_string(), ""))
        .extra_toml(&trigger("PUSH_END", &end.display().to_string(), ""))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+out"),
        &TestStream {
            seconds: 6,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+out", &mut p, Duration::from_secs(20));
    let mut buf = [0u8; 2048];
    let got_redirected = wait_until(Duration::from_secs(10), || {
        redirected
            .recv(&mut buf)
            .is_ok_and(|n| n >= 188 && buf[0] == 0x47)
    });
    assert!(
        got_redirected,
        "no TS at the redirected target\n{}",
        s.stderr()
    );
    assert!(
        configured.recv(&mut buf).is_err(),
        "the configured target got datagrams although PUSH_OUT_START redirected the push"
    );
    let starts = entries(&start_log);
    assert_eq!(
        starts.first().map(|e| e.lines().collect::<Vec<_>>()),
        Some(vec![
            "ARGV: PUSH_OUT_START",
            "live+out",
            configured_url.as_str()
        ]),
        "{starts:?}"
    );
    // The stream ends (publisher gone, grace over): PUSH_END.
    p.wait_exit(Duration::from_secs(20))
        .expect("publisher ends");
    assert!(
        wait_until(Duration::from_secs(10), || !entries(&end_log).is_empty()),
        "no PUSH_END\n{}",
        s.stderr()
    );
    let e = entries(&end_log);
    let lines: Vec<&str> = e[0].lines().collect();
    assert_eq!(lines[0], "ARGV: PUSH_END");
    assert!(lines[1].parse::<u64>().is_ok(), "push id {:?}", lines[1]);
    assert_eq!(lines[2], "live+out");
    assert_eq!(lines[3], configured_url, "target before the trigger");
    assert_eq!(lines[4], redirected_url, "target as used");
    assert_eq!(lines.len(), 7, "{lines:?}");
}

#[test]
fn stream_buffer_goes_dry_when_the_publisher_stalls_and_recovers_after() {
    let dir = ScratchDir::new("trig-dry");
    let (h, file) = recorder(dir.path(), "buffer", "");
    let s = server("trig_dry")
        .extra_toml(&trigger("STREAM_BUFFER", &h.display().to_string(), ""))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+dry"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+dry", &mut p, Duration::from_secs(20));
    let states = || -> Vec<String> {
        entries(&file)
            .iter()
            .filter_map(|e| e.lines().nth(2).map(str::to_string))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || states() == ["FULL"]),
        "{:?}",
        states()
    );
    // The publisher stalls (stopped), then carries on.
    p.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(states(), ["FULL", "DRY"], "{}", s.stderr());
    p.signal(libc::SIGCONT);
    assert!(
        wait_until(Duration::from_secs(8), || states().len() >= 4),
        "{:?}\n{}",
        states(),
        s.stderr()
    );
    assert_eq!(states()[..4], ["FULL", "DRY", "RECOVER", "FULL"]);
    let dry: Vec<String> = entries(&file)
        .into_iter()
        .filter(|e| e.contains("\nDRY\n"))
        .collect();
    let health = dry[0].lines().nth(3).unwrap_or("");
    assert!(
        health.contains("\"issues\":\"no media for"),
        "DRY health JSON: {health:?}"
    );
}

#[test]
fn system_start_and_system_stop_fire_and_a_blocking_false_start_refuses_to_run() {
    let dir = ScratchDir::new("trig-sys");
    let (start, start_log) = recorder(dir.path(), "start", "true");
    let (stop, stop_log) = recorder(dir.path(), "stop", "true");
    let mut s = Spate::builder()
        .label("trig_sys")
        .extra_toml(&trigger("SYSTEM_START", &start.display().to_string(), ""))
        .extra_toml(&trigger(
            "SYSTEM_STOP",
            &stop.display().to_string(),
            "sync = true",
        ))
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || !entries(&start_log).is_empty()),
        "no SYSTEM_START\n{}",
        s.stderr()
    );
    assert_eq!(entries(&start_log)[0], "ARGV: SYSTEM_START\n");
    assert!(entries(&stop_log).is_empty());
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(Duration::from_secs(20)).expect("spate exits");
    assert!(status.success(), "{status}\n{}", s.stderr());
    // Blocking: written before spate exited.
    assert_eq!(
        entries(&stop_log),
        vec!["ARGV: SYSTEM_STOP\nshutdown".to_string()],
        "{}",
        s.stderr()
    );
    // A blocking SYSTEM_START answering false: spate does not run.
    let (no, _) = recorder(dir.path(), "no", "false");
    let cfg = dir.path().join("refuse.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nbind = \"127.0.0.1\"\nworkers = 1\n[http]\nport = {}\nroot = {:?}\n[rtmp]\nenabled = false\n[api]\nenabled = false\n{}",
            spate_tests::free_port(),
            dir.path().display().to_string(),
            trigger("SYSTEM_START", &no.display().to_string(), "sync = true")
        ),
    )
    .expect("config");
    let out = spate_tests::run_spate(
        &["--config", &cfg.display().to_string()],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_ne!(
        out.code(),
        Some(0),
        "spate ran although SYSTEM_START said false"
    );
    assert!(
        out.stderr.contains("SYSTEM_START trigger answered false"),
        "{}",
        out.stderr
    );
}

#[test]
fn push_rewrite_renames_and_stream_push_refuses_publishes() {
    let dir = ScratchDir::new("trig-pushrw");
    let rw_log = dir.path().join("rewrite.log");
    let rw = script(
        dir.path(),
        "rewrite.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\nprintf 'ARGV: %s\\n%s\\n---\\n' \"$*\" \"$in\" >> {}\nname=$(printf '%s\\n' \"$in\" | sed -n 3p)\ncase \"$name\" in\n  live+raw) echo live+cooked ;;\n  *) echo \"$name\" ;;\nesac\n",
            rw_log.display()
        ),
    );
    let sp_log = dir.path().join("push.log");
    let sp = script(
        dir.path(),
        "stream_push.sh",
        &format!(
            "#!/bin/sh\nin=$(cat)\nprintf 'ARGV: %s\\n%s\\n---\\n' \"$*\" \"$in\" >> {}\ncase \"$in\" in\n  *banned*) echo false ;;\n  *) echo true ;;\nesac\n",
            sp_log.display()
        ),
    );
    let s = server("trig_pushrw")
        .extra_toml(&trigger("PUSH_REWRITE", &rw.display().to_string(), ""))
        .extra_toml(&trigger("STREAM_PUSH", &sp.display().to_string(), ""))
        .start();
    let url = s.rtmp_url("live", "live+raw");
    let mut p = publish(
        s.dir(),
        &url,
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+cooked", &mut p, Duration::from_secs(20));
    let rw_lines: Vec<String> = entries(&rw_log)[0].lines().map(str::to_string).collect();
    assert_eq!(
        rw_lines,
        vec![
            "ARGV: PUSH_REWRITE".to_string(),
            url.clone(),
            "127.0.0.1".into(),
            "live+raw".into()
        ]
    );
    let sp_lines: Vec<String> = entries(&sp_log)[0].lines().map(str::to_string).collect();
    assert_eq!(
        sp_lines,
        vec![
            "ARGV: STREAM_PUSH".to_string(),
            "live+cooked".into(),
            "127.0.0.1".into(),
            "RTMP".into(),
            url
        ]
    );
    let mut banned = publish(
        s.dir(),
        &s.rtmp_url("live", "live+banned"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    let status = banned
        .wait_exit(Duration::from_secs(15))
        .expect("ffmpeg publishing a banned stream still runs");
    assert!(!status.success(), "{}", banned.stderr());
    assert!(
        s.stderr().contains("STREAM_PUSH refused the push"),
        "{}",
        s.stderr()
    );
}

#[test]
fn stream_and_viewer_lifecycle_triggers_carry_mistservers_payloads() {
    let dir = ScratchDir::new("trig-life");
    let (h, file) = recorder(dir.path(), "life", "true");
    let h = h.display().to_string();
    let mut toml = String::new();
    for on in [
        "STREAM_READY",
        "LIVE_TRACK_LIST",
        "STREAM_UNLOAD",
        "STREAM_END",
        "CONN_CLOSE",
        "USER_END",
    ] {
        toml.push_str(&trigger(on, &h, ""));
    }
    let s = Spate::builder()
        .label("trig_life")
        .stream("live", &[("reconnect_grace", "0.5")])
        .extra_toml(&toml)
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+life"),
        &TestStream {
            seconds: 6,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+life", &mut p, Duration::from_secs(20));
    let v = FlvViewer::start(s.addr(), "/live+life.flv");
    std::thread::sleep(Duration::from_millis(1500));
    let seen = v.stop();
    assert_eq!(seen.status, 200);
    let of = |name: &str| -> Vec<Vec<String>> {
        entries(&file)
            .iter()
            .filter(|e| e.starts_with(&format!("ARGV: {name}\n")))
            .map(|e| e.lines().skip(1).map(str::to_string).collect())
            .collect()
    };
    p.wait_exit(Duration::from_secs(20))
        .expect("publisher ends");
    assert!(
        wait_until(Duration::from_secs(10), || !of("STREAM_END").is_empty()
            && of("USER_END").len() >= 2),
        "{:?}\n{}",
        entries(&file),
        s.stderr()
    );
    assert_eq!(of("STREAM_READY"), vec![vec!["live+life", "buffer"]]);
    // Fired as tracks appear (async handlers may finish in any order): one
    // lists both.
    let lists = of("LIVE_TRACK_LIST");
    let tracks = lists
        .iter()
        .find(|l| l.get(1).is_some_and(|t| t.contains("AAC")))
        .unwrap_or_else(|| panic!("no track list with audio: {lists:?}"));
    assert_eq!(tracks[0], "live+life");
    assert!(
        tracks[1].contains("\"codec\":\"H264\"") && tracks[1].contains("\"codec\":\"AAC\""),
        "{tracks:?}"
    );
    assert_eq!(of("STREAM_UNLOAD"), vec![vec!["live+life", "buffer"]]);
    assert_eq!(
        of("STREAM_END"),
        vec![vec!["live+life", "0", "0", "0", "0", "0", "0"]]
    );
    // The viewer that watched 1.5 s (wait_flv_live's viewers too: every FLV
    // viewer's connection).
    let closes = of("CONN_CLOSE");
    assert!(closes.len() >= 2, "{closes:?}");
    for c in &closes {
        assert_eq!(c[0], "live+life");
        assert_eq!(c[1], "127.0.0.1");
        assert_eq!(c[2], "FLV");
        assert!(c[3].ends_with("/live+life.flv"), "{c:?}");
    }
    let ends = of("USER_END");
    let longest = ends
        .iter()
        .max_by_key(|e| e.get(6).and_then(|b| b.parse::<u64>().ok()).unwrap_or(0))
        .expect("USER_END");
    assert_eq!(
        longest.len(),
        7,
        "{longest:?} (the 8th line, tags, is empty)"
    );
    assert!(u64::from_str_radix(&longest[0], 16).is_ok(), "{longest:?}");
    assert_eq!(longest[1], "live+life");
    assert_eq!(longest[2], "FLV");
    assert_eq!(longest[3], "127.0.0.1");
    assert!(longest[4].parse::<u64>().unwrap_or(0) >= 1, "{longest:?}");
    assert_eq!(longest[5], "0");
    let down: u64 = longest[6].parse().expect("bytes");
    assert!(
        down >= seen.body_bytes,
        "{down} < {} received",
        seen.body_bytes
    );
}

#[test]
fn play_rewrite_serves_another_stream_or_refuses() {
    let dir = ScratchDir::new("trig-playrw");
    let h = script(
        dir.path(),
        "play_rewrite.sh",
        "#!/bin/sh\nread -r stream\ncase \"$stream\" in\n  live+alias) echo live+real ;;\n  live+nope) echo \"\" ;;\n  *) echo \"$stream\" ;;\nesac\n",
    );
    let s = server("trig_playrw")
        .extra_toml(&trigger("PLAY_REWRITE", &h.display().to_string(), ""))
        .start();
    let mut p = publish(
        s.dir(),
        &s.rtmp_url("live", "live+real"),
        &TestStream {
            seconds: 30,
            ..TestStream::default()
        },
    );
    s.wait_flv_live("live+real", &mut p, Duration::from_secs(20));
    // HTTP-FLV of the alias: the real stream.
    s.wait_flv_live("live+alias", &mut p, Duration::from_secs(10));
    // RTMP play of the alias too.
    let probed = spate_tests::ffprobe_streams(s.dir(), &s.rtmp_url("live", "live+alias"))
        .unwrap_or_else(|e| panic!("{e}\n{}", s.stderr()));
    assert!(probed.iter().any(|p| p.codec_name == "h264"), "{probed:?}");
    // An empty answer refuses.
    assert_eq!(status_of(&s, "/live+nope.flv"), 403, "{}", s.stderr());
    // A static file is still a static file.
    assert_eq!(curl(s.dir(), &[], &s.url("/index.html")).status, 200);
}

#[test]
fn input_abort_fires_when_a_source_command_fails() {
    let dir = ScratchDir::new("trig-abort");
    let (h, file) = recorder(dir.path(), "abort", "");
    let s = Spate::builder()
        .label("trig_abort")
        .stream(
            "gen",
            &[
                ("source", "\"ts-exec:/bin/sh -c \\\"exit 3\\\"\""),
                ("always_on", "true"),
            ],
        )
        .extra_toml(&trigger("INPUT_ABORT", &h.display().to_string(), ""))
        .start();
    assert!(
        wait_until(Duration::from_secs(10), || !entries(&file).is_empty()),
        "no INPUT_ABORT\n{}",
        s.stderr()
    );
    let e = entries(&file);
    let lines: Vec<&str> = e[0].lines().collect();
    assert_eq!(lines[0], "ARGV: INPUT_ABORT");
    assert_eq!(lines[1], "gen");
    assert_eq!(lines[2], "ts-exec:/bin/sh -c exit 3");
    assert_eq!(lines[3], "/bin/sh");
    assert_eq!(lines[4], "0");
    assert_eq!(lines[5], "EXIT");
    assert!(lines[6].contains("exit status: 3"), "{lines:?}");
}
