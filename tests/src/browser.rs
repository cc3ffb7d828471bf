//! Headless Chromium through node + playwright-core (`tests/browser/`):
//! Debian's `/usr/bin/chromium` (or `$CHROMIUM`), npm packages installed by
//! `scripts/test.sh` (`npm ci` in `tests/browser`). Nothing is downloaded by a
//! test; anything missing is a loud panic.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::media::{Output, run_with_timeout};
use crate::{Json, workspace_root};

/// `tests/browser`: the npm project with the scripts and player pages.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests").join("browser")
}

/// A file installed by npm under `tests/browser/node_modules`. Panics loudly
/// if it is missing.
pub fn node_module_file(rel: &str) -> PathBuf {
    let p = browser_dir().join("node_modules").join(rel);
    assert!(
        p.is_file(),
        "\n\n*** {} is missing: the browser tests need the npm packages of tests/browser.\n\
         *** Run scripts/test.sh (installs them) or `cd tests/browser && npm ci`.\n\n",
        p.display()
    );
    p
}

fn check_tools() {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "\n\n*** node is required by the browser tests and cannot run ({other:?}).\n\
             *** Run scripts/test.sh (installs it) or `apt-get install -y nodejs npm`.\n\n"
        ),
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "\n\n*** {chromium} is missing: the browser tests need Debian's chromium.\n\
         *** Run scripts/test.sh (installs it) or `apt-get install -y chromium`.\n\n"
    );
    node_module_file("playwright-core/package.json");
}

/// Run `node tests/browser/<script> args…` (cwd `tests/browser`), killed
/// after `timeout`; its output files go to `scratch`.
pub fn run_node_script(scratch: &Path, script: &str, args: &[&str], timeout: Duration) -> Output {
    check_tools();
    let mut cmd = Command::new("node");
    cmd.arg(browser_dir().join(script))
        .args(args)
        .current_dir(browser_dir());
    run_with_timeout(cmd, scratch, "node", timeout)
}

/// A player library [`play_in_chromium`] drives (`tests/browser/play.html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Player {
    /// hls.js (`new Hls({lowLatencyMode: false})`, `loadSource`,
    /// `attachMedia`): HLS with TS or fMP4 segments.
    HlsJs,
    /// dash.js (`dashjs.MediaPlayer().create()`, `initialize(video, url,
    /// true)`), its clock fallback pointed at the harness, never the
    /// internet.
    DashJs,
    /// mpegts.js: progressive MPEG-TS (`flv: false`) or FLV over HTTP,
    /// live (`live: true`) or a whole file.
    MpegtsJs {
        /// FLV rather than MPEG-TS.
        flv: bool,
        /// A live stream (mpegts.js `isLive`).
        live: bool,
    },
}

impl Player {
    fn args(self) -> (&'static str, String, &'static str) {
        match self {
            Player::HlsJs => ("hls", String::new(), "hls.js/dist/hls.min.js"),
            Player::DashJs => (
                "dash",
                String::new(),
                "dashjs/dist/modern/umd/dash.all.min.js",
            ),
            Player::MpegtsJs { flv, live } => (
                "mpegts",
                format!(
                    "type={}&live={}",
                    if flv { "flv" } else { "mpegts" },
                    u8::from(live)
                ),
                "mpegts.js/dist/mpegts.js",
            ),
        }
    }
}

/// What `tests/browser/play.mjs` reported.
#[derive(Debug, Clone)]
pub struct Playback {
    /// It passed: currentTime advanced enough, no player error, nothing
    /// blocked.
    pub ok: bool,
    /// Seconds `video.currentTime` advanced from when it first moved.
    pub advanced: f64,
    /// Decoded picture size (0x0 for audio only).
    pub video_width: u32,
    /// Decoded picture height.
    pub video_height: u32,
    /// Why it failed (empty on a pass).
    pub why: String,
    /// Fatal player errors, `video.error`, page errors.
    pub errors: Vec<String>,
    /// Non-loopback requests that were aborted.
    pub blocked: Vec<String>,
    /// Requests dash.js made to the harness's fallback clock (`/__test/time`,
    /// used only when the MPD has no usable `<UTCTiming>`).
    pub time_fallback_hits: u32,
    /// `seconds status method url` of every response the page got (capped).
    pub requests: Vec<String>,
    /// The JSON line, whole.
    pub line: String,
    /// The node run.
    pub output: Output,
}

impl Playback {
    /// Panic (with everything the page reported) unless it passed and
    /// currentTime advanced at least `seconds`.
    pub fn assert_played(&self, seconds: f64) -> &Self {
        assert!(
            self.ok && self.advanced >= seconds,
            "the player did not play {seconds} s: {} (advanced {:.2} s; exit {:?} after {:?})\n\
             errors: {:#?}\nblocked: {:#?}\nrequests (last 40): {:#?}\nline: {}\nnode stderr:\n{}",
            self.why,
            self.advanced,
            self.output.status,
            self.output.elapsed,
            self.errors,
            self.blocked,
            &self.requests[self.requests.len().saturating_sub(40)..],
            self.line,
            self.output.stderr
        );
        self
    }
}

/// Play `src` (a URL, usually a path on `origin`) with `player` in headless
/// Chromium until `video.currentTime` has advanced `seconds`, or `timeout`
/// passes: `node tests/browser/play.mjs`. The page and the player library are
/// served under `origin/__test/` by playwright itself (nothing is copied into
/// the server's root); any request to a non-loopback host is aborted and
/// fails the run. Never panics on a failed playback: see
/// [`Playback::assert_played`].
pub fn play_in_chromium(
    scratch: &Path,
    origin: &str,
    player: Player,
    src: &str,
    seconds: f64,
    timeout: Duration,
) -> Playback {
    let (name, query, lib) = player.args();
    node_module_file(lib);
    let secs = seconds.to_string();
    let timeout_s = timeout.as_secs().max(1).to_string();
    let mut args = vec![origin, name, src, &secs, &timeout_s];
    if !query.is_empty() {
        args.push(&query);
    }
    let out = run_node_script(
        scratch,
        "play.mjs",
        &args,
        timeout + Duration::from_secs(30),
    );
    let line = out.stdout.lines().last().unwrap_or("").to_string();
    // Shown with --nocapture (and kept in the test's output on failure).
    eprintln!("play.mjs {name} {src}: {line}");
    let json = Json::parse(&line).unwrap_or(Json::Null);
    let num = |k: &str| json.get(k).and_then(Json::as_f64).unwrap_or(0.0);
    let strings = |k: &str| -> Vec<String> {
        json.get(k)
            .and_then(Json::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect()
    };
    let why = match json.get("why").and_then(Json::as_str) {
        Some(w) => w.to_string(),
        None => format!("play.mjs printed no JSON result (stdout: {:?})", out.stdout),
    };
    Playback {
        ok: out.success() && json.get("ok").and_then(Json::as_bool) == Some(true),
        advanced: num("advanced"),
        video_width: num("videoWidth") as u32,
        video_height: num("videoHeight") as u32,
        why,
        errors: strings("errors"),
        blocked: strings("blocked"),
        time_fallback_hits: num("timeFallbackHits") as u32,
        requests: strings("requests"),
        line,
        output: out,
    }
}
