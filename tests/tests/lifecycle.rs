//! The `spate` process as a whole: CLI, config errors, signals, ports.
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spate_tests::{
    LARGE_FILE, LARGE_FILE_LEN, ScratchDir, Spate, connect_small_window, curl_bin, free_port,
    in_private_netns, read_response, run_spate, wait_until, workspace_root,
};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A scratch dir with `www/` and `spate.toml` = `config` (where `{port}` and
/// `{root}` are substituted), plus `[rtmp] port = <free>` unless `config` has
/// an `[rtmp]` section (RTMP's default port, 1935, cannot be shared by tests
/// running in parallel), and `[api] port = <free>` unless it has an `[api]`
/// section (the same for the API's 4242).
fn config_dir(label: &str, config: &str) -> (ScratchDir, u16) {
    let dir = ScratchDir::new(label);
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "hi\n").unwrap();
    let port = free_port();
    let mut text = config
        .replace("{port}", &port.to_string())
        .replace("{root}", &root.display().to_string());
    if !text.contains("[rtmp]") {
        text.push_str(&format!("\n[rtmp]\nport = {}\n", free_port()));
    }
    if !text.contains("[api]") {
        text.push_str(&format!("\n[api]\nport = {}\n", free_port()));
    }
    std::fs::write(dir.path().join("spate.toml"), text).unwrap();
    (dir, port)
}

/// Run `spate --config spate.toml` with `config`; it must exit non-zero and
/// name `needle` on stderr.
fn assert_config_rejected(config: &str, needle: &str) {
    let (dir, _) = config_dir("badcfg", config);
    let f = run_spate(&["--config", "spate.toml"], dir.path(), EXIT_TIMEOUT);
    assert!(
        !f.status.success(),
        "spate accepted a bad config ({}):\n{config}\nstderr:\n{}",
        f.status,
        f.stderr
    );
    assert!(
        f.stderr.contains(needle),
        "stderr does not name `{needle}` for config:\n{config}\nstderr:\n{}",
        f.stderr
    );
}

const GOOD_HEAD: &str = "[server]\nbind = \"127.0.0.1\"\nworkers = 2\n";

#[test]
fn unknown_keys_are_rejected_by_name() {
    assert_config_rejected(
        &format!("{GOOD_HEAD}[http]\nport = {{port}}\nroot = \"{{root}}\"\nprot = 1\n"),
        "prot",
    );
    assert_config_rejected(
        &format!("{GOOD_HEAD}[http]\nport = {{port}}\nroot = \"{{root}}\"\n[htttp]\nport = 1\n"),
        "htttp",
    );
    assert_config_rejected(
        "[server]\nbind = \"127.0.0.1\"\nworkerz = 2\n[http]\nport = {port}\nroot = \"{root}\"\n",
        "workerz",
    );
}

#[test]
fn bad_values_are_rejected_by_name() {
    for (http_line, needle) in [
        ("port = 0", "port"),
        ("port = \"eighty\"", "port"),
        ("port = 70000", "port"),
        ("file_send = \"carrier-pigeon\"", "file_send"),
        ("head_timeout = 0", "head_timeout"),
        ("head_timeout = \"soon\"", "head_timeout"),
        ("max_head_bytes = 10", "max_head_bytes"),
        ("access_log = \"yes\"", "access_log"),
    ] {
        let port_line = if http_line.starts_with("port") {
            ""
        } else {
            "port = {port}\n"
        };
        assert_config_rejected(
            &format!("{GOOD_HEAD}[http]\n{port_line}root = \"{{root}}\"\n{http_line}\n"),
            needle,
        );
    }
    assert_config_rejected(
        "[server]\nbind = \"not-an-address\"\n[http]\nport = {port}\nroot = \"{root}\"\n",
        "bind",
    );
    assert_config_rejected(
        "[server]\nbind = \"127.0.0.1\"\nworkers = -1\n[http]\nport = {port}\nroot = \"{root}\"\n",
        "workers",
    );
}

#[test]
fn missing_root_dir_is_named() {
    assert_config_rejected(
        &format!("{GOOD_HEAD}[http]\nport = {{port}}\nroot = \"{{root}}/no-such-root-dir\"\n"),
        "no-such-root-dir",
    );
}

#[test]
fn missing_config_file_is_named() {
    let dir = ScratchDir::new("nocfg");
    let f = run_spate(
        &["--config", "no-such-config.toml"],
        dir.path(),
        EXIT_TIMEOUT,
    );
    assert!(!f.status.success(), "started without its config file");
    assert!(
        f.stderr.contains("no-such-config.toml"),
        "stderr: {}",
        f.stderr
    );
}

#[test]
fn unknown_cli_flag_is_an_error() {
    let dir = ScratchDir::new("badflag");
    let f = run_spate(&["--no-such-flag"], dir.path(), EXIT_TIMEOUT);
    assert!(!f.status.success(), "accepted --no-such-flag");
    assert!(f.stderr.contains("no-such-flag"), "stderr: {}", f.stderr);
}

#[test]
fn port_in_use_is_a_clear_error() {
    let (dir, port) = config_dir(
        "inuse",
        &format!("{GOOD_HEAD}[http]\nport = {{port}}\nroot = \"{{root}}\"\n"),
    );
    let _holder = TcpListener::bind(("127.0.0.1", port)).expect("hold the port");
    let f = run_spate(&["--config", "spate.toml"], dir.path(), EXIT_TIMEOUT);
    assert!(!f.status.success(), "started on a port that is in use");
    assert!(
        f.stderr.contains("in use"),
        "stderr does not say `in use`:\n{}",
        f.stderr
    );
    assert!(
        f.stderr.contains(&port.to_string()),
        "stderr does not name port {port}:\n{}",
        f.stderr
    );
}

/// SO_REUSEPORT must not let a second spate silently share the first one's
/// port (and half its traffic).
#[test]
fn port_in_use_by_another_spate_is_a_clear_error() {
    let first = Spate::start();
    let (dir, _) = config_dir(
        "inuse2",
        &format!(
            "{GOOD_HEAD}[http]\nport = {}\nroot = \"{{root}}\"\n",
            first.port()
        ),
    );
    let f = run_spate(&["--config", "spate.toml"], dir.path(), EXIT_TIMEOUT);
    assert!(
        !f.status.success(),
        "a second spate started on port {} while the first one listens there",
        first.port()
    );
    assert!(
        f.stderr.contains("in use"),
        "stderr does not say `in use`:\n{}",
        f.stderr
    );
    first.get("/index.html").assert_status(200);
}

#[test]
fn print_config_prints_the_effective_config() {
    let dir = ScratchDir::new("print");
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    let f = run_spate(&["--print-config"], dir.path(), EXIT_TIMEOUT);
    assert!(
        f.status.success(),
        "--print-config failed ({}): {}",
        f.status,
        f.stderr
    );
    assert!(
        f.stdout.contains("port = 8080"),
        "no `port = 8080` in:\n{}",
        f.stdout
    );
    let v: toml::Table = f
        .stdout
        .parse()
        .unwrap_or_else(|e| panic!("--print-config output is not TOML: {e}\n{}", f.stdout));
    assert_eq!(v["http"]["port"].as_integer(), Some(8080), "{}", f.stdout);
    assert_eq!(
        v["http"]["max_head_bytes"].as_integer(),
        Some(16384),
        "{}",
        f.stdout
    );
    for section in ["server", "http", "log"] {
        assert!(v.contains_key(section), "no [{section}] in:\n{}", f.stdout);
    }

    // With --config: the file's values, and the output is itself a valid config
    // that prints the same.
    let (dir, port) = config_dir(
        "print2",
        &format!("{GOOD_HEAD}[http]\nport = {{port}}\nroot = \"{{root}}\"\nhead_timeout = 7\n"),
    );
    let f = run_spate(
        &["--config", "spate.toml", "--print-config"],
        dir.path(),
        EXIT_TIMEOUT,
    );
    assert!(
        f.status.success(),
        "--config --print-config failed: {}",
        f.stderr
    );
    let v: toml::Table = f.stdout.parse().expect("TOML");
    assert_eq!(
        v["http"]["port"].as_integer(),
        Some(port as i64),
        "{}",
        f.stdout
    );
    assert_eq!(
        v["http"]["head_timeout"].as_integer(),
        Some(7),
        "{}",
        f.stdout
    );
    assert_eq!(v["server"]["workers"].as_integer(), Some(2), "{}", f.stdout);
    std::fs::write(dir.path().join("printed.toml"), &f.stdout).unwrap();
    let again = run_spate(
        &["--config", "printed.toml", "--print-config"],
        dir.path(),
        EXIT_TIMEOUT,
    );
    assert!(
        again.status.success(),
        "printed config rejected: {}",
        again.stderr
    );
    assert_eq!(
        again.stdout, f.stdout,
        "printing the printed config differs"
    );
}

/// `spate` with no arguments, from the repo root: the embedded config, HTTP
/// on 8080 serving ./www. Runs in a private network namespace so port 8080 is
/// free whatever else runs on this machine.
#[test]
fn no_args_serves_repo_www_on_8080() {
    let bin = spate_tests::spate_bin().to_path_buf();
    let curl = curl_bin().to_string();
    let repo = workspace_root();
    let expected = std::fs::read(repo.join("www/index.html")).expect("repo www/index.html");
    let result = in_private_netns(move || {
        let scratch = ScratchDir::new("noargs");
        let err_path = scratch.path().join("stderr");
        let mut child = Command::new(&bin)
            .current_dir(&repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("start spate");
        let up = wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", 8080)).is_ok()
                || child.try_wait().ok().flatten().is_some()
        });
        let body = if up && child.try_wait().ok().flatten().is_none() {
            let out = Command::new(&curl)
                .args([
                    "-sS",
                    "--max-time",
                    "30",
                    "-w",
                    "\n%{http_code}",
                    "http://127.0.0.1:8080/index.html",
                ])
                .output()
                .expect("curl");
            Ok(out.stdout)
        } else {
            Err(format!(
                "spate with no args did not listen on 8080 (exit: {:?})",
                child.try_wait()
            ))
        };
        let _ = child.kill();
        let _ = child.wait();
        (body, std::fs::read_to_string(&err_path).unwrap_or_default())
    });
    let (body, stderr) = match result {
        Ok(r) => r,
        Err(e) => panic!(
            "cannot create a private network namespace ({e}); this test needs root (CI runs as root)"
        ),
    };
    let body = body.unwrap_or_else(|e| panic!("{e}\nstderr:\n{stderr}"));
    let mut want = expected.clone();
    want.extend_from_slice(b"\n200");
    assert!(
        body == want,
        "GET /index.html from `spate` (no args) returned:\n{}\nstderr:\n{stderr}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn sigterm_when_idle_exits_zero() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut s = Spate::start();
        s.get("/index.html").assert_status(200);
        s.signal(sig);
        let status = s.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!("idle spate still running {EXIT_TIMEOUT:?} after signal {sig}")
        });
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after signal {sig}: {status}"
        );
    }
}

/// Reads at most `rate` bytes/s, counting what it got in `received`.
struct PacedReader<R> {
    inner: R,
    rate: u64,
    start: Instant,
    received: Arc<AtomicUsize>,
}

impl<R: Read> Read for PacedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.received.load(Ordering::Relaxed) as u64;
        let allowed = self.rate * self.start.elapsed().as_millis() as u64 / 1000 + 16 * 1024;
        if got >= allowed {
            std::thread::sleep(Duration::from_millis(
                (got - allowed) * 1000 / self.rate + 5,
            ));
        }
        let n = buf.len().min(16 * 1024);
        let n = self.inner.read(&mut buf[..n])?;
        self.received.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

/// A raw client downloading `path` at `rate` bytes/s on its own thread.
struct PacedDownload {
    label: String,
    received: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<std::io::Result<spate_tests::RawResponse>>,
}

impl PacedDownload {
    /// `rcvbuf`: Some(bytes) for a small receive window, None for the default.
    fn start(s: &Spate, path: &str, rate: u64, rcvbuf: Option<usize>) -> Self {
        let mut conn = match rcvbuf {
            Some(n) => connect_small_window(s.addr(), n).expect("connect"),
            None => s.connect(),
        };
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let paced = PacedReader {
            inner: conn,
            rate,
            start: Instant::now(),
            received: Arc::clone(&received),
        };
        let thread = std::thread::spawn(move || {
            read_response(&mut BufReader::with_capacity(16 * 1024, paced), false)
        });
        Self {
            label: format!("paced client ({rate} B/s, receive buffer {rcvbuf:?})"),
            received,
            thread,
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

/// SIGTERM mid-download: the downloads complete byte-exact, new connections
/// are refused, and spate exits 0 once they are done (within
/// shutdown_timeout).
///
/// Downloads of the 5 MiB file running when the signal arrives: raw clients
/// reading at 2 MB/s, one with a 32 KiB receive window (so the server itself is
/// certainly still sending) and two with default buffers (the kernel holds most
/// of the response), and `curl --limit-rate 2M` (curl 7.88's limiter lets
/// loopback transfers burst, so it may be done sooner; it must still get every
/// byte).
#[test]
fn sigterm_mid_download_finishes_it_and_exits_zero() {
    let mut s = Spate::builder()
        .server("shutdown_timeout", "15")
        .with_large_file()
        .start();
    let want = s.file(LARGE_FILE);
    let path = format!("/{LARGE_FILE}");

    let paced: Vec<PacedDownload> = [Some(32 * 1024), None, None]
        .into_iter()
        .map(|rcvbuf| PacedDownload::start(&s, &path, 2_000_000, rcvbuf))
        .collect();

    let out_path = s.dir().join("download.bin");
    let mut curl = Command::new(curl_bin())
        .args(["-sS", "--max-time", "60", "--limit-rate", "2M", "-o"])
        .arg(&out_path)
        .arg(s.url(&path))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl");

    std::thread::sleep(Duration::from_millis(500));
    // Make sure all downloads are under way (a noisy machine may be slow).
    let started = wait_until(Duration::from_secs(10), || {
        paced.iter().all(|p| p.received() > 0)
            && std::fs::metadata(&out_path).is_ok_and(|m| m.len() > 0)
    });
    assert!(started, "the downloads received nothing within 10 s");
    let at_signal: Vec<usize> = paced.iter().map(PacedDownload::received).collect();
    s.signal(libc::SIGTERM);
    let signalled = Instant::now();

    // New connections are refused once the listeners are closed.
    let refused = wait_until(Duration::from_secs(5), || {
        match TcpStream::connect_timeout(&s.addr(), Duration::from_millis(500)) {
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            // Accepted (the listener is still open): not refused yet.
            Ok(_) => false,
        }
    });

    let mut results = Vec::new();
    for p in paced {
        let result = p.thread.join().expect("paced client thread");
        results.push((p.label, result, p.received.load(Ordering::Relaxed)));
    }
    let paced_done = signalled.elapsed();
    let status = wait_child(&mut curl, Duration::from_secs(60));
    let curl_done = signalled.elapsed();
    let mut curl_err = String::new();
    if let Some(mut e) = curl.stderr.take() {
        let _ = e.read_to_string(&mut curl_err);
    }
    let got = std::fs::read(&out_path).unwrap_or_default();
    let exit = s.wait_exit(Duration::from_secs(15 + 10));
    let exited = signalled.elapsed();
    eprintln!(
        "after SIGTERM: paced clients done at {paced_done:?}, curl done at {curl_done:?}, \
         spate exited at {exited:?}; refused: {refused}; paced bytes at signal: {at_signal:?}"
    );

    assert!(
        at_signal[0] < LARGE_FILE_LEN / 2,
        "the small-window client had {} bytes when SIGTERM was sent: not mid-download",
        at_signal[0]
    );
    for ((label, result, received), at) in results.into_iter().zip(&at_signal) {
        match result {
            Ok(r) => {
                assert_eq!(r.status, 200, "{label}: {}", r.status_line);
                assert!(
                    r.body == want,
                    "{label}: downloaded bytes differ from the file ({} bytes)",
                    r.body.len()
                );
            }
            Err(e) => panic!(
                "{label} did not get the whole file after SIGTERM ({received} of \
                 {LARGE_FILE_LEN} bytes, {at} at SIGTERM): {e}"
            ),
        }
    }
    assert!(
        status.is_some_and(|st| st.success()),
        "curl did not finish the download after SIGTERM (status {status:?}, {} of {LARGE_FILE_LEN} bytes): {curl_err}",
        got.len()
    );
    assert!(
        got == want,
        "curl: downloaded bytes differ from the file ({} bytes)",
        got.len()
    );
    assert!(refused, "new connections still accepted 5 s after SIGTERM");
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "spate still running {:?} after SIGTERM (shutdown_timeout = 15)",
            signalled.elapsed()
        )
    });
    assert_eq!(
        exit.code(),
        Some(0),
        "spate exit status after SIGTERM: {exit}"
    );
    // Nothing is in flight once all downloads are done: spate must not sit
    // out the rest of shutdown_timeout.
    let last_done = paced_done.max(curl_done);
    assert!(
        exited <= last_done + Duration::from_secs(5),
        "spate exited {exited:?} after SIGTERM although its last response finished by \
         {last_done:?}: it waited for the shutdown deadline with nothing in flight"
    );
}

fn wait_child(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One download in flight at SIGTERM, nothing else: spate exits as soon as it
/// is done. Three rounds, each with a fresh server, because the moment the
/// signal lands in the response varies.
#[test]
fn sigterm_exits_as_soon_as_the_last_download_is_done() {
    for round in 0..3 {
        let mut s = Spate::builder()
            .server("shutdown_timeout", "15")
            .with_large_file()
            .start();
        let want = s.file(LARGE_FILE);
        let download = PacedDownload::start(&s, &format!("/{LARGE_FILE}"), 2_000_000, None);
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            wait_until(Duration::from_secs(10), || download.received() > 0),
            "round {round}: the download received nothing within 10 s"
        );
        s.signal(libc::SIGTERM);
        let signalled = Instant::now();
        let result = download.thread.join().expect("paced client thread");
        let done = signalled.elapsed();
        let exit = s.wait_exit(Duration::from_secs(15 + 10));
        let exited = signalled.elapsed();
        eprintln!("round {round}: download done at {done:?}, spate exited at {exited:?}");
        let r =
            result.unwrap_or_else(|e| panic!("round {round}: download failed after SIGTERM: {e}"));
        assert!(r.body == want, "round {round}: downloaded bytes differ");
        let exit = exit.unwrap_or_else(|| panic!("round {round}: spate still running after 25 s"));
        assert_eq!(exit.code(), Some(0), "round {round}: exit status {exit}");
        assert!(
            exited <= done + Duration::from_secs(5),
            "round {round}: spate exited {exited:?} after SIGTERM although its only response \
             finished at {done:?}: it waited for the shutdown deadline with nothing in flight"
        );
    }
}

/// Connections the server closes (rejected requests, idle keep-alive
/// connections closed at shutdown, peers that vanished) must free their
/// slots: if one leaked, a worker would believe it still has a connection to
/// drain and wait out the whole shutdown_timeout after SIGTERM.
#[test]
fn closed_connections_leave_nothing_to_drain_at_shutdown() {
    let mut s = Spate::builder().server("shutdown_timeout", "20").start();
    let mut rejected = Vec::new();
    for i in 0..20 {
        let mut c = s.connect();
        if i % 2 == 0 {
            c.write_all(b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
        } else {
            c.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
        }
        rejected.push(c);
    }
    for mut c in rejected {
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut sink = Vec::new();
        let r = c.read_to_end(&mut sink);
        assert!(
            r.is_ok() || r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "rejected connection not closed by the server"
        );
    }
    // Idle keep-alive connections open at SIGTERM: closed by the server.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut c = s.connect();
        c.write_all(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(c.try_clone().unwrap());
        let r = read_response(&mut reader, false).expect("response");
        assert_eq!(r.status, 200);
        idle.push(c);
    }
    let signalled = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(30))
        .expect("spate exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "spate took {:?} to exit with only idle connections open: a closed connection was never freed\n{}",
        signalled.elapsed(),
        s.stderr()
    );
    drop(idle);
}

/// The congestion control `ss` (iproute2) reports for the established TCP
/// sockets whose local port is `port`, one name per socket.
fn congestion_of_sockets_on(port: u16) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tniH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("run ss (iproute2)");
    assert!(out.status.success(), "ss failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Each socket: a line with the addresses, then an indented info line
    // whose first word is the congestion control.
    text.lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn tcp_congestion_is_what_accepted_connections_use() {
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .expect("read the host's congestion control");
    let host = host.trim();
    // reno is built into every kernel and is nobody's default.
    assert_ne!(
        host, "reno",
        "this test needs a host default other than reno"
    );
    let spate = Spate::builder()
        .server("tcp_congestion", "\"reno\"")
        .label("tcp-cc")
        .start();
    let _http = TcpStream::connect(spate.addr()).expect("connect http");
    let _rtmp = TcpStream::connect(("127.0.0.1", spate.rtmp_port())).expect("connect rtmp");
    for port in [spate.port(), spate.rtmp_port()] {
        let mut seen = Vec::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                seen = congestion_of_sockets_on(port);
                !seen.is_empty()
            }),
            "ss shows no established socket on port {port}"
        );
        assert_eq!(
            seen,
            ["reno"],
            "server end on port {port}: want reno (host default {host})"
        );
    }
    // The same server with the key unset: the host's default.
    let plain = Spate::builder().label("tcp-cc-default").start();
    let _c = TcpStream::connect(plain.addr()).expect("connect");
    let mut seen = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        seen = congestion_of_sockets_on(plain.port());
        !seen.is_empty()
    }));
    assert_eq!(seen, [host]);
}

#[test]
fn tcp_congestion_the_host_lacks_is_a_startup_error() {
    assert_config_rejected(
        "[server]\nbind = \"127.0.0.1\"\ntcp_congestion = \"no-such-cc\"\n[http]\nport = {port}\nroot = \"{root}\"\n",
        "server.tcp_congestion: \"no-such-cc\": not available",
    );
    assert_config_rejected(
        "[server]\nbind = \"127.0.0.1\"\ntcp_congestion = \"Not A Name\"\n[http]\nport = {port}\nroot = \"{root}\"\n",
        "server.tcp_congestion",
    );
}
