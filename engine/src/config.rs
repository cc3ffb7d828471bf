//! The TOML configuration: embedded defaults, strict parsing (unknown keys and
//! bad values fail startup naming the key), validation.
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The configuration Spate runs with when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// File name or "embedded default".
        origin: String,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{origin}: invalid value for `{key}`: {why}")]
    Invalid {
        /// File name or "embedded default".
        origin: String,
        /// Dotted key, e.g. `http.port`.
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The HTTP listener (files, and later HLS/DASH/FLV).
    #[serde(default)]
    pub http: HttpConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The RTMP listener (publish and play).
    #[serde(default)]
    pub rtmp: RtmpConfig,
    /// Defaults for live streams.
    #[serde(default)]
    pub live: LiveConfig,
    /// Configured streams (`[[stream]]`): a name is a base that also covers
    /// its wildcards `base+anything`.
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    /// Pushes out (`[[push]]`): a stream (or `base+` for every wildcard of
    /// `base`) sent as MPEG-TS over UDP to a target while it is live.
    #[serde(default, rename = "push")]
    pub pushes: Vec<PushConfig>,
    /// The JSON API and metrics listener.
    #[serde(default)]
    pub api: ApiConfig,
    /// Limits of the trigger runner.
    #[serde(default)]
    pub triggers: TriggersConfig,
    /// Triggers (`[[trigger]]`): MistServer's event names, a handler each.
    #[serde(default, rename = "trigger")]
    pub trigger_list: Vec<TriggerConfig>,
    /// Access control without triggers: publish keys, signed play tokens.
    #[serde(default)]
    pub access: AccessConfig,
}

/// `[api]`: the control listener (JSON API, `/metrics`, `/healthz`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Run the API listener at all.
    pub enabled: bool,
    /// Address it binds to (loopback by default: MistServer's habit).
    pub bind: IpAddr,
    /// TCP port (4242, MistServer's).
    pub port: u16,
    /// Bearer token non-loopback (and non-trusted) clients must send as
    /// `Authorization: Bearer <token>`; empty = such clients are refused.
    pub token: String,
    /// Addresses (or CIDR networks, `10.0.0.0/8`) trusted like loopback: no
    /// token needed.
    pub trusted: Vec<String>,
    /// Largest request body, bytes (413 past it).
    pub max_body_bytes: usize,
    /// Most API connections served at once (more wait in the backlog).
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 4242,
            token: String::new(),
            trusted: Vec::new(),
            max_body_bytes: 1 << 20,
            max_connections: 16,
        }
    }
}

/// `[triggers]`: limits of the trigger runner (shared by all triggers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggersConfig {
    /// Handlers (processes or HTTP requests) running at once.
    pub max_concurrent: usize,
    /// Trigger calls waiting for a free runner; past it, a call gets its
    /// default response at once (counted).
    pub max_queued: usize,
    /// Largest handler response kept, bytes; a longer one is a failure
    /// (the default applies).
    pub max_response_bytes: usize,
    /// Seconds a `USER_NEW` answer is kept for its session id (later
    /// viewers of the same session get it without running the handler).
    pub session_cache: f64,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 8,
            max_queued: 1024,
            max_response_bytes: 64 * 1024,
            session_cache: 60.0,
        }
    }
}

/// `[[trigger]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// MistServer's trigger name: `RTMP_PUSH_REWRITE`, `STREAM_BUFFER`, ...
    pub on: String,
    /// An executable path (payload on stdin, response on stdout; run without
    /// a shell) or an `http://` URL (payload POSTed, `X-Trigger: NAME`).
    pub handler: String,
    /// Arguments for an executable handler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Only for these streams (names or bases; empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// Wait for the handler's answer (blocking triggers); `None` = the
    /// trigger's own default (blocking where MistServer's is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
    /// Seconds the handler may take.
    #[serde(default = "default_trigger_timeout")]
    pub timeout: f64,
    /// Response used when the handler fails, times out or is not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

fn default_trigger_timeout() -> f64 {
    5.0
}

/// `[access]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Secret of signed play tokens (`?token=<expiry>.<hex HMAC-SHA256 of
    /// "<stream>\n<expiry>">`, docs/access.md); empty = tokens cannot be
    /// checked, so streams that require them refuse every viewer.
    pub play_secret: String,
    /// Publish keys: RTMP key -> the stream name it publishes
    /// (`abc123 = "live+alice"`). A key is matched before the naming rule
    /// of `[rtmp] stream_name`, whatever the app.
    pub publish_keys: std::collections::BTreeMap<String, String>,
}

/// `[[push]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// A stream name, or `base+` for every `base+anything`.
    pub stream: String,
    /// `tsudp://ADDR:PORT?ttl=N&iface=NAME|ADDR` or `tsrtp://...`.
    pub target: String,
}

/// `[rtmp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Listen for RTMP at all.
    pub enabled: bool,
    /// TCP port (1935, as everyone's).
    pub port: u16,
    /// Chunk size Spate sends with (the peer's is whatever it announces).
    pub chunk_size: u32,
    /// How `rtmp://host/APP/KEY` names a stream: `"key"` (the key is the
    /// stream name, the app is ignored) or `"app_key"` (`APP+KEY`, so the app
    /// picks the configured base stream and the key the wildcard).
    pub stream_name: RtmpNaming,
    /// Largest RTMP message accepted, bytes.
    pub max_message_bytes: u32,
    /// Seconds a connection may take to handshake and start publishing or
    /// playing.
    pub setup_timeout: u64,
    /// Seconds a publisher may send nothing before it is dropped.
    pub publish_idle_timeout: u64,
}

/// See [`RtmpConfig::stream_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtmpNaming {
    /// Stream name = the key.
    Key,
    /// Stream name = `app+key`.
    AppKey,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 1935,
            chunk_size: 4096,
            stream_name: RtmpNaming::Key,
            max_message_bytes: (16 << 20) - 1,
            setup_timeout: 10,
            publish_idle_timeout: 10,
        }
    }
}

/// `[live]`: defaults for every live stream (a `[[stream]]` may override).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Accept publishes of stream names no `[[stream]]` covers.
    pub accept_unknown_streams: bool,
    /// Seconds of media each core keeps (at least the newest GOP).
    pub buffer_seconds: f64,
    /// Seconds a stream survives its publisher going away; a publisher that
    /// comes back within it continues the same stream (viewers stay).
    pub reconnect_grace: f64,
    /// A viewer more than this many seconds behind skips to a keyframe.
    pub viewer_skip_lag: f64,
    /// Most items (frames) kept per stream per core, whatever timestamps say.
    pub max_buffer_frames: usize,
    /// SO_SNDBUF for live viewer sockets, bytes (0 = kernel autotuning, which
    /// lets a stalled viewer absorb megabytes before it is noticed).
    pub viewer_send_buffer: u32,
    /// Milliseconds a core may hold a stream's new frames before it sends
    /// them to the stream's progressive viewers (HTTP-FLV, RTMP, HTTP-TS)
    /// and pushes, so each viewer gets one send per interval instead of one
    /// per frame (SRS calls this merged write). 0 = send as frames arrive.
    pub viewer_coalesce_ms: u32,
    /// HLS/DASH target segment duration, seconds: segments are cut at the
    /// first video keyframe at least this far from the segment start
    /// (audio-only streams: on time).
    pub segment_duration: f64,
    /// Segments listed in a live playlist / MPD timeline.
    pub playlist_segments: usize,
    /// Seconds a segment stays downloadable after it left the playlist.
    pub segment_grace: f64,
    /// Size of one segment-store arena (a memfd), MiB; pages are used only
    /// as segments are written.
    pub segment_arena_mib: usize,
    /// Most arenas one output of one stream may hold at once (caps the
    /// segment store's memory per stream: arenas x MiB x 2 outputs).
    pub segment_max_arenas: usize,
    /// Seconds a stream source (TS over UDP) may send nothing before its
    /// stream goes offline (into the reconnect grace, then ends).
    pub source_timeout: f64,
    /// Seconds an on-demand source (`ts-exec:` without `always_on`) keeps
    /// running with no viewer and no request before its command is stopped.
    pub on_demand_idle: f64,
    /// Seconds a request for an on-demand stream that is not live waits for
    /// it (HLS/DASH: for its first segment) before it is answered 404.
    pub on_demand_wait: f64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            accept_unknown_streams: false,
            buffer_seconds: 5.0,
            reconnect_grace: 5.0,
            viewer_skip_lag: 3.0,
            max_buffer_frames: 4096,
            viewer_send_buffer: 256 * 1024,
            viewer_coalesce_ms: 0,
            segment_duration: 2.0,
            playlist_segments: 6,
            segment_grace: 10.0,
            segment_arena_mib: 4,
            segment_max_arenas: 64,
            source_timeout: 5.0,
            on_demand_idle: 30.0,
            on_demand_wait: 10.0,
        }
    }
}

/// `[[stream]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Base name: letters, digits, `_`, `-`, `.`; covers `name+anything`.
    pub name: String,
    /// Overrides `[live] buffer_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_seconds: Option<f64>,
    /// Overrides `[live] reconnect_grace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_grace: Option<f64>,
    /// Overrides `[live] segment_duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_duration: Option<f64>,
    /// Where the media comes from: `push://` (default: a publisher pushes
    /// it), `tsudp://GROUP:PORT` / `tsudp://:PORT` (MPEG-TS over UDP),
    /// `tsrtp://...` (RTP-wrapped), `ts-exec:COMMAND LINE` (MPEG-TS from a
    /// command's stdout). See `crate::ingest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `ts-exec:` sources: run the command from startup and keep it running
    /// (default: start it when the first viewer asks, stop it after `[live]
    /// on_demand_idle`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_on: bool,
    /// Publishing needs a key from `[access] publish_keys` (publishing by
    /// the bare stream name is refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_publish_key: bool,
    /// Playing needs a signed token (`?token=`, see `[access] play_secret`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_play_token: bool,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// Worker threads (one io_uring each); 0 = one per core.
    pub workers: usize,
    /// Pin each worker to a core.
    pub pin_workers: bool,
    /// Seconds in-flight responses get to finish after SIGINT/SIGTERM.
    pub shutdown_timeout: u64,
    /// TCP congestion control of the HTTP and RTMP listeners, inherited by
    /// every connection they accept (`TCP_CONGESTION`); empty = the host's
    /// default (`net.ipv4.tcp_congestion_control`).
    pub tcp_congestion: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            workers: 0,
            pin_workers: true,
            shutdown_timeout: 10,
            tcp_congestion: String::new(),
        }
    }
}

/// How file bodies reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSend {
    /// `sendmsg` of head + a range of the file's shared mapping (one op).
    Send,
    /// Head, then `send_zc` from the file's shared mapping.
    SendZc,
    /// Head, then IORING_OP_SPLICE file -> pipe -> socket.
    Splice,
    /// Head by `send(2)`, body by `sendfile(2)` from the loop, on a regular
    /// descriptor installed once per connection (within
    /// `sendfile_descriptors`; past it, `send`).
    Sendfile,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP port.
    pub port: u16,
    /// Directory static files are served from.
    pub root: PathBuf,
    /// Seconds from a request head's first byte to its end.
    pub head_timeout: u64,
    /// Seconds a keep-alive connection may idle between requests.
    pub idle_timeout: u64,
    /// Seconds a response may make no progress before the peer is dropped.
    pub send_timeout: u64,
    /// Largest request head in bytes (431 past it).
    pub max_head_bytes: usize,
    /// Most header lines in a request head (431 past it).
    pub max_headers: usize,
    /// Connections per worker (the size of each ring's direct-descriptor table).
    pub max_connections_per_worker: u32,
    /// How file bodies are sent.
    pub file_send: FileSend,
    /// `file_send = "sendfile"`: regular descriptors per worker it may
    /// install (0 = the fd limit less a reserve of 2048, split between the
    /// workers). Connections past it send bodies by `send`.
    pub sendfile_descriptors: u32,
    /// Seconds an opened file is reused before it is checked again.
    pub open_file_cache_valid: u64,
    /// Log one line per request.
    pub access_log: bool,
    /// `Cache-Control` for static files (empty = none).
    pub cache_control: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            root: PathBuf::from("www"),
            head_timeout: 10,
            idle_timeout: 60,
            send_timeout: 30,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_connections_per_worker: 19_000,
            file_send: FileSend::Send,
            sendfile_descriptors: 0,
            open_file_cache_valid: 1,
            access_log: false,
            cache_control: "public, max-age=60".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter: `info`, `debug`, `spate_engine=debug`… (`RUST_LOG` wins).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Parse and validate TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The embedded default.
    pub fn embedded() -> Self {
        Self::parse(DEFAULT_CONFIG, "embedded default config").expect("embedded config is valid")
    }

    /// Read and parse a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validate a configuration built in code (the API's edits).
    pub fn revalidate(&self) -> Result<(), ConfigError> {
        self.validate("new configuration")
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key, why: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            why: why.to_string(),
        };
        if self.http.port == 0 {
            return Err(bad("http.port", "must be 1..=65535"));
        }
        if self.server.workers > 1024 {
            return Err(bad("server.workers", "at most 1024"));
        }
        let cc = &self.server.tcp_congestion;
        if cc.len() > 15
            || !cc
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(bad(
                "server.tcp_congestion",
                "a congestion control name (lowercase letters, digits, _ or -; at most 15), e.g. \"cubic\" or \"bbr\", or \"\" for the host's default",
            ));
        }
        if self.http.max_head_bytes < 1024 || self.http.max_head_bytes > 1 << 20 {
            return Err(bad("http.max_head_bytes", "must be 1024..=1048576"));
        }
        if self.http.max_headers == 0 || self.http.max_headers > 1024 {
            return Err(bad("http.max_headers", "must be 1..=1024"));
        }
        if self.http.max_connections_per_worker < 16 {
            return Err(bad(
                "http.max_connections_per_worker",
                "must be at least 16",
            ));
        }
        for (key, v) in [
            ("http.head_timeout", self.http.head_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            ("http.send_timeout", self.http.send_timeout),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1 second"));
            }
        }
        if self.rtmp.enabled && self.rtmp.port == 0 {
            return Err(bad("rtmp.port", "must be 1..=65535"));
        }
        if self.rtmp.enabled && self.rtmp.port == self.http.port {
            return Err(bad("rtmp.port", "must differ from http.port"));
        }
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            return Err(bad("rtmp.chunk_size", "must be 128..=65536"));
        }
        if !(1024..=(16 << 20) - 1).contains(&self.rtmp.max_message_bytes) {
            return Err(bad("rtmp.max_message_bytes", "must be 1024..=16777215"));
        }
        let secs = |v: f64| v.is_finite() && (0.0..=3600.0).contains(&v);
        if !secs(self.live.buffer_seconds) || self.live.buffer_seconds < 0.5 {
            return Err(bad("live.buffer_seconds", "must be 0.5..=3600"));
        }
        if !secs(self.live.reconnect_grace) {
            return Err(bad("live.reconnect_grace", "must be 0..=3600"));
        }
        if self.live.viewer_coalesce_ms > 1000 {
            return Err(bad("live.viewer_coalesce_ms", "must be 0..=1000"));
        }
        if !secs(self.live.viewer_skip_lag) || self.live.viewer_skip_lag < 0.1 {
            return Err(bad("live.viewer_skip_lag", "must be 0.1..=3600"));
        }
        let seg = |v: f64| v.is_finite() && (1.0..=60.0).contains(&v);
        if !seg(self.live.segment_duration) {
            return Err(bad("live.segment_duration", "must be 1..=60"));
        }
        if !(2..=1000).contains(&self.live.playlist_segments) {
            return Err(bad("live.playlist_segments", "must be 2..=1000"));
        }
        if !secs(self.live.segment_grace) {
            return Err(bad("live.segment_grace", "must be 0..=3600"));
        }
        if !(1..=1024).contains(&self.live.segment_arena_mib) {
            return Err(bad("live.segment_arena_mib", "must be 1..=1024"));
        }
        if !secs(self.live.source_timeout) || self.live.source_timeout < 0.5 {
            return Err(bad("live.source_timeout", "must be 0.5..=3600"));
        }
        if !secs(self.live.on_demand_idle) || self.live.on_demand_idle < 1.0 {
            return Err(bad("live.on_demand_idle", "must be 1..=3600"));
        }
        let wait = self.live.on_demand_wait;
        if !wait.is_finite() || !(0.5..=120.0).contains(&wait) {
            return Err(bad("live.on_demand_wait", "must be 0.5..=120"));
        }
        if !(2..=1024).contains(&self.live.segment_max_arenas) {
            return Err(bad("live.segment_max_arenas", "must be 2..=1024"));
        }
        if self.live.max_buffer_frames < 16 {
            return Err(bad("live.max_buffer_frames", "must be at least 16"));
        }
        let mut seen = std::collections::HashSet::new();
        for st in &self.streams {
            if !valid_base_name(&st.name) {
                return Err(bad(
                    "stream.name",
                    &format!("{:?}: use letters, digits, '_', '-', '.' (no '+')", st.name),
                ));
            }
            if !seen.insert(st.name.as_str()) {
                return Err(bad(
                    "stream.name",
                    &format!("{:?} is configured twice", st.name),
                ));
            }
            if st.buffer_seconds.is_some_and(|v| !secs(v) || v < 0.5) {
                return Err(bad("stream.buffer_seconds", "must be 0.5..=3600"));
            }
            if st.reconnect_grace.is_some_and(|v| !secs(v)) {
                return Err(bad("stream.reconnect_grace", "must be 0..=3600"));
            }
            if st.segment_duration.is_some_and(|v| !seg(v)) {
                return Err(bad("stream.segment_duration", "must be 1..=60"));
            }
            if let Some(src) = &st.source
                && let Err(e) = crate::ingest::SourceUrl::parse(src)
            {
                return Err(bad("stream.source", &e));
            }
            let exec = st
                .source
                .as_deref()
                .is_some_and(|s| s.trim_start().starts_with("ts-exec:"));
            if st.always_on && !exec {
                return Err(bad(
                    "stream.always_on",
                    &format!("{:?}: only for ts-exec: sources", st.name),
                ));
            }
        }
        for p in &self.pushes {
            let base = p.stream.strip_suffix('+').unwrap_or(&p.stream);
            let (b, w) = base.split_once('+').unwrap_or((base, ""));
            if !valid_base_name(b) || w.contains('+') {
                return Err(bad(
                    "push.stream",
                    &format!(
                        "{:?}: a stream name, or base+ for all its wildcards",
                        p.stream
                    ),
                ));
            }
            if let Err(e) = crate::deliver::push::PushTarget::parse(&p.target) {
                return Err(bad("push.target", &e));
            }
        }
        if self.http.root.as_os_str().is_empty() {
            return Err(bad("http.root", "must not be empty"));
        }
        if self.api.enabled {
            if self.api.port == 0 {
                return Err(bad("api.port", "must be 1..=65535"));
            }
            if self.api.port == self.http.port
                || (self.rtmp.enabled && self.api.port == self.rtmp.port)
            {
                return Err(bad("api.port", "must differ from http.port and rtmp.port"));
            }
        }
        for t in &self.api.trusted {
            if let Err(e) = crate::control::api::TrustedNet::parse(t) {
                return Err(bad("api.trusted", &e));
            }
        }
        if !(1..=100 << 20).contains(&self.api.max_body_bytes) {
            return Err(bad("api.max_body_bytes", "must be 1..=104857600"));
        }
        if !(1..=1024).contains(&self.api.max_connections) {
            return Err(bad("api.max_connections", "must be 1..=1024"));
        }
        if !(1..=1024).contains(&self.triggers.max_concurrent) {
            return Err(bad("triggers.max_concurrent", "must be 1..=1024"));
        }
        if self.triggers.max_response_bytes < 16 {
            return Err(bad("triggers.max_response_bytes", "must be at least 16"));
        }
        for (key, stream) in &self.access.publish_keys {
            if key.is_empty() || key.len() > 200 || key.contains(['?', '/']) {
                return Err(bad(
                    "access.publish_keys",
                    "a key must be 1..=200 characters without '?' or '/'",
                ));
            }
            let (b, w) = stream.split_once('+').unwrap_or((stream, "x"));
            if !valid_base_name(b) || !valid_base_name(w) {
                return Err(bad(
                    "access.publish_keys",
                    &format!(
                        "key {}: {stream:?} is not a stream name (base or base+wildcard)",
                        crate::control::access::masked(key)
                    ),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.triggers.max_queued) {
            return Err(bad("triggers.max_queued", "must be 1..=1000000"));
        }
        if self.triggers.max_response_bytes > 64 << 20 {
            return Err(bad("triggers.max_response_bytes", "at most 67108864"));
        }
        if !secs(self.triggers.session_cache) {
            return Err(bad("triggers.session_cache", "must be 0..=3600"));
        }
        for t in &self.trigger_list {
            if !t.timeout.is_finite() || !(0.01..=600.0).contains(&t.timeout) {
                return Err(bad("trigger.timeout", "must be 0.01..=600"));
            }
            if t.handler.trim().is_empty() {
                return Err(bad("trigger.handler", "must not be empty"));
            }
        }
        if let Err(e) = crate::control::triggers::TriggerSet::from_config(self) {
            let (key, why) = match e.split_once(": ") {
                Some(("trigger.on", why)) => ("trigger.on", why.to_string()),
                Some((_, why)) => ("trigger.handler", why.to_string()),
                None => ("trigger.handler", e.clone()),
            };
            return Err(bad(key, &why));
        }
        Ok(())
    }

    /// Number of workers to start.
    pub fn worker_count(&self) -> usize {
        match self.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// A valid stream base name (no wildcard part).
pub fn valid_base_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
}

impl HttpConfig {
    /// Request-head timeout.
    pub fn head_timeout(&self) -> Duration {
        Duration::from_secs(self.head_timeout)
    }
    /// Keep-alive idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout)
    }
    /// Send-stall timeout.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded();
        assert_eq!(c.http.port, 8080);
        assert_eq!(c.server.workers, 0);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[http]\nprot = 1\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = Config::parse("[http]\nport = 0\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("http.port"), "{e}");
        let e = Config::parse("[server]\nbind = \"nope\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("bind"), "{e}");
        let e = Config::parse("[http]\nfile_send = \"carrier-pigeon\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("file_send"), "{e}");
    }

    #[test]
    fn streams_and_live_sections_parse_and_validate() {
        let c = Config::parse(
            "[[stream]]\nname = \"live\"\nbuffer_seconds = 8.0\n[[stream]]\nname = \"news\"\n[live]\naccept_unknown_streams = true\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.streams[0].buffer_seconds, Some(8.0));
        assert!(c.live.accept_unknown_streams);
        let e = Config::parse("[[stream]]\nname = \"a+b\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("stream.name"), "{e}");
        let e = Config::parse(
            "[[stream]]\nname = \"a\"\n[[stream]]\nname = \"a\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Config::parse("[rtmp]\nport = 8080\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("rtmp.port"), "{e}");
        let e = Config::parse("[live]\nbuffer_seconds = -1.0\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("live.buffer_seconds"), "{e}");
    }

    #[test]
    fn ts_exec_sources_and_on_demand_keys_validate() {
        let c = Config::parse(
            "[live]\non_demand_idle = 2.0\non_demand_wait = 3.0\n[[stream]]\nname = \"gen\"\nsource = \"ts-exec:ffmpeg -f lavfi -i testsrc2 -f mpegts -\"\nalways_on = true\n",
            "t.toml",
        )
        .unwrap();
        assert!(c.streams[0].always_on);
        assert_eq!(c.live.on_demand_idle, 2.0);
        for (text, key) in [
            ("[live]\non_demand_idle = 0.0\n", "live.on_demand_idle"),
            ("[live]\non_demand_wait = 500.0\n", "live.on_demand_wait"),
            (
                "[[stream]]\nname = \"a\"\nalways_on = true\n",
                "stream.always_on",
            ),
            (
                "[[stream]]\nname = \"a\"\nsource = \"ts-exec:\"\n",
                "stream.source",
            ),
        ] {
            let e = Config::parse(text, "t.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn print_config_round_trips() {
        let c = Config::embedded();
        let again = Config::parse(&c.to_toml(), "printed").unwrap();
        assert_eq!(again.to_toml(), c.to_toml());
    }
}
