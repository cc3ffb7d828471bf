//! MPEG audio (MP3, layers I–III) frame headers.
use crate::Error;

/// What an MPEG audio frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioHeader {
    /// 1 = MPEG-1, 2 = MPEG-2, 25 = MPEG-2.5.
    pub version: u8,
    /// Layer 1, 2 or 3.
    pub layer: u8,
    /// Sampling frequency (Hz).
    pub sample_rate: u32,
    /// 1 (mono) or 2.
    pub channels: u8,
}

impl MpegAudioHeader {
    /// Parse the 4-byte header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<MpegAudioHeader, Error> {
        const WHAT: &str = "MPEG audio frame header";
        if data.len() < 4 {
            return Err(Error::Truncated {
                what: WHAT,
                needed: 4,
                had: data.len(),
            });
        }
        let h = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if h >> 21 != 0x7ff {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "no frame sync",
            });
        }
        let (version, div) = match (h >> 19) & 3 {
            0 => (25, 4),
            2 => (2, 2),
            3 => (1, 1),
            _ => {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "reserved version",
                });
            }
        };
        let layer = match (h >> 17) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "reserved layer",
                });
            }
        };
        let sample_rate = match (h >> 10) & 3 {
            0 => 44100 / div,
            1 => 48000 / div,
            2 => 32000 / div,
            _ => {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "reserved sampling frequency",
                });
            }
        };
        let channels = if (h >> 6) & 3 == 3 { 1 } else { 2 };
        Ok(MpegAudioHeader {
            version,
            layer,
            sample_rate,
            channels,
        })
    }
}

/// Bit rates in kbit/s by bitrate_index (1..=14) for MPEG-1 layers I, II,
/// III and MPEG-2/2.5 layer I, layers II/III.
const BITRATES: [[u16; 15]; 5] = [
    [
        0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
    [
        0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// One MPEG audio frame's header and extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioFrame {
    /// The header fields.
    pub header: MpegAudioHeader,
    /// Bytes in the frame, header included.
    pub len: usize,
    /// Samples (per channel) the frame decodes to: 384 (layer I), 1152
    /// (layer II, MPEG-1 layer III) or 576 (MPEG-2/2.5 layer III).
    pub samples: u32,
}

impl MpegAudioFrame {
    /// Parse the header at the start of `data` and work out the frame's
    /// length (ISO/IEC 11172-3 2.4.3.1). Free-format frames (bitrate index
    /// 0) and the reserved index 15 are errors; `data` need not hold the
    /// whole frame.
    pub fn parse(data: &[u8]) -> Result<MpegAudioFrame, Error> {
        let header = MpegAudioHeader::parse(data)?;
        let index = usize::from(data[2] >> 4);
        if index == 0 || index == 15 {
            return Err(Error::InvalidBitstream {
                what: "MPEG audio frame header",
                reason: "free-format or reserved bitrate index",
            });
        }
        let padding = usize::from((data[2] >> 1) & 1);
        let mpeg1 = header.version == 1;
        let table = match (mpeg1, header.layer) {
            (true, l) => usize::from(l - 1),
            (false, 1) => 3,
            (false, _) => 4,
        };
        let bitrate = usize::from(BITRATES[table][index]) * 1000;
        let rate = header.sample_rate as usize;
        let (len, samples) = match header.layer {
            1 => ((12 * bitrate / rate + padding) * 4, 384),
            2 => (144 * bitrate / rate + padding, 1152),
            _ if mpeg1 => (144 * bitrate / rate + padding, 1152),
            _ => (72 * bitrate / rate + padding, 576),
        };
        Ok(MpegAudioFrame {
            header,
            len,
            samples,
        })
    }
}
