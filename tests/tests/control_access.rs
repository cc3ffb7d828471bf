//! Access control without triggers (docs/access.md) and the protocol
//! auto-selection document `/json_<stream>.js` (docs/protocols.md), with
//! real clients:
//!
//! - ffmpeg publishes to `rtmp://…/live/abc123` where `[access]
//!   publish_keys = { abc123 = "live+alice" }`: `live+alice` plays over
//!   HTTP-FLV (ffprobe); a publish by the bare name of a
//!   `require_publish_key` stream makes ffmpeg exit with an error, the
//!   stream stays offline, and the key is never in the log.
//! - A `require_play_token` stream: curl gets 403 without a token, with a
//!   bad signature and with an expired token on HTTP-FLV, TS, HLS, CMAF and
//!   DASH; with a token from `spate --mint-token`, ffprobe decodes HTTP-FLV,
//!   ffmpeg decodes HLS (the playlists carry the token on every URI) while a
//!   segment URL without it is refused; ffprobe plays RTMP with
//!   `?token=` and fails with a bad one; a token made with the openssl
//!   one-liner of docs/access.md is accepted.
//! - `/json_<s>.js` of an H.264 + AAC stream lists its tracks and every
//!   output best first, each URL answering; an HEVC stream (a `ts-exec:`
//!   libx265 source) is not offered over FLV or RTMP; an unknown stream is
//!   a 404 with a JSON body.
use std::process::Command;
use std::time::Duration;

use spate_tests::{
    Json, Player, Spate, TestStream, curl, decode_for, ffmpeg_bin, ffprobe_streams,
    play_in_chromium, publish, run_spate, wait_until,
};

const SECRET: &str = "s3cret-for-tests";

/// Wait until `path` answers 200 (HLS/JSON: the first segment is out).
fn wait_200(s: &Spate, path: &str) -> Vec<u8> {
    let mut last = None;
    let ok = wait_until(Duration::from_secs(25), || {
        let r = s.curl(&["--max-time", "5"], path);
        let done = r.status == 200;
        last = Some(r);
        done
    });
    let r = last.expect("tried");
    assert!(
        ok,
        "{path}: no 200 in time: {} {}\n{}",
        r.status,
        String::from_utf8_lossy(&r.body),
        s.stderr()
    );
    r.body
}

/// Status of a HEAD of `path` (progressive outputs answer a HEAD with their
/// head alone).
fn head_status(s: &Spate, path: &str) -> u16 {
    let r = s.curl(&["--max-time", "10", "-I"], path);
    r.assert_transfer_ok();
    r.status
}

/// Status of a GET of `path`, and its body.
fn get(s: &Spate, path: &str) -> (u16, String) {
    let r = s.curl(&["--max-time", "10"], path);
    r.assert_transfer_ok();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn mint(s: &Spate, stream: &str, ttl: &str) -> String {
    let config = s.config_path().display().to_string();
    let out = run_spate(
        &["-c", &config, "--mint-token", stream, "--ttl", ttl],
        s.dir(),
        Duration::from_secs(10),
    );
    assert_eq!(out.code(), Some(0), "spate --mint-token: {}", out.stderr);
    let token = out.stdout.trim().to_string();
    assert!(
        token
            .split_once('.')
            .is_some_and(|(e, h)| e.parse::<u64>().is_ok() && h.len() == 64),
        "not a token: {token:?}"
    );
    token
}

/// The token docs/access.md's openssl one-liner makes.
fn openssl_token(stream: &str, expiry: u64) -> String {
    let script = format!(
        "STREAM='{stream}'; SECRET='{SECRET}'; EXP={expiry}; \
         echo \"$EXP.$(printf '%s\\n%s' \"$STREAM\" \"$EXP\" | openssl dgst -sha256 -hmac \"$SECRET\" | awk '{{print $NF}}')\""
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh and openssl run");
    assert!(out.status.success(), "openssl one-liner failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn stream_of(seconds: u32) -> TestStream {
    TestStream {
        seconds,
        ..TestStream::sized(640, 360)
    }
}

#[test]
fn publish_keys_name_the_stream_and_keyed_streams_refuse_their_bare_name() {
    let mut s = Spate::builder()
        .label("access_publish_keys")
        .stream("live", &[("require_publish_key", "true")])
        .extra_toml("[access]\npublish_keys = { abc123 = \"live+alice\" }\n")
        .start();
    let mut p = publish(s.dir(), &s.rtmp_url("live", "abc123"), &stream_of(30));
    s.wait_flv_path(
        &format!("/{}.flv{}", "live+alice", ""),
        &mut p,
        Duration::from_secs(25),
    );
    let streams =
        ffprobe_streams(s.dir(), &s.flv_url("live+alice")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        streams
            .iter()
            .any(|st| st.codec_type == "video" && st.codec_name == "h264" && st.width == 640),
        "ffprobe of /live+alice.flv: {streams:?}"
    );
    // The key is not a stream name.
    assert_eq!(head_status(&s, "/abc123.flv"), 404);

    // Publishing by the bare name: refused, ffmpeg fails, nothing is live.
    let mut bare = publish(s.dir(), &s.rtmp_url("live", "live+bob"), &stream_of(30));
    let status = bare.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|st| !st.success()),
        "ffmpeg publishing to live+bob should fail: {status:?}\n{}",
        bare.stderr()
    );
    assert_eq!(head_status(&s, "/live+bob.flv"), 404);
    // The keyed publish is unaffected.
    assert!(p.running(), "the keyed publisher stopped: {}", p.stderr());

    drop(p);
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_exit(Duration::from_secs(15)).is_some(),
        "spate did not stop"
    );
    let log = s.stderr();
    assert!(
        log.contains("publish refused: live+bob only accepts publishing with a publish key"),
        "no refusal naming the stream in the log:\n{log}"
    );
    assert!(
        log.contains("1 publishes refused"),
        "refusal not counted:\n{log}"
    );
    assert!(
        !log.contains("abc123"),
        "the publish key is in the log:\n{log}"
    );
}

#[test]
fn play_tokens_guard_every_play_path() {
    let name = "live+tok";
    let mut s = Spate::builder()
        .label("access_play_tokens")
        .http("access_log", "true")
        .stream("live", &[("require_play_token", "true")])
        .stream("open", &[])
        .extra_toml(&format!("[access]\nplay_secret = \"{SECRET}\"\n"))
        .start();
    let token = mint(&s, name, "600");
    let q = format!("?token={token}");
    let mut p = publish(s.dir(), &s.rtmp_url("live", name), &stream_of(60));
    s.wait_flv_path(
        &format!("/{}.flv{}", name, &q),
        &mut p,
        Duration::from_secs(25),
    );
    wait_200(&s, &format!("/hls/{name}/index.m3u8{q}"));
    wait_200(&s, &format!("/cmaf/{name}/index.mpd{q}"));

    // Missing, bad signature, expired, a token of another stream: 403 on
    // every entry URL.
    let (e, h) = token.split_once('.').unwrap();
    let flipped = format!(
        "{e}.{}{}",
        if h.starts_with('0') { "1" } else { "0" },
        &h[1..]
    );
    let expired = openssl_token(name, unix_now() - 5);
    let other = mint(&s, "live+other", "600");
    for bad in [
        "",
        "?token=",
        "?token=12.34",
        &format!("?token={flipped}"),
        &format!("?token={expired}"),
        &format!("?token={other}"),
    ] {
        for path in [
            format!("/{name}.flv{bad}"),
            format!("/{name}.ts{bad}"),
            format!("/hls/{name}/index.m3u8{bad}"),
            format!("/cmaf/{name}/index.m3u8{bad}"),
            format!("/cmaf/{name}/index.mpd{bad}"),
        ] {
            let r = s.curl(&["--max-time", "10"], &path);
            r.assert_transfer_ok();
            assert_eq!(
                r.status,
                403,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let body = String::from_utf8_lossy(&r.body);
            assert!(body.starts_with("forbidden"), "{path}: body {body:?}");
        }
    }
    let (_, body) = get(&s, &format!("/{name}.flv?token={expired}"));
    assert!(body.contains("expired"), "{body}");

    // A valid token: HTTP-FLV decodes.
    let streams = ffprobe_streams(s.dir(), &s.url(&format!("/{name}.flv{q}")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        streams.iter().any(|st| st.codec_name == "h264")
            && streams.iter().any(|st| st.codec_name == "aac"),
        "{streams:?}"
    );
    assert_eq!(head_status(&s, &format!("/{name}.ts{q}")), 200);

    // HLS: every URI in the playlists carries the token, so ffmpeg decodes
    // through them; a segment without the token is refused.
    let (status, master) = get(&s, &format!("/hls/{name}/index.m3u8{q}"));
    assert_eq!(status, 200);
    let media_uri = master
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no variant in {master}"));
    assert!(
        media_uri.ends_with(&q),
        "variant URI without the token: {media_uri}"
    );
    let (status, media) = get(&s, &format!("/hls/{name}/{media_uri}"));
    assert_eq!(status, 200, "{media}");
    let seg = media
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no segment in {media}"));
    assert!(seg.ends_with(&q), "segment URI without the token: {seg}");
    let bare_seg = seg.split('?').next().unwrap();
    assert_eq!(get(&s, &format!("/hls/{name}/{bare_seg}")).0, 403);
    assert_eq!(get(&s, &format!("/hls/{name}/{seg}")).0, 200);
    decode_for(
        s.dir(),
        &s.url(&format!("/hls/{name}/index.m3u8{q}")),
        4,
        Duration::from_secs(40),
    )
    .assert_clean(2.0);

    // CMAF and DASH documents carry it too.
    let (_, cmaf) = get(&s, &format!("/cmaf/{name}/index.m3u8{q}"));
    let variant = cmaf
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no variant in {cmaf}"));
    assert!(variant.ends_with(&q), "{cmaf}");
    let (_, track_pl) = get(&s, &format!("/cmaf/{name}/{variant}"));
    assert!(track_pl.contains(&format!("init.mp4{q}\"")), "{track_pl}");
    let (_, mpd) = get(&s, &format!("/cmaf/{name}/index.mpd{q}"));
    assert!(mpd.contains(&format!(".m4s{q}\"")), "{mpd}");

    // RTMP play: the token goes in the play name's query.
    let rtmp = s.rtmp_url("live", &format!("{name}{q}"));
    let streams = ffprobe_streams(s.dir(), &rtmp).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        streams.iter().any(|st| st.codec_name == "h264"),
        "{streams:?}"
    );
    for bad in [String::new(), format!("?token={flipped}")] {
        let url = s.rtmp_url("live", &format!("{name}{bad}"));
        assert!(
            ffprobe_streams(s.dir(), &url).is_err(),
            "RTMP play of {url} succeeded"
        );
    }

    // The documented openssl one-liner makes tokens spate accepts.
    let t = openssl_token(name, unix_now() + 300);
    assert_eq!(head_status(&s, &format!("/{name}.flv?token={t}")), 200);

    // Streams that need no token play without one.
    let mut o = publish(s.dir(), &s.rtmp_url("live", "open"), &stream_of(20));
    s.wait_flv_path(
        &format!("/{}.flv{}", "open", ""),
        &mut o,
        Duration::from_secs(25),
    );

    // Every refusal above was counted: 6 bad tokens × 5 URLs, the expired
    // FLV, the bare segment, 2 RTMP plays.
    drop(o);
    drop(p);
    s.signal(libc::SIGTERM);
    assert!(
        s.wait_exit(Duration::from_secs(15)).is_some(),
        "spate did not stop"
    );
    let log = s.stderr();
    assert!(log.contains("; 34 plays denied"), "access_denied: {log}");
    assert!(log.contains("denied: play token expired"), "{log}");
    assert!(
        log.contains("rtmp play of live+tok denied: no play token"),
        "{log}"
    );
    // Not even the access log shows tokens.
    assert!(
        log.contains("index.m3u8?token=… 200"),
        "no access log: {log}"
    );
    assert!(!log.contains(h), "a token's signature is in the log");
}

/// `/json_<s>.js` as JSON.
fn sources_json(s: &Spate, path: &str) -> Json {
    let body = wait_200(s, path);
    let text = String::from_utf8(body).unwrap();
    Json::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"))
}

fn source_list(j: &Json) -> Vec<(String, String, f64)> {
    j.get("source")
        .and_then(Json::as_array)
        .expect("a source array")
        .iter()
        .map(|x| {
            (
                x.get("type").and_then(Json::as_str).unwrap().to_string(),
                x.get("url").and_then(Json::as_str).unwrap().to_string(),
                x.get("priority").and_then(Json::as_f64).unwrap(),
            )
        })
        .collect()
}

#[test]
fn json_sources_list_the_outputs_that_carry_the_codecs() {
    let x265 = format!(
        "ts-exec:{} -nostdin -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=25 \
         -c:v libx265 -preset ultrafast -g 50 -x265-params log-level=error -f mpegts -",
        ffmpeg_bin()
    );
    let s = Spate::builder()
        .label("access_json_sources")
        .server("workers", "2")
        .stream("live", &[])
        .stream(
            "hevc",
            &[("source", &format!("\"{x265}\"")), ("always_on", "true")],
        )
        .stream("sec", &[("require_play_token", "true")])
        .extra_toml(&format!("[access]\nplay_secret = \"{SECRET}\"\n"))
        .start();

    // Unknown stream: 404 with a JSON body.
    let r = s.curl(&["--max-time", "10"], "/json_nope.js");
    r.assert_transfer_ok().assert_status(404);
    let j = Json::parse(&String::from_utf8_lossy(&r.body)).expect("a JSON 404 body");
    assert!(
        j.get("error")
            .and_then(Json::as_str)
            .is_some_and(|e| e.contains("nope"))
    );
    assert_eq!(r.media_type().as_deref(), Some("application/json"));

    let mut p = publish(s.dir(), &s.rtmp_url("live", "live+js"), &stream_of(60));
    s.wait_flv_path(
        &format!("/{}.flv{}", "live+js", ""),
        &mut p,
        Duration::from_secs(25),
    );
    let j = {
        wait_200(&s, "/json_live+js.js");
        let r2 = s.curl(&["--max-time", "10"], "/json_live+js.js");
        assert_eq!(r2.media_type().as_deref(), Some("application/json"));
        assert_eq!(r2.header("Access-Control-Allow-Origin"), Some("*"));
        Json::parse(&String::from_utf8_lossy(&r2.body)).unwrap()
    };
    let tracks = j.get("tracks").and_then(Json::as_array).expect("tracks");
    let video = tracks
        .iter()
        .find(|t| t.get("type").and_then(Json::as_str) == Some("video"))
        .expect("a video track");
    assert_eq!(video.get("codec").and_then(Json::as_str), Some("H264"));
    assert_eq!(video.get("width").and_then(Json::as_f64), Some(640.0));
    assert_eq!(video.get("height").and_then(Json::as_f64), Some(360.0));
    assert_eq!(video.get("fps").and_then(Json::as_f64), Some(30.0));
    let audio = tracks
        .iter()
        .find(|t| t.get("type").and_then(Json::as_str) == Some("audio"))
        .expect("an audio track");
    assert_eq!(audio.get("codec").and_then(Json::as_str), Some("AAC"));
    assert_eq!(audio.get("rate").and_then(Json::as_f64), Some(48000.0));
    assert_eq!(audio.get("channels").and_then(Json::as_f64), Some(2.0));
    let sources = source_list(&j);
    let types: Vec<&str> = sources.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "html5/application/vnd.apple.mpegurl;version=7",
            "dash/video/mp4",
            "html5/application/vnd.apple.mpegurl",
            "flash/7",
            "html5/video/mpeg",
            "flash/10",
        ],
        "{sources:?}"
    );
    assert!(
        sources.windows(2).all(|w| w[0].2 > w[1].2),
        "priorities not descending: {sources:?}"
    );
    for (t, url, _) in &sources {
        if url.starts_with("rtmp://") {
            let probed = ffprobe_streams(s.dir(), url).unwrap_or_else(|e| panic!("{t} {url}: {e}"));
            assert!(
                probed.iter().any(|p| p.codec_name == "h264"),
                "{url}: {probed:?}"
            );
            continue;
        }
        let progressive = url.ends_with(".flv") || url.ends_with(".ts");
        let args: &[&str] = if progressive {
            &["--max-time", "10", "-I"]
        } else {
            &["--max-time", "10"]
        };
        let r = curl(s.dir(), args, url);
        r.assert_transfer_ok();
        assert_eq!(r.status, 200, "{t} {url}");
    }
    // URLs are made from the request's Host.
    let r = s.curl(
        &["--max-time", "10", "-H", "Host: media.example:8080"],
        "/json_live+js.js",
    );
    r.assert_transfer_ok();
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("\"url\":\"http://media.example:8080/cmaf/live+js/index.m3u8\"")
            && text.contains("\"url\":\"rtmp://media.example:"),
        "{text}"
    );

    // HEVC only: no FLV, no RTMP.
    let j = sources_json(&s, "/json_hevc.js");
    let tracks = j.get("tracks").and_then(Json::as_array).expect("tracks");
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert_eq!(tracks[0].get("codec").and_then(Json::as_str), Some("HEVC"));
    assert_eq!(tracks[0].get("width").and_then(Json::as_f64), Some(320.0));
    let sources = source_list(&j);
    let types: Vec<&str> = sources.iter().map(|(t, _, _)| t.as_str()).collect();
    assert!(
        !types.contains(&"flash/7") && !types.contains(&"flash/10"),
        "{sources:?}"
    );
    assert_eq!(
        types.first(),
        Some(&"html5/application/vnd.apple.mpegurl;version=7")
    );
    for (t, url, _) in &sources {
        let progressive = url.ends_with(".ts");
        let args: &[&str] = if progressive {
            &["--max-time", "10", "-I"]
        } else {
            &["--max-time", "10"]
        };
        let r = curl(s.dir(), args, url);
        r.assert_transfer_ok();
        assert_eq!(r.status, 200, "{t} {url}");
    }
    let probed = ffprobe_streams(s.dir(), &sources[0].1).unwrap_or_else(|e| panic!("{e}"));
    assert!(probed.iter().any(|p| p.codec_name == "hevc"), "{probed:?}");

    // A stream that needs a token: listed, its URLs carry the request's.
    let mut p2 = publish(s.dir(), &s.rtmp_url("live", "sec"), &stream_of(60));
    let token = mint(&s, "sec", "600");
    let q = format!("?token={token}");
    s.wait_flv_path(
        &format!("/{}.flv{}", "sec", &q),
        &mut p2,
        Duration::from_secs(25),
    );
    let j = sources_json(&s, &format!("/json_sec.js{q}"));
    let sources = source_list(&j);
    assert_eq!(sources.len(), 6, "{sources:?}");
    for (t, url, _) in &sources {
        assert!(url.ends_with(&q), "{t} {url}");
        if url.starts_with("http") && !url.ends_with(&format!(".flv{q}")) && !url.contains(".ts?") {
            let r = curl(s.dir(), &["--max-time", "10"], url);
            assert_eq!(r.status, 200, "{t} {url}");
            let bare = url.split('?').next().unwrap();
            assert_eq!(
                curl(s.dir(), &["--max-time", "10"], bare).status,
                403,
                "{bare}"
            );
        }
    }
}

#[test]
fn hls_js_and_dash_js_play_a_token_protected_stream() {
    let name = "live+web";
    let s = Spate::builder()
        .label("access_browsers")
        .stream("live", &[("require_play_token", "true")])
        .extra_toml(&format!("[access]\nplay_secret = \"{SECRET}\"\n"))
        .start();
    let token = mint(&s, name, "600");
    let q = format!("?token={token}");
    let mut p = publish(s.dir(), &s.rtmp_url("live", name), &stream_of(90));
    s.wait_flv_path(
        &format!("/{}.flv{}", name, &q),
        &mut p,
        Duration::from_secs(25),
    );
    wait_200(&s, &format!("/cmaf/{name}/index.mpd{q}"));
    for (player, src) in [
        (Player::HlsJs, format!("/cmaf/{name}/index.m3u8{q}")),
        (Player::HlsJs, format!("/hls/{name}/index.m3u8{q}")),
        (Player::DashJs, format!("/cmaf/{name}/index.mpd{q}")),
    ] {
        let pb = play_in_chromium(
            s.dir(),
            &s.url(""),
            player,
            &src,
            5.0,
            Duration::from_secs(60),
        );
        pb.assert_played(5.0);
        assert!(
            pb.requests
                .iter()
                .all(|r| !r.starts_with("403") && !r.contains(" 403 ")),
            "{src}: a request was refused: {:#?}",
            pb.requests
        );
    }
}

#[test]
fn a_reload_replaces_the_publish_keys() {
    let s = Spate::builder()
        .label("access_reload")
        .stream("live", &[("require_publish_key", "true")])
        .extra_toml("[access]\npublish_keys = { oldkey1 = \"live+alice\" }\n")
        .start();
    let text = std::fs::read_to_string(s.config_path()).unwrap();
    assert!(text.contains("oldkey1"), "{text}");
    std::fs::write(s.config_path(), text.replace("oldkey1", "newkey2")).unwrap();
    s.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .stderr()
            .contains("configuration reloaded")),
        "no reload: {}",
        s.stderr()
    );
    let mut old = publish(s.dir(), &s.rtmp_url("live", "oldkey1"), &stream_of(30));
    let status = old.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|st| !st.success()),
        "publishing with a removed key should fail: {status:?}"
    );
    let mut p = publish(s.dir(), &s.rtmp_url("live", "newkey2"), &stream_of(30));
    s.wait_flv_path(
        &format!("/{}.flv{}", "live+alice", ""),
        &mut p,
        Duration::from_secs(25),
    );
}
