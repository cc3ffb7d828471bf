//! Where a worker fires MistServer's triggers (docs/triggers.md).
//!
//! Every hook starts with a cheap check (is a handler configured for this
//! trigger and stream?) and returns at once when not, so the normal path is
//! unchanged. A blocking trigger never blocks the loop:
//!
//! - Publishes (RTMP): `on_publish` asks [`Worker::trigger_publish_rewrite`]
//!   first, on the raw URL (`RTMP_PUSH_REWRITE`); the publish stays pending in
//!   the RTMP session (no `onStatus` yet, so clients wait before sending
//!   media; anything sent anyway is dropped). When the answer comes,
//!   `on_publish` runs again with the rewritten app and key (a *replay*),
//!   derives the stream name as usual, and asks
//!   [`Worker::trigger_publish_checks`] (`PUSH_REWRITE`, then `STREAM_PUSH`)
//!   before publishing; their answers replay `on_publish` once more with the
//!   decided name.
//! - Viewers: HTTP requests for live routes (`/<s>.flv`, `/<s>.ts`, HLS and
//!   DASH playlists) and RTMP plays go through [`Worker::trigger_viewer_gate`]
//!   / [`Worker::trigger_play_gate`]: `CONN_OPEN`, `PLAY_REWRITE`,
//!   `USER_NEW` (cached per session by the runner), `CONN_PLAY`. An HTTP
//!   request waiting for an answer is parked (`Work::Waiting`, as an
//!   on-demand stream's requests are) and routed again when every answer is
//!   in; refused: 403. A refused RTMP play gets `NetStream.Play.Failed`.
//! - Stream state: `STREAM_READY` and the `STREAM_BUFFER` states from
//!   `begin_publish`, each item published, the tick and `finish_publish`;
//!   `STREAM_UNLOAD`/`STREAM_END` when the stream ends after its grace;
//!   `CONN_CLOSE`/`USER_END` when an admitted viewer's connection closes;
//!   `PUSH_OUT_START`/`PUSH_END` for `[[push]]`es.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use spate_protocols::http::Request;

use super::{Work, Worker};
use crate::control::triggers::{Call, Response, Trigger, WorkerTriggers, parse_bool};
use crate::live::StreamId;

/// No media for this long: `STREAM_BUFFER` `DRY`.
pub const DRY_AFTER: Duration = Duration::from_secs(1);
/// Media again for this long after `RECOVER`: `FULL`.
pub const FULL_AFTER_RECOVER: Duration = Duration::from_secs(2);

/// The viewer triggers, in the order they run.
const VIEWER_STAGES: [Trigger; 4] = [
    Trigger::ConnOpen,
    Trigger::PlayRewrite,
    Trigger::UserNew,
    Trigger::ConnPlay,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufState {
    /// Live, no media yet.
    Waiting,
    Full,
    Dry,
    Recover(Instant),
}

#[derive(Debug)]
struct BufferWatch {
    id: StreamId,
    name: std::sync::Arc<str>,
    state: BufState,
    last_media: Instant,
    first_ts: i64,
    last_ts: i64,
    /// (video, audio) as last announced by LIVE_TRACK_LIST.
    tracks: (bool, bool),
}

/// What a viewer gate is deciding.
#[derive(Debug, Clone)]
struct ViewerGate {
    slot: u32,
    generation: u32,
    stream: String,
    /// Stream name as requested (an HTTP request is rewritten from it).
    requested: String,
    connector: &'static str,
    url: String,
    host: String,
    session: u64,
    kind: GateKind,
}

#[derive(Debug, Clone)]
enum GateKind {
    Http(Box<Request>),
    Rtmp { app: String, key: String },
}

#[derive(Debug)]
enum Pending {
    RtmpRewrite {
        slot: u32,
        generation: u32,
    },
    PushRewrite {
        slot: u32,
        generation: u32,
        app: String,
        key: String,
        url: String,
    },
    StreamPush {
        slot: u32,
        generation: u32,
        app: String,
        key: String,
        name: String,
    },
    Viewer(ViewerGate, usize),
    PushOut {
        id: StreamId,
        name: String,
        target: String,
    },
}

/// A decision being replayed through `on_publish` / `route_live` /
/// `on_play` for one connection.
#[derive(Debug, Clone)]
enum Decided {
    /// RTMP_PUSH_REWRITE done (app/key are the rewritten ones).
    Rewritten,
    /// Every publish check passed: publish as this name.
    Publish(String),
    /// Every viewer check passed (stream name to play).
    Viewer(String),
}

/// An admitted viewer (for CONN_CLOSE and USER_END).
#[derive(Debug)]
struct Admitted {
    stream: String,
    connector: &'static str,
    url: String,
    host: String,
    session: u64,
    since: Instant,
    sent: u64,
}

/// A worker's trigger state.
#[derive(Debug, Default)]
pub(super) struct TriggerHooks {
    link: Option<WorkerTriggers>,
    next_token: u64,
    pending: HashMap<u64, Pending>,
    replay: Option<(u32, u32, Decided)>,
    buffers: Vec<BufferWatch>,
    admitted: HashMap<(u32, u32), Admitted>,
    /// `rtmp://BIND:PORT` for RTMP URLs of clients that sent no tcUrl.
    rtmp_base: String,
    pushes_started: u64,
    ticks: u64,
}

impl TriggerHooks {
    pub(super) fn new(link: Option<WorkerTriggers>, config: &crate::config::Config) -> Self {
        Self {
            link,
            rtmp_base: format!("rtmp://{}:{}", config.server.bind, config.rtmp.port),
            ..Default::default()
        }
    }
}

/// `rtmp://host[:port]/app/key` → (app, key): the first path segment is the
/// app, the rest the key (MistServer's split).
fn parse_rtmp_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("rtmp://")
        .or_else(|| url.strip_prefix("rtmps://"))?;
    let (_, path) = rest.split_once('/')?;
    let (app, key) = path.split_once('/')?;
    let key = key.split('?').next().unwrap_or("");
    let app = app.split('?').next().unwrap_or("");
    if app.is_empty() || key.is_empty() {
        return None;
    }
    Some((app.to_string(), key.to_string()))
}

/// A payload field on one line: control characters (a newline in an RTMP
/// key, a decoded `%0A` in a path) percent-encoded, so a client cannot add
/// lines (say, a fake address) to a payload.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// FLV codec names for LIVE_TRACK_LIST.
fn track_list(head: &crate::live::StreamHead) -> String {
    let mut parts = Vec::new();
    if head.has_video {
        let codec = match head
            .video_seq
            .as_ref()
            .and_then(|b| b.first())
            .map(|b| b & 0x0f)
        {
            Some(7) => "H264",
            Some(12) => "HEVC",
            Some(13) => "AV1",
            _ => "unknown",
        };
        parts.push(format!(
            "\"1\":{{\"type\":\"video\",\"codec\":\"{codec}\",\"trackid\":1}}"
        ));
    }
    if head.has_audio {
        let codec = match head
            .audio_seq
            .as_ref()
            .and_then(|b| b.first())
            .map(|b| b >> 4)
        {
            Some(10) => "AAC",
            Some(2) => "MP3",
            Some(13) => "opus",
            _ => "unknown",
        };
        parts.push(format!(
            "\"2\":{{\"type\":\"audio\",\"codec\":\"{codec}\",\"trackid\":2}}"
        ));
    }
    format!("{{{}}}", parts.join(","))
}

impl Worker {
    /// The connection is still there and open (an answer may come after
    /// its peer left).
    fn conn_open(&self, slot: u32, generation: u32) -> bool {
        self.conns
            .get(slot, generation)
            .is_some_and(|c| c.phase == super::Phase::Open)
    }

    fn trig_token(&mut self) -> u64 {
        self.trig.next_token += 1;
        self.trig.next_token
    }

    fn trig_wants(&mut self, t: Trigger, stream: &str) -> bool {
        match self.trig.link.as_mut() {
            Some(l) => l.wants(t, stream),
            None => false,
        }
    }

    fn trig_fire(&mut self, t: Trigger, stream: &str, payload: impl FnOnce() -> String) {
        if let Some(l) = self.trig.link.as_mut() {
            l.fire(t, stream, payload);
        }
    }

    fn trig_call(
        &mut self,
        t: Trigger,
        stream: &str,
        payload: impl FnOnce() -> String,
        session: Option<String>,
    ) -> (u64, Call) {
        let token = self.trig_token();
        let call = match self.trig.link.as_mut() {
            Some(l) => l.call(t, stream, payload, token, session),
            None => Call::NotConfigured,
        };
        (token, call)
    }

    fn peer_host(&self, slot: u32, generation: u32) -> String {
        self.conn_peer(slot, generation)
            .map_or_else(String::new, |(p, _)| p.ip().to_string())
    }

    fn rtmp_url(&self, slot: u32, generation: u32, app: &str, key: &str) -> String {
        let tc = self
            .conns
            .get(slot, generation)
            .and_then(|c| c.live.as_deref())
            .and_then(|l| l.rtmp_session())
            .and_then(|s| s.connect_info())
            .and_then(|i| i.tc_url.clone());
        let url = match tc {
            Some(tc) if tc.starts_with("rtmp") => format!("{}/{key}", tc.trim_end_matches('/')),
            _ => format!("{}/{app}/{key}", self.trig.rtmp_base),
        };
        one_line(&url).into_owned()
    }

    /// Answers from the runner (the mesh wake brings them).
    pub(super) fn drain_trigger_events(&mut self) {
        loop {
            let Some(ev) = self.trig.link.as_ref().and_then(WorkerTriggers::try_event) else {
                return;
            };
            if let Some(p) = self.trig.pending.remove(&ev.token) {
                self.on_trigger_answer(p, ev.response);
            }
        }
    }

    fn on_trigger_answer(&mut self, p: Pending, r: Response) {
        match p {
            Pending::RtmpRewrite { slot, generation } => {
                self.rtmp_rewrite_answer(slot, generation, r)
            }
            Pending::PushRewrite {
                slot,
                generation,
                app,
                key,
                url,
            } => match r.filter(|s| !s.is_empty()) {
                None => self.refuse_publish(slot, generation, "PUSH_REWRITE refused the push"),
                Some(name) => self.publish_stream_push(slot, generation, app, key, url, name),
            },
            Pending::StreamPush {
                slot,
                generation,
                app,
                key,
                name,
            } => {
                // No answer and no default: MistServer's default ("true").
                if r.as_deref().is_some_and(|s| parse_bool(s) != Some(true)) {
                    self.refuse_publish(slot, generation, "STREAM_PUSH refused the push");
                } else {
                    self.publish_decided(slot, generation, &app, &key, name);
                }
            }
            Pending::PushOut { id, name, target } => self.push_out_answer(id, name, target, r),
            Pending::Viewer(mut v, stage) => {
                if !self.viewer_apply(&mut v, VIEWER_STAGES[stage], r) {
                    self.viewer_refused(v);
                    return;
                }
                match self.viewer_advance(v, stage + 1) {
                    Gate::Pass(v) => self.viewer_resume(v),
                    Gate::Refused(v) => self.viewer_refused(v),
                    Gate::Parked => {}
                }
            }
        }
    }

    // ---- publishing ----

    /// `RTMP_PUSH_REWRITE` on the raw URL. `true`: the trigger took the
    /// publish over (it is answered later, or was refused).
    pub(super) fn trigger_publish_rewrite(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        key: &str,
    ) -> bool {
        if let Some((s, g, _)) = &self.trig.replay
            && (*s, *g) == (slot, generation)
        {
            return false;
        }
        if !self.trig_wants(Trigger::RtmpPushRewrite, "") {
            return false;
        }
        let url = self.rtmp_url(slot, generation, app, key);
        let host = self.peer_host(slot, generation);
        let (token, call) = self.trig_call(
            Trigger::RtmpPushRewrite,
            "",
            || format!("{url}\n{host}"),
            None,
        );
        match call {
            Call::NotConfigured => false,
            Call::Answered(r) => {
                self.rtmp_rewrite_answer(slot, generation, r);
                true
            }
            Call::Pending => {
                self.trig
                    .pending
                    .insert(token, Pending::RtmpRewrite { slot, generation });
                true
            }
        }
    }

    fn rtmp_rewrite_answer(&mut self, slot: u32, generation: u32, r: Response) {
        if !self.conn_open(slot, generation) {
            // The publisher went away while its trigger ran.
            return;
        }
        let Some(url) = r.filter(|s| !s.is_empty()) else {
            self.refuse_publish(slot, generation, "RTMP_PUSH_REWRITE refused the push");
            return;
        };
        let Some((app, key)) = parse_rtmp_url(&url) else {
            self.refuse_publish(
                slot,
                generation,
                &format!("RTMP_PUSH_REWRITE answered {url:?}, not rtmp://host/app/key"),
            );
            return;
        };
        tracing::info!(
            "{}: RTMP_PUSH_REWRITE: publishing as {url}",
            self.conn_id(slot, generation)
        );
        self.trig.replay = Some((slot, generation, Decided::Rewritten));
        self.on_publish(slot, generation, &app, &key);
        if self
            .trig
            .replay
            .as_ref()
            .is_some_and(|(s, g, _)| (*s, *g) == (slot, generation))
        {
            self.trig.replay = None;
        }
        // The session's answer (onStatus) goes out now, not with the next
        // input.
        self.live_drive(slot, generation);
    }

    /// `PUSH_REWRITE` and `STREAM_PUSH` for the derived stream name:
    /// `Some(name)` = publish as `name` now; `None` = the trigger took the
    /// publish over.
    pub(super) fn trigger_publish_checks(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        key: &str,
        name: String,
    ) -> Option<String> {
        if let Some((s, g, d)) = self.trig.replay.clone()
            && (s, g) == (slot, generation)
        {
            match d {
                Decided::Publish(n) => {
                    self.trig.replay = None;
                    return Some(n);
                }
                _ => self.trig.replay = None,
            }
        }
        if !self.trig_wants(Trigger::PushRewrite, "")
            && !self.trig_wants(Trigger::StreamPush, &name)
        {
            return Some(name);
        }
        let url = self.rtmp_url(slot, generation, app, key);
        if self.trig_wants(Trigger::PushRewrite, "") {
            let host = self.peer_host(slot, generation);
            let (token, call) = self.trig_call(
                Trigger::PushRewrite,
                "",
                || format!("{url}\n{host}\n{}", one_line(&name)),
                None,
            );
            match call {
                Call::NotConfigured => {}
                Call::Answered(r) => {
                    match r.filter(|s| !s.is_empty()) {
                        None => {
                            self.refuse_publish(slot, generation, "PUSH_REWRITE refused the push")
                        }
                        Some(n) => self.publish_stream_push(
                            slot,
                            generation,
                            app.to_string(),
                            key.to_string(),
                            url,
                            n,
                        ),
                    }
                    return None;
                }
                Call::Pending => {
                    self.trig.pending.insert(
                        token,
                        Pending::PushRewrite {
                            slot,
                            generation,
                            app: app.to_string(),
                            key: key.to_string(),
                            url,
                        },
                    );
                    return None;
                }
            }
        }
        match self.stream_push_call(slot, generation, app, key, &url, &name) {
            Some(true) => Some(name),
            Some(false) => {
                self.refuse_publish(slot, generation, "STREAM_PUSH refused the push");
                None
            }
            None => None,
        }
    }

    /// STREAM_PUSH: `Some(decision)` now, `None` = pending.
    fn stream_push_call(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        key: &str,
        url: &str,
        name: &str,
    ) -> Option<bool> {
        if !self.trig_wants(Trigger::StreamPush, name) {
            return Some(true);
        }
        let host = self.peer_host(slot, generation);
        let (token, call) = self.trig_call(
            Trigger::StreamPush,
            name,
            || format!("{}\n{host}\nRTMP\n{url}", one_line(name)),
            None,
        );
        match call {
            Call::NotConfigured => Some(true),
            Call::Answered(r) => Some(r.as_deref().is_none_or(|s| parse_bool(s) == Some(true))),
            Call::Pending => {
                self.trig.pending.insert(
                    token,
                    Pending::StreamPush {
                        slot,
                        generation,
                        app: app.to_string(),
                        key: key.to_string(),
                        name: name.to_string(),
                    },
                );
                None
            }
        }
    }

    fn publish_stream_push(
        &mut self,
        slot: u32,
        generation: u32,
        app: String,
        key: String,
        url: String,
        name: String,
    ) {
        match self.stream_push_call(slot, generation, &app, &key, &url, &name) {
            Some(true) => self.publish_decided(slot, generation, &app, &key, name),
            Some(false) => self.refuse_publish(slot, generation, "STREAM_PUSH refused the push"),
            None => {}
        }
    }

    fn publish_decided(&mut self, slot: u32, generation: u32, app: &str, key: &str, name: String) {
        if !self.conn_open(slot, generation) {
            return;
        }
        self.trig.replay = Some((slot, generation, Decided::Publish(name)));
        self.on_publish(slot, generation, app, key);
        if self
            .trig
            .replay
            .as_ref()
            .is_some_and(|(s, g, _)| (*s, *g) == (slot, generation))
        {
            self.trig.replay = None;
        }
        self.live_drive(slot, generation);
    }

    fn refuse_publish(&mut self, slot: u32, generation: u32, why: &str) {
        if !self.conn_open(slot, generation) {
            return;
        }
        self.counters.publish_refused += 1;
        tracing::info!("{}: publish refused: {why}", self.conn_id(slot, generation));
        if let Some(l) = self
            .conns
            .get_mut(slot, generation)
            .and_then(|c| c.live.as_deref_mut())
        {
            l.refuse_publish("NetStream.Publish.BadName", why);
        }
        self.live_drive(slot, generation);
    }

    // ---- viewers ----

    /// The viewer triggers for an HTTP request of a live route of `stream`
    /// (`connector`: MistServer's name, `FLV`, `HTTPTS`, `HLS`, `CMAF`,
    /// `DASH`). `true`: the request was taken over (parked, refused with
    /// 403, or routed again with a rewritten stream).
    pub(super) fn trigger_viewer_gate(
        &mut self,
        slot: u32,
        generation: u32,
        req: &Request,
        stream: &str,
        connector: &'static str,
    ) -> bool {
        if let Some((s, g, Decided::Viewer(_))) = &self.trig.replay
            && (*s, *g) == (slot, generation)
        {
            self.trig.replay = None;
            return false;
        }
        if self.trig.link.is_none()
            || !VIEWER_STAGES
                .iter()
                .chain([Trigger::ConnClose, Trigger::UserEnd].iter())
                .any(|&t| self.trig_wants(t, stream))
        {
            return false;
        }
        let host = self.peer_host(slot, generation);
        let url = format!(
            "http://{}{}",
            req.host.as_deref().unwrap_or("localhost"),
            req.target
        );
        let session = match query_param(req.query.as_deref(), "tkn") {
            Some(t) => super::fnv1a(t.as_bytes()),
            None => super::fnv1a(format!("{host} {stream} {connector}").as_bytes()),
        };
        let v = ViewerGate {
            slot,
            generation,
            stream: stream.to_string(),
            requested: stream.to_string(),
            connector,
            url,
            host,
            session,
            kind: GateKind::Http(Box::new(req.clone())),
        };
        match self.viewer_advance(v, 0) {
            Gate::Pass(v) => {
                let same = v.stream == v.requested;
                self.viewer_admitted(&v);
                if same {
                    return false;
                }
                self.viewer_resume(v);
                true
            }
            Gate::Refused(v) => {
                self.viewer_refused(v);
                true
            }
            Gate::Parked => {
                if let Some(c) = self.conns.get_mut(slot, generation) {
                    c.work = Some(Box::new(Work::Waiting(req.clone())));
                }
                true
            }
        }
    }

    /// The viewer triggers for an RTMP play of `name`: `Some(name)` to play
    /// (maybe rewritten) now, `None` = taken over (pending or refused).
    pub(super) fn trigger_play_gate(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        key: &str,
        name: String,
    ) -> Option<String> {
        if let Some((s, g, Decided::Viewer(n))) = self.trig.replay.clone()
            && (s, g) == (slot, generation)
        {
            self.trig.replay = None;
            return Some(n);
        }
        if self.trig.link.is_none()
            || !VIEWER_STAGES
                .iter()
                .chain([Trigger::ConnClose, Trigger::UserEnd].iter())
                .any(|&t| self.trig_wants(t, &name))
        {
            return Some(name);
        }
        let host = self.peer_host(slot, generation);
        let url = self.rtmp_url(slot, generation, app, key);
        let session = super::fnv1a(format!("{host} {name} RTMP").as_bytes());
        let v = ViewerGate {
            slot,
            generation,
            stream: name.clone(),
            requested: name,
            connector: "RTMP",
            url,
            host,
            session,
            kind: GateKind::Rtmp {
                app: app.to_string(),
                key: key.to_string(),
            },
        };
        match self.viewer_advance(v, 0) {
            Gate::Pass(v) => {
                self.viewer_admitted(&v);
                Some(v.stream)
            }
            Gate::Refused(v) => {
                self.viewer_refused(v);
                None
            }
            Gate::Parked => None,
        }
    }

    /// Whether PLAY_REWRITE may rename a request for `stream`.
    pub(super) fn trigger_may_rewrite(&mut self, stream: &str) -> bool {
        self.trig_wants(Trigger::PlayRewrite, stream)
    }

    fn viewer_advance(&mut self, mut v: ViewerGate, from: usize) -> Gate {
        for (stage, &t) in VIEWER_STAGES.iter().enumerate().skip(from) {
            if !self.trig_wants(t, &v.stream) {
                continue;
            }
            // A progressive request for a stream not live here may be a
            // static file: only PLAY_REWRITE (which may name a live stream)
            // looks at it.
            if t != Trigger::PlayRewrite
                && matches!(v.connector, "FLV" | "HTTPTS")
                && !self.live.by_name.contains_key(v.stream.as_str())
            {
                continue;
            }
            let conn = ((self.index as u64) << 40)
                | (u64::from(v.slot) << 20)
                | u64::from(v.generation & 0xF_FFFF);
            let stream = one_line(&v.stream);
            let payload = match t {
                Trigger::UserNew => format!(
                    "{stream}\n{}\n{conn}\n{}\n{}\n{}",
                    v.host, v.connector, v.url, v.session
                ),
                _ => format!("{stream}\n{}\n{}\n{}", v.host, v.connector, v.url),
            };
            let session = (t == Trigger::UserNew).then(|| format!("{} {}", v.session, v.stream));
            let stream = v.stream.clone();
            let (token, call) = self.trig_call(t, &stream, || payload, session);
            match call {
                Call::NotConfigured => {}
                Call::Answered(r) => {
                    if !self.viewer_apply(&mut v, t, r) {
                        return Gate::Refused(v);
                    }
                }
                Call::Pending => {
                    self.trig.pending.insert(token, Pending::Viewer(v, stage));
                    return Gate::Parked;
                }
            }
        }
        Gate::Pass(v)
    }

    /// Apply one viewer trigger's answer; `false` = refused.
    fn viewer_apply(&mut self, v: &mut ViewerGate, t: Trigger, r: Response) -> bool {
        let ok = match (t, r) {
            (Trigger::PlayRewrite, None) => true,
            (Trigger::PlayRewrite, Some(n)) if n.is_empty() => false,
            (Trigger::PlayRewrite, Some(n)) => {
                v.stream = n;
                true
            }
            // No answer and no default: MistServer's default ("true").
            (_, None) => true,
            (_, Some(s)) => parse_bool(&s) == Some(true),
        };
        if !ok {
            tracing::info!(
                "{}: {} refused viewer of {} ({})",
                self.conn_id(v.slot, v.generation),
                t.name(),
                v.stream,
                v.connector
            );
        }
        ok
    }

    fn viewer_admitted(&mut self, v: &ViewerGate) {
        let live = matches!(v.connector, "FLV" | "HTTPTS" | "RTMP");
        if !live
            || !(self.trig_wants(Trigger::ConnClose, &v.stream)
                || self.trig_wants(Trigger::UserEnd, &v.stream))
        {
            return;
        }
        self.trig.admitted.insert(
            (v.slot, v.generation),
            Admitted {
                stream: v.stream.clone(),
                connector: v.connector,
                url: v.url.clone(),
                host: v.host.clone(),
                session: v.session,
                since: self.now.get(),
                sent: 0,
            },
        );
    }

    /// Every check passed after waiting: serve it.
    fn viewer_resume(&mut self, v: ViewerGate) {
        let (slot, generation) = (v.slot, v.generation);
        if !self.conn_open(slot, generation) {
            return;
        }
        // (Again, after a synchronous pass with a rewritten name: the same
        // entry.)
        self.viewer_admitted(&v);
        match v.kind {
            GateKind::Http(req) => {
                let mut req = *req;
                if v.stream != v.requested {
                    req.path = rewrite_path(&req.path, &v.requested, &v.stream);
                }
                if let Some(c) = self.conns.get_mut(slot, generation)
                    && matches!(c.work.as_deref(), Some(Work::Waiting(_)))
                {
                    c.work = None;
                }
                self.trig.replay = Some((slot, generation, Decided::Viewer(v.stream)));
                let routed = self.route_live(slot, generation, &req);
                self.trig.replay = None;
                if !routed {
                    self.respond_status(slot, generation, &req, 404);
                }
            }
            GateKind::Rtmp { app, key } => {
                self.trig.replay = Some((slot, generation, Decided::Viewer(v.stream)));
                self.on_play(slot, generation, &app, &key);
                self.trig.replay = None;
                self.live_drive(slot, generation);
            }
        }
    }

    fn viewer_refused(&mut self, v: ViewerGate) {
        let (slot, generation) = (v.slot, v.generation);
        if !self.conn_open(slot, generation) {
            return;
        }
        match v.kind {
            GateKind::Http(req) => {
                if let Some(c) = self.conns.get_mut(slot, generation)
                    && matches!(c.work.as_deref(), Some(Work::Waiting(_)))
                {
                    c.work = None;
                }
                self.respond_status(slot, generation, &req, 403);
            }
            GateKind::Rtmp { .. } => {
                if let Some(l) = self
                    .conns
                    .get_mut(slot, generation)
                    .and_then(|c| c.live.as_deref_mut())
                {
                    l.refuse_play(
                        "NetStream.Play.Failed",
                        &format!("{} may not be played", v.requested),
                    );
                }
                self.live_drive(slot, generation);
            }
        }
    }

    /// A live connection closes: CONN_CLOSE and USER_END for an admitted
    /// viewer.
    pub(super) fn trigger_conn_closed(&mut self, slot: u32, generation: u32) {
        if self.trig.admitted.is_empty() {
            return;
        }
        let Some(a) = self.trig.admitted.remove(&(slot, generation)) else {
            return;
        };
        let up = self
            .conns
            .get(slot, generation)
            .and_then(|c| c.live.as_deref())
            .and_then(|l| l.rtmp_session())
            .map_or(0, |s| s.bytes_received());
        let secs = self.now.get().saturating_duration_since(a.since).as_secs();
        self.trig_fire(Trigger::ConnClose, &a.stream, || {
            format!("{}\n{}\n{}\n{}", a.stream, a.host, a.connector, a.url)
        });
        self.trig_fire(Trigger::UserEnd, &a.stream, || {
            format!(
                "{:x}\n{}\n{}\n{}\n{secs}\n{up}\n{}\n",
                a.session, a.stream, a.connector, a.host, a.sent
            )
        });
    }

    /// Bytes sent to a live connection (counted for USER_END).
    pub(super) fn trigger_sent(&mut self, slot: u32, generation: u32, n: usize) {
        if self.trig.admitted.is_empty() {
            return;
        }
        if let Some(a) = self.trig.admitted.get_mut(&(slot, generation)) {
            a.sent += n as u64;
        }
    }

    // ---- stream state ----

    /// A stream went live on this core (`continuing`: its publisher came
    /// back within the grace).
    pub(super) fn trigger_stream_live(&mut self, name: &str, id: StreamId, continuing: bool) {
        if self.trig.link.is_none() {
            return;
        }
        if !continuing {
            self.trig_fire(Trigger::StreamReady, name, || format!("{name}\nbuffer"));
        }
        if self.trig_wants(Trigger::StreamBuffer, name)
            || self.trig_wants(Trigger::LiveTrackList, name)
        {
            let now = self.now.get();
            self.trig.buffers.retain(|b| b.id != id);
            self.trig.buffers.push(BufferWatch {
                id,
                name: std::sync::Arc::from(name),
                state: BufState::Waiting,
                last_media: now,
                first_ts: 0,
                last_ts: 0,
                tracks: (false, false),
            });
        }
    }

    /// An item of stream `id` was published on this core.
    pub(super) fn trigger_media(&mut self, id: StreamId, dts_ms: i64) {
        if self.trig.buffers.is_empty() {
            return;
        }
        let now = self.now.get();
        let Some(i) = self.trig.buffers.iter().position(|b| b.id == id) else {
            return;
        };
        let b = &mut self.trig.buffers[i];
        b.last_media = now;
        b.last_ts = dts_ms;
        let next = match b.state {
            BufState::Waiting => {
                b.first_ts = dts_ms;
                Some("FULL")
            }
            BufState::Dry => {
                b.state = BufState::Recover(now);
                Some("RECOVER")
            }
            BufState::Recover(since) if now >= since + FULL_AFTER_RECOVER => Some("FULL"),
            _ => None,
        };
        if let Some(state) = next {
            if state == "FULL" {
                b.state = BufState::Full;
            }
            self.buffer_fire(i, state);
        }
        // LIVE_TRACK_LIST: whenever the tracks the stream has change (the
        // first time with its first media).
        let Some(head) = self.live.streams.get(&id).map(|s| s.head.clone()) else {
            return;
        };
        let b = &mut self.trig.buffers[i];
        let tracks = (head.has_video, head.has_audio);
        if b.tracks != tracks {
            b.tracks = tracks;
            let name = b.name.clone();
            self.trig_fire(Trigger::LiveTrackList, &name, || {
                format!("{name}\n{}\n", track_list(&head))
            });
        }
    }

    fn buffer_fire(&mut self, i: usize, state: &'static str) {
        let now = self.now.get();
        let b = &self.trig.buffers[i];
        let name = b.name.clone();
        let (tracks, keep) = match self.live.streams.get(&b.id) {
            Some(s) => (
                u32::from(s.head.has_video) + u32::from(s.head.has_audio),
                s.skip_lag_ms,
            ),
            None => (0, 0),
        };
        let buffer = (b.last_ts - b.first_ts).max(0);
        let idle = now.saturating_duration_since(b.last_media).as_millis();
        let issues = if state == "DRY" {
            format!("\"no media for {idle} ms\"")
        } else {
            "false".into()
        };
        tracing::info!("stream {name}: STREAM_BUFFER {state}");
        self.trig_fire(Trigger::StreamBuffer, &name, || {
            format!(
                "{name}\n{state}\n{{\"buffer\":{buffer},\"jitter\":0,\"maxkeepaway\":{keep},\"tracks\":{tracks},\"issues\":{issues}}}"
            )
        });
    }

    /// Per tick: streams whose media stopped go DRY.
    pub(super) fn trigger_tick(&mut self) {
        // Admitted viewers whose connection never became a live one (a
        // refused rendition, a stream gone meanwhile): forget them.
        self.trig.ticks = self.trig.ticks.wrapping_add(1);
        if !self.trig.admitted.is_empty() && self.trig.ticks.is_multiple_of(25) {
            let conns = &self.conns;
            self.trig.admitted.retain(|&(s, g), _| {
                conns
                    .get(s, g)
                    .is_some_and(|c| c.live.is_some() && c.phase != super::Phase::Closing)
            });
        }
        if self.trig.buffers.is_empty() {
            return;
        }
        let now = self.now.get();
        for i in 0..self.trig.buffers.len() {
            let b = &mut self.trig.buffers[i];
            if matches!(b.state, BufState::Full | BufState::Recover(_))
                && now >= b.last_media + DRY_AFTER
            {
                b.state = BufState::Dry;
                self.buffer_fire(i, "DRY");
            }
        }
    }

    /// The publisher of a stream left (its buffer gets no more input).
    pub(super) fn trigger_stream_offline(&mut self, name: &str, id: StreamId) {
        if self.trig.link.is_none() {
            return;
        }
        self.trig.buffers.retain(|b| b.id != id);
        tracing::debug!("stream {name}: STREAM_BUFFER EMPTY");
        self.trig_fire(Trigger::StreamBuffer, name, || format!("{name}\nEMPTY"));
    }

    /// A stream ended (no publisher within its grace).
    pub(super) fn trigger_stream_ended(&mut self, name: &str) {
        if self.trig.link.is_none() {
            return;
        }
        self.trig_fire(Trigger::StreamUnload, name, || format!("{name}\nbuffer"));
        self.trig_fire(Trigger::StreamEnd, name, || {
            format!("{name}\n0\n0\n0\n0\n0\n0")
        });
    }

    /// A `ts-exec:` source's command failed.
    pub(super) fn trigger_input_abort(
        &mut self,
        name: &str,
        source: &str,
        binary: &str,
        why: &str,
    ) {
        self.trig_fire(Trigger::InputAbort, name, || {
            format!("{name}\n{source}\n{binary}\n0\nEXIT\n{why}")
        });
    }

    /// A `[[push]]` of stream `id` is about to start: PUSH_OUT_START.
    /// `true` = start it now; `false` = the trigger holds it (started with
    /// the answer's target later, or aborted).
    pub(super) fn trigger_push_out_start(
        &mut self,
        id: StreamId,
        name: &str,
        target: &str,
    ) -> bool {
        if !self.trig_wants(Trigger::PushOutStart, name) {
            return true;
        }
        self.trig.pushes_started += 1;
        let (token, call) = self.trig_call(
            Trigger::PushOutStart,
            name,
            || format!("{name}\n{target}"),
            None,
        );
        match call {
            Call::NotConfigured => true,
            Call::Answered(r) => {
                self.push_out_answer(id, name.to_string(), target.to_string(), r);
                false
            }
            Call::Pending => {
                self.trig.pending.insert(
                    token,
                    Pending::PushOut {
                        id,
                        name: name.to_string(),
                        target: target.to_string(),
                    },
                );
                false
            }
        }
    }

    fn push_out_answer(&mut self, id: StreamId, name: String, target: String, r: Response) {
        // No answer and no default: keep the configured target.
        let url = r.unwrap_or_else(|| target.clone());
        if url.is_empty() {
            tracing::info!("push of {name} to {target}: PUSH_OUT_START aborted it");
            return;
        }
        if !self.live.streams.contains_key(&id) {
            return;
        }
        match crate::deliver::push::PushTarget::parse(&url) {
            Ok(t) => self.push_start(id, &name, &url, &target, t),
            Err(e) => {
                self.counters.push_errors += 1;
                tracing::warn!(
                    "push of {name}: PUSH_OUT_START answered {url:?}, not a push target: {e}"
                );
            }
        }
    }

    /// A `[[push]]` ended.
    pub(super) fn trigger_push_ended(
        &mut self,
        name: &str,
        configured: &str,
        used: &str,
        sent: u64,
    ) {
        if self.trig.link.is_none() {
            return;
        }
        let id = self.trig.pushes_started;
        self.trig_fire(Trigger::PushEnd, name, || {
            format!("{id}\n{name}\n{configured}\n{used}\n[]\n{{\"datagrams\":{sent}}}")
        });
    }
}

enum Gate {
    Pass(ViewerGate),
    Refused(ViewerGate),
    Parked,
}

/// A request path for `from`'s route, naming `to` instead.
fn rewrite_path(path: &str, from: &str, to: &str) -> String {
    for prefix in ["/hls/", "/cmaf/"] {
        if let Some(rest) = path.strip_prefix(prefix)
            && let Some(tail) = rest.strip_prefix(from)
            && tail.starts_with('/')
        {
            return format!("{prefix}{to}{tail}");
        }
    }
    if let Some(rest) = path.strip_prefix('/')
        && let Some(ext) = rest.strip_prefix(from)
    {
        return format!("/{to}{ext}");
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_urls_split_into_app_and_key() {
        assert_eq!(
            parse_rtmp_url("rtmp://h:1935/live/live+alice"),
            Some(("live".into(), "live+alice".into()))
        );
        assert_eq!(
            parse_rtmp_url("rtmp://h/app/a/b?x=1"),
            Some(("app".into(), "a/b".into()))
        );
        assert_eq!(parse_rtmp_url("rtmp://h/app"), None);
        assert_eq!(parse_rtmp_url("http://h/app/k"), None);
    }

    #[test]
    fn payload_fields_stay_on_one_line() {
        assert_eq!(one_line("live+a"), "live+a");
        assert_eq!(one_line("x\n10.0.0.1"), "x%0A10.0.0.1");
        assert_eq!(one_line("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn paths_are_rewritten() {
        assert_eq!(rewrite_path("/a.flv", "a", "b+c"), "/b+c.flv");
        assert_eq!(
            rewrite_path("/hls/a/index.m3u8", "a", "b"),
            "/hls/b/index.m3u8"
        );
    }
}
