//! RTMP server side, sans-IO: handshake, chunk stream, AMF0 commands.
//!
//! [`ServerSession`] is one TCP connection from an encoder (publish) or a
//! player (play). It answers the handshake, reassembles and writes chunks,
//! answers the NetConnection commands itself (connect, createStream,
//! releaseStream, FCPublish, getStreamLength, unknown calls with `_error`)
//! and hands the engine what it must decide or consume as [`Event`]s.
//!
//! Contract with the engine (one session per connection, same run loop as
//! every session in this crate):
//! - `handle_input(now, data)` with each received chunk (any size, any
//!   split; for a ring buffer's two halves call it twice).
//! - Drain `poll_output()` until `None`:
//!   - [`Output::Transmit`]: bytes to send, in order. Consecutive transmits
//!     belong together (one media message is several pieces: chunk headers
//!     and slices of the payload `Bytes`); gather them into one `writev`.
//!   - [`Output::Event`]: see [`Event`]. `Publish` and `Play` must be
//!     answered with `accept_publish` / `reject_publish` or `accept_play` /
//!     `reject_play` (before or after draining the rest).
//!   - [`Output::Close`]: send what was transmitted before it, then close.
//!     `Some(error)` says what the peer did wrong; `None` is an orderly end
//!     (peer EOF, a rejected publish/play, `close()`). A close ends any
//!     publish or play: no `Unpublish`/`StopPlay` event precedes it.
//! - `poll_timeout()` gives the deadline; past it call `handle_timeout(now)`.
//!   Deadlines: `Limits::setup_timeout` from `new` until a publish or play is
//!   accepted; then, for a publisher, `Limits::idle_timeout` after the last
//!   input; none for a player (the engine owns its send timer).
//! - To a player: `send_metadata`, `send_media`, `send_encoded` (bytes
//!   encoded once for many players with [`encode_message`]).
//!
//! Stream names: for `rtmp://host/live/key?token=abc`, encoders send
//! `connect` with app `live` and tcUrl `rtmp://host/live`, then `publish`
//! with name `key?token=abc` (OBS puts the whole "stream key" field there).
//! [`Event::Publish`] carries `app: "live"`, `name: "key"`,
//! `query: Some("token=abc")`; the engine maps (app, name) to a stream. A
//! query on the app (`rtmp://host/live?x=1/key`) is split off the same way
//! into [`ConnectInfo::app_query`].

mod chunk;
mod control;
mod handshake;
#[cfg(test)]
mod proptests;
mod session;
#[cfg(test)]
mod tests;

pub use chunk::{
    CSID_MAX, CSID_MIN, ChunkDecoder, ChunkEncoder, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE,
    MAX_HEADER_LEN, Message, MessageHeader, encode_message, encode_message_to_vec, message_type,
};
pub use control::user_control;
pub use handshake::{HANDSHAKE_SIZE, RTMP_VERSION};
pub use session::{
    CSID_AUDIO, CSID_COMMAND, CSID_CONTROL, CSID_DATA, CSID_VIDEO, ConnectInfo, Event, Limits,
    MediaKind, Output, ServerSession, encode_media,
};
pub use spate_packager::amf0::Amf0Value;

/// What was wrong with a connection's input (or the limits it was given),
/// naming the chunk stream, message type and byte offset where it applies.
/// Offsets count chunk-stream bytes after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// C0 asked for a version other than 3 (6 = RTMPE is not supported).
    #[error("handshake: C0 version {version}, expected 3")]
    HandshakeVersion {
        /// The version byte received.
        version: u8,
    },
    /// A fmt 2 or 3 chunk header on a chunk stream that had no header yet.
    #[error(
        "chunk stream {csid} at byte {offset}: fmt {fmt} header with no previous header on that chunk stream"
    )]
    NoPreviousHeader {
        /// Chunk stream id.
        csid: u32,
        /// The header type (0-3).
        fmt: u8,
        /// Offset of the chunk header.
        offset: u64,
    },
    /// A fmt 0/1/2 header arrived while a message was half received on the
    /// same chunk stream (only fmt 3 may continue a message).
    #[error(
        "chunk stream {csid} at byte {offset}: fmt {fmt} header inside a message ({received} of {length} bytes received)"
    )]
    InterruptedMessage {
        /// Chunk stream id.
        csid: u32,
        /// The header type.
        fmt: u8,
        /// Bytes of the message received so far.
        received: u32,
        /// The message length.
        length: u32,
        /// Offset of the chunk header.
        offset: u64,
    },
    /// A message longer than `Limits::max_message_size`.
    #[error(
        "chunk stream {csid} at byte {offset}: message type {type_id} of {length} bytes exceeds max_message_size {limit}"
    )]
    MessageTooLarge {
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// Announced length.
        length: u32,
        /// The configured limit.
        limit: u32,
        /// Offset of the chunk header.
        offset: u64,
    },
    /// More chunk streams in use than `Limits::max_chunk_streams`.
    #[error(
        "chunk stream {csid} at byte {offset}: more than max_chunk_streams {limit} chunk streams"
    )]
    TooManyChunkStreams {
        /// The chunk stream id that would exceed it.
        csid: u32,
        /// The configured limit.
        limit: usize,
        /// Offset of the chunk header.
        offset: u64,
    },
    /// Partially received messages together would exceed
    /// `Limits::max_buffered_bytes`.
    #[error(
        "chunk stream {csid} at byte {offset}: partial messages would exceed max_buffered_bytes {limit}"
    )]
    BufferLimit {
        /// Chunk stream id of the message that would exceed it.
        csid: u32,
        /// The configured limit.
        limit: usize,
        /// Offset of the chunk header.
        offset: u64,
    },
    /// Set Chunk Size of 0 or with the top bit set.
    #[error("Set Chunk Size {size}: must be 1..=2147483647")]
    InvalidChunkSize {
        /// The size received.
        size: u32,
    },
    /// Set Chunk Size over `Limits::max_chunk_size`.
    #[error("Set Chunk Size {size} exceeds max_chunk_size {limit}")]
    ChunkSizeOverLimit {
        /// The size received.
        size: u32,
        /// The configured limit.
        limit: u32,
    },
    /// A protocol control or user control message too short for its type.
    #[error(
        "control message type {type_id} on chunk stream {csid}: {length} bytes, needs {expected}"
    )]
    ControlMessageLength {
        /// Message type id.
        type_id: u8,
        /// Chunk stream id.
        csid: u32,
        /// Payload length received.
        length: usize,
        /// Bytes the type needs.
        expected: usize,
    },
    /// A command message whose AMF0 did not decode.
    #[error("command message (type {type_id}) on chunk stream {csid}: {source}")]
    Amf {
        /// Message type id.
        type_id: u8,
        /// Chunk stream id.
        csid: u32,
        /// The AMF0 decoder's error.
        source: spate_packager::Error,
    },
    /// A command message that is not a command (no name string first).
    #[error("command message (type {type_id}) on chunk stream {csid}: {detail}")]
    MalformedCommand {
        /// Message type id.
        type_id: u8,
        /// Chunk stream id.
        csid: u32,
        /// What was wrong.
        detail: &'static str,
    },
    /// An aggregate message whose sub-messages do not fit.
    #[error("aggregate message on chunk stream {csid}: {detail} at byte {offset} of its body")]
    Aggregate {
        /// Chunk stream id.
        csid: u32,
        /// Offset in the aggregate body.
        offset: usize,
        /// What was wrong.
        detail: &'static str,
    },
    /// A command not allowed in the session's state (publish before connect,
    /// a second publish, ...).
    #[error("command {command:?} {state}")]
    CommandOutOfOrder {
        /// The command name.
        command: String,
        /// Why it is not allowed now.
        state: &'static str,
    },
    /// An audio or video message while not publishing.
    #[error("media message type {type_id} on chunk stream {csid} before publish")]
    MediaBeforePublish {
        /// Message type id.
        type_id: u8,
        /// Chunk stream id.
        csid: u32,
    },
    /// The peer took too long.
    #[error("timed out {phase}")]
    Timeout {
        /// What was being waited for.
        phase: &'static str,
    },
    /// A `Limits` field out of its sane range.
    #[error("invalid RTMP limit {name} = {value}: {reason}")]
    InvalidLimit {
        /// The field name.
        name: &'static str,
        /// Its value.
        value: u64,
        /// The allowed range.
        reason: &'static str,
    },
}
