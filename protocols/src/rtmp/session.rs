//! The per-connection RTMP server session.
use std::collections::VecDeque;
use std::mem;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_packager::amf0::{self, Amf0Value};

use super::RtmpError;
use super::chunk::{
    ChunkDecoder, MAX_CHUNK_SIZE, Message, MessageHeader, encode_message, encode_message_to_vec,
    message_type as mt,
};
use super::control::{self, Control, user_control};
use super::handshake::Handshake;

/// Chunk stream the session writes protocol control messages on.
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for command messages (`_result`, `onStatus`).
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for audio messages to players.
pub const CSID_AUDIO: u32 = 4;
/// Chunk stream for data messages (`onMetaData`, `|RtmpSampleAccess`).
pub const CSID_DATA: u32 = 5;
/// Chunk stream for video messages to players.
pub const CSID_VIDEO: u32 = 6;

/// Most `createStream` calls one connection may make.
const MAX_CREATED_STREAMS: u32 = 64;

/// Limits a session enforces and the values it announces. All explicit,
/// all configurable; [`Limits::validate`] rejects absurd ones.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted (bytes). 1..=16,777,215 (the 24-bit length
    /// field's maximum).
    pub max_message_size: u32,
    /// Most chunk stream ids in use at once. 1..=65,598.
    pub max_chunk_streams: usize,
    /// Largest chunk size the peer may set. 1..=2^31-1.
    pub max_chunk_size: u32,
    /// Most bytes held in partially received messages, over all chunk
    /// streams (bounds memory per connection). At least `max_message_size`.
    pub max_buffered_bytes: usize,
    /// Chunk size this side switches to after `connect` (announced with Set
    /// Chunk Size). 128..=16,777,215.
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size announced to the peer.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth window announced to the peer (limit type dynamic).
    pub peer_bandwidth: u32,
    /// Time from `new` until a publish or play is accepted.
    pub setup_timeout: Duration,
    /// Time a publishing connection may send nothing.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_chunk_size: 16 * 1024 * 1024,
            max_buffered_bytes: 16 * 1024 * 1024,
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            setup_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Check every field is in its range (see the field docs); the error
    /// names the first one that is not.
    pub fn validate(&self) -> Result<(), RtmpError> {
        let bad = |name, value: u64, reason| {
            Err(RtmpError::InvalidLimit {
                name,
                value,
                reason,
            })
        };
        if !(1..=0xFF_FFFF).contains(&self.max_message_size) {
            return bad(
                "max_message_size",
                self.max_message_size.into(),
                "must be 1..=16777215",
            );
        }
        if !(1..=65_598).contains(&self.max_chunk_streams) {
            return bad(
                "max_chunk_streams",
                self.max_chunk_streams as u64,
                "must be 1..=65598",
            );
        }
        if !(1..=MAX_CHUNK_SIZE).contains(&self.max_chunk_size) {
            return bad(
                "max_chunk_size",
                self.max_chunk_size.into(),
                "must be 1..=2147483647",
            );
        }
        if self.max_buffered_bytes < self.max_message_size as usize {
            return bad(
                "max_buffered_bytes",
                self.max_buffered_bytes as u64,
                "must be at least max_message_size",
            );
        }
        if !(128..=0xFF_FFFF).contains(&self.out_chunk_size) {
            return bad(
                "out_chunk_size",
                self.out_chunk_size.into(),
                "must be 128..=16777215",
            );
        }
        if self.window_ack_size == 0 {
            return bad("window_ack_size", 0, "must be > 0");
        }
        if self.peer_bandwidth == 0 {
            return bad("peer_bandwidth", 0, "must be > 0");
        }
        if self.setup_timeout.is_zero() {
            return bad("setup_timeout", 0, "must be > 0");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout", 0, "must be > 0");
        }
        Ok(())
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Message type 8: an FLV audio tag body.
    Audio,
    /// Message type 9: an FLV video tag body.
    Video,
}

impl MediaKind {
    /// The RTMP message type id.
    pub fn type_id(self) -> u8 {
        match self {
            MediaKind::Audio => mt::AUDIO,
            MediaKind::Video => mt::VIDEO,
        }
    }

    /// The chunk stream the session sends this kind on.
    pub fn csid(self) -> u32 {
        match self {
            MediaKind::Audio => CSID_AUDIO,
            MediaKind::Video => CSID_VIDEO,
        }
    }
}

/// What the client's `connect` said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectInfo {
    /// Application name (`live` in `rtmp://host/live/key`), without a query
    /// or trailing slash.
    pub app: String,
    /// A query string after the app (`x=1` in `live?x=1`), if any.
    pub app_query: Option<String>,
    /// The URL the client connected to, if it said.
    pub tc_url: Option<String>,
    /// The client's `flashVer` ("FMLE/3.0 (compatible; ...)"), if any.
    pub flash_ver: Option<String>,
}

/// Something the engine must decide or consume.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `connect` was received and answered (success). Informational; the
    /// engine may `close()` if it does not serve the app.
    Connect(ConnectInfo),
    /// The client wants to publish. Answer with `accept_publish` or
    /// `reject_publish`. Media messages may follow before the answer.
    Publish {
        /// Message stream id the publish arrived on.
        stream_id: u32,
        /// Application from `connect`.
        app: String,
        /// Stream name (key) without its query string.
        name: String,
        /// What followed `?` in the name, if anything.
        query: Option<String>,
        /// Publishing type: `live` (default), `record`, `append`.
        publish_type: String,
    },
    /// The publisher stopped (FCUnpublish, deleteStream, closeStream).
    Unpublish {
        /// Message stream id that was publishing.
        stream_id: u32,
    },
    /// The client wants to play. Answer with `accept_play` or `reject_play`.
    Play {
        /// Message stream id to send media on.
        stream_id: u32,
        /// Application from `connect`.
        app: String,
        /// Stream name without its query string.
        name: String,
        /// What followed `?` in the name, if anything.
        query: Option<String>,
        /// Requested start: -2 live or recorded, -1 live only, >= 0 seconds
        /// into a recording.
        start: f64,
    },
    /// The player stopped (deleteStream, closeStream).
    StopPlay {
        /// Message stream id that was playing.
        stream_id: u32,
    },
    /// A data message from the publisher: `@setDataFrame` is stripped, so
    /// `values` is e.g. `["onMetaData", EcmaArray]` and `payload` is those
    /// values' encoding (an FLV script tag body, a slice of the message).
    /// Data that does not decode as AMF0 comes with empty `values`.
    Metadata {
        /// Message timestamp (ms).
        timestamp_ms: u32,
        /// The decoded values.
        values: Vec<Amf0Value>,
        /// Their encoding.
        payload: Bytes,
    },
    /// An audio or video message from the publisher (aggregates are split).
    Media {
        /// Audio or video.
        kind: MediaKind,
        /// Absolute timestamp in ms, reconstructed from the chunk deltas
        /// (wraps at 2^32).
        timestamp_ms: u32,
        /// The FLV tag body (the reassembled message).
        payload: Bytes,
    },
}

/// What the engine must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send these bytes, after those of earlier transmits.
    Transmit(Bytes),
    /// Something for the engine.
    Event(Event),
    /// Close the connection after sending earlier transmits. `Some` names a
    /// protocol error of the peer.
    Close(Option<RtmpError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Neither publishing nor playing.
    Idle,
    PublishPending(u32),
    Publishing(u32),
    PlayPending(u32),
    Playing(u32),
}

/// One RTMP server connection.
#[derive(Debug)]
pub struct ServerSession {
    limits: Limits,
    /// `Some` until C2 is in.
    handshake: Option<Handshake>,
    digest_handshake: bool,
    decoder: ChunkDecoder,
    out: VecDeque<Output>,
    /// Control/command bytes not yet turned into a `Transmit`.
    tx: Vec<u8>,
    out_chunk_size: u32,
    connect: Option<ConnectInfo>,
    streams_created: u32,
    role: Role,
    /// The peer's Window Acknowledgement Size (0 = none announced).
    peer_window: u32,
    received: u64,
    acked: u64,
    deadline: Option<Instant>,
    closed: bool,
}

fn deadline_after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Split `name?query` at the first `?`.
fn split_query(s: &str) -> (String, Option<String>) {
    match s.split_once('?') {
        Some((n, q)) => (n.to_owned(), Some(q.to_owned())),
        None => (s.to_owned(), None),
    }
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), level.into()),
        ("code".into(), code.into()),
        ("description".into(), description.into()),
    ])
}

/// Encode one audio/video message for a player as pieces (chunk headers +
/// payload slices, see [`encode_message`]) on the session's usual chunk
/// stream for `kind`. The same pieces can go to every player whose session
/// has this `stream_id` (`play_stream_id()`) and `chunk_size`
/// (`out_chunk_size()`), via [`ServerSession::send_encoded`].
pub fn encode_media(
    kind: MediaKind,
    stream_id: u32,
    timestamp_ms: u32,
    payload: &Bytes,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) {
    let header = MessageHeader {
        csid: kind.csid(),
        timestamp: timestamp_ms,
        type_id: kind.type_id(),
        stream_id,
    };
    encode_message(&header, payload, chunk_size, out);
}

impl ServerSession {
    /// A new session on a just-accepted connection at `now` (the setup
    /// timer starts). `limits` should have passed [`Limits::validate`];
    /// out-of-range values are clamped to something workable.
    pub fn new(now: Instant, limits: Limits) -> Self {
        Self {
            deadline: deadline_after(now, limits.setup_timeout),
            out_chunk_size: super::chunk::DEFAULT_CHUNK_SIZE,
            limits,
            handshake: Some(Handshake::new()),
            digest_handshake: false,
            decoder: ChunkDecoder::new(),
            out: VecDeque::new(),
            tx: Vec::new(),
            connect: None,
            streams_created: 0,
            role: Role::Idle,
            peer_window: 0,
            received: 0,
            acked: 0,
            closed: false,
        }
    }

    /// Feed received bytes. Never fails: problems come out as
    /// [`Output::Close`] with the error.
    pub fn handle_input(&mut self, now: Instant, mut data: &[u8]) {
        if self.closed || data.is_empty() {
            return;
        }
        self.received += data.len() as u64;
        if let Some(hs) = &mut self.handshake {
            match hs.input(data, &mut self.tx) {
                Err(e) => return self.fail(e),
                Ok(used) => data = &data[used..],
            }
            if !hs.is_done() {
                self.flush_tx();
                return;
            }
            self.digest_handshake = hs.digest;
            self.handshake = None;
        }
        while !data.is_empty() {
            match self.decoder.decode(&mut data, &self.limits) {
                Err(e) => return self.fail(e),
                Ok(None) => break,
                Ok(Some(msg)) => {
                    if let Err(e) = self.handle_message(now, msg) {
                        return self.fail(e);
                    }
                    if self.closed {
                        return;
                    }
                }
            }
        }
        if self.peer_window > 0 && self.received - self.acked >= u64::from(self.peer_window) {
            self.acked = self.received;
            self.control(
                mt::ACKNOWLEDGEMENT,
                &control::u32_payload(self.received as u32),
            );
        }
        if let Role::Publishing(_) = self.role {
            self.deadline = deadline_after(now, self.limits.idle_timeout);
        }
        self.flush_tx();
    }

    /// The peer closed its sending side (recv returned 0).
    pub fn handle_eof(&mut self) {
        if !self.closed {
            self.finish(None);
        }
    }

    /// The deadline from `poll_timeout` passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.closed || now < deadline {
            return;
        }
        let phase = match self.role {
            _ if self.handshake.is_some() => "waiting for the handshake",
            Role::Publishing(_) => "waiting for publisher data (idle_timeout)",
            _ => "before publish or play was accepted (setup_timeout)",
        };
        self.fail(RtmpError::Timeout { phase });
    }

    /// Next action, or `None` when waiting for input (or a decision).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` must be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed { None } else { self.deadline }
    }

    /// Accept the pending publish: onStatus `NetStream.Publish.Start`.
    /// Ignored unless a publish is pending.
    pub fn accept_publish(&mut self, now: Instant) {
        let Role::PublishPending(id) = self.role else {
            return;
        };
        self.role = Role::Publishing(id);
        self.deadline = deadline_after(now, self.limits.idle_timeout);
        self.on_status(id, "status", "NetStream.Publish.Start", "Start publishing");
        self.flush_tx();
    }

    /// Refuse the pending publish with an onStatus error (`code` e.g.
    /// `NetStream.Publish.BadName`), then [`Output::Close`]`(None)`.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        let Role::PublishPending(id) = self.role else {
            return;
        };
        self.on_status(id, "error", code, description);
        self.finish(None);
    }

    /// Accept the pending play: Stream Begin, onStatus
    /// `NetStream.Play.Reset` and `NetStream.Play.Start`, and
    /// `|RtmpSampleAccess`. Then send metadata and media.
    pub fn accept_play(&mut self) {
        let Role::PlayPending(id) = self.role else {
            return;
        };
        self.role = Role::Playing(id);
        self.deadline = None;
        self.control(
            mt::USER_CONTROL,
            &control::user_control_payload(user_control::STREAM_BEGIN, id),
        );
        self.on_status(
            id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting",
        );
        self.on_status(id, "status", "NetStream.Play.Start", "Started playing");
        let mut body = Vec::new();
        amf0::encode_all(
            &["|RtmpSampleAccess".into(), true.into(), true.into()],
            &mut body,
        );
        self.message(CSID_DATA, mt::DATA_AMF0, id, 0, &body);
        self.flush_tx();
    }

    /// Refuse the pending play with an onStatus error (`code` e.g.
    /// `NetStream.Play.StreamNotFound`), then [`Output::Close`]`(None)`.
    pub fn reject_play(&mut self, code: &str, description: &str) {
        let Role::PlayPending(id) = self.role else {
            return;
        };
        self.on_status(id, "error", code, description);
        self.finish(None);
    }

    /// Tell a player the stream ended (publisher gone): Stream EOF and
    /// onStatus `NetStream.Play.UnpublishNotify`. The session stays open;
    /// the engine may `close()` it.
    pub fn end_play(&mut self) {
        let Role::Playing(id) = self.role else {
            return;
        };
        self.control(
            mt::USER_CONTROL,
            &control::user_control_payload(user_control::STREAM_EOF, id),
        );
        self.on_status(
            id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "Stream unpublished",
        );
        self.flush_tx();
    }

    /// Send a data message to a player: `values` as given (e.g.
    /// `["onMetaData", EcmaArray]`, as `Event::Metadata` delivered them).
    /// Ignored unless playing.
    pub fn send_metadata(&mut self, timestamp_ms: u32, values: &[Amf0Value]) {
        let Role::Playing(id) = self.role else {
            return;
        };
        let mut body = Vec::new();
        amf0::encode_all(values, &mut body);
        self.message(CSID_DATA, mt::DATA_AMF0, id, timestamp_ms, &body);
        self.flush_tx();
    }

    /// Send an already encoded data message body (e.g. `Event::Metadata`'s
    /// `payload`) to a player. Ignored unless playing.
    pub fn send_data(&mut self, timestamp_ms: u32, payload: &Bytes) {
        let Role::Playing(id) = self.role else {
            return;
        };
        self.pieces(CSID_DATA, mt::DATA_AMF0, id, timestamp_ms, payload);
    }

    /// Send one audio or video message (an FLV tag body) to a player. The
    /// payload is not copied: the output is chunk headers interleaved with
    /// slices of `payload`. Ignored unless playing.
    pub fn send_media(&mut self, kind: MediaKind, timestamp_ms: u32, payload: &Bytes) {
        let Role::Playing(id) = self.role else {
            return;
        };
        self.pieces(kind.csid(), kind.type_id(), id, timestamp_ms, payload);
    }

    /// Send pieces encoded once for many players ([`encode_media`] or
    /// [`encode_message`] with this session's `play_stream_id()` and
    /// `out_chunk_size()`). Ignored unless playing.
    pub fn send_encoded(&mut self, pieces: &[Bytes]) {
        if !matches!(self.role, Role::Playing(_)) {
            return;
        }
        self.flush_tx();
        self.out
            .extend(pieces.iter().cloned().map(Output::Transmit));
    }

    /// End the session from the engine's side: yields [`Output::Close`]
    /// (`None`) after anything pending.
    pub fn close(&mut self) {
        if !self.closed {
            self.finish(None);
        }
    }

    /// The chunk size this side writes with (128 until `connect` is
    /// answered, then `Limits::out_chunk_size`).
    pub fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size
    }

    /// The peer's chunk size.
    pub fn in_chunk_size(&self) -> u32 {
        self.decoder.chunk_size()
    }

    /// The message stream id media goes out on, once playing.
    pub fn play_stream_id(&self) -> Option<u32> {
        match self.role {
            Role::Playing(id) => Some(id),
            _ => None,
        }
    }

    /// True once a publish was accepted (until unpublish or close).
    pub fn is_publishing(&self) -> bool {
        matches!(self.role, Role::Publishing(_))
    }

    /// What `connect` said, once it was received.
    pub fn connect_info(&self) -> Option<&ConnectInfo> {
        self.connect.as_ref()
    }

    /// Whether the client used (and was answered with) the digest handshake.
    pub fn digest_handshake(&self) -> bool {
        self.digest_handshake
    }

    /// Bytes received on this connection (handshake included).
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    // ---- internals ----

    fn flush_tx(&mut self) {
        if !self.tx.is_empty() {
            let bytes = Bytes::from(mem::take(&mut self.tx));
            self.out.push_back(Output::Transmit(bytes));
        }
    }

    fn event(&mut self, e: Event) {
        self.flush_tx();
        self.out.push_back(Output::Event(e));
    }

    fn fail(&mut self, e: RtmpError) {
        self.finish(Some(e));
    }

    fn finish(&mut self, e: Option<RtmpError>) {
        self.flush_tx();
        self.out.push_back(Output::Close(e));
        self.closed = true;
        // Nothing the engine calls afterwards (accept_*, send_*) may add
        // output behind the close.
        self.role = Role::Idle;
        self.deadline = None;
        self.handshake = None;
        self.decoder = ChunkDecoder::new();
    }

    /// A small message, copied into the pending transmit buffer.
    fn message(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) {
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        encode_message_to_vec(&header, payload, self.out_chunk_size, &mut self.tx);
    }

    /// A message as pieces referencing `payload`.
    fn pieces(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &Bytes) {
        self.flush_tx();
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        let mut pieces = Vec::new();
        encode_message(&header, payload, self.out_chunk_size, &mut pieces);
        self.out.extend(pieces.into_iter().map(Output::Transmit));
    }

    fn control(&mut self, type_id: u8, payload: &[u8]) {
        self.message(CSID_CONTROL, type_id, 0, 0, payload);
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let mut body = Vec::new();
        amf0::encode_all(values, &mut body);
        self.message(CSID_COMMAND, mt::COMMAND_AMF0, stream_id, 0, &body);
    }

    fn on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.command(
            stream_id,
            &[
                "onStatus".into(),
                0.0.into(),
                Amf0Value::Null,
                status_object(level, code, description),
            ],
        );
    }

    fn result(&mut self, txn: f64, value: Amf0Value) {
        if txn != 0.0 {
            self.command(0, &["_result".into(), txn.into(), Amf0Value::Null, value]);
        }
    }

    fn handle_message(&mut self, now: Instant, msg: Message) -> Result<(), RtmpError> {
        match msg.type_id {
            mt::SET_CHUNK_SIZE
            | mt::ABORT
            | mt::ACKNOWLEDGEMENT
            | mt::USER_CONTROL
            | mt::WINDOW_ACK_SIZE
            | mt::SET_PEER_BANDWIDTH => {
                let c = control::parse_control(msg.type_id, msg.csid, &msg.payload)?;
                self.handle_control(c)
            }
            mt::COMMAND_AMF0 => self.handle_command(now, &msg, &msg.payload[..]),
            mt::COMMAND_AMF3 => {
                // A format byte (0 = AMF0 follows) precedes the values.
                let body = msg.payload.get(1..).unwrap_or_default();
                self.handle_command(now, &msg, body)
            }
            mt::DATA_AMF0 => {
                self.handle_data(msg.timestamp, msg.payload);
                Ok(())
            }
            mt::AUDIO | mt::VIDEO => {
                self.check_publishing(msg.type_id, msg.csid)?;
                let kind = if msg.type_id == mt::AUDIO {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                self.event(Event::Media {
                    kind,
                    timestamp_ms: msg.timestamp,
                    payload: msg.payload,
                });
                Ok(())
            }
            mt::AGGREGATE => {
                for sub in control::split_aggregate(&msg.payload, msg.timestamp, msg.csid)? {
                    match sub.type_id {
                        mt::AUDIO | mt::VIDEO => {
                            self.check_publishing(sub.type_id, msg.csid)?;
                            let kind = if sub.type_id == mt::AUDIO {
                                MediaKind::Audio
                            } else {
                                MediaKind::Video
                            };
                            self.event(Event::Media {
                                kind,
                                timestamp_ms: sub.timestamp,
                                payload: sub.payload,
                            });
                        }
                        mt::DATA_AMF0 => self.handle_data(sub.timestamp, sub.payload),
                        _ => {}
                    }
                }
                Ok(())
            }
            // Shared objects, AMF3 data, unknown types: ignored.
            _ => Ok(()),
        }
    }

    fn check_publishing(&self, type_id: u8, csid: u32) -> Result<(), RtmpError> {
        match self.role {
            Role::Publishing(_) | Role::PublishPending(_) => Ok(()),
            _ => Err(RtmpError::MediaBeforePublish { type_id, csid }),
        }
    }

    fn handle_control(&mut self, c: Control) -> Result<(), RtmpError> {
        match c {
            Control::SetChunkSize(size) => {
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(RtmpError::InvalidChunkSize { size });
                }
                if size > self.limits.max_chunk_size {
                    return Err(RtmpError::ChunkSizeOverLimit {
                        size,
                        limit: self.limits.max_chunk_size,
                    });
                }
                self.decoder.set_chunk_size(size);
            }
            Control::Abort(csid) => self.decoder.abort(csid),
            Control::Acknowledgement(_) | Control::SetPeerBandwidth(..) => {}
            Control::WindowAckSize(w) => self.peer_window = w,
            Control::User { event, value } => {
                if event == user_control::PING_REQUEST {
                    self.control(
                        mt::USER_CONTROL,
                        &control::user_control_payload(user_control::PING_RESPONSE, value),
                    );
                }
            }
        }
        Ok(())
    }

    fn handle_data(&mut self, timestamp_ms: u32, payload: Bytes) {
        if !matches!(self.role, Role::Publishing(_) | Role::PublishPending(_)) {
            return; // data outside a publish (or from a player): ignored
        }
        let mut rest = &payload[..];
        let first = amf0::decode(&mut rest);
        let payload = match first {
            Ok(Amf0Value::String(s)) if s == "@setDataFrame" => {
                payload.slice(payload.len() - rest.len()..)
            }
            Ok(Amf0Value::String(s)) if s == "@clearDataFrame" => return,
            _ => payload,
        };
        let values = amf0::decode_all(&payload).unwrap_or_default();
        self.event(Event::Metadata {
            timestamp_ms,
            values,
            payload,
        });
    }

    fn require_connected(&self, name: &str) -> Result<&ConnectInfo, RtmpError> {
        self.connect
            .as_ref()
            .ok_or_else(|| RtmpError::CommandOutOfOrder {
                command: name.to_owned(),
                state: "before connect",
            })
    }

    fn handle_command(
        &mut self,
        now: Instant,
        msg: &Message,
        body: &[u8],
    ) -> Result<(), RtmpError> {
        let _ = now;
        let values = amf0::decode_all(body).map_err(|source| RtmpError::Amf {
            type_id: msg.type_id,
            csid: msg.csid,
            source,
        })?;
        let Some(name) = values.first().and_then(Amf0Value::as_str) else {
            return Err(RtmpError::MalformedCommand {
                type_id: msg.type_id,
                csid: msg.csid,
                detail: "no command name string",
            });
        };
        let txn = values.get(1).and_then(Amf0Value::as_f64).unwrap_or(0.0);
        let arg = |i: usize| values.get(3 + i);
        let arg_str = |i: usize| arg(i).and_then(Amf0Value::as_str).unwrap_or("");
        match name {
            "connect" => {
                if self.connect.is_some() {
                    return Err(RtmpError::CommandOutOfOrder {
                        command: name.to_owned(),
                        state: "after connect",
                    });
                }
                let obj = values.get(2);
                let field = |k: &str| obj.and_then(|o| o.get(k)).and_then(Amf0Value::as_str);
                let (app, app_query) = split_query(field("app").unwrap_or(""));
                let info = ConnectInfo {
                    app: app.trim_end_matches('/').to_owned(),
                    app_query,
                    tc_url: field("tcUrl").map(str::to_owned),
                    flash_ver: field("flashVer").map(str::to_owned),
                };
                self.control(
                    mt::WINDOW_ACK_SIZE,
                    &control::u32_payload(self.limits.window_ack_size),
                );
                self.control(
                    mt::SET_PEER_BANDWIDTH,
                    &control::peer_bandwidth_payload(self.limits.peer_bandwidth, 2),
                );
                let size = self.limits.out_chunk_size.clamp(1, MAX_CHUNK_SIZE);
                self.control(mt::SET_CHUNK_SIZE, &control::u32_payload(size));
                self.out_chunk_size = size;
                let props = Amf0Value::Object(vec![
                    ("fmsVer".into(), "FMS/3,0,1,123".into()),
                    ("capabilities".into(), 31.0.into()),
                ]);
                let mut status = status_object(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                if let Amf0Value::Object(p) = &mut status {
                    p.push(("objectEncoding".into(), 0.0.into()));
                }
                self.command(0, &["_result".into(), txn.into(), props, status]);
                self.connect = Some(info.clone());
                self.event(Event::Connect(info));
            }
            "createStream" => {
                self.require_connected(name)?;
                if self.streams_created >= MAX_CREATED_STREAMS {
                    return Err(RtmpError::CommandOutOfOrder {
                        command: name.to_owned(),
                        state: "called too often (64 streams per connection)",
                    });
                }
                self.streams_created += 1;
                let id = self.streams_created;
                self.result(txn, f64::from(id).into());
            }
            "releaseStream" | "FCPublish" | "FCSubscribe" | "_checkbw" => {
                self.require_connected(name)?;
                self.result(txn, Amf0Value::Undefined);
            }
            "getStreamLength" => {
                self.require_connected(name)?;
                self.result(txn, 0.0.into());
            }
            "publish" => {
                let app = self.require_connected(name)?.app.clone();
                if self.role != Role::Idle {
                    return Err(RtmpError::CommandOutOfOrder {
                        command: name.to_owned(),
                        state: "while already publishing or playing",
                    });
                }
                let (stream, query) = split_query(arg_str(0));
                let publish_type = match arg_str(1) {
                    "" => "live".to_owned(),
                    t => t.to_owned(),
                };
                self.role = Role::PublishPending(msg.stream_id);
                self.event(Event::Publish {
                    stream_id: msg.stream_id,
                    app,
                    name: stream,
                    query,
                    publish_type,
                });
            }
            "play" => {
                let app = self.require_connected(name)?.app.clone();
                if self.role != Role::Idle {
                    return Err(RtmpError::CommandOutOfOrder {
                        command: name.to_owned(),
                        state: "while already publishing or playing",
                    });
                }
                let (stream, query) = split_query(arg_str(0));
                let start = arg(1).and_then(Amf0Value::as_f64).unwrap_or(-2.0);
                self.role = Role::PlayPending(msg.stream_id);
                self.event(Event::Play {
                    stream_id: msg.stream_id,
                    app,
                    name: stream,
                    query,
                    start,
                });
            }
            "deleteStream" | "closeStream" | "FCUnpublish" => {
                let target = match name {
                    "deleteStream" => arg(0).and_then(Amf0Value::as_f64).map(|f| f as u32),
                    "closeStream" => Some(msg.stream_id),
                    _ => None, // FCUnpublish: whatever is published
                };
                self.result(txn, Amf0Value::Undefined);
                self.stop_role(target);
            }
            // Answers to calls this side never makes; flow-control hints.
            "_result" | "_error" | "onStatus" | "receiveAudio" | "receiveVideo" | "pause"
            | "seek" => {}
            _ => {
                if txn != 0.0 {
                    let info =
                        status_object("error", "NetConnection.Call.Failed", "Method not found");
                    self.command(0, &["_error".into(), txn.into(), Amf0Value::Null, info]);
                }
            }
        }
        Ok(())
    }

    /// deleteStream / closeStream / FCUnpublish: end the publish or play on
    /// `target` (any stream when `None`).
    fn stop_role(&mut self, target: Option<u32>) {
        let matches = |id: u32| target.is_none_or(|t| t == id);
        match self.role {
            Role::Publishing(id) | Role::PublishPending(id) if matches(id) => {
                self.role = Role::Idle;
                self.on_status(
                    id,
                    "status",
                    "NetStream.Unpublish.Success",
                    "Stop publishing",
                );
                self.event(Event::Unpublish { stream_id: id });
            }
            Role::Playing(id) | Role::PlayPending(id) if matches(id) && target.is_some() => {
                self.role = Role::Idle;
                self.event(Event::StopPlay { stream_id: id });
            }
            _ => {}
        }
    }
}
