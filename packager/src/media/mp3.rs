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
