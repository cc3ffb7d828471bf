//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), as carried in
//! FLV's AAC sequence header, MP4's `esds` and HLS/DASH codec strings.
use super::bits::BitReader;
use crate::Error;

/// Sampling frequencies by `samplingFrequencyIndex` (0..=12).
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// A parsed AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// audioObjectType as signalled first (2 = AAC-LC, 5 = SBR/HE-AAC,
    /// 29 = PS/HE-AAC v2); this is the `mp4a.40.N` number.
    pub object_type: u8,
    /// The core object type under SBR/PS (2 for HE-AAC); equal to
    /// `object_type` otherwise.
    pub base_object_type: u8,
    /// Sampling frequency of the core decoder (Hz).
    pub core_sample_rate: u32,
    /// Output sampling frequency: the SBR extension frequency when SBR is
    /// signalled explicitly, else the core frequency.
    pub sample_rate: u32,
    /// channelConfiguration (0 = defined in a program config element).
    pub channel_config: u8,
    /// Output channels, when the channel configuration defines them.
    pub channels: Option<u8>,
}

impl AudioSpecificConfig {
    /// Parse an AudioSpecificConfig.
    pub fn parse(data: &[u8]) -> Result<AudioSpecificConfig, Error> {
        const WHAT: &str = "AudioSpecificConfig";
        let mut r = BitReader::new(data, WHAT);
        let object_type = object_type(&mut r)?;
        if object_type == 0 {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "audioObjectType 0 (null)",
            });
        }
        let core_sample_rate = sample_rate(&mut r)?;
        let channel_config = r.bits(4)? as u8;
        let mut base_object_type = object_type;
        let mut sample_rate_out = core_sample_rate;
        if object_type == 5 || object_type == 29 {
            sample_rate_out = sample_rate(&mut r)?;
            base_object_type = self::object_type(&mut r)?;
        }
        let mut channels = match channel_config {
            1..=6 => Some(channel_config),
            7 => Some(8),
            11 => Some(7),
            12 | 14 => Some(8),
            _ => None,
        };
        if object_type == 29 && channel_config == 1 {
            // Parametric stereo: a mono core decodes to stereo.
            channels = Some(2);
        }
        Ok(AudioSpecificConfig {
            object_type,
            base_object_type,
            core_sample_rate,
            sample_rate: sample_rate_out,
            channel_config,
            channels,
        })
    }

    /// A 2-byte AudioSpecificConfig for a plain object type (e.g. AAC-LC),
    /// sample rate and channel configuration; explicit frequencies are
    /// written when the rate has no index.
    pub fn encode(object_type: u8, sample_rate: u32, channel_config: u8) -> Vec<u8> {
        let mut bits: u64 = 0;
        let mut n = 0;
        let mut put = |v: u64, width: u32| {
            bits = bits << width | (v & ((1 << width) - 1));
            n += width;
        };
        if object_type >= 32 {
            put(31, 5);
            put(u64::from(object_type - 32), 6);
        } else {
            put(u64::from(object_type), 5);
        }
        match SAMPLE_RATES.iter().position(|&r| r == sample_rate) {
            Some(i) => put(i as u64, 4),
            None => {
                put(15, 4);
                put(u64::from(sample_rate), 24);
            }
        }
        put(u64::from(channel_config), 4);
        let pad = (8 - n % 8) % 8;
        bits <<= pad;
        let len = ((n + pad) / 8) as usize;
        bits.to_be_bytes()[8 - len..].to_vec()
    }
}

fn object_type(r: &mut BitReader<'_>) -> Result<u8, Error> {
    let t = r.bits(5)? as u8;
    Ok(if t == 31 { 32 + r.bits(6)? as u8 } else { t })
}

fn sample_rate(r: &mut BitReader<'_>) -> Result<u32, Error> {
    let index = r.bits(4)?;
    match index {
        15 => {
            let rate = r.bits(24)?;
            if rate == 0 {
                return Err(Error::InvalidBitstream {
                    what: "AudioSpecificConfig",
                    reason: "explicit sampling frequency 0",
                });
            }
            Ok(rate)
        }
        i if (i as usize) < SAMPLE_RATES.len() => Ok(SAMPLE_RATES[i as usize]),
        _ => Err(Error::InvalidBitstream {
            what: "AudioSpecificConfig",
            reason: "reserved samplingFrequencyIndex",
        }),
    }
}
