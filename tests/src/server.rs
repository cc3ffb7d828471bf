//! A `spate` process under test: temp config, temp root, free port, stderr
//! captured to a file (printed if the test fails), killed on drop.
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::binary::{abbreviate, capture_output};
use crate::{CurlResponse, ScratchDir, curl, fixtures, spate_bin};

/// How long a server gets to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the config and fixtures of a [`Spate`] and starts it.
///
/// Defaults: `[server] bind = "127.0.0.1", workers = 2, pin_workers = false,
/// shutdown_timeout = 10`, `[http] port = <free>, root = <scratch>/www`,
/// `[rtmp] port = <free>`, `[log] level = "info"`. Values are TOML literals:
/// `.http("head_timeout", "2")`, `.http("file_send", "\"splice\"")`.
/// `[live]` keys and `[[stream]]` tables are only written when set.
#[derive(Debug, Clone)]
pub struct SpateBuilder {
    server: Vec<(String, String)>,
    http: Vec<(String, String)>,
    log: Vec<(String, String)>,
    rtmp: Vec<(String, String)>,
    live: Vec<(String, String)>,
    streams: Vec<Vec<(String, String)>>,
    pushes: Vec<(String, String)>,
    api: Vec<(String, String)>,
    extra: String,
    large_file: bool,
    label: String,
}

fn set(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(kv) => kv.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
}

/// A TOML basic string holding `s`.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Default for SpateBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SpateBuilder {
    /// The defaults above.
    pub fn new() -> Self {
        let mut b = Self {
            server: Vec::new(),
            http: Vec::new(),
            log: Vec::new(),
            rtmp: Vec::new(),
            live: Vec::new(),
            streams: Vec::new(),
            pushes: Vec::new(),
            api: Vec::new(),
            extra: String::new(),
            large_file: false,
            label: "srv".into(),
        };
        b = b
            .server("bind", "\"127.0.0.1\"")
            .server("workers", "2")
            .server("pin_workers", "false")
            .server("shutdown_timeout", "10")
            .log("level", "\"info\"");
        b
    }

    /// Set a `[server]` key (TOML literal value).
    pub fn server(mut self, key: &str, value: &str) -> Self {
        set(&mut self.server, key, value);
        self
    }

    /// Set an `[http]` key (TOML literal value). `port` and `root` are filled
    /// in by [`start`](Self::start) unless set here.
    pub fn http(mut self, key: &str, value: &str) -> Self {
        set(&mut self.http, key, value);
        self
    }

    /// Set a `[log]` key (TOML literal value).
    pub fn log(mut self, key: &str, value: &str) -> Self {
        set(&mut self.log, key, value);
        self
    }

    /// Set an `[rtmp]` key (TOML literal value). `port` is filled in by
    /// [`start`](Self::start) with a free port unless set here: every server
    /// listens for RTMP (the engine's default is 1935, which parallel tests
    /// cannot share).
    pub fn rtmp(mut self, key: &str, value: &str) -> Self {
        set(&mut self.rtmp, key, value);
        self
    }

    /// Set a `[live]` key (TOML literal value).
    pub fn live(mut self, key: &str, value: &str) -> Self {
        set(&mut self.live, key, value);
        self
    }

    /// Add a `[[stream]]` table: `name = <name>` plus `keys` (TOML literal
    /// values), e.g. `.stream("live", &[("reconnect_grace", "8.0")])`.
    pub fn stream(mut self, name: &str, keys: &[(&str, &str)]) -> Self {
        let mut table = vec![("name".to_string(), toml_string(name))];
        for (k, v) in keys {
            set(&mut table, k, v);
        }
        self.streams.push(table);
        self
    }

    /// Add a `[[push]]` table: `stream = <stream>`, `target = <target>`.
    pub fn push(mut self, stream: &str, target: &str) -> Self {
        self.pushes.push((stream.to_string(), target.to_string()));
        self
    }

    /// Set an `[api]` key (TOML literal value). `port` is filled in by
    /// [`start`](Self::start) with a free port unless set here (the
    /// engine's default, 4242, cannot be shared by parallel tests).
    pub fn api(mut self, key: &str, value: &str) -> Self {
        set(&mut self.api, key, value);
        self
    }

    /// Append TOML text as it is (`[[trigger]]` tables, `[access]`, ...),
    /// after everything else.
    pub fn extra_toml(mut self, text: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    /// Also create the 5 MiB [`fixtures::LARGE_FILE`].
    pub fn with_large_file(mut self) -> Self {
        self.large_file = true;
        self
    }

    /// Name the scratch directory after the test (for post-mortems).
    pub fn label(mut self, label: &str) -> Self {
        self.label = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        self
    }

    /// RTMP is on unless `[rtmp] enabled = false` was set.
    fn rtmp_enabled(&self) -> bool {
        !self
            .rtmp
            .iter()
            .any(|(k, v)| k == "enabled" && v.trim() == "false")
    }

    /// `[api] enabled` unless set to false.
    fn api_enabled(&self) -> bool {
        !self
            .api
            .iter()
            .any(|(k, v)| k == "enabled" && v.trim() == "false")
    }

    /// The config file text for HTTP `port`, `rtmp_port` and `api_port`
    /// (unless set) and `root`.
    pub fn config_text(&self, port: u16, rtmp_port: u16, api_port: u16, root: &Path) -> String {
        let mut rtmp = self.rtmp.clone();
        if !rtmp.iter().any(|(k, _)| k == "port") {
            rtmp.insert(0, ("port".into(), rtmp_port.to_string()));
        }
        let mut api = self.api.clone();
        if !api.iter().any(|(k, _)| k == "port") {
            api.insert(0, ("port".into(), api_port.to_string()));
        }
        let mut http = self.http.clone();
        if !http.iter().any(|(k, _)| k == "port") {
            http.insert(0, ("port".into(), port.to_string()));
        }
        if !http.iter().any(|(k, _)| k == "root") {
            http.insert(1, ("root".into(), toml_string(&root.display().to_string())));
        }
        let mut text = String::from("# written by spate-tests\n");
        for (name, kvs) in [
            ("server", &self.server),
            ("http", &http),
            ("log", &self.log),
            ("rtmp", &rtmp),
            ("api", &api),
        ] {
            text.push_str(&format!("\n[{name}]\n"));
            for (k, v) in kvs {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        if !self.live.is_empty() {
            text.push_str("\n[live]\n");
            for (k, v) in &self.live {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        for table in &self.streams {
            text.push_str("\n[[stream]]\n");
            for (k, v) in table {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        for (stream, target) in &self.pushes {
            text.push_str(&format!(
                "\n[[push]]\nstream = {}\ntarget = {}\n",
                toml_string(stream),
                toml_string(target)
            ));
        }
        text.push_str(&self.extra);
        text
    }

    /// Write fixtures and config, start `spate --config`, and wait until its
    /// port accepts connections. Panics (showing stderr) if it exits or does
    /// not listen within 30 s. If it exits saying its port is in use (another
    /// process took the port between our check and its bind), retries on a
    /// new port, up to 3 times.
    pub fn start(self) -> Spate {
        let dir = ScratchDir::new(&self.label);
        fixtures::populate(dir.path(), self.large_file);
        let root = dir.path().join("www");
        let fixed_port = self.http.iter().any(|(k, _)| k == "port")
            || self.rtmp.iter().any(|(k, _)| k == "port");
        let rtmp_enabled = self.rtmp_enabled();
        let config_path = dir.path().join("spate.toml");
        for attempt in 1..=3 {
            let port = match self.http.iter().find(|(k, _)| k == "port") {
                Some((_, v)) => v.parse().expect("port is a number"),
                None => crate::free_port(),
            };
            let rtmp_port = match self.rtmp.iter().find(|(k, _)| k == "port") {
                Some((_, v)) => v.parse().expect("rtmp port is a number"),
                None => crate::free_port(),
            };
            let api_port = match self.api.iter().find(|(k, _)| k == "port") {
                Some((_, v)) => v.parse().expect("api port is a number"),
                None => crate::free_port(),
            };
            std::fs::write(
                &config_path,
                self.config_text(port, rtmp_port, api_port, &root),
            )
            .expect("write config");
            let stderr_path = dir.path().join(format!("spate-{attempt}.stderr"));
            let stdout_path = dir.path().join(format!("spate-{attempt}.stdout"));
            let mut child = Command::new(spate_bin())
                .arg("--config")
                .env("NO_COLOR", "1")
                .arg(&config_path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", spate_bin().display()));
            capture_output(child.stdout.take().expect("piped"), &stdout_path);
            capture_output(child.stderr.take().expect("piped"), &stderr_path);
            let listening = wait_listening(&mut child, port).and_then(|()| {
                if rtmp_enabled {
                    wait_listening(&mut child, rtmp_port)
                } else {
                    Ok(())
                }
            });
            let api_enabled = self.api_enabled();
            match listening {
                Ok(()) => {
                    return Spate {
                        child,
                        exit: None,
                        port,
                        rtmp_port: rtmp_enabled.then_some(rtmp_port),
                        api_port: api_enabled.then_some(api_port),
                        root,
                        config_path,
                        stderr_path,
                        stdout_path,
                        dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let err =
                        String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap_or_default())
                            .into_owned();
                    if !fixed_port && attempt < 3 && err.contains("in use") {
                        eprintln!("port {port} was taken before spate bound it; retrying: {err}");
                        continue;
                    }
                    panic!(
                        "spate did not start: {why}\nconfig:\n{}\nstderr:\n{}\nstdout:\n{}",
                        std::fs::read_to_string(&config_path).unwrap_or_default(),
                        abbreviate(&err, 40, 60),
                        abbreviate(
                            &std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                            20,
                            20
                        ),
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// Wait until 127.0.0.1:`port` accepts, or `child` exits, or 30 s pass.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("spate exited ({status}) before listening"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "port {port} did not accept a connection within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `spate`.
#[derive(Debug)]
pub struct Spate {
    child: Child,
    exit: Option<ExitStatus>,
    port: u16,
    rtmp_port: Option<u16>,
    api_port: Option<u16>,
    root: PathBuf,
    config_path: PathBuf,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    dir: ScratchDir,
}

impl Spate {
    /// A server with the default test config ([`SpateBuilder::new`]).
    pub fn start() -> Spate {
        SpateBuilder::new().start()
    }

    /// A builder to change the config first.
    pub fn builder() -> SpateBuilder {
        SpateBuilder::new()
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The RTMP port. Panics if RTMP was disabled.
    pub fn rtmp_port(&self) -> u16 {
        self.rtmp_port
            .expect("this server was started with [rtmp] enabled = false")
    }

    /// The API port. Panics if the API was disabled.
    pub fn api_port(&self) -> u16 {
        self.api_port
            .expect("this server was started with [api] enabled = false")
    }

    /// 127.0.0.1:api_port (the JSON API, `/metrics`, `/healthz`).
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port()))
    }

    /// 127.0.0.1:rtmp_port.
    pub fn rtmp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.rtmp_port()))
    }

    /// `rtmp://127.0.0.1:rtmp_port/app/key`.
    pub fn rtmp_url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.rtmp_port())
    }

    /// The HTTP-FLV URL of live stream `name`: `http://127.0.0.1:port/name.flv`.
    pub fn flv_url(&self, name: &str) -> String {
        self.url(&format!("/{name}.flv"))
    }

    /// `http://127.0.0.1:port` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The static root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scratch directory (root is `www/` in it; `outside/` beside it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Bytes of a file in the root.
    pub fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.root.join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    /// What spate has written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// What spate has written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `GET /NAME.flv` answers 200 with an FLV header and a video
    /// keyframe. Panics (with the publisher's and the server's stderr) if the
    /// publisher exits first or `timeout` passes.
    pub fn wait_flv_live(&self, name: &str, publisher: &mut crate::ChildGuard, timeout: Duration) {
        self.wait_flv_path(&format!("/{name}.flv"), publisher, timeout)
    }

    /// [`wait_flv_live`](Self::wait_flv_live) for a whole path
    /// (`/NAME.flv?token=...`).
    pub fn wait_flv_path(&self, path: &str, publisher: &mut crate::ChildGuard, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("never tried");
        while Instant::now() < deadline {
            if let Some(status) = publisher.try_exit() {
                panic!(
                    "the publisher exited ({status}) before {path} was live:\n{}\nserver log:\n{}",
                    publisher.stderr(),
                    abbreviate(&self.stderr(), 40, 40)
                );
            }
            let v = crate::FlvViewer::start(self.addr(), path);
            crate::wait_until(Duration::from_secs(3), || {
                let l = v.log();
                l.ended.is_some()
                    || (l.status != 0 && l.status != 200)
                    || l.video().any(|r| r.tag.keyframe && !r.tag.config)
            });
            let log = v.stop();
            if log.status == 200 && log.video().any(|r| r.tag.keyframe && !r.tag.config) {
                return;
            }
            last = log.summary();
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "{path} not live within {timeout:?}; last attempt: {last}\nserver log:\n{}",
            abbreviate(&self.stderr(), 40, 40)
        );
    }

    /// Send a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if self.exit.is_some() {
            return;
        }
        // SAFETY: kill(2) with the pid of our own child, which has not been
        // reaped yet (exit is None), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.child.id(),
            std::io::Error::last_os_error()
        );
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait on spate");
        }
        self.exit
    }

    /// Wait up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run curl against `path` with extra `args`; never panics on HTTP errors.
    pub fn curl(&self, args: &[&str], path: &str) -> CurlResponse {
        curl(self.dir.path(), args, &self.url(path))
    }

    /// `curl path`, panicking unless the transfer itself succeeded.
    pub fn get(&self, path: &str) -> CurlResponse {
        let r = self.curl(&[], path);
        r.assert_transfer_ok();
        r
    }

    /// A raw connection to it (see [`crate::connect`]).
    pub fn connect(&self) -> TcpStream {
        crate::connect(self.addr()).unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr()))
    }
}

impl Drop for Spate {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- spate stderr ({}) ----\n{}\n---- end of spate stderr ----",
                self.stderr_path.display(),
                abbreviate(&self.stderr(), 40, 100)
            );
        }
    }
}
