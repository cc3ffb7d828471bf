//! Elementary stream parsing for [`TsDemuxer`](super::TsDemuxer): Annex B
//! NAL units, PES headers, 33-bit timestamp extension, and the audio
//! framers (ADTS, MPEG audio, AC-3/E-AC-3, the Opus-in-TS access unit
//! layer) that split a PES payload into frames.
use crate::media::{AAC_SAMPLE_RATES, MpegAudioFrame};

const WRAP: i64 = 1 << 33;
const HALF_WRAP: i64 = 1 << 32;

/// The 33-bit value `v` (a PTS, DTS or PCR base) as the `i64` nearest to
/// `reference`, so timestamps keep increasing across the wrap (every
/// 26.5 hours at 90 kHz). Without a reference the value is taken as is.
pub(super) fn extend_ts(reference: Option<i64>, v: u64) -> i64 {
    let v = (v & (WRAP as u64 - 1)) as i64;
    match reference {
        None => v,
        Some(r) => {
            let k = (r.saturating_sub(v).saturating_add(HALF_WRAP)).div_euclid(WRAP);
            v.saturating_add(k.saturating_mul(WRAP))
        }
    }
}

/// A 5-byte PES timestamp field (marker bits not checked).
pub(super) fn read_pes_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] & 0x0E) << 29)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// The parsed header of a complete PES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PesHeader {
    pub stream_id: u8,
    /// 33-bit PTS.
    pub pts: Option<u64>,
    /// 33-bit DTS (only with a PTS).
    pub dts: Option<u64>,
    /// Offset of the payload in the PES packet.
    pub payload_offset: usize,
    /// End of the payload (PES_packet_length, or the whole buffer).
    pub payload_end: usize,
}

/// What is wrong with a PES packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PesError {
    /// No `00 00 01` packet start code prefix.
    StartCode,
    /// Shorter than its fixed header, or the header data runs past the end.
    Truncated,
    /// The `10` marker bits of the optional header are missing.
    Marker,
}

/// Parse the header of a complete PES packet in `b`.
pub(super) fn parse_pes_header(b: &[u8]) -> Result<PesHeader, PesError> {
    if b.len() < 6 {
        return Err(PesError::Truncated);
    }
    if b[..3] != [0, 0, 1] {
        return Err(PesError::StartCode);
    }
    let stream_id = b[3];
    let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
    let payload_end = if len == 0 {
        b.len()
    } else {
        (6 + len).min(b.len())
    };
    // program_stream_map, padding, private_stream_2, ECM, EMM,
    // program_stream_directory, DSMCC, H.222.1 type E: no optional header.
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return Ok(PesHeader {
            stream_id,
            pts: None,
            dts: None,
            payload_offset: 6,
            payload_end,
        });
    }
    if payload_end < 9 {
        return Err(PesError::Truncated);
    }
    if b[6] & 0xC0 != 0x80 {
        return Err(PesError::Marker);
    }
    let flags = b[7] >> 6;
    let header_len = usize::from(b[8]);
    let payload_offset = 9 + header_len;
    if payload_offset > payload_end {
        return Err(PesError::Truncated);
    }
    let (pts, dts) = match flags {
        2 if header_len >= 5 => (Some(read_pes_ts(&b[9..14])), None),
        3 if header_len >= 10 => (Some(read_pes_ts(&b[9..14])), Some(read_pes_ts(&b[14..19]))),
        2 | 3 => return Err(PesError::Truncated),
        _ => (None, None),
    };
    Ok(PesHeader {
        stream_id,
        pts,
        dts,
        payload_offset,
        payload_end,
    })
}

/// Byte ranges of the NAL units of an Annex B byte stream (3- or 4-byte
/// start codes; trailing zero bytes, i.e. `trailing_zero_8bits` and the
/// first byte of a 4-byte start code, are not part of a unit; empty units
/// are left out). `leading` is the number of bytes before the first start
/// code that are not zero (garbage). `None` when there is no start code.
pub(super) fn annex_b_units(b: &[u8]) -> Option<(Vec<(usize, usize)>, usize)> {
    let mut units = Vec::new();
    let mut start: Option<usize> = None;
    let mut leading = 0;
    let mut i = 2;
    while i < b.len() {
        if b[i] > 1 {
            i += 3;
        } else if b[i] == 1 && b[i - 1] == 0 && b[i - 2] == 0 {
            let code = i - 2;
            match start {
                Some(s) => push_unit(b, s, code, &mut units),
                None => leading = b[..code].iter().filter(|&&x| x != 0).count(),
            }
            start = Some(i + 1);
            i += 3;
        } else {
            i += 1;
        }
    }
    let s = start?;
    push_unit(b, s, b.len(), &mut units);
    Some((units, leading))
}

fn push_unit(b: &[u8], start: usize, mut end: usize, units: &mut Vec<(usize, usize)>) {
    while end > start && b[end - 1] == 0 {
        end -= 1;
    }
    if end > start {
        units.push((start, end));
    }
}

/// The configuration an audio frame header signals; a change is a new
/// track configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioKey {
    /// ADTS: audioObjectType, sampling frequency index, channel config.
    Adts {
        object_type: u8,
        sf_index: u8,
        channels: u8,
    },
    /// MPEG audio, AC-3, E-AC-3: what goes into `TrackInfo`.
    Plain { sample_rate: u32, channels: u8 },
    /// Opus: the start trim of the packet (the first one's is the
    /// pre-skip).
    Opus { start_trim: u16 },
}

/// One audio frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AudioFrame {
    /// Bytes of the whole frame (headers included).
    pub len: usize,
    /// Where the frame's payload starts (after ADTS / control headers).
    pub payload_offset: usize,
    /// Samples the frame lasts, at `rate`.
    pub samples: u32,
    /// Sample rate of `samples`.
    pub rate: u32,
    pub key: AudioKey,
}

/// What a framer found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// A frame header; the frame may extend past the buffer.
    Frame(AudioFrame),
    /// Too few bytes to tell; the bytes seen so far could start a frame.
    NeedMore,
    /// Not a frame start: skip a byte.
    Bad,
    /// A well-formed frame this demuxer does not pass on (ADTS with
    /// several raw data blocks, AC-3 in an E-AC-3 stream…): skip it whole.
    Skip(usize),
}

/// The audio framing of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioFormat {
    Adts,
    MpegAudio,
    Ac3,
    Eac3,
    Opus,
}

/// Longest frame any framer accepts (E-AC-3: 2^11 words plus dependent
/// substreams, Opus: 255 × 64 bytes): a carry longer than this is garbage.
pub(super) const MAX_AUDIO_FRAME: usize = 1 << 15;

impl AudioFormat {
    pub(super) fn scan(self, d: &[u8]) -> Scan {
        match self {
            AudioFormat::Adts => scan_adts(d),
            AudioFormat::MpegAudio => scan_mpeg_audio(d),
            AudioFormat::Ac3 => scan_ac3(d, false),
            AudioFormat::Eac3 => scan_eac3_with_dependents(d),
            AudioFormat::Opus => scan_opus(d),
        }
    }
}

/// Checks the bytes there are against `mask`/`want`; `NeedMore` when all
/// present bytes match but fewer than `need` are there.
fn prefix(d: &[u8], mask: &[u8], want: &[u8], need: usize) -> Option<Scan> {
    for ((&b, &m), &w) in d.iter().zip(mask).zip(want) {
        if b & m != w {
            return Some(Scan::Bad);
        }
    }
    (d.len() < need).then_some(Scan::NeedMore)
}

fn scan_adts(d: &[u8]) -> Scan {
    if let Some(s) = prefix(d, &[0xFF, 0xF6], &[0xFF, 0xF0], 7) {
        return s;
    }
    let header_len = if d[1] & 1 == 1 { 7 } else { 9 };
    let object_type = (d[2] >> 6) + 1;
    let sf_index = (d[2] >> 2) & 0x0F;
    let channels = ((d[2] & 1) << 2) | (d[3] >> 6);
    let len = (usize::from(d[3] & 3) << 11) | (usize::from(d[4]) << 3) | usize::from(d[5] >> 5);
    let blocks = d[6] & 3;
    if usize::from(sf_index) >= AAC_SAMPLE_RATES.len() || len < header_len {
        return Scan::Bad;
    }
    if blocks != 0 {
        return Scan::Skip(len);
    }
    Scan::Frame(AudioFrame {
        len,
        payload_offset: header_len,
        samples: 1024,
        rate: AAC_SAMPLE_RATES[usize::from(sf_index)],
        key: AudioKey::Adts {
            object_type,
            sf_index,
            channels,
        },
    })
}

fn scan_mpeg_audio(d: &[u8]) -> Scan {
    if let Some(s) = prefix(d, &[0xFF, 0xE0], &[0xFF, 0xE0], 4) {
        return s;
    }
    match MpegAudioFrame::parse(d) {
        Ok(f) if f.len >= 4 => Scan::Frame(AudioFrame {
            len: f.len,
            payload_offset: 0,
            samples: f.samples,
            rate: f.header.sample_rate,
            key: AudioKey::Plain {
                sample_rate: f.header.sample_rate,
                channels: f.header.channels,
            },
        }),
        _ => Scan::Bad,
    }
}

/// AC-3 frame sizes in 16-bit words at 48 kHz are twice the bit rate in
/// kbit/s, at 32 kHz three times; at 44.1 kHz they are rounded down and the
/// odd frmsizecod adds one (ATSC A/52 table 5.18).
const AC3_BITRATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

fn ac3_channels(acmod: u8, lfe: bool) -> u8 {
    [2, 1, 2, 3, 3, 4, 4, 5][usize::from(acmod & 7)] + u8::from(lfe)
}

/// `dependents`: for E-AC-3, also accept AC-3 (`bsid <= 10`) as the wrong
/// codec, to skip it whole.
fn scan_ac3(d: &[u8], eac3: bool) -> Scan {
    if let Some(s) = prefix(d, &[0xFF, 0xFF], &[0x0B, 0x77], 8) {
        return s;
    }
    let bsid = d[5] >> 3;
    if bsid > 16 {
        return Scan::Bad;
    }
    if bsid > 10 {
        // E-AC-3 (ATSC A/52 annex E).
        let strmtyp = d[2] >> 6;
        let len = ((usize::from(d[2] & 0x07) << 8) | usize::from(d[3])) * 2 + 2;
        let fscod = d[4] >> 6;
        let (rate, blocks) = if fscod == 3 {
            match (d[4] >> 4) & 3 {
                0 => (24000, 6),
                1 => (22050, 6),
                2 => (16000, 6),
                _ => return Scan::Bad,
            }
        } else {
            (
                [48000, 44100, 32000][usize::from(fscod)],
                [1, 2, 3, 6][usize::from((d[4] >> 4) & 3)],
            )
        };
        if strmtyp == 3 || len < 8 {
            return Scan::Bad;
        }
        if !eac3 {
            return Scan::Skip(len);
        }
        let acmod = (d[4] >> 1) & 7;
        let lfe = d[4] & 1 == 1;
        return Scan::Frame(AudioFrame {
            len,
            payload_offset: 0,
            samples: 256 * blocks,
            rate,
            key: AudioKey::Plain {
                sample_rate: rate,
                channels: ac3_channels(acmod, lfe),
            },
        });
    }
    let fscod = d[4] >> 6;
    let frmsizecod = usize::from(d[4] & 0x3F);
    if fscod == 3 || frmsizecod >= 38 {
        return Scan::Bad;
    }
    let br = AC3_BITRATES[frmsizecod / 2];
    let words = match fscod {
        0 => br * 2,
        1 => br * 1000 * 1536 / (44100 * 16) + (frmsizecod as u32 & 1),
        _ => br * 3,
    };
    let len = words as usize * 2;
    if eac3 {
        return Scan::Skip(len);
    }
    let rate = [48000, 44100, 32000][usize::from(fscod)];
    // acmod, then cmixlev/surmixlev/dsurmod as acmod says, then lfeon.
    let acmod = d[6] >> 5;
    let mut bit = 3; // bits of d[6..] used
    if acmod & 1 == 1 && acmod != 1 {
        bit += 2;
    }
    if acmod & 4 != 0 {
        bit += 2;
    }
    if acmod == 2 {
        bit += 2;
    }
    let lfe = (u16::from_be_bytes([d[6], d[7]]) >> (15 - bit)) & 1 == 1;
    Scan::Frame(AudioFrame {
        len,
        payload_offset: 0,
        samples: 1536,
        rate,
        key: AudioKey::Plain {
            sample_rate: rate,
            channels: ac3_channels(acmod, lfe),
        },
    })
}

/// An E-AC-3 independent frame and the dependent substream frames
/// (`strmtyp` 1) right behind it, as one frame.
fn scan_eac3_with_dependents(d: &[u8]) -> Scan {
    let mut first = match scan_ac3(d, true) {
        Scan::Frame(f) => f,
        other => return other,
    };
    if d[2] >> 6 == 1 {
        // A dependent substream without its independent frame.
        return Scan::Skip(first.len);
    }
    while first.len < d.len() {
        let rest = &d[first.len..];
        match scan_ac3(rest, true) {
            Scan::Frame(dep) if rest[2] >> 6 == 1 => {
                if dep.len > rest.len() || first.len + dep.len > MAX_AUDIO_FRAME {
                    // Wait for the whole dependent frame.
                    return Scan::Frame(AudioFrame {
                        len: first.len + dep.len,
                        ..first
                    });
                }
                first.len += dep.len;
            }
            Scan::NeedMore => {
                // Cannot tell yet whether a dependent frame follows.
                return Scan::Frame(AudioFrame {
                    len: d.len() + 1,
                    ..first
                });
            }
            _ => break,
        }
    }
    Scan::Frame(first)
}

/// Samples (at 48 kHz) of an Opus packet, from its TOC byte (RFC 6716
/// 3.1); 0 for an empty or malformed packet.
pub(super) fn opus_samples(p: &[u8]) -> u32 {
    let Some(&toc) = p.first() else { return 0 };
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => p.get(1).map_or(0, |b| u32::from(b & 0x3F)),
    };
    frame * count
}

/// One Opus access unit of the Opus-in-TS mapping: `opus_control_header`
/// (prefix 0x3FF, trim and extension flags, au_size as a run of 0xFF bytes
/// plus a last byte, optional start/end trim and control extension), then
/// the packet.
fn scan_opus(d: &[u8]) -> Scan {
    if let Some(s) = prefix(d, &[0xFF, 0xE0], &[0x7F, 0xE0], 2) {
        return s;
    }
    let flags = d[1];
    let mut pos = 2;
    let mut size = 0usize;
    loop {
        let Some(&b) = d.get(pos) else {
            return Scan::NeedMore;
        };
        pos += 1;
        size += usize::from(b);
        if b != 0xFF {
            break;
        }
        if size > MAX_AUDIO_FRAME {
            return Scan::Bad;
        }
    }
    let mut start_trim = 0;
    if flags & 0x10 != 0 {
        let Some(t) = d.get(pos..pos + 2) else {
            return Scan::NeedMore;
        };
        start_trim = u16::from_be_bytes([t[0], t[1]]) & 0x1FFF;
        pos += 2;
    }
    if flags & 0x08 != 0 {
        pos += 2;
    }
    if flags & 0x04 != 0 {
        let Some(&n) = d.get(pos) else {
            return Scan::NeedMore;
        };
        pos += 1 + usize::from(n);
    }
    let len = pos + size;
    let samples = match d.get(pos..len) {
        Some(p) => opus_samples(p),
        None if pos >= d.len() => return Scan::NeedMore,
        None => opus_samples(&d[pos..]),
    };
    Scan::Frame(AudioFrame {
        len,
        payload_offset: pos,
        samples,
        rate: 48000,
        key: AudioKey::Opus { start_trim },
    })
}
