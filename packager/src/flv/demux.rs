//! Splitting an FLV byte stream into tags.
use bytes::{Buf, Bytes, BytesMut};

use super::{FILE_HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN, TagType};
use crate::Error;

/// Largest DataOffset accepted in the file header.
const MAX_DATA_OFFSET: u32 = 65536;

/// The FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// Version byte (1).
    pub version: u8,
    /// TypeFlagsAudio.
    pub has_audio: bool,
    /// TypeFlagsVideo.
    pub has_video: bool,
}

/// One FLV tag: its type, timestamp and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// Tag type.
    pub tag_type: TagType,
    /// Timestamp in milliseconds (Timestamp | TimestampExtended << 24).
    pub timestamp: u32,
    /// StreamID (0 in files).
    pub stream_id: u32,
    /// The tag body (DataSize bytes), a slice of the pushed input.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for the 9-byte file header.
    FileHeader,
    /// Skipping the rest of a DataOffset larger than 9.
    SkipHeader(usize),
    /// Waiting for a PreviousTagSize field.
    PreviousTagSize,
    /// Waiting for a tag header.
    TagHeader,
    /// After a fatal error (bad header): everything is an error.
    Failed(Error),
}

/// Splits an FLV byte stream into [`FlvTag`]s.
///
/// Feed bytes with [`push`](Self::push) (copies into an internal buffer) or
/// [`push_bytes`](Self::push_bytes) (keeps the `Bytes` without copying when
/// nothing is pending, as when a whole file is pushed), then call
/// [`next_tag`](Self::next_tag) until it returns `Ok(None)`. Tag bodies are
/// slices of the internal buffer or of the pushed `Bytes`.
///
/// A bad file header is fatal (every later call returns the same error). An
/// encrypted tag is an error for that tag only; the demuxer continues after
/// it. PreviousTagSize fields are read but not checked.
#[derive(Debug)]
pub struct FlvDemuxer {
    /// Pushed input as one `Bytes` (no copy), when nothing else is pending.
    shared: Bytes,
    /// Pushed input accumulated from several pushes.
    owned: BytesMut,
    state: State,
    header: Option<FlvHeader>,
    /// Stream offset of the first unconsumed byte.
    offset: u64,
}

impl Default for FlvDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvDemuxer {
    /// A demuxer for a whole FLV stream, starting with the file header.
    pub fn new() -> Self {
        FlvDemuxer {
            shared: Bytes::new(),
            owned: BytesMut::new(),
            state: State::FileHeader,
            header: None,
            offset: 0,
        }
    }

    /// A demuxer for a stream of tags without the file header, starting at
    /// a PreviousTagSize field (e.g. resuming mid-file at a tag boundary
    /// minus 4).
    pub fn without_header() -> Self {
        FlvDemuxer {
            state: State::PreviousTagSize,
            ..Self::new()
        }
    }

    /// The file header, once read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Bytes pushed but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.shared.len() + self.owned.len()
    }

    /// Stream offset of the next unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Append input (copied).
    pub fn push(&mut self, data: &[u8]) {
        if !self.shared.is_empty() {
            self.owned.extend_from_slice(&self.shared);
            self.shared = Bytes::new();
        }
        self.owned.extend_from_slice(data);
    }

    /// Append input, keeping `data` without copying when nothing is pending.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.shared.is_empty() && self.owned.is_empty() {
            self.shared = data;
        } else {
            self.push(&data);
        }
    }

    fn view(&self) -> &[u8] {
        if self.shared.is_empty() {
            &self.owned
        } else {
            &self.shared
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.offset += n as u64;
        if self.shared.is_empty() {
            self.owned.split_to(n).freeze()
        } else {
            self.shared.split_to(n)
        }
    }

    fn skip(&mut self, n: usize) {
        self.offset += n as u64;
        if self.shared.is_empty() {
            self.owned.advance(n);
        } else {
            self.shared.advance(n);
        }
    }

    /// The next complete tag, `Ok(None)` when more input is needed.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, Error> {
        loop {
            match self.state.clone() {
                State::Failed(e) => return Err(e),
                State::FileHeader => {
                    let v = self.view();
                    if v.len() < FILE_HEADER_LEN {
                        // Fail early on a wrong signature.
                        if !b"FLV".starts_with(&v[..v.len().min(3)]) {
                            let mut found = [0u8; 3];
                            found[..v.len().min(3)].copy_from_slice(&v[..v.len().min(3)]);
                            return Err(self.fail(Error::FlvSignature { found }));
                        }
                        return Ok(None);
                    }
                    if &v[..3] != b"FLV" {
                        let found = [v[0], v[1], v[2]];
                        return Err(self.fail(Error::FlvSignature { found }));
                    }
                    let flags = v[4];
                    let data_offset = u32::from_be_bytes([v[5], v[6], v[7], v[8]]);
                    if !(FILE_HEADER_LEN as u32..=MAX_DATA_OFFSET).contains(&data_offset) {
                        return Err(self.fail(Error::FlvHeaderSize {
                            offset: data_offset,
                        }));
                    }
                    self.header = Some(FlvHeader {
                        version: v[3],
                        has_audio: flags & 0x04 != 0,
                        has_video: flags & 0x01 != 0,
                    });
                    self.skip(FILE_HEADER_LEN);
                    self.state = State::SkipHeader(data_offset as usize - FILE_HEADER_LEN);
                }
                State::SkipHeader(n) => {
                    let have = self.view().len().min(n);
                    self.skip(have);
                    if have < n {
                        self.state = State::SkipHeader(n - have);
                        return Ok(None);
                    }
                    self.state = State::PreviousTagSize;
                }
                State::PreviousTagSize => {
                    if self.view().len() < PREVIOUS_TAG_SIZE_LEN {
                        return Ok(None);
                    }
                    self.skip(PREVIOUS_TAG_SIZE_LEN);
                    self.state = State::TagHeader;
                }
                State::TagHeader => {
                    let v = self.view();
                    if v.len() < TAG_HEADER_LEN {
                        return Ok(None);
                    }
                    let size = u32::from_be_bytes([0, v[1], v[2], v[3]]) as usize;
                    if v.len() < TAG_HEADER_LEN + size {
                        return Ok(None);
                    }
                    let type_byte = v[0];
                    let timestamp = u32::from_be_bytes([v[7], v[4], v[5], v[6]]);
                    let stream_id = u32::from_be_bytes([0, v[8], v[9], v[10]]);
                    let tag_offset = self.offset;
                    self.skip(TAG_HEADER_LEN);
                    let body = self.take(size);
                    self.state = State::PreviousTagSize;
                    if type_byte & 0x20 != 0 {
                        return Err(Error::FlvEncryptedTag { offset: tag_offset });
                    }
                    return Ok(Some(FlvTag {
                        tag_type: TagType::from_u8(type_byte & 0x1f),
                        timestamp,
                        stream_id,
                        body,
                    }));
                }
            }
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed(e.clone());
        e
    }
}
