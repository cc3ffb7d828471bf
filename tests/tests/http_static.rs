//! Static files over HTTP/1.1, end to end: the real `spate` against curl, and
//! raw sockets where curl would hide what happens on the wire.
use std::io::{BufReader, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use spate_tests::{
    BIG_FILE, BIG_FILE_LEN, CONTENT_TYPES, LARGE_FILE, LARGE_FILE_LEN, OUTSIDE_SECRET,
    PLAYLIST_FILE, Spate, connect_small_window, curl_bin, read_response, wait_until,
};

fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: body differs: got {} bytes, want {} bytes, first differing offset {:?}",
            got.len(),
            want.len(),
            first_diff
        );
    }
}

#[test]
fn get_serves_file_byte_exact() {
    let s = Spate::start();
    let r = s.get(&format!("/{BIG_FILE}"));
    r.assert_status(200);
    assert_eq!(
        r.header("content-length"),
        Some(BIG_FILE_LEN.to_string().as_str())
    );
    assert_bytes_eq(&r.body, &s.file(BIG_FILE), "GET /big.bin");
    let r = s.get(&format!("/{PLAYLIST_FILE}"));
    r.assert_status(200);
    assert_eq!(r.body.len(), 1024);
    assert_bytes_eq(&r.body, &s.file(PLAYLIST_FILE), "GET /playlist.m3u8");
}

#[test]
fn keep_alive_reuses_one_connection_for_two_urls() {
    let s = Spate::start();
    let out = Command::new(curl_bin())
        .args([
            "-sv",
            "--max-time",
            "60",
            "-w",
            "%{http_code} %{size_download}\n",
        ])
        .args(["-o", "/dev/null", &s.url("/index.html")])
        .args(["-o", "/dev/null", &s.url(&format!("/{BIG_FILE}"))])
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "curl failed: {}\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "two transfers expected: {stdout}");
    assert!(lines[0].starts_with("200 "), "first transfer: {stdout}");
    assert_eq!(
        lines[1],
        format!("200 {BIG_FILE_LEN}"),
        "second transfer: {stdout}"
    );
    // curl 7.88 prints "Re-using existing connection #0 with host 127.0.0.1";
    // 8.x prints "Re-using existing connection with host 127.0.0.1".
    assert!(
        stderr.contains("Re-using existing connection"),
        "curl opened a new connection for the second URL (no keep-alive):\n{stderr}"
    );
    assert_eq!(
        stderr.matches("Connected to").count(),
        1,
        "curl connected more than once:\n{stderr}"
    );
}

#[test]
fn keep_alive_survives_a_short_pause_between_requests() {
    let s = Spate::start();
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for i in 0..3 {
        conn.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut reader, false)
            .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        assert_eq!(r.status, 200);
        assert_bytes_eq(&r.body, &s.file("index.html"), "keep-alive body");
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[test]
fn range_requests_get_206_with_content_range() {
    let s = Spate::start();
    let file = s.file(BIG_FILE);
    let len = file.len();
    let path = format!("/{BIG_FILE}");
    for (range, start, end) in [
        ("0-99", 0, 99),
        ("1000-", 1000, len - 1),
        ("-100", len - 100, len - 1),
        ("262000-999999", 262_000, len - 1),
        ("5-5", 5, 5),
    ] {
        let r = s.curl(&["-r", range], &path);
        r.assert_status(206);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str()),
            "Range: bytes={range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "Range: bytes={range}"
        );
        assert_bytes_eq(
            &r.body,
            &file[start..=end],
            &format!("Range: bytes={range}"),
        );
    }
}

#[test]
fn unsatisfiable_range_gets_416() {
    let s = Spate::start();
    let path = format!("/{BIG_FILE}");
    for range in ["300000-400000", "262144-"] {
        let r = s.curl(&["-r", range], &path);
        r.assert_status(416);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{BIG_FILE_LEN}").as_str()),
            "416 for bytes={range} should say the length"
        );
    }
    // The connection stays usable after a 416.
    s.get("/index.html").assert_status(200);
}

#[test]
fn if_none_match_with_current_etag_gets_304() {
    let s = Spate::start();
    let path = format!("/{BIG_FILE}");
    let first = s.get(&path);
    first.assert_status(200);
    let etag = first
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag on 200: {:#?}", first.headers))
        .to_string();
    let r = s.curl(&["-H", &format!("If-None-Match: {etag}")], &path);
    r.assert_status(304);
    assert!(r.body.is_empty(), "304 with a body");
    let r = s.curl(&["-H", "If-None-Match: \"some-other-etag\""], &path);
    r.assert_status(200);
    assert_eq!(r.body.len(), BIG_FILE_LEN);
}

#[test]
fn if_modified_since_gets_304_when_unchanged() {
    let s = Spate::start();
    let path = format!("/{BIG_FILE}");
    let first = s.get(&path);
    first.assert_status(200);
    let lm = first
        .header("last-modified")
        .unwrap_or_else(|| panic!("no Last-Modified on 200: {:#?}", first.headers))
        .to_string();
    let r = s.curl(&["-H", &format!("If-Modified-Since: {lm}")], &path);
    r.assert_status(304);
    assert!(r.body.is_empty(), "304 with a body");
    let r = s.curl(
        &["-H", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT"],
        &path,
    );
    r.assert_status(200);
    assert_eq!(r.body.len(), BIG_FILE_LEN);
}

#[test]
fn head_has_length_and_no_body() {
    let s = Spate::start();
    let r = s.curl(&["-I"], &format!("/{BIG_FILE}"));
    r.assert_status(200);
    assert_eq!(
        r.header("content-length"),
        Some(BIG_FILE_LEN.to_string().as_str())
    );
    // On the wire: a HEAD followed by a GET on one connection. If the HEAD
    // response carried a body, the second response would not parse.
    let mut conn = s.connect();
    conn.write_all(
        format!("HEAD /{BIG_FILE} HTTP/1.1\r\nHost: t\r\n\r\nGET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut reader = BufReader::new(conn);
    let head = read_response(&mut reader, true).expect("HEAD response");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(BIG_FILE_LEN.to_string().as_str())
    );
    let get = read_response(&mut reader, false)
        .expect("GET after HEAD on the same connection (did HEAD send a body?)");
    assert_eq!(get.status, 200, "{}", get.status_line);
    assert_bytes_eq(&get.body, &s.file("index.html"), "GET after HEAD");
}

#[test]
fn missing_file_is_404() {
    let s = Spate::start();
    s.curl(&[], "/no-such-file.ts").assert_status(404);
    s.curl(&[], "/subdir/no-such-file.m3u8").assert_status(404);
    s.curl(&[], "/no-such-dir/x.mp4").assert_status(404);
}

#[test]
fn directories_are_404_without_listing() {
    let s = Spate::start();
    for path in ["/subdir", "/subdir/"] {
        let r = s.curl(&[], path);
        r.assert_status(404);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("inner.txt"),
            "{path} lists the directory"
        );
    }
    s.get("/subdir/inner.txt").assert_status(200);
}

#[test]
fn path_traversal_never_serves_files_outside_the_root() {
    let s = Spate::start();
    let paths = [
        "/../etc/passwd",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc/passwd",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/.%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/subdir/../../outside/secret.txt",
        "/subdir/%2e%2e/%2e%2e/outside/secret.txt",
        "/subdir/..%2f..%2foutside/secret.txt",
        "/escape.txt",
        "/escape_dir/secret.txt",
        "//etc/passwd",
    ];
    for path in paths {
        let r = s.curl(&["--path-as-is"], path);
        r.assert_transfer_ok();
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(OUTSIDE_SECRET) && !body.contains("root:x:0:0"),
            "{path} served a file outside the root! status {}",
            r.status
        );
        assert!(
            r.status == 403 || r.status == 404,
            "{path}: expected 403 or 404, got {}",
            r.status_line
        );
    }
    // Raw request targets curl would not send.
    for target in [
        "../outside/secret.txt",
        "/..\\outside\\secret.txt",
        "/subdir/../../outside/secret.txt",
    ] {
        let mut conn = s.connect();
        conn.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let r = read_response(&mut BufReader::new(conn), false)
            .unwrap_or_else(|e| panic!("GET {target}: no response: {e}"));
        assert!(
            (400..500).contains(&r.status),
            "GET {target}: expected a 4xx, got {}",
            r.status_line
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains(OUTSIDE_SECRET),
            "GET {target} served a file outside the root"
        );
    }
}

#[test]
fn huge_header_gets_431() {
    let s = Spate::start();
    let value = "a".repeat(64 * 1024);
    let r = s.curl(&["-H", &format!("X-Big: {value}")], "/index.html");
    r.assert_status(431);
    // A header just under the default 16 KiB limit is fine.
    let value = "b".repeat(8 * 1024);
    s.curl(&["-H", &format!("X-Big: {value}")], "/index.html")
        .assert_status(200);
}

#[test]
fn too_many_headers_get_431() {
    let s = Spate::start();
    let mut args = Vec::new();
    for i in 0..100 {
        args.push("-H".to_string());
        args.push(format!("X-Many-{i}: {i}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.curl(&args, "/index.html").assert_status(431);
}

#[test]
fn other_methods_get_405() {
    let s = Spate::start();
    for args in [
        &["-X", "POST", "-d", "x"][..],
        &["-X", "PUT", "-d", "x"][..],
        &["-X", "DELETE"][..],
        &["-X", "PATCH", "-d", "x"][..],
    ] {
        let r = s.curl(args, "/index.html");
        r.assert_transfer_ok();
        assert_eq!(r.status, 405, "curl {args:?}: {}", r.status_line);
    }
}

#[test]
fn get_with_a_body_gets_400() {
    let s = Spate::start();
    let r = s.curl(
        &["-X", "GET", "-H", "Expect:", "-d", "hello"],
        "/index.html",
    );
    r.assert_transfer_ok();
    assert_eq!(
        r.status, 400,
        "GET with Content-Length: 5 body: {}",
        r.status_line
    );
    let r = s.curl(
        &[
            "-X",
            "GET",
            "-H",
            "Expect:",
            "-H",
            "Transfer-Encoding: chunked",
            "-d",
            "hello",
        ],
        "/index.html",
    );
    r.assert_transfer_ok();
    assert_eq!(r.status, 400, "GET with a chunked body: {}", r.status_line);
}

#[test]
fn content_types_by_extension() {
    let s = Spate::start();
    let mut wrong = Vec::new();
    for (file, accepted) in CONTENT_TYPES {
        let r = s.get(&format!("/{file}"));
        r.assert_status(200);
        assert_bytes_eq(&r.body, &s.file(file), file);
        let got = r.header("content-type").map(media_type);
        if !got.as_deref().is_some_and(|g| accepted.contains(&g)) {
            wrong.push(format!("{file}: got {got:?}, want one of {accepted:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "wrong Content-Type:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn cors_header_on_files_and_ranges() {
    let s = Spate::start();
    let path = format!("/{PLAYLIST_FILE}");
    let r = s.curl(&["-H", "Origin: http://player.example"], &path);
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "200");
    let r = s.curl(&["-r", "0-9"], &path);
    r.assert_status(206);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "206");
}

#[test]
fn cache_control_default_and_configured() {
    let s = Spate::start();
    let r = s.get("/segment.ts");
    r.assert_status(200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=60"),
        "default"
    );
    drop(s);

    let s = Spate::builder()
        .http("cache_control", "\"no-cache\"")
        .start();
    let r = s.get("/segment.ts");
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("no-cache"), "configured");
    drop(s);

    let s = Spate::builder().http("cache_control", "\"\"").start();
    let r = s.get("/segment.ts");
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), None, "empty = no header");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Spate::start();
    let mut conn = s.connect();
    let requests = format!(
        "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /{PLAYLIST_FILE} HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /{BIG_FILE} HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n"
    );
    conn.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(conn);
    let big = s.file(BIG_FILE);
    let expected: [(u16, Vec<u8>); 3] = [
        (200, s.file("index.html")),
        (200, s.file(PLAYLIST_FILE)),
        (206, big[100..200].to_vec()),
    ];
    for (i, (status, body)) in expected.iter().enumerate() {
        let r = read_response(&mut reader, false)
            .unwrap_or_else(|e| panic!("pipelined response {i}: {e}"));
        assert_eq!(
            r.status, *status,
            "pipelined response {i}: {}",
            r.status_line
        );
        assert_bytes_eq(&r.body, body, &format!("pipelined response {i}"));
    }
}

#[test]
fn fifty_pipelined_requests_in_one_write() {
    let s = Spate::start();
    let mut conn = s.connect();
    let one = format!("GET /{PLAYLIST_FILE} HTTP/1.1\r\nHost: t\r\n\r\n");
    conn.write_all(one.repeat(50).as_bytes()).unwrap();
    let mut reader = BufReader::new(conn);
    let want = s.file(PLAYLIST_FILE);
    for i in 0..50 {
        let r = read_response(&mut reader, false)
            .unwrap_or_else(|e| panic!("pipelined response {i} of 50: {e}"));
        assert_eq!(r.status, 200, "pipelined response {i}: {}", r.status_line);
        assert_bytes_eq(&r.body, &want, &format!("pipelined response {i}"));
    }
}

/// A client that stops reading is dropped after `send_timeout`, and nobody
/// else notices.
#[test]
fn client_that_stops_reading_is_dropped_after_send_timeout() {
    let mut s = Spate::builder()
        .http("send_timeout", "2")
        .with_large_file()
        .start();
    let mut conn = connect_small_window(s.addr(), 16 * 1024).expect("connect");
    conn.write_all(format!("GET /{LARGE_FILE} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    // Do not read for three times send_timeout; others are served meanwhile.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        s.get("/index.html").assert_status(200);
        std::thread::sleep(Duration::from_millis(300));
    }
    // Now read: the response must end early (the server gave up), not run to
    // the end of the file.
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match conn.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset".into(),
            Err(e) => break format!("{e}"),
        }
    };
    assert!(
        end == "EOF" || end == "reset",
        "stalled reader: the connection was neither closed nor reset ({end} after {total} bytes)"
    );
    assert!(
        total < LARGE_FILE_LEN,
        "a client that did not read for 6 s (send_timeout = 2) still got the whole {total}-byte response"
    );
    assert!(s.try_exit().is_none(), "spate died");
    s.get("/index.html").assert_status(200);
}

#[test]
fn http10_and_connection_close_close_after_the_response() {
    let s = Spate::start();
    for req in [
        "GET /index.html HTTP/1.0\r\n\r\n",
        "GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let mut conn = s.connect();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(conn);
        let r = read_response(&mut reader, false).expect("response");
        assert_eq!(r.status, 200, "{req:?}");
        assert_bytes_eq(&r.body, &s.file("index.html"), req);
        let mut rest = Vec::new();
        match reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{req:?}: bytes after the response"),
            Err(e) => panic!("{req:?}: connection not closed after the response: {e}"),
        }
    }
}

/// Clients that send half a head and stall are closed after `head_timeout`,
/// and other clients are served meanwhile.
#[test]
fn stalled_half_head_is_closed_after_head_timeout() {
    let s = Spate::builder().http("head_timeout", "2").start();
    // Several stalled clients, so that each worker likely holds at least one.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut conn = s.connect();
            conn.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            std::thread::spawn(move || {
                let start = Instant::now();
                conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
                let mut got = Vec::new();
                let result = conn.read_to_end(&mut got);
                (start.elapsed(), result.map_err(|e| e.kind()), got)
            })
        })
        .collect();
    // Meanwhile everyone else is served promptly.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut served = 0;
    while Instant::now() < until {
        let t = Instant::now();
        s.get("/index.html").assert_status(200);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a request took {:?}",
            t.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 3);
    for h in stalled {
        let (elapsed, result, got) = h.join().unwrap();
        match result {
            Ok(_) => {}
            // A reset is a close too.
            Err(std::io::ErrorKind::ConnectionReset) => {}
            Err(kind) => panic!(
                "stalled client not closed within 20 s ({kind:?} after {elapsed:?}; head_timeout = 2)"
            ),
        }
        assert!(
            elapsed >= Duration::from_millis(1500) && elapsed <= Duration::from_secs(8),
            "stalled client closed after {elapsed:?}, want about 2 s (head_timeout = 2)"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.0 408"),
            "stalled client got something other than nothing or a 408: {text:?}"
        );
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let s = Spate::builder().http("idle_timeout", "2").start();
    let mut conn = s.connect();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let r = read_response(&mut reader, false).expect("response");
    assert_eq!(r.status, 200);
    let start = Instant::now();
    let mut rest = Vec::new();
    let result = reader.read_to_end(&mut rest);
    let elapsed = start.elapsed();
    assert!(
        result.is_ok()
            || result
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "idle connection not closed within 20 s (idle_timeout = 2): {result:?}"
    );
    assert!(rest.is_empty(), "unexpected bytes on an idle connection");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed <= Duration::from_secs(8),
        "idle connection closed after {elapsed:?}, want about 2 s"
    );
}

#[test]
fn access_log_lines_go_to_stderr() {
    let s = Spate::builder().http("access_log", "true").start();
    s.get("/data.json?probe=access-log").assert_status(200);
    s.curl(&[], "/missing-for-access-log.txt")
        .assert_status(404);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let e = s.stderr();
            e.contains("/data.json") && e.contains("/missing-for-access-log.txt")
        }),
        "no access log lines on stderr:\n{}",
        s.stderr()
    );
}

#[test]
fn every_file_send_mode_delivers_exact_bytes() {
    for mode in ["send", "send_zc", "splice", "sendfile"] {
        let s = Spate::builder()
            .label(mode)
            .http("file_send", &format!("\"{mode}\""))
            .with_large_file()
            .start();
        let big = s.file(BIG_FILE);
        let r = s.get(&format!("/{BIG_FILE}"));
        r.assert_status(200);
        assert_bytes_eq(&r.body, &big, &format!("file_send={mode} GET big"));
        let r = s.curl(&["-r", "1000-200000"], &format!("/{BIG_FILE}"));
        r.assert_status(206);
        assert_bytes_eq(
            &r.body,
            &big[1000..=200_000],
            &format!("file_send={mode} range"),
        );
        let r = s.get(&format!("/{LARGE_FILE}"));
        r.assert_status(200);
        assert_bytes_eq(
            &r.body,
            &s.file(LARGE_FILE),
            &format!("file_send={mode} GET large"),
        );
        let r = s.get("/index.html");
        r.assert_status(200);
        assert_bytes_eq(
            &r.body,
            &s.file("index.html"),
            &format!("file_send={mode} small"),
        );
    }
}

#[test]
fn replaced_file_is_served_fresh_after_open_file_cache_valid() {
    let s = Spate::builder().http("open_file_cache_valid", "1").start();
    let path = s.root().join("changing.txt");
    std::fs::write(&path, "version one\n").unwrap();
    let r = s.get("/changing.txt");
    r.assert_status(200);
    assert_eq!(r.body, b"version one\n");
    // Replace it the way deployments do: write a new file, rename over.
    let tmp = s.root().join(".changing.txt.tmp");
    std::fs::write(&tmp, "version two, which is longer\n").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let r = s.get("/changing.txt");
    r.assert_status(200);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "version two, which is longer\n",
        "stale content 2.5 s after the file was replaced (open_file_cache_valid = 1)"
    );
}

/// A file truncated in place while the server may hold it open (and mapped)
/// must not take the process down (SIGBUS on a shrunk mapping).
#[test]
fn file_truncated_in_place_does_not_crash_the_server() {
    let mut s = Spate::builder().http("open_file_cache_valid", "60").start();
    let path = format!("/{BIG_FILE}");
    s.get(&path).assert_status(200);
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.root().join(BIG_FILE))
        .unwrap()
        .set_len(1000)
        .unwrap();
    for _ in 0..3 {
        // Any answer (or a dropped connection) is acceptable here…
        let _ = s.curl(&[], &path);
        let _ = s.curl(&["-r", "200000-200999"], &path);
    }
    // …but the server must still be alive and serving.
    assert!(s.try_exit().is_none(), "spate died: {:?}", s.try_exit());
    s.get("/index.html").assert_status(200);
}

#[test]
fn clients_aborting_mid_download_do_not_hurt_the_server() {
    let mut s = Spate::builder().with_large_file().start();
    for _ in 0..20 {
        let mut conn = s.connect();
        conn.write_all(format!("GET /{LARGE_FILE} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        // Dropped with unread data: the server sees a reset.
    }
    assert!(s.try_exit().is_none(), "spate died: {:?}", s.try_exit());
    let r = s.get(&format!("/{LARGE_FILE}"));
    r.assert_status(200);
    assert_bytes_eq(&r.body, &s.file(LARGE_FILE), "GET large after aborts");
}

/// A reader that pauses before each of its first `slow` reads.
struct SlowReader<R> {
    inner: R,
    slow: usize,
}

impl<R: Read> Read for SlowReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.slow > 0 {
            self.slow -= 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        self.inner.read(buf)
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `file_send = "sendfile"`: a reader slower than the socket (the server
/// meets a full socket and waits for POLLOUT) gets the exact bytes; the
/// regular fds installed for sendfile stay within `sendfile_descriptors`
/// (a second connection past the budget is served by send, exactly too); and
/// the fd goes away with its connection.
#[test]
fn sendfile_slow_reader_budget_and_no_fd_leak() {
    let s = Spate::builder()
        .server("workers", "1")
        .http("file_send", "\"sendfile\"")
        .http("sendfile_descriptors", "1")
        .with_large_file()
        .start();
    let large = s.file(LARGE_FILE);
    let request = format!("GET /{LARGE_FILE} HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut a = connect_small_window(s.addr(), 16 * 1024).expect("connect a");
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    a.write_all(request.as_bytes()).unwrap();
    // Let a's transfer start (and take the one descriptor) before b asks.
    std::thread::sleep(Duration::from_millis(300));
    let mut b = s.connect();
    b.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    b.write_all(request.as_bytes()).unwrap();
    let rb = read_response(&mut BufReader::new(&mut b), false).expect("b's response");
    assert_eq!(rb.status, 200);
    assert_bytes_eq(&rb.body, &large, "b (past the sendfile budget)");
    let with_a = open_fds(s.pid());
    let mut slow = BufReader::with_capacity(
        16 * 1024,
        SlowReader {
            inner: &mut a,
            slow: 40,
        },
    );
    let ra = read_response(&mut slow, false).expect("a's response");
    assert_eq!(ra.status, 200);
    assert_bytes_eq(&ra.body, &large, "a (slow reader, sendfile)");
    // b holds no installed fd: closing it changes nothing; closing a gives
    // back exactly one.
    drop(b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        open_fds(s.pid()),
        with_a,
        "closing the connection past the budget changed the fd count"
    );
    drop(slow);
    drop(a);
    assert!(
        wait_until(Duration::from_secs(5), || open_fds(s.pid()) == with_a - 1),
        "the installed fd was not closed with its connection: {} fds, {} with it open",
        open_fds(s.pid()),
        with_a
    );
    s.get("/index.html").assert_status(200);
}
