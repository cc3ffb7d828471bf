//! RFC 6381 codecs strings (`CODECS` in HLS, `@codecs` in DASH), from the
//! codec configuration records [`media`](crate::media) parses.
use crate::media::{AudioSpecificConfig, Av1Config, AvcConfig, Codec, HevcConfig, Track};

/// The RFC 6381 codecs string of a track, or `None` when the configuration
/// needed for it is missing or does not parse.
///
/// - H.264: `avc1.PPCCLL`, profile_idc, constraint flags and level_idc of
///   the `avcC` record in lower-case hex (`avc1.640028`). Without a record,
///   [`TrackInfo`](crate::media::TrackInfo)'s profile and level with the
///   constraint byte 00.
/// - HEVC (ISO/IEC 14496-15 Annex E, as ffmpeg and Apple write it):
///   `hvc1.` profile space (none, `A`, `B`, `C`) and general_profile_idc,
///   `.` the profile compatibility flags bit-reversed in hex, `.` `L`/`H`
///   (tier) and general_level_idc, then each constraint indicator byte in
///   hex with trailing zero bytes dropped: `hvc1.1.6.L93.B0`,
///   `hvc1.2.4.L120.90`. `hvc1` because the fMP4 muxer writes `hvc1`
///   sample entries (parameter sets in the record).
/// - AV1 (AV1-ISOBMFF): `av01.P.LLT.DD` (`av01.0.08M.10`); the optional
///   colour fields are left out.
/// - VP9 (VP-codec ISOBMFF binding): `vp09.PP.LL.DD` from the `vpcC`
///   record (`vp09.00.10.08`); `None` without one.
/// - AAC: `mp4a.40.` + the audioObjectType signalled first in the
///   AudioSpecificConfig (2 AAC-LC, 5 HE-AAC, 29 HE-AAC v2).
/// - MP3 `mp4a.40.34`, Opus `opus`, AC-3 `ac-3`, E-AC-3 `ec-3`.
pub fn codecs_string(track: &Track) -> Option<String> {
    let config = track.config.as_ref();
    match track.codec {
        Codec::H264 => match config.and_then(|c| AvcConfig::parse(c).ok()) {
            Some(c) => Some(format!(
                "avc1.{:02x}{:02x}{:02x}",
                c.profile, c.compatibility, c.level
            )),
            None => Some(format!(
                "avc1.{:02x}00{:02x}",
                track.info.profile?, track.info.level?
            )),
        },
        Codec::H265 => config
            .and_then(|c| HevcConfig::parse(c).ok())
            .map(|c| hevc(&c)),
        Codec::Av1 => config.and_then(|c| Av1Config::parse(c).ok()).map(|c| {
            format!(
                "av01.{}.{:02}{}.{:02}",
                c.profile,
                c.level,
                if c.high_tier { 'H' } else { 'M' },
                c.bit_depth
            )
        }),
        Codec::Vp9 => config.and_then(|c| vp9(c)),
        Codec::Aac => {
            let object_type = match config.and_then(|c| AudioSpecificConfig::parse(c).ok()) {
                Some(asc) => asc.object_type,
                None => track.info.profile?,
            };
            Some(format!("mp4a.40.{object_type}"))
        }
        Codec::Mp3 => Some("mp4a.40.34".into()),
        Codec::Opus => Some("opus".into()),
        Codec::Ac3 => Some("ac-3".into()),
        Codec::Eac3 => Some("ec-3".into()),
    }
}

/// `hvc1.…` from a parsed `hvcC` (ISO/IEC 14496-15 E.3).
fn hevc(c: &HevcConfig) -> String {
    let space = match c.profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let mut s = format!(
        "hvc1.{space}{}.{:X}.{}{}",
        c.profile,
        c.compatibility.reverse_bits(),
        if c.high_tier { 'H' } else { 'L' },
        c.level
    );
    let bytes = c.constraints.to_be_bytes(); // 48 bits in the low 6 bytes
    let constraints = &bytes[2..];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

/// `vp09.PP.LL.DD` from a `vpcC` box payload: version and flags (4 bytes),
/// profile, level, then bitDepth in the high 4 bits.
fn vp9(vpcc: &[u8]) -> Option<String> {
    let [_version, _, _, _, profile, level, depth_etc, ..] = *vpcc else {
        return None;
    };
    Some(format!(
        "vp09.{profile:02}.{level:02}.{:02}",
        depth_etc >> 4
    ))
}
