//! Locating (and building, once per test process) the `spate` binary, and
//! running it to completion for CLI tests.
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace
/// root if relative) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_relative() {
                workspace_root().join(p)
            } else {
                p
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The `spate` binary under test.
///
/// `$SPATE_BIN` wins if set. Otherwise, once per test process, this runs
/// `cargo build -p spate-engine --bin spate` (a no-op when it is up to date,
/// so a stale binary is never tested) and returns `<target>/debug/spate`.
/// A failed build panics in every test that needs the binary, with cargo's
/// output.
pub fn spate_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| workspace_bin("SPATE_BIN", "spate-engine", "spate"));
    match bin {
        Ok(p) => p,
        Err(e) => panic!("no spate binary: {e}"),
    }
}

/// The `spate-bench` binary (the load generator), found and built like
/// [`spate_bin`]: `$SPATE_BENCH_BIN`, or `cargo build -p spate-bench --bin
/// spate-bench` once per test process. A missing binary panics: a test
/// that needs it never silently skips.
pub fn spate_bench_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let bin = BIN.get_or_init(|| workspace_bin("SPATE_BENCH_BIN", "spate-bench", "spate-bench"));
    match bin {
        Ok(p) => p,
        Err(e) => panic!("no spate-bench binary: {e}"),
    }
}

/// `$env_var` if set, else `cargo build -p package --bin bin` and
/// `<target>/debug/bin`.
fn workspace_bin(env_var: &str, package: &str, bin: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{env_var}={} is not a file", p.display()))
        };
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => return Err(format!("cannot run {}: {e}", Path::new(&cargo).display())),
        Ok(o) if !o.status.success() => {
            return Err(format!(
                "`cargo build -p {package} --bin {bin}` failed ({}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(_) => {}
    }
    let p = target_dir().join("debug").join(bin);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("built {bin}, but {} does not exist", p.display()))
    }
}

/// A `spate` run that ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// Exit code, or None if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Run `spate args…` in `cwd` to completion. Panics (with whatever it printed)
/// if it is still running after `timeout`, after killing it.
pub fn run_spate(args: &[&str], cwd: &Path, timeout: Duration) -> Finished {
    let scratch = crate::ScratchDir::new("run");
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let mut child = Command::new(spate_bin())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", spate_bin().display()));
    let out_copy = capture_output(child.stdout.take().expect("piped"), &out_path);
    let err_copy = capture_output(child.stderr.take().expect("piped"), &err_path);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = out_copy.join();
            let _ = err_copy.join();
            panic!(
                "`spate {}` still running after {timeout:?}; killed it.\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                abbreviate(
                    &std::fs::read_to_string(&out_path).unwrap_or_default(),
                    40,
                    60
                ),
                abbreviate(
                    &std::fs::read_to_string(&err_path).unwrap_or_default(),
                    40,
                    60
                )
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes close when spate (and anything it spawned) is gone.
    let _ = out_copy.join();
    let _ = err_copy.join();
    Finished {
        status,
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into(),
    }
}

/// Most bytes of a child's stdout/stderr kept on disk; the rest is read and
/// dropped (a server logging in a loop must not fill the disk).
pub(crate) const OUTPUT_CAP: u64 = 8 * 1024 * 1024;

/// Copy `from` into a new file at `path` on a thread, keeping the first
/// `OUTPUT_CAP` bytes and draining the rest.
pub(crate) fn capture_output(
    mut from: impl std::io::Read + Send + 'static,
    path: &Path,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    std::thread::spawn(move || {
        let mut kept = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if kept < OUTPUT_CAP {
                let take = n.min((OUTPUT_CAP - kept) as usize);
                let _ = file.write_all(&buf[..take]);
                kept += take as u64;
                if kept == OUTPUT_CAP {
                    let _ = file.write_all(
                        format!("\n[spate-tests: output truncated after {OUTPUT_CAP} bytes]\n")
                            .as_bytes(),
                    );
                }
            }
        }
    })
}

/// The first `head` and last `tail` lines of `text`, for failure messages.
pub(crate) fn abbreviate(text: &str, head: usize, tail: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= head + tail {
        return text.to_string();
    }
    format!(
        "{}\n[... {} lines omitted ...]\n{}",
        lines[..head].join("\n"),
        lines.len() - head - tail,
        lines[lines.len() - tail..].join("\n")
    )
}
