//! The multivariant (master) playlist.
use std::fmt::Write;

use super::{quoted_string, uri_line};

/// One variant stream (`EXT-X-STREAM-INF` + URI).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist's URI.
    pub uri: String,
    /// `BANDWIDTH`: peak bits per second.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`: average bits per second.
    pub average_bandwidth: Option<u64>,
    /// `CODECS` entries ([`codecs_string`](super::codecs_string) of each
    /// track, the audio group's included); left out when empty.
    pub codecs: Vec<String>,
    /// `RESOLUTION` (width, height); `None` for audio-only.
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE`, written with 3 decimals.
    pub frame_rate: Option<f64>,
    /// `AUDIO`: the `GROUP-ID` of the [`AudioRendition`]s to use.
    pub audio_group: Option<String>,
}

/// One audio rendition (`EXT-X-MEDIA:TYPE=AUDIO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRendition {
    /// `GROUP-ID`.
    pub group_id: String,
    /// `NAME`.
    pub name: String,
    /// `LANGUAGE` (RFC 5646 tag).
    pub language: Option<String>,
    /// `DEFAULT=YES`.
    pub default: bool,
    /// `AUTOSELECT=YES` (also written when `default`, as RFC 8216 requires).
    pub autoselect: bool,
    /// `CHANNELS`.
    pub channels: Option<u32>,
    /// `URI` of its media playlist; `None` when the audio is in the
    /// variant streams themselves.
    pub uri: Option<String>,
}

/// The multivariant playlist: `#EXTM3U`, `#EXT-X-VERSION:3`,
/// `#EXT-X-INDEPENDENT-SEGMENTS`, one `#EXT-X-MEDIA:TYPE=AUDIO` per
/// rendition, then per variant `#EXT-X-STREAM-INF` (`BANDWIDTH`,
/// `AVERAGE-BANDWIDTH`, `CODECS="a,b"`, `RESOLUTION=WxH`,
/// `FRAME-RATE=29.970`, `AUDIO="grp"`) and its URI. An audio-only stream is
/// a variant with only the audio codec and no resolution.
pub fn master_playlist(variants: &[Variant], audio: &[AudioRendition]) -> String {
    let mut out = String::with_capacity(100 + 200 * (variants.len() + audio.len()));
    // Writing to a String cannot fail.
    let _ = write_master(&mut out, variants, audio);
    out
}

fn write_master(
    out: &mut String,
    variants: &[Variant],
    audio: &[AudioRendition],
) -> std::fmt::Result {
    out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for a in audio {
        write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\"",
            quoted_string(&a.group_id),
            quoted_string(&a.name)
        )?;
        if let Some(lang) = &a.language {
            write!(out, ",LANGUAGE=\"{}\"", quoted_string(lang))?;
        }
        write!(
            out,
            ",DEFAULT={},AUTOSELECT={}",
            yes_no(a.default),
            yes_no(a.autoselect || a.default)
        )?;
        if let Some(channels) = a.channels {
            write!(out, ",CHANNELS=\"{channels}\"")?;
        }
        if let Some(uri) = &a.uri {
            write!(out, ",URI=\"{}\"", quoted_string(uri))?;
        }
        out.push('\n');
    }
    for v in variants {
        write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth)?;
        if let Some(avg) = v.average_bandwidth {
            write!(out, ",AVERAGE-BANDWIDTH={avg}")?;
        }
        if !v.codecs.is_empty() {
            let codecs = v.codecs.join(",");
            write!(out, ",CODECS=\"{}\"", quoted_string(&codecs))?;
        }
        if let Some((w, h)) = v.resolution {
            write!(out, ",RESOLUTION={w}x{h}")?;
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            write!(out, ",FRAME-RATE={fps:.3}")?;
        }
        if let Some(group) = &v.audio_group {
            write!(out, ",AUDIO=\"{}\"", quoted_string(group))?;
        }
        writeln!(out, "\n{}", uri_line(&v.uri))?;
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "YES" } else { "NO" }
}
