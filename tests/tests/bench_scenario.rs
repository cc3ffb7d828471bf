//! `spate-bench run` end to end: the real `spate` binary, the real
//! `spate-bench` binary (built by the harness, never skipped), a scenario
//! file with one RTMP publisher of an FLV that ffmpeg makes from testsrc at
//! the start of the test, and 50 viewers of each implemented protocol
//! (HTTP-FLV, RTMP, HTTP-TS, HLS, DASH) plus small churning HTTP-FLV and HLS groups,
//! measured for 10 s, on a stream published just before (so Spate continues
//! it shifted). Asserts: every viewer connected and live, zero stalls, zero
//! errors, latency measured, frames matched end to end for every protocol
//! (HLS and DASH included), a well-formed JSON report, and
//! the two SVG plots well-formed. Also: a bad scenario file fails naming
//! the field; `compare` prints ratios; and the udp-ts publisher (MPEG-TS
//! over UDP) feeds a Spate `tsudp://` source whose HTTP-FLV and HLS viewers
//! match its frames end to end.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spate_tests::{
    ChildGuard, Json, ScratchDir, Spate, ffmpeg_bin, run_with_timeout, spate_bench_bin,
};

/// 6 s of 640x360 testsrc2 + sine, H.264/AAC FLV, keyframe every 2 s.
fn make_flv(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("src.flv");
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30:duration=6",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=6",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "500k",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-shortest",
            "-y",
        ])
        .arg(&out);
    let o = run_with_timeout(cmd, dir, "make-flv", Duration::from_secs(60));
    assert!(
        o.success() && out.is_file(),
        "ffmpeg could not make {}: {}",
        out.display(),
        o.stderr
    );
    out
}

/// Balanced, properly nested tags under one `<svg>` root; every numeric
/// attribute finite.
fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text.as_str();
    let mut polylines = 0;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let j = after
            .find('>')
            .unwrap_or_else(|| panic!("{}: unclosed '<'", path.display()));
        let tag = &after[..j];
        rest = &after[j + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop();
            assert_eq!(
                open.as_deref(),
                Some(name),
                "{}: </{name}> does not close the open tag",
                path.display()
            );
            continue;
        }
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().unwrap_or_default();
        if stack.is_empty() {
            assert_eq!(name, "svg", "{}: <{name}> outside the root", path.display());
            roots += 1;
        }
        if name == "polyline" {
            polylines += 1;
        }
        for attr in [
            "x", "y", "x1", "y1", "x2", "y2", "width", "height", "points",
        ] {
            let key = format!(" {attr}=\"");
            if let Some(k) = body.find(&key) {
                let v = &body[k + key.len()..];
                let v = &v[..v.find('"').expect("terminated attribute")];
                for n in v.split([' ', ',']).filter(|s| !s.is_empty()) {
                    let f: f64 = n.parse().unwrap_or_else(|_| {
                        panic!("{}: <{name} {attr}> {n:?} is not a number", path.display())
                    });
                    assert!(f.is_finite(), "{}: <{name} {attr}> {n}", path.display());
                }
            }
        }
        if !tag.ends_with('/') {
            stack.push(name.to_string());
        }
    }
    assert_eq!(roots, 1, "{}: one <svg> root", path.display());
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    assert!(polylines >= 2, "{}: no data lines", path.display());
}

fn num(j: &Json, key: &str) -> f64 {
    j.get(key)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("report: no number {key:?} in {j:?}"))
}

#[test]
fn scenario_run_against_spate_is_clean_and_reported() {
    let s = Spate::builder()
        .label("bench-scenario")
        .stream("live", &[])
        .start();
    let dir = ScratchDir::new("bench-scenario");
    let flv = make_flv(dir.path());
    let scenario = dir.path().join("small.toml");
    // Bases come from the command line; the file's are placeholders that
    // would not connect. Stall tolerance 400 ms over the frame interval:
    // the box is shared (two cores, other tests in parallel) and a debug
    // spate-bench thread can be descheduled for a few hundred ms; a viewer
    // that stops receiving still counts (no frame for 2 s, or lagging).
    let text = format!(
        r#"
duration = 10
warmup = 1
label = "spate-e2e"

[target]
http = "http://127.0.0.1:9"
rtmp = "rtmp://127.0.0.1:9"

[[publisher]]
protocol = "rtmp"
source = "{}"
url = "{{rtmp}}/live/live+bench{{n}}"

[[viewers]]
protocol = "http-flv"
count = 50
ramp = 200
url = "{{http}}/{{stream}}.flv"
stall_tolerance_ms = 400

[[viewers]]
protocol = "rtmp"
count = 50
ramp = 200
url = "{{rtmp}}/live/{{stream}}"
stall_tolerance_ms = 400

[[viewers]]
protocol = "http-ts"
count = 50
ramp = 200
url = "{{http}}/{{stream}}.ts"
stall_tolerance_ms = 400

[[viewers]]
protocol = "hls"
count = 50
ramp = 200
url = "{{http}}/hls/{{stream}}/media.m3u8"

[[viewers]]
protocol = "dash"
count = 50
ramp = 200
url = "{{http}}/cmaf/{{stream}}/index.mpd"

[[viewers]]
name = "hls-fmp4"
protocol = "hls"
count = 50
ramp = 200
url = "{{http}}/cmaf/{{stream}}/index.m3u8"

[[viewers]]
name = "churn-hls"
protocol = "hls"
count = 10
churn = 2
url = "{{http}}/hls/{{stream}}/media.m3u8"

[[viewers]]
name = "churn"
protocol = "http-flv"
count = 10
churn = 2
url = "{{http}}/{{stream}}.flv"
stall_tolerance_ms = 400
"#,
        flv.display()
    );
    std::fs::write(&scenario, text).unwrap();
    let report = dir.path().join("out").join("run.json");
    // Publish the stream for a few seconds first: the scenario's publisher
    // then continues it within the reconnect grace (as a run right after
    // another does), so Spate shifts every timestamp. The live viewers learn
    // the shift; the HLS and DASH viewers must still match frames.
    let mut pre = Command::new(ffmpeg_bin());
    pre.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-t",
        "4",
        "-i",
    ])
    .arg(&flv)
    .args(["-c", "copy", "-f", "flv"])
    .arg(format!(
        "rtmp://127.0.0.1:{}/live/live+bench0",
        s.rtmp_port()
    ));
    let p = run_with_timeout(pre, dir.path(), "pre-publish", Duration::from_secs(30));
    assert!(p.success(), "pre-publish: {}", p.stderr);
    let mut cmd = Command::new(spate_bench_bin());
    cmd.arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(format!("http://127.0.0.1:{}", s.port()))
        .arg("--rtmp")
        .arg(format!("rtmp://127.0.0.1:{}", s.rtmp_port()))
        .arg("--server-pid")
        .arg(s.pid().to_string())
        .arg("--json")
        .arg(&report);
    let o = run_with_timeout(cmd, dir.path(), "spate-bench-run", Duration::from_secs(150));
    let context = format!(
        "spate-bench run ({:?}):\nstdout:\n{}\nstderr:\n{}\nserver:\n{}",
        o.status,
        o.stdout,
        o.stderr,
        s.stderr()
    );
    assert!(o.success(), "run not clean: {context}");
    assert!(o.stdout.contains("clean"), "{context}");
    assert!(
        o.stderr.contains("viewers ") && o.stderr.contains(" p99 "),
        "no progress line: {context}"
    );

    let j = Json::parse(&std::fs::read_to_string(&report).expect("report written"))
        .unwrap_or_else(|e| panic!("report is not JSON: {e}\n{context}"));
    assert_eq!(j.get("mode").and_then(Json::as_str), Some("scenario"));
    assert_eq!(j.get("label").and_then(Json::as_str), Some("spate-e2e"));
    assert_eq!(j.get("failure"), Some(&Json::Null), "{context}");
    assert_eq!(num(&j, "max_clean_viewers"), 320.0, "{context}");
    let steps = j.get("steps").and_then(Json::as_array).expect("steps");
    assert_eq!(steps.len(), 1);
    let step = &steps[0];
    assert_eq!(
        step.get("clean").and_then(Json::as_bool),
        Some(true),
        "{context}"
    );
    assert!(num(step, "seconds") >= 9.5, "{context}");
    let groups = step.get("groups").and_then(Json::as_array).expect("groups");
    let protocols: Vec<&str> = groups
        .iter()
        .map(|g| g.get("protocol").and_then(Json::as_str).unwrap())
        .collect();
    assert_eq!(
        protocols,
        [
            "http-flv", "rtmp", "http-ts", "hls", "dash", "hls", "hls", "http-flv"
        ]
    );
    for g in groups {
        let name = g.get("name").and_then(Json::as_str).unwrap();
        let churn = name.starts_with("churn");
        let want = if churn { 10.0 } else { 50.0 };
        assert_eq!(num(g, "viewers"), want, "{name}");
        if !churn {
            assert_eq!(num(g, "connected"), want, "{name}: {context}");
            assert_eq!(num(g, "live"), want, "{name}: {context}");
        }
        assert_eq!(num(g, "stalls"), 0.0, "{name}: {context}");
        assert_eq!(num(g, "stalled_viewer_seconds"), 0.0, "{name}: {context}");
        assert!(num(g, "viewer_seconds") > 0.0, "{name}: {context}");
        assert!(num(g, "bytes_per_s") > 10_000.0, "{name}: {context}");
        let errors = g.get("errors").expect("errors");
        let Json::Obj(kinds) = errors else {
            panic!("errors is not an object")
        };
        assert!(!kinds.is_empty(), "{name}: no error kinds");
        for (k, v) in kinds {
            assert_eq!(v.as_f64(), Some(0.0), "{name}: {k} errors: {context}");
        }
        let latency = g.get("latency").expect("latency");
        assert!(num(latency, "count") > 0.0, "{name}: no latency samples");
        // Every protocol measures end-to-end latency: frames matched to the
        // publisher's send records (live protocols: `latency` itself).
        let e2e = g
            .get("end_to_end")
            .filter(|e| **e != Json::Null)
            .unwrap_or(latency);
        assert!(
            num(e2e, "count") > 0.0,
            "{name}: no end-to-end latency samples: {context}"
        );
        let ts = g.get("timestamps").expect("timestamps");
        assert!(
            num(ts, "matched") > 0.0,
            "{name}: no frame matched: {context}"
        );
        let p99 = num(latency, "p99");
        assert!(p99 > 0.0 && p99 < 2000.0, "{name}: latency p99 {p99} ms");
        let startup = g.get("startup").expect("startup");
        assert!(
            num(startup, "count") >= want,
            "{name}: start-ups: {context}"
        );
        if g.get("latency_kind").and_then(Json::as_str) == Some("publisher-send-to-receipt") {
            // The server shifted the continued stream's timestamps by one
            // offset: viewers learn it (churning ones again each time they
            // join) and frames match.
            assert!(num(latency, "count") > 100.0, "{name}");
            let ts = g.get("timestamps").expect("timestamps");
            assert!(num(ts, "matched") > 100.0, "{name}");
            assert!(
                num(ts, "unmatched") < num(ts, "matched"),
                "{name}: {context}"
            );
        }
        if matches!(
            g.get("protocol").and_then(Json::as_str),
            Some("hls" | "dash")
        ) {
            // TS segments (HLS) and fMP4 moofs (DASH, HLS-fMP4, whose
            // timescale comes from its init segment): per-frame publisher
            // send → segment complete.
            let e2e = g.get("end_to_end").expect("end_to_end");
            assert!(num(e2e, "count") > 100.0, "{name}: {context}");
            let p50 = num(e2e, "p50");
            assert!(
                p50 > 0.0 && p50 < 10_000.0,
                "{name}: end-to-end p50 {p50} ms"
            );
            assert!(
                num(g.get("timestamps").expect("timestamps"), "matched") > 100.0,
                "{name}: {context}"
            );
        }
        // fMP4 players fetch the init segment once each when they join;
        // TS players have none to fetch.
        let inits = num(g, "init_segments");
        match name {
            "hls-fmp4" | "dash#4" => {
                // Video and audio: /cmaf/ has a separate audio rendition
                // (HLS) and AdaptationSet (DASH).
                assert!(
                    inits >= 2.0 * want,
                    "{name}: {inits} init segments: {context}"
                );
                let audio = num(g, "audio_segments");
                let video = num(g, "segments");
                assert!(
                    audio >= 0.8 * video && audio <= 1.2 * video,
                    "{name}: {audio} audio segments for {video} video: {context}"
                );
            }
            "hls#3" | "churn-hls" => assert_eq!(inits, 0.0, "{name}: {context}"),
            _ => {}
        }
        if churn {
            let c = num(g, "churned");
            assert!(
                (10.0..=30.0).contains(&c),
                "churn group churned {c} viewers"
            );
        }
    }
    let server = step.get("server").expect("server usage");
    assert!(num(server, "rss_max") > 1e6, "{context}");
    let timeline = step.get("timeline").and_then(Json::as_array).unwrap();
    assert!(
        timeline.len() >= 11,
        "{} seconds in the timeline",
        timeline.len()
    );

    check_svg(&dir.path().join("out").join("run-latency.svg"));
    check_svg(&dir.path().join("out").join("run-viewers.svg"));

    // compare: a report against itself is 1× everywhere.
    let mut cmd = Command::new(spate_bench_bin());
    cmd.arg("compare").arg(&report).arg(&report);
    let c = run_with_timeout(
        cmd,
        dir.path(),
        "spate-bench-compare",
        Duration::from_secs(20),
    );
    assert!(c.success(), "compare failed: {}", c.stderr);
    assert!(c.stdout.contains("max clean viewers"), "{}", c.stdout);
    assert!(c.stdout.contains("rtmp#1: latency p99 ms"), "{}", c.stdout);
    assert!(c.stdout.contains("1.00×"), "{}", c.stdout);
}

#[test]
fn bad_scenario_fails_naming_the_field() {
    let dir = ScratchDir::new("bench-bad-scenario");
    let cases = [
        ("duration = 5\ncolour = 1\n", "colour"),
        (
            "duration = 5\n[[publisher]]\nprotocol = \"rtmp\"\nsource = \"a.flv\"\nurl = \"{rtmp}/live/x\"\n\
             [[viewers]]\nprotocol = \"http-flv\"\ncount = 0\nurl = \"{http}/{stream}.flv\"\n",
            "viewers[0].count",
        ),
        (
            "duration = 5\n[[publisher]]\nprotocol = \"rtmp\"\nsource = \"a.flv\"\nurl = \"{rtmp}/live/{x}\"\n\
             [[viewers]]\nprotocol = \"http-flv\"\ncount = 1\nurl = \"{http}/{stream}.flv\"\n",
            "publisher[0].url",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let mut cmd = Command::new(spate_bench_bin());
        cmd.arg("run").arg(&p);
        let o = run_with_timeout(cmd, dir.path(), "spate-bench-bad", Duration::from_secs(20));
        assert_eq!(
            o.status.and_then(|s| s.code()),
            Some(2),
            "{field}: exit status; stderr: {}",
            o.stderr
        );
        assert!(
            o.stderr.contains(field),
            "error for {field} does not name it: {}",
            o.stderr
        );
    }
}

/// DASH viewers against a manifest Spate did not write: ffmpeg's live DASH
/// with a number-only `SegmentTemplate` (`-use_timeline 0`), served by
/// Spate as static files. The viewers find the live edge from
/// `availabilityStartTime` and their clock, fetch every new segment, and
/// stay clean with no errors (a wrong edge asks for segments ffmpeg has not
/// written yet: 404s, counted as errors).
#[test]
fn dash_viewers_follow_a_number_only_template_from_ffmpeg() {
    let (g, context) = ffmpeg_dash_run(
        "dash-numbers",
        &["-use_timeline", "0", "-use_template", "1"],
        |t| t.contains("duration=\"2000000\"") && !t.contains("SegmentTimeline"),
    );
    // 300 kbit/s video + 64 kbit/s audio.
    assert!(
        num(&g, "bytes_per_s") > 20.0 * 20_000.0,
        "20 viewers took {} B/s: not every segment was fetched: {context}",
        num(&g, "bytes_per_s")
    );
}

/// DASH viewers against ffmpeg's live single-file DASH (`-single_file 1
/// -use_template 0`): a `SegmentList` whose `SegmentURL`s are
/// `mediaRange`s of one growing file per track (the BaseURL) and whose
/// `Initialization` is a `range` of it, served by Spate as static files.
/// The players ask for each range (`Range: bytes=A-B`) and Spate answers
/// 206: a 206 must count as success (no `bad_status`), none may come back
/// as the whole file (`range_ignored`), and the bytes stay near the
/// stream's bitrate (whole-file fetches of the growing files would be
/// several times more).
#[test]
fn dash_viewers_fetch_single_file_byte_ranges_from_ffmpeg() {
    let (g, context) = ffmpeg_dash_run(
        "dash-ranges",
        &["-single_file", "1", "-use_template", "0"],
        |t| {
            t.contains("mediaRange=")
                && t.contains("<Initialization range=")
                && !t.contains("SegmentTemplate")
        },
    );
    assert_eq!(num(&g, "range_ignored"), 0.0, "{context}");
    assert!(
        num(&g, "segments") >= 20.0 * 3.0,
        "{} video segments: {context}",
        num(&g, "segments")
    );
    // 300 kbit/s video + 64 kbit/s audio ≈ 45 kB/s a viewer.
    let rate = num(&g, "bytes_per_s");
    assert!(
        rate > 20.0 * 20_000.0 && rate < 20.0 * 100_000.0,
        "20 viewers took {rate} B/s: not the ranges' bytes: {context}"
    );
}

/// ffmpeg's dash muxer (`mux_args` on top of a 2 s live H.264 + AAC
/// encode) writes into a directory under Spate's root until `mpd_ok`
/// accepts its live MPD; then 20 DASH viewers play it for 8 s. Asserts
/// what every such run must hold (clean, all live, no stall, no error,
/// audio fetched about as often as video, the init segments) and returns
/// the group's report and the failure context for the caller's checks.
fn ffmpeg_dash_run(
    label: &str,
    mux_args: &[&str],
    mpd_ok: impl Fn(&str) -> bool,
) -> (Json, String) {
    let s = Spate::builder()
        .label(&format!("bench-{label}"))
        .stream("live", &[])
        .start();
    let dir = ScratchDir::new(&format!("bench-{label}"));
    let flv = make_flv(dir.path());
    let out = s.root().join(label);
    std::fs::create_dir_all(&out).unwrap();
    let mut ff = Command::new(ffmpeg_bin());
    ff.current_dir(&out)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
        .args(["-keyint_min", "60", "-sc_threshold", "0", "-b:v", "300k"])
        .args(["-c:a", "aac", "-b:a", "64k", "-t", "40", "-f", "dash"])
        .args(mux_args)
        .args(["-seg_duration", "2"])
        .args(["-window_size", "5", "-extra_window_size", "3", "live.mpd"]);
    let _ffmpeg = ChildGuard::spawn(ff, dir.path(), &format!("ffmpeg-{label}"));
    let mpd = out.join("live.mpd");
    assert!(
        spate_tests::wait_until(Duration::from_secs(20), || std::fs::read_to_string(&mpd)
            .is_ok_and(|t| t.contains("type=\"dynamic\"") && mpd_ok(&t))),
        "ffmpeg wrote no live MPD of the expected shape ({mux_args:?}): {:?}",
        std::fs::read_to_string(&mpd)
    );
    let scenario = dir.path().join(format!("{label}.toml"));
    let text = format!(
        r#"
duration = 8
warmup = 1
label = "{label}"

[target]
http = "http://127.0.0.1:9"
rtmp = "rtmp://127.0.0.1:9"

[[publisher]]
protocol = "rtmp"
source = "{}"
url = "{{rtmp}}/live/live+x"

[[viewers]]
protocol = "dash"
count = 20
ramp = 100
url = "{{http}}/{label}/live.mpd"
"#,
        flv.display()
    );
    std::fs::write(&scenario, text).unwrap();
    let report = dir.path().join("out").join("dash.json");
    let mut cmd = Command::new(spate_bench_bin());
    cmd.arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(format!("http://127.0.0.1:{}", s.port()))
        .arg("--rtmp")
        .arg(format!("rtmp://127.0.0.1:{}", s.rtmp_port()))
        .arg("--json")
        .arg(&report);
    let o = run_with_timeout(
        cmd,
        dir.path(),
        &format!("spate-bench-{label}"),
        Duration::from_secs(120),
    );
    let context = format!(
        "spate-bench run ({:?}):\nstdout:\n{}\nstderr:\n{}\nMPD:\n{}",
        o.status,
        o.stdout,
        o.stderr,
        std::fs::read_to_string(&mpd).unwrap_or_default()
    );
    assert!(o.success(), "run not clean: {context}");
    let j = Json::parse(&std::fs::read_to_string(&report).expect("report written"))
        .unwrap_or_else(|e| panic!("report is not JSON: {e}\n{context}"));
    let steps = j.get("steps").and_then(Json::as_array).expect("steps");
    let g = steps[0]
        .get("groups")
        .and_then(Json::as_array)
        .expect("groups")[0]
        .clone();
    assert_eq!(g.get("protocol").and_then(Json::as_str), Some("dash"));
    assert_eq!(num(&g, "live"), 20.0, "{context}");
    assert_eq!(num(&g, "stalls"), 0.0, "{context}");
    let errors = g.get("errors").expect("errors");
    for kind in [
        "connect",
        "reset",
        "closed",
        "timeout",
        "bad_status",
        "parse",
        "playlist_404",
        "segment_404",
        "skipped_segments",
    ] {
        assert_eq!(num(errors, kind), 0.0, "{kind} errors: {context}");
    }
    // ffmpeg's MPD has an audio AdaptationSet: players fetch it too.
    let audio = num(&g, "audio_segments");
    let video = num(&g, "segments");
    assert!(
        audio >= 0.8 * video && audio <= 1.2 * video,
        "{audio} audio segments for {video} video: {context}"
    );
    assert!(num(&g, "init_segments") >= 2.0 * 20.0, "{context}");
    (g, context)
}

/// The udp-ts publisher against Spate's MPEG-TS-over-UDP ingest
/// (`[[stream]] source = "tsudp://…"`): HTTP-FLV and HLS viewers of the
/// stream stay clean, and their frames match the publisher's send records
/// (the TS timestamps it wrote are the FLV's ms × 90, which Spate maps
/// back), so end-to-end latency is measured through a TS ingest too.
#[test]
fn udp_ts_publisher_feeds_spate_and_frames_match_end_to_end() {
    ts_publisher_feeds_spate(false);
}

/// The same with `rtp-ts` (RFC 2250 MPEG-TS in RTP) into a `tsrtp://`
/// source: Spate strips the RTP headers the publisher wrote.
#[test]
fn rtp_ts_publisher_feeds_spate_and_frames_match_end_to_end() {
    ts_publisher_feeds_spate(true);
}

fn ts_publisher_feeds_spate(rtp: bool) {
    let (proto, scheme, source) = if rtp {
        ("rtp-ts", "rtp", "tsrtp")
    } else {
        ("udp-ts", "udp", "tsudp")
    };
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port();
    let s = Spate::builder()
        .label(&format!("bench-{proto}"))
        .stream(
            "udpin",
            &[("source", &format!("\"{source}://127.0.0.1:{port}\""))],
        )
        .start();
    let dir = ScratchDir::new(&format!("bench-{proto}"));
    let flv = make_flv(dir.path());
    let scenario = dir.path().join("udp-ts.toml");
    let text = format!(
        r#"
duration = 8
warmup = 1
label = "{proto}"

[[publisher]]
protocol = "{proto}"
source = "{}"
url = "{scheme}://127.0.0.1:{port}/udpin"

[[viewers]]
protocol = "http-flv"
count = 20
ramp = 200
url = "{{http}}/{{stream}}.flv"
stall_tolerance_ms = 400

[[viewers]]
protocol = "hls"
count = 20
ramp = 200
url = "{{http}}/hls/{{stream}}/media.m3u8"
"#,
        flv.display()
    );
    std::fs::write(&scenario, text).unwrap();
    let report = dir.path().join("out").join("udp.json");
    let mut cmd = Command::new(spate_bench_bin());
    cmd.arg("run")
        .arg(&scenario)
        .arg("--target")
        .arg(format!("http://127.0.0.1:{}", s.port()))
        .arg("--server-pid")
        .arg(s.pid().to_string())
        .arg("--json")
        .arg(&report);
    let o = run_with_timeout(cmd, dir.path(), "spate-bench-udp", Duration::from_secs(150));
    let context = format!(
        "spate-bench run ({:?}):\nstdout:\n{}\nstderr:\n{}\nserver:\n{}",
        o.status,
        o.stdout,
        o.stderr,
        s.stderr()
    );
    assert!(o.success(), "run not clean: {context}");
    assert!(
        o.stdout
            .contains(&format!("publisher ({proto}) {scheme}://")),
        "{context}"
    );
    let j = Json::parse(&std::fs::read_to_string(&report).expect("report written"))
        .unwrap_or_else(|e| panic!("report is not JSON: {e}\n{context}"));
    let publishers = j
        .get("publishers")
        .and_then(Json::as_array)
        .expect("publishers");
    assert_eq!(publishers.len(), 1, "{context}");
    let p = &publishers[0];
    assert_eq!(p.get("protocol").and_then(Json::as_str), Some(proto));
    // HLS waits for 3 segments first: well over 8 s at 30 fps.
    assert!(num(p, "frames_sent") > 300.0, "{context}");
    assert!(num(p, "bytes_sent") > 500_000.0, "{context}");
    assert_eq!(num(p, "reconnects"), 0.0, "{context}");
    let steps = j.get("steps").and_then(Json::as_array).expect("steps");
    let groups = steps[0]
        .get("groups")
        .and_then(Json::as_array)
        .expect("groups");
    assert_eq!(groups.len(), 2);
    for g in groups {
        let name = g.get("name").and_then(Json::as_str).unwrap();
        assert_eq!(num(g, "live"), 20.0, "{name}: {context}");
        assert_eq!(num(g, "stalls"), 0.0, "{name}: {context}");
        let Some(Json::Obj(kinds)) = g.get("errors") else {
            panic!("{name}: errors is not an object")
        };
        for (k, v) in kinds {
            assert_eq!(v.as_f64(), Some(0.0), "{name}: {k} errors: {context}");
        }
        let e2e = g
            .get("end_to_end")
            .filter(|e| **e != Json::Null)
            .or_else(|| g.get("latency"))
            .expect("latency");
        assert!(num(e2e, "count") > 100.0, "{name}: {context}");
        let p50 = num(e2e, "p50");
        assert!(
            p50 > 0.0 && p50 < 10_000.0,
            "{name}: end-to-end p50 {p50} ms: {context}"
        );
        let ts = g.get("timestamps").expect("timestamps");
        assert!(num(ts, "matched") > 100.0, "{name}: {context}");
        assert!(
            num(ts, "unmatched") < num(ts, "matched"),
            "{name}: {context}"
        );
    }
}
