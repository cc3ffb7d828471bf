//! The control API, `/metrics` and `/healthz`, driven by curl against the
//! real `spate` binary: every route's happy and error paths, auth from a
//! non-loopback address (inside a private network namespace), limits that
//! a bad client hits (huge, malformed, deep bodies, stalled connections),
//! kicking a live HTTP-FLV viewer while another keeps receiving, metrics
//! read by the real Prometheus parser (PyPI `prometheus_client`), and
//! docs/api.yaml compared with the routes the server has.
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use spate_tests::{
    CurlResponse, FlvViewer, Json, Spate, SpateBuilder, TestStream, curl, in_private_netns,
    publish, run_with_timeout, venv_python, wait_until, workspace_root,
};

/// `curl -X METHOD [--data-binary @body] http://127.0.0.1:<api port>PATH`.
fn api(s: &Spate, method: &str, path: &str, body: Option<&str>) -> CurlResponse {
    api_at(
        s,
        &format!("http://127.0.0.1:{}", s.api_port()),
        method,
        path,
        body,
        &[],
    )
}

/// The same against `base` (another address of the server), with `extra`
/// curl arguments.
fn api_at(
    s: &Spate,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &[&str],
) -> CurlResponse {
    let mut args: Vec<String> = vec!["-X".into(), method.into()];
    if let Some(b) = body {
        let file = s.dir().join(format!(
            "api-body-{}.json",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::write(&file, b).expect("write request body");
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            format!("@{}", file.display()),
        ]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(s.dir(), &args, &format!("{base}{path}"));
    r.assert_transfer_ok();
    r
}

/// The body as JSON, panicking with the response if it is not.
fn json(r: &CurlResponse) -> Json {
    assert_eq!(
        r.media_type().as_deref(),
        Some("application/json"),
        "{}: {:?}",
        r.command,
        r.headers
    );
    Json::parse(&String::from_utf8_lossy(&r.body))
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", r.command, body_text(r)))
}

fn body_text(r: &CurlResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Expect `status` and a JSON error whose message contains `needle`.
fn assert_error(r: &CurlResponse, status: u16, code: &str, needle: &str) {
    r.assert_status(status);
    let j = json(r);
    assert_eq!(
        j.get("code").and_then(Json::as_str),
        Some(code),
        "{}: {}",
        r.command,
        body_text(r)
    );
    let msg = j.get("error").and_then(Json::as_str).unwrap_or_default();
    assert!(
        msg.contains(needle),
        "{}: error {msg:?} does not mention {needle:?}",
        r.command
    );
}

fn num(j: &Json, path: &[&str]) -> f64 {
    let mut v = j;
    for k in path {
        v = v
            .get(k)
            .unwrap_or_else(|| panic!("no {path:?} in {j:?} (at {k})"));
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v:?}"))
}

fn array<'a>(j: &'a Json, key: &str) -> &'a [Json] {
    j.get(key)
        .and_then(Json::as_array)
        .unwrap_or_else(|| panic!("no array {key:?} in {j:?}"))
}

fn str_of<'a>(j: &'a Json, key: &str) -> &'a str {
    j.get(key).and_then(Json::as_str).unwrap_or_default()
}

#[test]
fn every_route_answers_and_bad_requests_get_the_right_errors() {
    let s = Spate::builder()
        .label("api_routes")
        .stream("live", &[])
        .api("token", "\"hunter2\"")
        .api("max_body_bytes", "1024")
        .start();

    let r = api(&s, "GET", "/healthz", None);
    r.assert_status(200);
    assert_eq!(body_text(&r), "ok\n");
    // HEAD: the same head, no body.
    let mut c = TcpStream::connect(s.api_addr()).expect("connect to the API");
    c.write_all(b"HEAD /healthz HTTP/1.1\r\nHost: spate\r\n\r\n")
        .expect("send HEAD");
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200 ")
            && out.contains("Content-Length: 3\r\n")
            && out.ends_with("\r\n\r\n"),
        "HEAD /healthz: {out:?}"
    );

    // Streams: the configured one is listed, offline.
    let j = json(api(&s, "GET", "/api/streams", None).assert_status(200));
    let streams = array(&j, "streams");
    assert_eq!(streams.len(), 1, "{j:?}");
    assert_eq!(str_of(&streams[0], "name"), "live");
    assert_eq!(str_of(&streams[0], "state"), "offline");
    let j = json(api(&s, "GET", "/api/streams/live", None).assert_status(200));
    assert_eq!(str_of(&j, "state"), "offline");
    assert_error(
        &api(&s, "GET", "/api/streams/nope", None),
        404,
        "not_found",
        "nope",
    );

    // Routes and methods.
    assert_error(&api(&s, "GET", "/nope", None), 404, "no_route", "/nope");
    assert_error(&api(&s, "GET", "/api/nope/x", None), 404, "no_route", "");
    let r = api(&s, "PUT", "/api/streams", None);
    assert_error(&r, 405, "method_not_allowed", "PUT");
    assert_eq!(r.header("allow"), Some("GET, POST"), "{:?}", r.headers);
    assert_error(
        &api(&s, "DELETE", "/api/totals", None),
        405,
        "method_not_allowed",
        "",
    );

    // Bodies: malformed, unknown field, wrong type, deep, huge, empty.
    assert_error(
        &api(&s, "POST", "/api/streams", Some("{\"name\": ")),
        400,
        "bad_request",
        "EOF",
    );
    assert_error(
        &api(
            &s,
            "POST",
            "/api/streams",
            Some(r#"{"name": "x", "bufer_seconds": 3}"#),
        ),
        400,
        "bad_request",
        "bufer_seconds",
    );
    assert_error(
        &api(
            &s,
            "POST",
            "/api/streams",
            Some(r#"{"name": "x", "buffer_seconds": "lots"}"#),
        ),
        400,
        "bad_request",
        "invalid type",
    );
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    assert_error(
        &api(&s, "POST", "/api/sessions/kick", Some(&deep)),
        400,
        "bad_request",
        "nested deeper",
    );
    let huge = format!(r#"{{"name": "{}"}}"#, "a".repeat(4000));
    assert_error(
        &api(&s, "POST", "/api/streams", Some(&huge)),
        413,
        "too_large",
        "max_body_bytes",
    );
    assert_error(
        &api(&s, "POST", "/api/streams", None),
        400,
        "bad_request",
        "got nothing",
    );
    assert_error(
        &api_at(
            &s,
            &format!("http://127.0.0.1:{}", s.api_port()),
            "POST",
            "/api/streams",
            Some(r#"{"name": "x"}"#),
            &["-H", "Transfer-Encoding: chunked"],
        ),
        411,
        "length_required",
        "Content-Length",
    );
    // Validation of the edited configuration names the key.
    assert_error(
        &api(&s, "POST", "/api/streams", Some(r#"{"name": "a+b"}"#)),
        400,
        "bad_request",
        "stream.name",
    );

    // Add, read, remove a stream at runtime.
    let r = api(
        &s,
        "POST",
        "/api/streams",
        Some(r#"{"name": "extra", "buffer_seconds": 3.0, "segment_duration": 2.0}"#),
    );
    let j = json(r.assert_status(200));
    assert!(str_of(&j, "summary").contains("extra"), "{}", body_text(&r));
    let j = json(api(&s, "GET", "/api/streams/extra", None).assert_status(200));
    assert_eq!(j.get("configured").and_then(Json::as_bool), Some(true));
    let cfg = json(api(&s, "GET", "/api/config", None).assert_status(200));
    let cfg_text = format!("{cfg:?}");
    assert!(cfg_text.contains("extra"), "{cfg_text}");
    assert!(
        !cfg_text.contains("hunter2") && cfg_text.contains("<redacted>"),
        "token not redacted: {cfg_text}"
    );
    api(&s, "DELETE", "/api/streams/extra", None).assert_status(200);
    assert_error(
        &api(&s, "DELETE", "/api/streams/extra", None),
        404,
        "not_found",
        "extra",
    );
    assert_error(
        &api(&s, "GET", "/api/streams/extra", None),
        404,
        "not_found",
        "extra",
    );

    // Sessions: none yet; bad ids and bodies.
    let j = json(api(&s, "GET", "/api/sessions", None).assert_status(200));
    assert!(array(&j, "sessions").is_empty(), "{j:?}");
    assert_error(
        &api(&s, "DELETE", "/api/sessions/garbage", None),
        400,
        "bad_request",
        "session id",
    );
    assert_error(
        &api(&s, "DELETE", "/api/sessions/w0/c9999.0", None),
        404,
        "not_found",
        "w0/c9999.0",
    );
    assert_error(
        &api(&s, "POST", "/api/sessions/kick", Some("{}")),
        400,
        "bad_request",
        "`id` or `stream`",
    );
    assert_error(
        &api(&s, "POST", "/api/sessions/kick", Some(r#"{"who": 1}"#)),
        400,
        "bad_request",
        "who",
    );
    let j = json(
        api(
            &s,
            "POST",
            "/api/sessions/kick",
            Some(r#"{"stream": "live"}"#),
        )
        .assert_status(200),
    );
    assert_eq!(num(&j, &["kicked"]), 0.0);

    // Totals.
    let j = json(api(&s, "GET", "/api/totals", None).assert_status(200));
    assert_eq!(num(&j, &["workers"]), 2.0);
    assert_eq!(num(&j, &["workers_answering"]), 2.0);
    assert!(num(&j, &["counters", "accepted"]) >= 0.0);

    // Push rules: add, conflict, list, remove, remove again.
    let rule = r#"{"stream": "live+", "target": "tsudp://127.0.0.1:9?ttl=1"}"#;
    api(&s, "POST", "/api/push_rules", Some(rule)).assert_status(200);
    assert_error(
        &api(&s, "POST", "/api/push_rules", Some(rule)),
        409,
        "conflict",
        "already",
    );
    let j = json(api(&s, "GET", "/api/push_rules", None).assert_status(200));
    assert_eq!(array(&j, "rules").len(), 1, "{j:?}");
    let j = json(api(&s, "GET", "/api/pushes", None).assert_status(200));
    assert_eq!(array(&j, "rules").len(), 1, "{j:?}");
    assert!(array(&j, "running").is_empty(), "{j:?}");
    assert_error(
        &api(&s, "POST", "/api/pushes", Some(rule)),
        400,
        "bad_request",
        "one stream",
    );
    assert_error(
        &api(
            &s,
            "POST",
            "/api/push_rules",
            Some(r#"{"stream": "live", "target": "carrier-pigeon://x"}"#),
        ),
        400,
        "bad_request",
        "push.target",
    );
    api(&s, "DELETE", "/api/push_rules", Some(rule)).assert_status(200);
    assert_error(
        &api(&s, "DELETE", "/api/push_rules", Some(rule)),
        404,
        "not_found",
        "live+",
    );
    let one = r#"{"stream": "live", "target": "tsudp://127.0.0.1:9?ttl=1"}"#;
    api(&s, "POST", "/api/pushes", Some(one)).assert_status(200);
    api(&s, "DELETE", "/api/pushes", Some(one)).assert_status(200);

    // Reload: good file, then a typo (refused, old config stays, error
    // reported), then good again.
    let j = json(api(&s, "POST", "/api/reload", None).assert_status(200));
    assert_eq!(j.get("ok").and_then(Json::as_bool), Some(true));
    let good = std::fs::read_to_string(s.config_path()).expect("read config");
    std::fs::write(
        s.config_path(),
        format!("{good}\n[live]\nbufer_seconds = 3\n"),
    )
    .expect("write config");
    assert_error(
        &api(&s, "POST", "/api/reload", None),
        400,
        "bad_request",
        "bufer_seconds",
    );
    let cfg = json(api(&s, "GET", "/api/config", None).assert_status(200));
    assert!(
        str_of(&cfg, "last_reload_error").contains("bufer_seconds"),
        "{cfg:?}"
    );
    let j = json(api(&s, "GET", "/api/streams/live", None).assert_status(200));
    assert_eq!(str_of(&j, "name"), "live");
    std::fs::write(s.config_path(), &good).expect("write config");
    api(&s, "POST", "/api/reload", None).assert_status(200);
    let cfg = json(api(&s, "GET", "/api/config", None).assert_status(200));
    assert_eq!(cfg.get("last_reload_error"), Some(&Json::Null), "{cfg:?}");

    // The HTTP and RTMP listeners never saw any of this.
    s.get("/index.html").assert_status(200);
    assert!(
        s.stderr().contains("API, /metrics and /healthz on"),
        "{}",
        s.stderr()
    );
}

#[test]
fn stalled_clients_cannot_hold_the_api() {
    let s = Spate::builder()
        .label("api_stalled")
        .api("max_connections", "2")
        .start();
    // Two clients that send half a head and stop: every slot is taken.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.api_addr()).expect("connect to the API");
        c.write_all(b"GET /api/totals HTTP/1.1\r\nHost: x\r\n")
            .expect("write half a head");
        stalled.push(c);
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            api(&s, "GET", "/healthz", None).status == 503
        }),
        "a third client was not answered 503 while two stalled clients held every slot"
    );
    // The stalled clients are dropped by the API's timeouts (we keep our
    // sockets open): service comes back without them closing.
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            api(&s, "GET", "/healthz", None).status == 200
        }),
        "the API did not recover from two stalled clients within 20 s"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "recovery took {:?}",
        start.elapsed()
    );
    drop(stalled);
    // A garbage head is answered 400 and the API keeps going.
    let mut c = TcpStream::connect(s.api_addr()).expect("connect");
    c.write_all(b"\x01\x02 garbage\r\n\r\n").expect("write");
    let mut out = Vec::new();
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = std::io::Read::read_to_end(&mut c, &mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    api(&s, "GET", "/api/totals", None).assert_status(200);
}

/// Inside a private network namespace: give loopback a second, non-loopback
/// address, so a client can reach the API from it.
fn add_address(addr: &str) {
    let out = Command::new("ip")
        .args(["addr", "add", addr, "dev", "lo"])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip addr add {addr} dev lo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn non_loopback_clients_need_the_token_unless_trusted() {
    in_private_netns(|| {
        add_address("10.77.0.1/32");
        let s = Spate::builder()
            .label("api_auth")
            .api("bind", "\"0.0.0.0\"")
            .api("token", "\"s3cret-token\"")
            .start();
        let far = format!("http://10.77.0.1:{}", s.api_port());
        let from_far = ["--interface", "10.77.0.1"];
        for path in ["/api/totals", "/metrics", "/healthz"] {
            let r = api_at(&s, &far, "GET", path, None, &from_far);
            assert_error(&r, 401, "unauthorized", "Bearer");
            assert!(r.header("www-authenticate").is_some(), "{:?}", r.headers);
        }
        let wrong = [
            "--interface",
            "10.77.0.1",
            "-H",
            "Authorization: Bearer nope",
        ];
        assert_error(
            &api_at(&s, &far, "GET", "/api/totals", None, &wrong),
            401,
            "unauthorized",
            "wrong",
        );
        // An unauthenticated client is refused before its body is judged.
        let r = api_at(
            &s,
            &far,
            "POST",
            "/api/streams",
            Some("{not json"),
            &from_far,
        );
        assert_error(&r, 401, "unauthorized", "");
        let right = [
            "--interface",
            "10.77.0.1",
            "-H",
            "Authorization: Bearer s3cret-token",
        ];
        let r = api_at(&s, &far, "GET", "/api/totals", None, &right);
        assert_eq!(num(&json(r.assert_status(200)), &["workers"]), 2.0);
        // Loopback needs nothing.
        api(&s, "GET", "/api/totals", None).assert_status(200);
        // A reload with a new token: the old one stops working at once.
        let text = std::fs::read_to_string(s.config_path()).expect("read config");
        assert!(text.contains("s3cret-token"), "{text}");
        std::fs::write(s.config_path(), text.replace("s3cret-token", "n3w-token"))
            .expect("write config");
        api(&s, "POST", "/api/reload", None).assert_status(200);
        assert_error(
            &api_at(&s, &far, "GET", "/api/totals", None, &right),
            401,
            "unauthorized",
            "wrong",
        );
        let new = [
            "--interface",
            "10.77.0.1",
            "-H",
            "Authorization: Bearer n3w-token",
        ];
        api_at(&s, &far, "GET", "/api/totals", None, &new).assert_status(200);
        drop(s);

        // A trusted network needs no token; an empty token refuses the rest.
        let s = Spate::builder()
            .label("api_trusted")
            .api("bind", "\"0.0.0.0\"")
            .api("trusted", "[\"10.77.0.0/24\"]")
            .start();
        let far = format!("http://10.77.0.1:{}", s.api_port());
        api_at(&s, &far, "GET", "/api/totals", None, &from_far).assert_status(200);
        drop(s);
        let s = Spate::builder()
            .label("api_untrusted")
            .api("bind", "\"0.0.0.0\"")
            .api("trusted", "[\"10.78.0.0/16\"]")
            .start();
        let far = format!("http://10.77.0.1:{}", s.api_port());
        let any = ["--interface", "10.77.0.1", "-H", "Authorization: Bearer "];
        assert_error(
            &api_at(&s, &far, "GET", "/api/totals", None, &any),
            401,
            "unauthorized",
            "",
        );
    })
    .expect("a private network namespace (the tests run as root)");
}

#[test]
fn a_bad_trusted_entry_or_a_busy_api_port_fails_the_start_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let b = Spate::builder().api("port", &port.to_string());
    let text = b.config_text(
        spate_tests::free_port(),
        spate_tests::free_port(),
        port,
        std::path::Path::new("/tmp"),
    );
    let dir = spate_tests::ScratchDir::new("api_busy");
    let cfg = dir.path().join("spate.toml");
    std::fs::write(&cfg, text).expect("write config");
    let out = spate_tests::run_spate(
        &["--config", cfg.to_str().expect("utf-8 path")],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("api.port"), "{}", out.stderr);

    let text = SpateBuilder::new()
        .api("trusted", "[\"10.0.0.0/40\"]")
        .config_text(1, 2, 3, std::path::Path::new("/tmp"));
    std::fs::write(&cfg, text).expect("write config");
    let out = spate_tests::run_spate(
        &["--config", cfg.to_str().expect("utf-8 path")],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("api.trusted"), "{}", out.stderr);
}

/// Parse Prometheus text with the real parser (`prometheus_client`):
/// (family name → type, samples as (name, labels, value)).
struct Scrape {
    families: Vec<(String, String)>,
    samples: Vec<Sample>,
}

/// A sample: name, labels (sorted), value.
type Sample = (String, Vec<(String, String)>, f64);

const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
fams, samples = [], []
for f in text_string_to_metric_families(text):
    fams.append([f.name, f.type])
    for s in f.samples:
        samples.append([s.name, sorted(s.labels.items()), s.value])
print(json.dumps({"families": fams, "samples": samples}))
"#;

fn scrape(s: &Spate) -> Scrape {
    let r = api(s, "GET", "/metrics", None);
    r.assert_status(200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let file = s.dir().join("metrics.txt");
    std::fs::write(&file, &r.body).expect("write metrics");
    let mut cmd = Command::new(venv_python());
    cmd.arg("-c").arg(PARSE_PY).arg(&file);
    let out = run_with_timeout(cmd, s.dir(), "prom-parse", Duration::from_secs(30));
    assert!(
        out.success(),
        "prometheus_client rejects /metrics: {}\n---- metrics ----\n{}",
        out.stderr,
        body_text(&r)
    );
    let j = Json::parse(out.stdout.lines().last().unwrap_or("")).expect("parser output");
    let families = array(&j, "families")
        .iter()
        .map(|f| {
            let f = f.as_array().expect("pair");
            (
                f[0].as_str().unwrap_or_default().to_string(),
                f[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let samples = array(&j, "samples")
        .iter()
        .map(|x| {
            let x = x.as_array().expect("triple");
            let labels = x[1]
                .as_array()
                .unwrap_or_default()
                .iter()
                .map(|kv| {
                    let kv = kv.as_array().expect("label pair");
                    (
                        kv[0].as_str().unwrap_or_default().to_string(),
                        kv[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (
                x[0].as_str().unwrap_or_default().to_string(),
                labels,
                x[2].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    Scrape { families, samples }
}

impl Scrape {
    fn kind(&self, family: &str) -> Option<&str> {
        self.families
            .iter()
            .find(|(n, _)| n == family)
            .map(|(_, t)| t.as_str())
    }

    /// The value of the sample `name` with exactly these labels (0 if absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map_or(0.0, |(_, _, v)| *v)
    }
}

fn has_keyframe(v: &FlvViewer) -> bool {
    v.log().video().any(|r| r.tag.keyframe && !r.tag.config)
}

fn flv_sessions(s: &Spate) -> Vec<Json> {
    let j = json(api(s, "GET", "/api/sessions", None).assert_status(200));
    array(&j, "sessions")
        .iter()
        .filter(|x| str_of(x, "connector") == "http-flv")
        .cloned()
        .collect()
}

#[test]
fn live_stream_sessions_kick_and_metrics_move() {
    // A push of the stream to a UDP socket of ours, so it shows as running.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP sink");
    let push_target = format!(
        "tsudp://127.0.0.1:{}",
        sink.local_addr().expect("sink address").port()
    );
    let s = Spate::builder()
        .label("api_live")
        .stream("live", &[])
        .push("live", &push_target)
        .start();
    let mut publisher = publish(
        s.dir(),
        &s.rtmp_url("live", "live"),
        &TestStream {
            seconds: 60,
            ..TestStream::sized(320, 240)
        },
    );
    s.wait_flv_live("live", &mut publisher, Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(5), || flv_sessions(&s).is_empty()),
        "the probe viewer's session did not go away"
    );
    // The stream is live; its first segment is cut up to a segment
    // duration (2 s) later.
    let mut m0 = scrape(&s);
    let deadline = Instant::now() + Duration::from_secs(15);
    while m0.value("spate_segments_packaged_total", &[]) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        m0 = scrape(&s);
    }
    for (family, kind) in [
        ("spate_connections", "gauge"),
        ("spate_connections_accepted", "counter"),
        ("spate_bytes_out", "counter"),
        ("spate_viewers", "gauge"),
        ("spate_connection_errors", "counter"),
        ("spate_segments_packaged", "counter"),
        ("spate_segment_store_arenas", "gauge"),
        ("spate_loop_utilisation", "gauge"),
        ("spate_loop_turn_seconds", "summary"),
        ("spate_mesh_drops", "counter"),
        ("spate_source_errors", "counter"),
        ("spate_push_errors", "counter"),
        ("spate_publish_refused", "counter"),
        ("spate_viewer_skips", "counter"),
        ("spate_viewers_dropped", "counter"),
    ] {
        assert_eq!(m0.kind(family), Some(kind), "family {family}");
    }
    let flv = [("stream", "live"), ("protocol", "flv")];
    assert_eq!(m0.value("spate_viewers", &flv), 0.0);
    assert!(m0.value("spate_segments_packaged_total", &[]) >= 1.0);
    assert!(m0.value("spate_segment_store_arenas", &[("stream", "live")]) >= 1.0);
    assert!(
        m0.value(
            "spate_stream_bytes_in_total",
            &[("stream", "live"), ("connector", "rtmp")]
        ) > 0.0
    );
    assert_eq!(m0.value("spate_connections", &[("protocol", "rtmp")]), 1.0);
    for w in ["0", "1"] {
        assert!(m0.value("spate_loop_turn_seconds_count", &[("worker", w)]) > 0.0);
        let u = m0.value("spate_loop_utilisation", &[("worker", w)]);
        assert!((0.0..=1.0).contains(&u), "utilisation {u}");
    }

    // First viewer: find its session, then a second viewer.
    let v1 = FlvViewer::start(s.addr(), "/live.flv");
    assert!(wait_until(Duration::from_secs(10), || has_keyframe(&v1)));
    let sessions = flv_sessions(&s);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let v1_id = str_of(&sessions[0], "id").to_string();
    assert_eq!(str_of(&sessions[0], "stream"), "live");
    assert_eq!(str_of(&sessions[0], "role"), "viewer");
    assert!(str_of(&sessions[0], "peer").starts_with("127.0.0.1:"));
    let v2 = FlvViewer::start(s.addr(), "/live.flv");
    assert!(wait_until(Duration::from_secs(10), || has_keyframe(&v2)));
    std::thread::sleep(Duration::from_secs(1));

    let j = json(api(&s, "GET", "/api/streams/live", None).assert_status(200));
    assert_eq!(str_of(&j, "state"), "live", "{j:?}");
    assert_eq!(str_of(&j, "connector"), "rtmp");
    assert_eq!(num(&j, &["viewers", "flv"]), 2.0, "{j:?}");
    assert!(num(&j, &["bitrate_in"]) > 10_000.0, "{j:?}");
    let tracks = array(&j, "tracks");
    let video = tracks.iter().find(|t| str_of(t, "kind") == "video");
    let audio = tracks.iter().find(|t| str_of(t, "kind") == "audio");
    let (video, audio) = (video.expect("video track"), audio.expect("audio track"));
    assert_eq!(str_of(video, "codec"), "h264");
    assert_eq!(
        (num(video, &["width"]), num(video, &["height"])),
        (320.0, 240.0)
    );
    assert_eq!(str_of(audio, "codec"), "aac");
    assert_eq!(num(audio, &["sample_rate"]), 48000.0);
    let j = json(api(&s, "GET", "/api/streams", None).assert_status(200));
    assert_eq!(array(&j, "streams").len(), 1, "{j:?}");

    let all = json(api(&s, "GET", "/api/sessions", None).assert_status(200));
    let all = array(&all, "sessions");
    let publ: Vec<_> = all
        .iter()
        .filter(|x| str_of(x, "role") == "publisher")
        .collect();
    assert_eq!(publ.len(), 1, "{all:?}");
    assert_eq!(str_of(publ[0], "connector"), "rtmp");
    assert!(num(publ[0], &["bytes_up"]) > 10_000.0, "{all:?}");
    let viewers: Vec<_> = all
        .iter()
        .filter(|x| str_of(x, "role") == "viewer")
        .collect();
    assert_eq!(viewers.len(), 2, "{all:?}");
    assert!(
        viewers.iter().all(|v| num(v, &["bytes_down"]) > 1000.0),
        "{all:?}"
    );

    let j = json(api(&s, "GET", "/api/pushes", None).assert_status(200));
    let running = array(&j, "running");
    assert_eq!(running.len(), 1, "{j:?}");
    assert_eq!(str_of(&running[0], "stream"), "live");
    assert_eq!(str_of(&running[0], "target"), push_target);
    assert_eq!(array(&j, "rules").len(), 1, "{j:?}");

    let m1 = scrape(&s);
    assert_eq!(m1.value("spate_pushes_running", &[]), 1.0);
    assert_eq!(m1.value("spate_viewers", &flv), 2.0);
    let out0 = m0.value("spate_bytes_out_total", &[("path", "live")]);
    let out1 = m1.value("spate_bytes_out_total", &[("path", "live")]);
    assert!(out1 > out0 + 10_000.0, "live bytes out {out0} -> {out1}");
    let acc0 = m0.value("spate_connections_accepted_total", &[("protocol", "http")]);
    let acc1 = m1.value("spate_connections_accepted_total", &[("protocol", "http")]);
    assert!(acc1 >= acc0 + 2.0, "accepted {acc0} -> {acc1}");
    assert!(m1.value("spate_connections", &[("protocol", "http")]) >= 2.0);

    // Kick the first viewer by id: it is closed, the second keeps getting
    // media.
    let path = format!("/api/sessions/{v1_id}");
    let j = json(api(&s, "DELETE", &path, None).assert_status(200));
    assert_eq!(num(&j, &["kicked"]), 1.0);
    let kicked_at = v2.elapsed();
    assert!(
        wait_until(Duration::from_secs(5), || v1.log().ended.is_some()),
        "the kicked viewer is still connected: {}",
        v1.log().summary()
    );
    let ts_at_kick = v2.log().media().map(|r| r.tag.timestamp).max().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    let l2 = v2.log();
    assert!(
        l2.ended.is_none(),
        "the other viewer was cut: {}",
        l2.summary()
    );
    let later = l2
        .max_ts_since(kicked_at + Duration::from_secs(2))
        .unwrap_or(0);
    assert!(
        later >= ts_at_kick + 1500,
        "the other viewer stalled after the kick: {ts_at_kick} ms -> {later} ms; {}",
        l2.summary()
    );
    assert_error(&api(&s, "DELETE", &path, None), 404, "not_found", &v1_id);
    assert_eq!(flv_sessions(&s).len(), 1);

    let m2 = scrape(&s);
    assert_eq!(m2.value("spate_viewers", &flv), 1.0);
    assert_eq!(m2.value("spate_sessions_kicked_total", &[]), 1.0);

    // A TS viewer and HLS/DASH requests are counted too.
    let mut ts = TcpStream::connect(s.addr()).expect("connect");
    ts.write_all(b"GET /live.ts HTTP/1.1\r\nHost: spate\r\n\r\n")
        .expect("request /live.ts");
    let ts_viewers = || {
        let j = json(api(&s, "GET", "/api/streams/live", None).assert_status(200));
        num(&j, &["viewers", "ts"])
    };
    assert!(
        wait_until(Duration::from_secs(10), || ts_viewers() == 1.0),
        "the /live.ts viewer is not counted"
    );
    s.get("/hls/live/index.m3u8").assert_status(200);
    s.get("/hls/live/media.m3u8").assert_status(200);
    s.get("/cmaf/live/index.mpd").assert_status(200);
    let j = json(api(&s, "GET", "/api/streams/live", None).assert_status(200));
    assert_eq!(num(&j, &["viewers", "hls_requests"]), 2.0, "{j:?}");
    assert_eq!(num(&j, &["viewers", "cmaf_requests"]), 1.0, "{j:?}");
    assert_eq!(num(&j, &["viewers", "total"]), 2.0, "{j:?}");
    assert!(num(&j, &["segments"]) >= 1.0, "{j:?}");
    let m3 = scrape(&s);
    assert_eq!(
        m3.value("spate_viewers", &[("stream", "live"), ("protocol", "ts")]),
        1.0
    );
    assert_eq!(
        m3.value(
            "spate_stream_segmented_requests_total",
            &[("stream", "live"), ("kind", "hls")]
        ),
        2.0
    );
    let seg0 = m0.value("spate_http_segmented_requests_total", &[]);
    let seg3 = m3.value("spate_http_segmented_requests_total", &[]);
    assert_eq!(seg3, seg0 + 3.0, "segmented requests {seg0} -> {seg3}");

    // Kick every session of the stream: the viewers and the publisher.
    let j = json(
        api(
            &s,
            "POST",
            "/api/sessions/kick",
            Some(r#"{"stream": "live"}"#),
        )
        .assert_status(200),
    );
    assert_eq!(num(&j, &["kicked"]), 3.0, "{j:?}");
    drop(ts);
    assert!(
        wait_until(Duration::from_secs(5), || v2.log().ended.is_some()),
        "{}",
        v2.log().summary()
    );
    assert!(
        publisher.wait_exit(Duration::from_secs(15)).is_some(),
        "ffmpeg kept publishing after its session was kicked"
    );
    let t = json(api(&s, "GET", "/api/totals", None).assert_status(200));
    assert_eq!(num(&t, &["counters", "kicked"]), 4.0, "{t:?}");
}

/// `(METHOD, path)` of every operation in docs/api.yaml, read line by line:
/// path keys are indented two spaces under `paths:`, operations four.
fn documented_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("docs/api.yaml"))
        .expect("read docs/api.yaml");
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = Some(format!("/{}", p.trim_end().trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ")
            && !m.starts_with(' ')
        {
            let m = m.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone().expect("a path before it")));
            }
        }
    }
    out
}

#[test]
fn docs_api_yaml_documents_every_route_and_only_those() {
    let documented = documented_routes();
    assert!(documented.len() >= 15, "{documented:?}");
    let s = Spate::builder()
        .label("api_docs")
        .stream("live", &[])
        .start();
    let j = json(api(&s, "GET", "/api", None).assert_status(200));
    let served: BTreeSet<(String, String)> = array(&j, "routes")
        .iter()
        .map(|r| {
            (
                str_of(r, "method").to_string(),
                str_of(r, "path").to_string(),
            )
        })
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "served but not in docs/api.yaml: {undocumented:?}\nin docs/api.yaml but not served: {missing:?}"
    );
    // And each documented route really answers (not 404 no_route, not 405).
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "doc-check-nonexistent")
            .replace("{id}", "w0/c999999.0");
        let body = (method == "POST" || method == "DELETE").then_some("{}");
        let r = api(&s, method, &concrete, body);
        assert_ne!(r.status, 405, "{method} {concrete}: {}", body_text(&r));
        if r.status == 404 {
            let j = json(&r);
            assert_ne!(
                str_of(&j, "code"),
                "no_route",
                "{method} {concrete} is documented but not served"
            );
        }
    }
}
