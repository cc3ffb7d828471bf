//! Real media clients for live tests: ffmpeg publishing a synthetic stream,
//! ffprobe reading what a viewer gets, ffmpeg decoding it. Every child is
//! killed (and reaped) when its guard drops, panicking test or not.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::binary::abbreviate;
use crate::json::Json;

fn tool(env: &str, default: &str) -> &'static str {
    static FFMPEG: OnceLock<Result<String, String>> = OnceLock::new();
    static FFPROBE: OnceLock<Result<String, String>> = OnceLock::new();
    let cell = if default == "ffmpeg" {
        &FFMPEG
    } else {
        &FFPROBE
    };
    let r = cell.get_or_init(|| {
        let bin = std::env::var(env).unwrap_or_else(|_| default.into());
        match Command::new(&bin)
            .args(["-hide_banner", "-version"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(bin),
            Ok(o) => Err(format!("`{bin} -version` failed: {}", o.status)),
            Err(e) => Err(format!("cannot run `{bin}`: {e}")),
        }
    });
    match r {
        Ok(b) => b,
        Err(e) => panic!(
            "\n\n*** {default} is required by the live end-to-end tests and is missing: {e}.\n\
             *** Run scripts/test.sh (installs it) or `apt-get install -y ffmpeg`.\n\n"
        ),
    }
}

/// The ffmpeg executable (`$FFMPEG` or `ffmpeg`); panics loudly if missing.
pub fn ffmpeg_bin() -> &'static str {
    tool("FFMPEG", "ffmpeg")
}

/// The ffprobe executable (`$FFPROBE` or `ffprobe`); panics loudly if missing.
pub fn ffprobe_bin() -> &'static str {
    tool("FFPROBE", "ffprobe")
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A running child process, its stdout and stderr in files; SIGKILLed and
/// reaped on drop. If the test is panicking, its stderr is printed.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    exit: Option<ExitStatus>,
    what: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl ChildGuard {
    /// Spawn `cmd` (stdin null, stdout/stderr to `<dir>/<label>-N.{out,err}`).
    pub fn spawn(mut cmd: Command, dir: &Path, label: &str) -> ChildGuard {
        let n = next_id();
        let stdout_path = dir.join(format!("{label}-{n}.out"));
        let stderr_path = dir.join(format!("{label}-{n}.err"));
        let what = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::fs::File::create(&stdout_path).expect("create child stdout file");
        let err = std::fs::File::create(&stderr_path).expect("create child stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        ChildGuard {
            child,
            exit: None,
            what,
            stdout_path,
            stderr_path,
        }
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.what
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.try_exit().is_none()
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

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Send `sig` (if still running).
    pub fn signal(&mut self, sig: i32) {
        if self.try_exit().is_none() {
            // SAFETY: kill(2) on our own unreaped child: the pid cannot have
            // been reused.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// Everything it wrote on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- `{}` ({:?}) stderr ----\n{}\n---- end ----",
                abbreviate(&self.what, 1, 0),
                self.exit,
                abbreviate(&self.stderr(), 20, 40)
            );
        }
    }
}

/// A synthetic test stream for [`publish`]: lavfi video pattern + sine tone,
/// H.264 (libx264 ultrafast, zerolatency, 2 s GOP) + AAC 48 kHz stereo,
/// paced in real time (`-re`).
#[derive(Debug, Clone)]
pub struct TestStream {
    /// lavfi video source: `testsrc2`, `testsrc`, `smptebars`, `rgbtestsrc`…
    pub pattern: &'static str,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Seconds before ffmpeg ends by itself (it is killed on drop anyway).
    pub seconds: u32,
    /// Sine frequency, Hz.
    pub tone: u32,
    /// Video bitrate (`-b:v`), e.g. `"1M"`.
    pub bitrate: &'static str,
    /// Constant bitrate with filler (`nal-hrd=cbr`, minrate = maxrate =
    /// bitrate), for tests that need many bytes per second: testsrc otherwise
    /// encodes far below its target.
    pub cbr: bool,
}

impl Default for TestStream {
    fn default() -> Self {
        Self {
            pattern: "testsrc2",
            width: 320,
            height: 240,
            fps: 30,
            seconds: 40,
            tone: 1000,
            bitrate: "1M",
            cbr: false,
        }
    }
}

impl TestStream {
    /// The stream at `width`x`height`.
    pub fn sized(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            ..Self::default()
        }
    }

    /// ffmpeg's input and encoding arguments (no output).
    pub fn args(&self) -> Vec<String> {
        let gop = (self.fps * 2).to_string();
        let mut a: Vec<String> = vec![
            "-nostdin".into(),
            "-hide_banner".into(),
            "-loglevel".into(),
            "error".into(),
            "-re".into(),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!(
                "{}=size={}x{}:rate={}",
                self.pattern, self.width, self.height, self.fps
            ),
            "-re".into(),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency={}:sample_rate=48000", self.tone),
        ];
        for s in [
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-b:v",
            self.bitrate,
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-t",
            &self.seconds.to_string(),
        ] {
            a.push(s.to_string());
        }
        if self.cbr {
            for s in [
                "-minrate",
                self.bitrate,
                "-maxrate",
                self.bitrate,
                "-bufsize",
                self.bitrate,
                "-x264-params",
                "nal-hrd=cbr",
            ] {
                a.push(s.to_string());
            }
        }
        a
    }
}

/// Start `ffmpeg … -f flv URL`, publishing `stream` over RTMP. Its logs go to
/// `dir`.
pub fn publish(dir: &Path, url: &str, stream: &TestStream) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(stream.args()).args(["-f", "flv", url]);
    ChildGuard::spawn(cmd, dir, "publish")
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status; `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
    /// The command line.
    pub command: String,
}

impl Output {
    /// Exited 0 (before the timeout).
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Run `cmd` to completion, killing it after `timeout`.
pub fn run_with_timeout(cmd: Command, dir: &Path, label: &str, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut g = ChildGuard::spawn(cmd, dir, label);
    let status = g.wait_exit(timeout);
    g.kill();
    Output {
        status,
        stdout: g.stdout(),
        stderr: g.stderr(),
        elapsed: start.elapsed(),
        command: g.command().to_string(),
    }
}

/// One stream as ffprobe describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbedStream {
    /// `video`, `audio`, `data`, `subtitle`…
    pub codec_type: String,
    /// `h264`, `aac`…
    pub codec_name: String,
    /// Video width (0 if none).
    pub width: u32,
    /// Video height (0 if none).
    pub height: u32,
    /// Audio sample rate (0 if none).
    pub sample_rate: u32,
    /// Audio channels (0 if none).
    pub channels: u32,
}

/// `ffprobe -show_entries stream=… -of json URL`, read from `.streams`.
/// Err (with ffprobe's output) if it fails, times out (30 s), or prints
/// something that is not the expected JSON.
pub fn ffprobe_streams(dir: &Path, url: &str) -> Result<Vec<ProbedStream>, String> {
    let mut cmd = Command::new(ffprobe_bin());
    cmd.args([
        "-v",
        "error",
        "-rw_timeout",
        "20000000",
        "-show_entries",
        "stream=codec_type,codec_name,width,height,sample_rate,channels",
        "-of",
        "json",
        url,
    ]);
    let out = run_with_timeout(cmd, dir, "ffprobe", Duration::from_secs(30));
    if !out.success() {
        return Err(format!(
            "`{}` failed ({:?} after {:?}):\nstderr: {}\nstdout: {}",
            out.command, out.status, out.elapsed, out.stderr, out.stdout
        ));
    }
    let v = Json::parse(&out.stdout).map_err(|e| format!("ffprobe JSON: {e}\n{}", out.stdout))?;
    let streams = v
        .get("streams")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no .streams array in ffprobe output:\n{}", out.stdout))?;
    let num = |s: &Json, k: &str| s.get(k).and_then(Json::as_f64).unwrap_or(0.0) as u32;
    let text = |s: &Json, k: &str| {
        s.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(streams
        .iter()
        .map(|s| ProbedStream {
            codec_type: text(s, "codec_type"),
            codec_name: text(s, "codec_name"),
            width: num(s, "width"),
            height: num(s, "height"),
            sample_rate: num(s, "sample_rate"),
            channels: num(s, "channels"),
        })
        .collect())
}

/// `ffmpeg -nostdin -v error -i URL -t SECS -f null -`, killed after
/// `timeout`. A clean decode prints nothing.
pub fn ffmpeg_decode(dir: &Path, url: &str, seconds: u32, timeout: Duration) -> Output {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(["-nostdin", "-v", "error", "-i", url, "-t"])
        .arg(seconds.to_string())
        .args(["-f", "null", "-"]);
    run_with_timeout(cmd, dir, "decode", timeout)
}

/// What [`decode_for`] saw: the run, how much media it got through, and the
/// lines it printed at `-v error` (a clean decode prints none).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The ffmpeg run.
    pub output: Output,
    /// Media time decoded, seconds (the largest `out_time_us` ffmpeg's
    /// `-progress` reported).
    pub media_seconds: f64,
    /// ffmpeg's stderr lines (at `-v error`: errors only).
    pub error_lines: Vec<String>,
}

impl Decoded {
    /// Panic unless ffmpeg exited 0, printed nothing at `-v error`, and
    /// decoded at least `min_seconds` of media.
    pub fn assert_clean(&self, min_seconds: f64) -> &Self {
        assert!(
            self.output.success() && self.error_lines.is_empty(),
            "`{}`: want exit 0 and no errors, got {:?} after {:?} ({:.1} s of media decoded), {} error lines:\n{}",
            self.output.command,
            self.output.status,
            self.output.elapsed,
            self.media_seconds,
            self.error_lines.len(),
            abbreviate(&self.error_lines.join("\n"), 30, 10)
        );
        assert!(
            self.media_seconds >= min_seconds,
            "`{}` decoded only {:.2} s of media (want >= {min_seconds} s) in {:?}",
            self.output.command,
            self.media_seconds,
            self.output.elapsed
        );
        self
    }
}

fn progress_seconds(progress: &str) -> f64 {
    progress
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .max()
        .unwrap_or(0)
        .max(0) as f64
        / 1e6
}

/// `ffmpeg -nostdin -v error -rw_timeout 20s -i URL -t SECS -f null -progress
/// pipe:1 -`, killed after `timeout`: works for any input ffmpeg reads (a
/// file, HLS master or media playlist, DASH MPD, progressive TS/FLV over
/// HTTP). On live HLS ffmpeg starts 3 segments from the end of the playlist,
/// and on live inputs it may end before `seconds` when it catches up with
/// the live edge; check [`Decoded::media_seconds`] against what the input
/// can give.
pub fn decode_for(dir: &Path, url: &str, seconds: u32, timeout: Duration) -> Decoded {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-rw_timeout",
        "20000000",
        "-i",
        url,
    ])
    .arg("-t")
    .arg(seconds.to_string())
    .args(["-f", "null", "-progress", "pipe:1", "-"]);
    let output = run_with_timeout(cmd, dir, "decode", timeout);
    Decoded {
        media_seconds: progress_seconds(&output.stdout),
        error_lines: output
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        output,
    }
}

/// What [`ts_continuity`] saw.
#[derive(Debug, Clone)]
pub struct Continuity {
    /// The ffmpeg run (its stderr is the `-v debug` log).
    pub output: Output,
    /// Media time decoded, seconds.
    pub media_seconds: f64,
    /// The `Continuity check failed for pid …` lines of ffmpeg's MPEG-TS
    /// demuxer.
    pub failures: Vec<String>,
    /// How many MPEG-TS packets' worth of log the demuxer printed (sanity:
    /// a run that read no TS at all has nothing to fail).
    pub ts_demuxer_lines: usize,
}

impl Continuity {
    /// Panic unless ffmpeg exited 0, decoded at least `min_seconds` of media,
    /// and its TS demuxer never logged a continuity-counter failure.
    pub fn assert_clean(&self, min_seconds: f64) -> &Self {
        assert!(
            self.output.success(),
            "`{}` failed ({:?} after {:?}):\n{}",
            self.output.command,
            self.output.status,
            self.output.elapsed,
            abbreviate(&self.output.stderr, 20, 40)
        );
        assert!(
            self.failures.is_empty(),
            "`{}`: {} MPEG-TS continuity-counter failures ({:.1} s of media decoded):\n{}",
            self.output.command,
            self.failures.len(),
            self.media_seconds,
            abbreviate(&self.failures.join("\n"), 20, 5)
        );
        assert!(
            self.media_seconds >= min_seconds,
            "`{}` decoded only {:.2} s of media (want >= {min_seconds} s): nothing much was checked",
            self.output.command,
            self.media_seconds
        );
        self
    }
}

/// `ffmpeg -nostdin -v debug -i URL -t SECS -f null -`, counting the lines
/// where ffmpeg's MPEG-TS demuxer says "Continuity check failed" (a lost,
/// repeated or reordered 188-byte packet, or a segment whose counters do not
/// carry on from the previous one: ffmpeg's HLS demuxer feeds consecutive
/// segments of a playlist through one TS demuxer). Works on `.ts` files and
/// URLs and on HLS playlists with TS segments; on live HLS ffmpeg starts 3
/// segments back from the live edge.
pub fn ts_continuity(dir: &Path, url: &str, seconds: u32, timeout: Duration) -> Continuity {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args([
        "-nostdin",
        "-v",
        "debug",
        "-rw_timeout",
        "20000000",
        "-i",
        url,
    ])
    .arg("-t")
    .arg(seconds.to_string())
    .args(["-f", "null", "-progress", "pipe:1", "-"]);
    let output = run_with_timeout(cmd, dir, "continuity", timeout);
    let failures = output
        .stderr
        .lines()
        .filter(|l| l.contains("Continuity check failed"))
        .map(str::to_string)
        .collect();
    let ts_demuxer_lines = output
        .stderr
        .lines()
        .filter(|l| l.contains("[mpegts @"))
        .count();
    Continuity {
        media_seconds: progress_seconds(&output.stdout),
        failures,
        ts_demuxer_lines,
        output,
    }
}

/// ffprobe `url` and panic unless it shows exactly one h264 `width`x`height`
/// video stream (if `video` is given; none otherwise) and, if `audio`, one
/// aac 48000 Hz stereo stream (none otherwise).
pub fn assert_probe(dir: &Path, url: &str, video: Option<(u32, u32)>, audio: bool) {
    let streams = ffprobe_streams(dir, url).unwrap_or_else(|e| panic!("{e}"));
    let mut want = Vec::new();
    if let Some((width, height)) = video {
        want.push(ProbedStream {
            codec_type: "video".into(),
            codec_name: "h264".into(),
            width,
            height,
            ..ProbedStream::default()
        });
    }
    if audio {
        want.push(ProbedStream {
            codec_type: "audio".into(),
            codec_name: "aac".into(),
            sample_rate: 48000,
            channels: 2,
            ..ProbedStream::default()
        });
    }
    let mut got = streams.clone();
    got.sort_by(|a, b| b.codec_type.cmp(&a.codec_type));
    assert_eq!(
        got,
        want,
        "ffprobe {url}: want exactly {video:?} h264 video and {} aac 48000 Hz stereo audio",
        if audio { "one" } else { "no" }
    );
}

/// Like [`assert_probe`], but for inputs that may list the same rendition
/// more than once (an HLS multivariant playlist whose audio rendition is
/// also an audio-only variant shows up as two audio streams): every stream
/// ffprobe shows is h264 `width`x`height` or aac 48000 Hz stereo, video is
/// there iff `video` is given, audio iff `audio`.
pub fn assert_probe_includes(dir: &Path, url: &str, video: Option<(u32, u32)>, audio: bool) {
    let streams = ffprobe_streams(dir, url).unwrap_or_else(|e| panic!("{e}"));
    let is_video = |p: &ProbedStream| {
        video.is_some_and(|(w, h)| {
            p.codec_type == "video" && p.codec_name == "h264" && (p.width, p.height) == (w, h)
        })
    };
    let is_audio = |p: &ProbedStream| {
        audio
            && p.codec_type == "audio"
            && p.codec_name == "aac"
            && p.sample_rate == 48000
            && p.channels == 2
    };
    assert!(
        streams.iter().all(|p| is_video(p) || is_audio(p))
            && streams.iter().any(is_video) == video.is_some()
            && streams.iter().any(is_audio) == audio,
        "ffprobe {url}: want only {video:?} h264 video and {} aac 48000 Hz stereo audio, got {streams:#?}",
        if audio { "some" } else { "no" }
    );
}
