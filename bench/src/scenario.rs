//! Scenario files for `spate-bench run`: what to publish, who watches, for
//! how long, against which server. TOML, parsed strictly: an unknown key, a
//! wrong type or a bad value fails with a message naming the field.
//!
//! ```toml
//! duration = 10          # seconds measured
//! warmup = 2             # seconds after every viewer is up, not measured
//! label = "spate"        # copied into the report (optional)
//!
//! [target]               # bases of the URL templates (--target / --rtmp override)
//! http = "http://127.0.0.1:8080"
//! rtmp = "rtmp://127.0.0.1:1935"
//!
//! [server]               # optional: sample this process's CPU and RSS
//! pid = 1234
//!
//! [[publisher]]
//! protocol = "rtmp"      # rtmp | udp-ts | rtp-ts
//! pattern = "testsrc"    # or source = "file.flv"
//! bitrate = "1M"
//! count = 1
//! url = "{rtmp}/live/bench{n}"
//!
//! [[publisher]]          # MPEG-TS over UDP, e.g. to Spate's
//! protocol = "udp-ts"    # [[stream]] name = "cam", source = "tsudp://127.0.0.1:5000"
//! pattern = "testsrc"
//! count = 2              # stream n goes to PORT + n: 5000, 5001
//! url = "udp://127.0.0.1:5000/cam{n}"   # /NAME: the server's stream name, for {stream}
//!                        # rtp-ts: the same in RTP (RFC 2250), url = "rtp://…"
//!
//! [[viewers]]
//! protocol = "http-flv"  # http-flv | rtmp | hls | dash | http-ts
//! count = 50
//! ramp = 100             # joins per second (0: as fast as possible)
//! churn = 0              # leaves + joins per second while running
//! url = "{http}/{stream}.flv"
//! e2e_every = 10         # HLS/DASH: 1 viewer in 10 parses segments for end-to-end latency
//! audio = true           # HLS/DASH: fetch the separate audio track too (default)
//! ```
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seconds measured (after warm-up).
    pub duration: f64,
    /// Seconds after every viewer is up before measuring starts.
    #[serde(default = "default_warmup")]
    pub warmup: f64,
    /// Copied into the report.
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub publisher: Vec<Publisher>,
    #[serde(default)]
    pub viewers: Vec<Viewers>,
    /// `--find-max` settings.
    #[serde(default)]
    pub find_max: FindMax,
    /// Present: judge the run as a soak (RSS flat, fds back, no viewer lost).
    pub soak: Option<Soak>,
}

/// The soak verdict's rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soak {
    /// The server's RSS at the end within ± this share of its value right
    /// after warm-up.
    #[serde(default = "default_rss_tolerance")]
    pub rss_tolerance: f64,
    /// Seconds to wait after the viewers leave before counting the
    /// server's fds again.
    #[serde(default = "default_settle")]
    pub settle: f64,
}

fn default_rss_tolerance() -> f64 {
    0.05
}
fn default_settle() -> f64 {
    3.0
}

fn default_warmup() -> f64 {
    2.0
}

/// Bases of the URL templates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default = "default_http")]
    pub http: String,
    #[serde(default = "default_rtmp")]
    pub rtmp: String,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            http: default_http(),
            rtmp: default_rtmp(),
        }
    }
}

fn default_http() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_rtmp() -> String {
    "rtmp://127.0.0.1:1935".into()
}

/// The server under test (optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Process whose CPU and RSS are sampled from /proc.
    pub pid: Option<u32>,
    /// Also sample this process's direct children (an nginx master).
    #[serde(default)]
    pub with_children: bool,
}

/// Capacity search settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindMax {
    /// Viewer-count multipliers tried in order (each viewer group's `count`
    /// times the step).
    #[serde(default = "default_steps")]
    pub steps: Vec<f64>,
    /// Seconds measured per step.
    #[serde(default = "default_step_duration")]
    pub step_duration: f64,
    /// A step is clean when stalled viewer-seconds / viewer-seconds ≤ this.
    #[serde(default)]
    pub max_stall_ratio: f64,
}

impl Default for FindMax {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            step_duration: default_step_duration(),
            max_stall_ratio: 0.0,
        }
    }
}

fn default_steps() -> Vec<f64> {
    vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
}
fn default_step_duration() -> f64 {
    10.0
}

/// Publisher protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PublishProtocol {
    Rtmp,
    /// MPEG-TS over UDP (`ts_publish.rs`).
    UdpTs,
    /// MPEG-TS in RTP over UDP (RFC 2250; `ts_publish.rs`).
    RtpTs,
}

impl PublishProtocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtmp => "rtmp",
            Self::UdpTs => "udp-ts",
            Self::RtpTs => "rtp-ts",
        }
    }

    /// MPEG-TS over UDP, bare or in RTP.
    pub fn is_ts(self) -> bool {
        matches!(self, Self::UdpTs | Self::RtpTs)
    }
}

/// A `udp-ts` or `rtp-ts` publisher's destination:
/// `udp://HOST:PORT[/NAME]` or `rtp://HOST:PORT[/NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpUrl {
    /// `rtp://`: every datagram gets an RTP header.
    pub rtp: bool,
    /// Host name or address (`[v6]` kept bracketed).
    pub host: String,
    pub port: u16,
    /// The stream's name on the server (`{stream}` for the viewers); not
    /// sent anywhere. Empty when the URL has no path.
    pub name: String,
}

impl UdpUrl {
    /// `udp` or `rtp`.
    pub fn scheme(&self) -> &'static str {
        if self.rtp { "rtp" } else { "udp" }
    }

    /// `HOST:PORT`, for `ToSocketAddrs`.
    pub fn hostport(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parse `udp://HOST:PORT[/NAME]` or `rtp://…` (NAME one path segment;
/// `{n}` may appear in it, not in HOST:PORT). The error explains what is
/// expected.
pub fn parse_udp_url(url: &str) -> Result<UdpUrl, String> {
    const FORM: &str = "expected udp://HOST:PORT or udp://HOST:PORT/NAME (rtp:// for rtp-ts)";
    let (rtp, rest) = if let Some(r) = url.strip_prefix("udp://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rtp://") {
        (true, r)
    } else {
        return Err(format!("must start with udp:// or rtp:// ({FORM})"));
    };
    let (hostport, name) = rest.split_once('/').unwrap_or((rest, ""));
    if name.contains(['/', '?', '#']) || rest.contains(['?', '#']) {
        return Err(format!(
            "{FORM} (NAME is one path segment; no query or fragment)"
        ));
    }
    if hostport.contains(['{', '}']) {
        return Err(format!(
            "no placeholders in HOST:PORT (stream n of a group goes to PORT + n); {FORM}"
        ));
    }
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return Err(format!("no port; {FORM}"));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty() || (host.contains(':') && !bracketed) || host.contains(char::is_whitespace) {
        return Err(format!("bad host {host:?}; {FORM}"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("bad port {port:?} (1..=65535); {FORM}")),
    };
    Ok(UdpUrl {
        rtp,
        host: host.to_string(),
        port,
        name: name.to_string(),
    })
}

/// A group of publishers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    pub protocol: PublishProtocol,
    /// An FLV file (H.264/AAC), looped with continuing timestamps; relative
    /// to the scenario file's directory.
    pub source: Option<PathBuf>,
    /// Generate the source with ffmpeg instead: `testsrc`.
    pub pattern: Option<String>,
    /// Video bitrate of the generated pattern (ffmpeg syntax: `1M`, `500k`).
    #[serde(default = "default_bitrate")]
    pub bitrate: String,
    /// Seconds of generated media (looped while publishing).
    #[serde(default = "default_pattern_seconds")]
    pub pattern_seconds: u32,
    /// Frame rate of the generated pattern (a keyframe every 2 s).
    #[serde(default = "default_pattern_fps")]
    pub pattern_fps: u32,
    /// Picture size of the generated pattern, `WxH`.
    #[serde(default = "default_pattern_size")]
    pub pattern_size: String,
    /// The generated pattern has an AAC track (128 kbit/s); `false`: video only.
    #[serde(default = "yes")]
    pub pattern_audio: bool,
    /// Streams published by this group (`{n}` = 0..count).
    #[serde(default = "one")]
    pub count: usize,
    /// RTMP: `{rtmp}/APP/NAME{n}`. udp-ts: `udp://HOST:PORT[/NAME{n}]`,
    /// stream n to PORT + n; NAME is the server's name of the stream.
    pub url: String,
    /// Close the connection and publish again this often, seconds (soak).
    /// udp-ts: stop sending for 1 s this often, then go on from the next
    /// keyframe due (timestamps keep wall-clock pace: a ~1 s gap).
    pub reconnect_every: Option<f64>,
}

fn default_bitrate() -> String {
    "1M".into()
}
fn default_pattern_seconds() -> u32 {
    10
}
fn one() -> usize {
    1
}
fn default_pattern_fps() -> u32 {
    30
}
fn default_pattern_size() -> String {
    "640x360".into()
}
fn yes() -> bool {
    true
}

/// `WxH` with both even and in 16..=3840.
pub fn parse_size(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let (w, h) = (w.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
    let ok = |v: u32| (16..=3840).contains(&v) && v.is_multiple_of(2);
    (ok(w) && ok(h)).then_some((w, h))
}

/// Viewer protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewProtocol {
    HttpFlv,
    Rtmp,
    Hls,
    Dash,
    HttpTs,
}

impl ViewProtocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpFlv => "http-flv",
            Self::Rtmp => "rtmp",
            Self::Hls => "hls",
            Self::Dash => "dash",
            Self::HttpTs => "http-ts",
        }
    }
}

/// A group of viewers of one stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Viewers {
    pub protocol: ViewProtocol,
    pub count: usize,
    /// Joins per second (0: as fast as the connect concurrency allows).
    #[serde(default)]
    pub ramp: f64,
    /// Viewers leaving (and as many joining) per second while running.
    #[serde(default)]
    pub churn: f64,
    /// `{http}/{stream}.flv`, `{rtmp}/live/{stream}`, `{http}/hls/{stream}/media.m3u8`…
    pub url: String,
    /// Which published stream `{stream}` names: its index over every
    /// publisher group's streams in file order.
    #[serde(default)]
    pub stream: usize,
    /// Viewer threads (one io_uring each, ≤ 20,000 viewers each).
    #[serde(default = "one")]
    pub threads: usize,
    /// Stall tolerance, ms, over one frame interval (FLV, RTMP, TS).
    #[serde(default = "default_tolerance")]
    pub stall_tolerance_ms: u32,
    /// HLS / DASH: one viewer in this many (by join order, so their
    /// playlist-poll phases spread like everyone's) scans its segments for
    /// end-to-end latency; the others fetch and time segments without
    /// parsing them, which keeps the load generator's CPU for the viewers
    /// themselves at large counts. 1 = every viewer, 0 = none. Stalls and
    /// fetch latency are measured for every viewer either way.
    #[serde(default = "default_e2e_every")]
    pub e2e_every: usize,
    /// HLS/DASH: ms subtracted from segment frames' timestamps before they
    /// are matched to the publisher's, for servers that add a constant to
    /// PTS/DTS (nginx-rtmp's HLS: 700).
    #[serde(default)]
    pub ts_offset_ms: u32,
    /// HLS/DASH: fetch the audio track's segments too, as a player does
    /// (DASH: the MPD's first audio Representation; HLS: the variant's
    /// `EXT-X-MEDIA` audio rendition, when it has its own playlist).
    /// `false`: video only. Stalls are judged on video either way.
    #[serde(default = "yes")]
    pub audio: bool,
    /// Label of the group in the report (default: protocol).
    pub name: Option<String>,
}

fn default_tolerance() -> u32 {
    100
}

fn default_e2e_every() -> usize {
    10
}

/// A published stream, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Index of its `[[publisher]]` group.
    pub group: usize,
    /// rtmp://host:port/app/name
    pub url: String,
    /// The last path segment of `url` (the RTMP stream key, the udp-ts
    /// NAME; empty for a udp-ts URL without one): `{stream}`.
    pub name: String,
}

/// Parse and check a scenario.
pub fn parse(text: &str) -> Result<Scenario, String> {
    let s: Scenario = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    s.check()?;
    Ok(s)
}

/// Read, parse and check a scenario file.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Scenario {
    /// Check every field (parse does; call again after overriding one).
    pub fn check(&self) -> Result<(), String> {
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 86_400.0) {
            return Err(format!(
                "duration = {}: must be > 0 and ≤ 86400 seconds",
                self.duration
            ));
        }
        if !(self.warmup.is_finite() && (0.0..=3600.0).contains(&self.warmup)) {
            return Err(format!(
                "warmup = {}: must be in 0..=3600 seconds",
                self.warmup
            ));
        }
        check_base(&self.target.http, "target.http", "http://")?;
        check_base(&self.target.rtmp, "target.rtmp", "rtmp://")?;
        if self.publisher.is_empty() {
            return Err("publisher: at least one [[publisher]] is needed".into());
        }
        for (i, p) in self.publisher.iter().enumerate() {
            let f = |k: &str| format!("publisher[{i}].{k}");
            match (&p.source, &p.pattern) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{}: give source or pattern, not both",
                        f("pattern")
                    ));
                }
                (None, None) => return Err(format!("{}: missing (or give pattern)", f("source"))),
                (None, Some(pat)) if pat != "testsrc" => {
                    return Err(format!(
                        "{} = {pat:?}: only \"testsrc\" is known",
                        f("pattern")
                    ));
                }
                _ => {}
            }
            if !p
                .bitrate
                .trim_end_matches(['k', 'K', 'M', 'm'])
                .parse::<f64>()
                .is_ok_and(|b| b > 0.0)
            {
                return Err(format!(
                    "{} = {:?}: expected e.g. \"1M\" or \"500k\"",
                    f("bitrate"),
                    p.bitrate
                ));
            }
            if p.pattern_seconds == 0 || p.pattern_seconds > 600 {
                return Err(format!(
                    "{} = {}: must be 1..=600",
                    f("pattern_seconds"),
                    p.pattern_seconds
                ));
            }
            if p.pattern_fps == 0 || p.pattern_fps > 60 {
                return Err(format!(
                    "{} = {}: must be 1..=60",
                    f("pattern_fps"),
                    p.pattern_fps
                ));
            }
            if parse_size(&p.pattern_size).is_none() {
                return Err(format!(
                    "{} = {:?}: expected WxH, even, 16..=3840 (e.g. \"640x360\")",
                    f("pattern_size"),
                    p.pattern_size
                ));
            }
            if p.count == 0 || p.count > 1000 {
                return Err(format!("{} = {}: must be 1..=1000", f("count"), p.count));
            }
            if let Some(r) = p.reconnect_every
                && !(r.is_finite() && r >= 1.0)
            {
                return Err(format!(
                    "{} = {r}: must be ≥ 1 second",
                    f("reconnect_every")
                ));
            }
            match p.protocol {
                PublishProtocol::Rtmp => {
                    if !p.url.starts_with("{rtmp}") && !p.url.starts_with("rtmp://") {
                        return Err(format!(
                            "{} = {:?}: must start with {{rtmp}} or rtmp://",
                            f("url"),
                            p.url
                        ));
                    }
                    check_template(&p.url, &["rtmp", "http", "n"])
                        .map_err(|e| format!("{}: {e}", f("url")))?;
                }
                PublishProtocol::UdpTs | PublishProtocol::RtpTs => {
                    let u = parse_udp_url(&p.url)
                        .map_err(|e| format!("{} = {:?}: {e}", f("url"), p.url))?;
                    let want = p.protocol == PublishProtocol::RtpTs;
                    if u.rtp != want {
                        return Err(format!(
                            "{} = {:?}: protocol {} sends to {}://HOST:PORT[/NAME]",
                            f("url"),
                            p.url,
                            p.protocol.name(),
                            if want { "rtp" } else { "udp" }
                        ));
                    }
                    check_template(&p.url, &["n"]).map_err(|e| format!("{}: {e}", f("url")))?;
                    if usize::from(u.port) + p.count - 1 > 65535 {
                        return Err(format!(
                            "{} = {:?}: {} streams from port {} go past 65535",
                            f("url"),
                            p.url,
                            p.count,
                            u.port
                        ));
                    }
                }
            }
        }
        let plans = self.streams();
        let streams = plans.len();
        if self.viewers.is_empty() {
            return Err("viewers: at least one [[viewers]] group is needed".into());
        }
        for (i, v) in self.viewers.iter().enumerate() {
            let f = |k: &str| format!("viewers[{i}].{k}");
            if v.count == 0 {
                return Err(format!("{} = 0: must be > 0", f("count")));
            }
            if v.threads == 0 || v.threads > 64 {
                return Err(format!("{} = {}: must be 1..=64", f("threads"), v.threads));
            }
            if v.count.div_ceil(v.threads) > 20_000 {
                return Err(format!(
                    "{} = {}: more than 20,000 viewers per thread (one ring's direct-descriptor table); raise threads",
                    f("count"),
                    v.count
                ));
            }
            if !(v.ramp.is_finite() && v.ramp >= 0.0) {
                return Err(format!("{} = {}: must be ≥ 0", f("ramp"), v.ramp));
            }
            if !(v.churn.is_finite() && v.churn >= 0.0) {
                return Err(format!("{} = {}: must be ≥ 0", f("churn"), v.churn));
            }
            if v.stream >= streams {
                return Err(format!(
                    "{} = {}: only {streams} stream(s) are published",
                    f("stream"),
                    v.stream
                ));
            }
            check_template(&v.url, &["rtmp", "http", "stream"])
                .map_err(|e| format!("{}: {e}", f("url")))?;
            let plan = &plans[v.stream];
            if v.url.contains("{stream}") && plan.name.is_empty() {
                return Err(format!(
                    "{} = {:?}: {{stream}} is stream {} ({}), whose publisher[{}].url has no /NAME: give the server's stream name, udp://HOST:PORT/NAME",
                    f("url"),
                    v.url,
                    v.stream,
                    plan.url,
                    plan.group
                ));
            }
            let want = if v.protocol == ViewProtocol::Rtmp {
                "rtmp"
            } else {
                "http"
            };
            let scheme_ok = v.url.starts_with(&format!("{{{want}}}"))
                || v.url.starts_with(&format!("{want}://"));
            if !scheme_ok {
                return Err(format!(
                    "{} = {:?}: a {} viewer needs a {want}:// URL ({{{want}}}…)",
                    f("url"),
                    v.url,
                    v.protocol.name()
                ));
            }
        }
        if let Some(soak) = &self.soak {
            if !(soak.rss_tolerance.is_finite()
                && soak.rss_tolerance > 0.0
                && soak.rss_tolerance < 1.0)
            {
                return Err(format!(
                    "soak.rss_tolerance = {}: must be in (0, 1)",
                    soak.rss_tolerance
                ));
            }
            if !(soak.settle.is_finite() && (0.0..=600.0).contains(&soak.settle)) {
                return Err(format!(
                    "soak.settle = {}: must be in 0..=600 seconds",
                    soak.settle
                ));
            }
        }
        let fm = &self.find_max;
        if fm.steps.is_empty() || fm.steps.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("find_max.steps: must be a non-empty list of numbers > 0".into());
        }
        if !(fm.step_duration.is_finite() && fm.step_duration > 0.0) {
            return Err("find_max.step_duration: must be > 0".into());
        }
        if !(fm.max_stall_ratio.is_finite() && (0.0..1.0).contains(&fm.max_stall_ratio)) {
            return Err("find_max.max_stall_ratio: must be in [0, 1)".into());
        }
        Ok(())
    }

    /// Every published stream, in order.
    pub fn streams(&self) -> Vec<StreamPlan> {
        let mut out = Vec::new();
        for (g, p) in self.publisher.iter().enumerate() {
            for n in 0..p.count {
                if p.protocol.is_ts()
                    && let Ok(u) = parse_udp_url(&p.url)
                {
                    let name = u.name.replace("{n}", &n.to_string());
                    let port = usize::from(u.port) + n;
                    let mut url = format!("{}://{}:{port}", u.scheme(), u.host);
                    if !name.is_empty() {
                        url = format!("{url}/{name}");
                    }
                    out.push(StreamPlan {
                        group: g,
                        url,
                        name,
                    });
                    continue;
                }
                let url = expand(&p.url, &self.target, &[("n", &n.to_string())]);
                let name = url.rsplit('/').next().unwrap_or_default().to_string();
                out.push(StreamPlan {
                    group: g,
                    url,
                    name,
                });
            }
        }
        out
    }

    /// The URL viewer group `i` opens.
    pub fn viewer_url(&self, i: usize) -> String {
        let v = &self.viewers[i];
        let streams = self.streams();
        expand(&v.url, &self.target, &[("stream", &streams[v.stream].name)])
    }
}

fn check_base(base: &str, field: &str, scheme: &str) -> Result<(), String> {
    let Some(rest) = base.strip_prefix(scheme) else {
        return Err(format!("{field} = {base:?}: must start with {scheme}"));
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(format!(
            "{field} = {base:?}: expected {scheme}HOST[:PORT] (no path)"
        ));
    }
    Ok(())
}

/// Every `{name}` in `t` is one of `known`, braces balanced.
fn check_template(t: &str, known: &[&str]) -> Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return Err(format!("{t:?}: unmatched '}}'"));
        }
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(format!("{t:?}: unclosed '{{'"));
        };
        let name = &after[..j];
        if !known.contains(&name) {
            return Err(format!(
                "{t:?}: unknown placeholder {{{name}}} (known: {})",
                known
                    .iter()
                    .map(|k| format!("{{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

/// Replace `{http}`, `{rtmp}` (bases without a trailing slash) and the
/// `extra` placeholders in a checked template.
pub fn expand(t: &str, target: &Target, extra: &[(&str, &str)]) -> String {
    let mut out = t
        .replace("{http}", target.http.trim_end_matches('/'))
        .replace("{rtmp}", target.rtmp.trim_end_matches('/'));
    for (k, v) in extra {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
duration = 10
warmup = 1
label = "x"
[target]
http = "http://127.0.0.1:9000"
rtmp = "rtmp://127.0.0.1:1999/"
[server]
pid = 42
[[publisher]]
protocol = "rtmp"
pattern = "testsrc"
bitrate = "500k"
count = 2
url = "{rtmp}/live/live+b{n}"
[[viewers]]
protocol = "http-flv"
count = 50
ramp = 100
url = "{http}/{stream}.flv"
stream = 1
[[viewers]]
protocol = "rtmp"
count = 5
churn = 1.5
url = "{rtmp}/live/{stream}"
[[viewers]]
protocol = "hls"
count = 5
url = "{http}/hls/{stream}/media.m3u8"
[[viewers]]
protocol = "http-ts"
count = 5
url = "{http}/{stream}.ts"
[[viewers]]
protocol = "dash"
count = 5
url = "{http}/cmaf/{stream}/index.mpd"
e2e_every = 1
ts_offset_ms = 700
audio = false
"#;

    #[test]
    fn good_file_parses_and_expands() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.duration, 10.0);
        assert_eq!(s.server.pid, Some(42));
        let streams = s.streams();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[1].url, "rtmp://127.0.0.1:1999/live/live+b1");
        assert_eq!(streams[1].name, "live+b1");
        assert_eq!(s.viewer_url(0), "http://127.0.0.1:9000/live+b1.flv");
        assert_eq!(s.viewer_url(1), "rtmp://127.0.0.1:1999/live/live+b0");
        assert_eq!(
            s.viewer_url(2),
            "http://127.0.0.1:9000/hls/live+b0/media.m3u8"
        );
        assert_eq!(s.viewers[3].protocol, ViewProtocol::HttpTs);
        assert_eq!(s.viewers[4].protocol, ViewProtocol::Dash);
        assert_eq!(
            s.viewer_url(4),
            "http://127.0.0.1:9000/cmaf/live+b0/index.mpd"
        );
        assert_eq!(s.viewers[1].churn, 1.5);
        assert_eq!(
            s.viewers[2].e2e_every, 10,
            "default: 1 HLS viewer in 10 parses"
        );
        assert_eq!(s.viewers[4].e2e_every, 1);
        assert_eq!(
            (s.viewers[2].ts_offset_ms, s.viewers[4].ts_offset_ms),
            (0, 700)
        );
        assert!(s.viewers[2].audio, "default: players fetch audio too");
        assert!(!s.viewers[4].audio);
    }

    #[test]
    fn defaults() {
        let s = parse(
            "duration = 5\n[[publisher]]\nprotocol = \"rtmp\"\nsource = \"a.flv\"\nurl = \"{rtmp}/live/x\"\n\
             [[viewers]]\nprotocol = \"http-flv\"\ncount = 1\nurl = \"{http}/{stream}.flv\"\n",
        )
        .unwrap();
        assert_eq!(s.warmup, 2.0);
        assert_eq!(s.target.http, "http://127.0.0.1:8080");
        assert_eq!(s.publisher[0].count, 1);
        assert_eq!(s.viewers[0].threads, 1);
        assert_eq!(s.publisher[0].pattern_fps, 30);
        assert_eq!(s.publisher[0].pattern_size, "640x360");
        assert!(s.publisher[0].pattern_audio);
        assert_eq!(parse_size("160x90"), Some((160, 90)));
        assert_eq!(s.viewer_url(0), "http://127.0.0.1:8080/x.flv");
    }

    fn bad(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        parse(&GOOD.replacen(from, to, 1)).unwrap_err()
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("duration = 10", "duration = 10\ncolour = 1", "colour"),
            ("duration = 10", "duration = \"ten\"", "duration"),
            ("duration = 10", "duration = -1", "duration"),
            ("warmup = 1", "warmup = -3", "warmup"),
            (
                "http = \"http://127.0.0.1:9000\"",
                "http = \"ftp://x\"",
                "target.http",
            ),
            (
                "rtmp = \"rtmp://127.0.0.1:1999/\"",
                "rtmp = \"rtmp://h/app\"",
                "target.rtmp",
            ),
            ("pid = 42", "pid = \"me\"", "pid"),
            ("pid = 42", "pids = 42", "pids"),
            (
                "protocol = \"rtmp\"\npattern",
                "protocol = \"srt\"\npattern",
                "protocol",
            ),
            (
                "pattern = \"testsrc\"",
                "pattern = \"smpte\"",
                "publisher[0].pattern",
            ),
            ("pattern = \"testsrc\"", "", "publisher[0].source"),
            (
                "pattern = \"testsrc\"",
                "pattern = \"testsrc\"\nsource = \"a.flv\"",
                "publisher[0].pattern",
            ),
            (
                "bitrate = \"500k\"",
                "bitrate = \"fast\"",
                "publisher[0].bitrate",
            ),
            ("count = 2", "count = 0", "publisher[0].count"),
            (
                "count = 2",
                "count = 2\npattern_fps = 0",
                "publisher[0].pattern_fps",
            ),
            (
                "count = 2",
                "count = 2\npattern_size = \"640\"",
                "publisher[0].pattern_size",
            ),
            (
                "count = 2",
                "count = 2\npattern_size = \"641x360\"",
                "publisher[0].pattern_size",
            ),
            (
                "url = \"{rtmp}/live/live+b{n}\"",
                "url = \"{rtmp}/live/{m}\"",
                "publisher[0].url",
            ),
            (
                "url = \"{rtmp}/live/live+b{n}\"",
                "url = \"http://x/live\"",
                "publisher[0].url",
            ),
            (
                "protocol = \"http-flv\"",
                "protocol = \"webrtc\"",
                "protocol",
            ),
            ("count = 50", "count = 0", "viewers[0].count"),
            (
                "count = 50",
                "count = 50\nthreads = 0",
                "viewers[0].threads",
            ),
            ("count = 50", "count = 50000", "viewers[0].count"),
            ("ramp = 100", "ramp = -1", "viewers[0].ramp"),
            ("ramp = 100", "rampp = 100", "rampp"),
            ("stream = 1", "stream = 2", "viewers[0].stream"),
            (
                "url = \"{http}/{stream}.flv\"",
                "url = \"{http}/{stream.flv\"",
                "viewers[0].url",
            ),
            (
                "url = \"{http}/{stream}.flv\"",
                "url = \"{rtmp}/{stream}\"",
                "viewers[0].url",
            ),
            ("churn = 1.5", "churn = -2", "viewers[1].churn"),
            (
                "count = 2",
                "count = 2\nreconnect_every = 0.5",
                "publisher[0].reconnect_every",
            ),
            (
                "url = \"{http}/{stream}.ts\"",
                "url = \"{http}/{stream}.ts\"\n[soak]\nrss_tolerance = 2",
                "soak.rss_tolerance",
            ),
            (
                "url = \"{http}/{stream}.ts\"",
                "url = \"{http}/{stream}.ts\"\n[soak]\nrss = 2",
                "rss",
            ),
        ];
        for (from, to, field) in cases {
            let e = bad(from, to);
            assert!(
                e.contains(field),
                "{to:?}: error {e:?} does not name {field}"
            );
        }
        assert!(
            parse("duration = 1\n[[viewers]]\nprotocol=\"hls\"\ncount=1\nurl=\"{http}/x\"\n")
                .unwrap_err()
                .contains("publisher")
        );
    }

    const UDP: &str = r#"
duration = 5
[[publisher]]
protocol = "udp-ts"
source = "a.flv"
count = 3
url = "udp://127.0.0.1:5000/cam{n}"
[[publisher]]
protocol = "rtmp"
source = "a.flv"
url = "{rtmp}/live/r"
[[viewers]]
protocol = "http-flv"
count = 1
url = "{http}/{stream}.flv"
stream = 2
"#;

    #[test]
    fn rtp_ts_publishers_send_to_rtp_urls_only() {
        let rtp = UDP
            .replace("\"udp-ts\"", "\"rtp-ts\"")
            .replace("udp://", "rtp://");
        let s = parse(&rtp).unwrap();
        assert_eq!(s.publisher[0].protocol, PublishProtocol::RtpTs);
        assert_eq!(s.publisher[0].protocol.name(), "rtp-ts");
        assert!(s.publisher[0].protocol.is_ts());
        assert_eq!(s.streams()[1].url, "rtp://127.0.0.1:5001/cam1");
        assert!(parse_udp_url("rtp://127.0.0.1:5004").unwrap().rtp);
        // The scheme must match the protocol, both ways.
        let e = parse(&UDP.replace("udp://", "rtp://")).unwrap_err();
        assert!(
            e.contains("publisher[0].url") && e.contains("udp-ts sends to udp://"),
            "{e}"
        );
        let e = parse(&rtp.replace("rtp://", "udp://")).unwrap_err();
        assert!(
            e.contains("publisher[0].url") && e.contains("rtp-ts sends to rtp://"),
            "{e}"
        );
        // An RTMP publisher may not send to rtp:// either.
        let e = parse(&UDP.replace("{rtmp}/live/r", "rtp://127.0.0.1:6000/r")).unwrap_err();
        assert!(e.contains("publisher[1].url"), "{e}");
    }

    #[test]
    fn udp_ts_publishers_parse_and_expand() {
        let s = parse(UDP).unwrap();
        assert_eq!(s.publisher[0].protocol, PublishProtocol::UdpTs);
        assert_eq!(s.publisher[0].protocol.name(), "udp-ts");
        let streams = s.streams();
        assert_eq!(streams.len(), 4);
        assert_eq!(streams[0].url, "udp://127.0.0.1:5000/cam0");
        assert_eq!(streams[2].url, "udp://127.0.0.1:5002/cam2");
        assert_eq!(streams[2].name, "cam2");
        assert_eq!(streams[3].url, "rtmp://127.0.0.1:1935/live/r");
        assert_eq!(s.viewer_url(0), "http://127.0.0.1:8080/cam2.flv");
        // No NAME: fine while no viewer asks for {stream}.
        let s = parse(
            &UDP.replace("/cam{n}", "")
                .replace("{http}/{stream}.flv", "{http}/fixed.flv"),
        )
        .unwrap();
        assert_eq!(s.streams()[1].url, "udp://127.0.0.1:5001");
        assert_eq!(s.streams()[1].name, "");
        assert_eq!(
            parse_udp_url("udp://[::1]:7000/x").unwrap(),
            UdpUrl {
                rtp: false,
                host: "[::1]".into(),
                port: 7000,
                name: "x".into()
            }
        );
        assert_eq!(
            parse_udp_url("udp://localhost:1").unwrap().hostport(),
            "localhost:1"
        );
    }

    #[test]
    fn bad_udp_ts_urls_are_named() {
        let url = "url = \"udp://127.0.0.1:5000/cam{n}\"";
        assert!(UDP.contains(url));
        let cases: &[(&str, &str)] = &[
            ("udp://127.0.0.1", "no port"),
            ("udp://127.0.0.1:0/a", "bad port"),
            ("udp://127.0.0.1:70000/a", "bad port"),
            ("udp://127.0.0.1:x/a", "bad port"),
            ("udp://:5000/a", "bad host"),
            ("udp://::1:5000/a", "bad host"),
            ("rtmp://127.0.0.1/live/a", "udp://"),
            ("{rtmp}/live/a", "udp://"),
            ("udp://127.0.0.1:500{n}/a", "PORT + n"),
            ("udp://127.0.0.1:5000/a/b", "one path segment"),
            ("udp://127.0.0.1:5000/a?pkt_size=1316", "no query"),
            ("udp://127.0.0.1:5000/{stream}", "unknown placeholder"),
            ("udp://127.0.0.1:65534/a{n}", "past 65535"),
        ];
        for (to, why) in cases {
            let e = parse(&UDP.replacen(url, &format!("url = \"{to}\""), 1)).unwrap_err();
            assert!(
                e.contains("publisher[0].url") && e.contains(why),
                "{to:?}: error {e:?} does not name publisher[0].url with {why:?}"
            );
        }
        // {stream} of a stream without a name.
        let e = parse(&UDP.replace("/cam{n}", "")).unwrap_err();
        assert!(
            e.contains("viewers[0].url") && e.contains("publisher[0].url has no /NAME"),
            "{e}"
        );
        // An RTMP publisher may not send to udp://.
        let e = parse(&UDP.replace("{rtmp}/live/r", "udp://127.0.0.1:6000/r")).unwrap_err();
        assert!(e.contains("publisher[1].url"), "{e}");
        let e = parse(&UDP.replace("\"udp-ts\"", "\"udp_ts\"")).unwrap_err();
        assert!(e.contains("protocol") && e.contains("udp-ts"), "{e}");
    }

    #[test]
    fn committed_examples_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 4, "{n} example scenarios in {}", dir.display());
        let soak = load(&dir.join("soak.toml")).unwrap();
        assert_eq!(soak.soak.unwrap().rss_tolerance, 0.05);
        assert_eq!(soak.publisher[0].reconnect_every, Some(60.0));
    }

    #[test]
    fn templates() {
        let t = Target {
            http: "http://h:1/".into(),
            rtmp: "rtmp://h:2".into(),
        };
        assert_eq!(
            expand("{http}/{stream}.ts", &t, &[("stream", "a+b")]),
            "http://h:1/a+b.ts"
        );
        assert_eq!(
            expand("{rtmp}/live/s{n}", &t, &[("n", "7")]),
            "rtmp://h:2/live/s7"
        );
        assert!(
            check_template("{http}/{x}", &["http"])
                .unwrap_err()
                .contains("{x}")
        );
        assert!(check_template("{http}/}", &["http"]).is_err());
        assert!(check_template("{http}/{", &["http"]).is_err());
        assert!(check_template("plain", &["http"]).is_ok());
    }
}
