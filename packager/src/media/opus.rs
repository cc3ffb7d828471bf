//! Opus: the identification header, either as `OpusHead` (RFC 7845 5.1,
//! little-endian; what Enhanced RTMP and Ogg carry) or as the MP4 `dOps`
//! box payload (big-endian, no magic).
use crate::Error;

/// A parsed Opus identification header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channel count.
    pub channels: u8,
    /// Samples (at 48 kHz) to discard at the start.
    pub pre_skip: u16,
    /// Sample rate of the encoder's input (informational; Opus always
    /// decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Output gain, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0 = mono/stereo, 1 = Vorbis order).
    pub mapping_family: u8,
}

impl OpusHead {
    /// Parse `OpusHead` (starts with the magic) or a `dOps` payload.
    pub fn parse(data: &[u8]) -> Result<OpusHead, Error> {
        if let Some(rest) = data.strip_prefix(b"OpusHead") {
            if rest.len() < 11 {
                return Err(Error::Truncated {
                    what: "OpusHead",
                    needed: 19,
                    had: data.len(),
                });
            }
            if rest[0] >> 4 != 0 {
                return Err(Error::InvalidConfig {
                    what: "OpusHead",
                    reason: format!("unsupported major version {}", rest[0] >> 4),
                });
            }
            return Self::check(OpusHead {
                channels: rest[1],
                pre_skip: u16::from_le_bytes([rest[2], rest[3]]),
                input_sample_rate: u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]),
                output_gain: i16::from_le_bytes([rest[8], rest[9]]),
                mapping_family: rest[10],
            });
        }
        if data.len() < 11 {
            return Err(Error::Truncated {
                what: "dOps",
                needed: 11,
                had: data.len(),
            });
        }
        if data[0] != 0 {
            return Err(Error::InvalidConfig {
                what: "dOps",
                reason: format!("version {}, expected 0", data[0]),
            });
        }
        Self::check(OpusHead {
            channels: data[1],
            pre_skip: u16::from_be_bytes([data[2], data[3]]),
            input_sample_rate: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            output_gain: i16::from_be_bytes([data[8], data[9]]),
            mapping_family: data[10],
        })
    }

    fn check(h: OpusHead) -> Result<OpusHead, Error> {
        if h.channels == 0 {
            return Err(Error::InvalidConfig {
                what: "Opus head",
                reason: "0 channels".into(),
            });
        }
        Ok(h)
    }

    /// The RFC 7845 `OpusHead` form (19 bytes, channel mapping family 0).
    pub fn to_opus_head(&self) -> Vec<u8> {
        let mut out = b"OpusHead".to_vec();
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(0);
        out
    }
}
