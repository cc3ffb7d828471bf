//! Harness for Spate's end-to-end tests: the real `spate` binary, started with
//! a temp config and a temp static root full of fixtures, driven by real
//! clients (curl, ffmpeg/ffprobe, headless Chromium) and by raw sockets where
//! a test needs byte-level control (pipelining, stalled heads, FLV tags).
//!
//! Design principles:
//! - Test the binary a user runs, through its public surface only (CLI, config
//!   file, sockets, signals, stderr). Nothing here links against the engine.
//! - Every test can fail: a missing client (curl) is a loud panic, never a
//!   skip; a server that does not come up is a failure with its stderr shown.
//! - No flakiness on a noisy 2-core machine: deadlines are generous, but each
//!   one is finite, and timing assertions leave seconds of slack.
//! - Each test gets its own server, port, root and scratch directory, so tests
//!   run in parallel (`cargo test` default) without seeing each other.
//!
//! Typical use:
//! ```no_run
//! let spate = spate_tests::Spate::start();
//! let r = spate.get("/index.html");
//! assert_eq!(r.status, 200);
//! ```

mod binary;
mod browser;
mod curl;
mod fixtures;
mod flv;
mod json;
mod media;
mod netns;
mod playlist;
mod ports;
mod raw_http;
mod scratch;
mod server;
mod venv;

pub use binary::{Finished, run_spate, spate_bench_bin, spate_bin, target_dir, workspace_root};
pub use browser::{
    Playback, Player, browser_dir, node_module_file, play_in_chromium, run_node_script,
};
pub use curl::{CurlResponse, curl, curl_bin};
pub use fixtures::{
    BIG_FILE, BIG_FILE_LEN, CONTENT_TYPES, LARGE_FILE, LARGE_FILE_LEN, OUTSIDE_SECRET,
    PLAYLIST_FILE, pseudo_random_bytes,
};
pub use flv::{
    FlvError, FlvParser, FlvTag, FlvViewer, Received, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, ViewerLog,
};
pub use json::Json;
pub use media::{
    ChildGuard, Continuity, Decoded, Output, ProbedStream, TestStream, assert_probe,
    assert_probe_includes, decode_for, ffmpeg_bin, ffmpeg_decode, ffprobe_bin, ffprobe_streams,
    publish, run_with_timeout, ts_continuity,
};
pub use netns::{in_private_netns, multicast_on_loopback};
pub use playlist::{
    DashAdaptationSet, DashMpd, DashPeriod, DashRepresentation, DashSegment, DashTemplate,
    HlsMedia, HlsPlaylist, HlsSegment, HlsVariant, TimelineEntry, fetch_dash, fetch_hls,
    fetch_text, resolve_url,
};
pub use ports::free_port;
pub use raw_http::{RawResponse, connect, connect_small_window, read_response};
pub use scratch::ScratchDir;
pub use server::{Spate, SpateBuilder};
pub use venv::{venv_dir, venv_python};

/// Poll `cond` every 50 ms until it returns true or `timeout` passes; returns
/// whether it became true.
/// A real `Instant` for unit tests of the pure crates to count from: `std`
/// has no way to make one without reading the clock, and `protocols` and
/// `packager` never read it themselves, not even in tests.
pub fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}

pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
