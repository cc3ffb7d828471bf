//! Running curl and reading what it got.
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The curl executable (`$CURL` or `curl`). Panics loudly if it cannot run:
/// end-to-end tests never skip for a missing client (`scripts/test.sh`
/// installs it).
pub fn curl_bin() -> &'static str {
    static CURL: OnceLock<Result<String, String>> = OnceLock::new();
    let r = CURL.get_or_init(|| {
        let bin = std::env::var("CURL").unwrap_or_else(|_| "curl".into());
        match Command::new(&bin).arg("--version").output() {
            Ok(o) if o.status.success() => Ok(bin),
            Ok(o) => Err(format!("`{bin} --version` failed: {}", o.status)),
            Err(e) => Err(format!("cannot run `{bin}`: {e}")),
        }
    });
    match r {
        Ok(b) => b,
        Err(e) => panic!(
            "\n\n*** curl is required by the end-to-end tests and is missing: {e}.\n\
             *** Run scripts/test.sh (installs it) or `apt-get install -y curl`.\n\n"
        ),
    }
}

/// What one curl run got. Headers are those of the last response curl saw.
#[derive(Debug, Clone)]
pub struct CurlResponse {
    /// curl's exit code (0 = transfer ok; 7 = could not connect; 28 = timeout;
    /// 52 = empty reply; 56 = receive failure, e.g. reset).
    pub exit_code: i32,
    /// HTTP status of the last response (0 if none).
    pub status: u16,
    /// Status line of the last response.
    pub status_line: String,
    /// Header fields of the last response, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes as saved by curl.
    pub body: Vec<u8>,
    /// curl's stderr (error messages; the -v trace if asked).
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl CurlResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Content-Type` media type, lower case, without parameters
    /// (`application/vnd.apple.mpegurl; charset=utf-8` →
    /// `application/vnd.apple.mpegurl`).
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Panic unless the status is 200 and the media type is one of `types`.
    pub fn assert_media_type(&self, types: &[&str]) -> &Self {
        self.assert_status(200);
        let got = self.media_type();
        assert!(
            got.as_deref()
                .is_some_and(|t| types.iter().any(|w| w.eq_ignore_ascii_case(t))),
            "{}: Content-Type {:?}, want one of {types:?}",
            self.command,
            self.header("content-type")
        );
        self
    }

    /// Panic unless curl exited 0 and got a response.
    pub fn assert_transfer_ok(&self) -> &Self {
        assert!(
            self.exit_code == 0 && self.status != 0,
            "curl failed (exit {}): {}\nstderr: {}\nstatus line: {:?}",
            self.exit_code,
            self.command,
            self.stderr,
            self.status_line
        );
        self
    }

    /// Panic unless the status is `status` (and curl exited 0).
    pub fn assert_status(&self, status: u16) -> &Self {
        self.assert_transfer_ok();
        assert_eq!(
            self.status,
            status,
            "unexpected status for {}\nheaders: {:#?}\nbody (first 300 bytes): {:?}",
            self.command,
            self.headers,
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
        );
        self
    }
}

/// Run `curl -sS -D <hdr> -o <body> --max-time 30 <args> <url>` with its
/// files in `scratch`. Never panics for HTTP or transfer errors: look at
/// `exit_code` and `status`.
pub fn curl(scratch: &Path, args: &[&str], url: &str) -> CurlResponse {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let hdr = scratch.join(format!("curl-{n}.headers"));
    let body = scratch.join(format!("curl-{n}.body"));
    let mut cmd = Command::new(curl_bin());
    cmd.args(["-sS", "--max-time", "30", "-D"])
        .arg(&hdr)
        .arg("-o")
        .arg(&body)
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let command = format!("curl {} {url}", shell_words(args));
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    let (status, status_line, headers) = parse_last_head(&String::from_utf8_lossy(
        &std::fs::read(&hdr).unwrap_or_default(),
    ));
    let r = CurlResponse {
        exit_code: out.status.code().unwrap_or(-1),
        status,
        status_line,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command,
    };
    let _ = std::fs::remove_file(&hdr);
    let _ = std::fs::remove_file(&body);
    r
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            let shown = if a.len() > 80 {
                format!("{}…({} bytes)", &a[..40], a.len())
            } else {
                a.to_string()
            };
            if shown.contains(' ') || shown.is_empty() {
                format!("'{shown}'")
            } else {
                shown
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parse the last header block of a `-D` dump (there may be several: 1xx,
/// redirects, several URLs).
fn parse_last_head(dump: &str) -> (u16, String, Vec<(String, String)>) {
    let mut status = 0;
    let mut status_line = String::new();
    let mut headers = Vec::new();
    for line in dump.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            status_line = line.to_string();
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            headers.clear();
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, status_line, headers)
}
