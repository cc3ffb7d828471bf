//! HLS playlists (RFC 8216): the sliding-window live media playlist, the
//! multivariant (master) playlist, RFC 6381 codecs strings and the
//! ISO 8601 date-time of `EXT-X-PROGRAM-DATE-TIME`.
//!
//! Text only, pure (no I/O, no clock: dates come in as unix milliseconds).
//!
//! - [`LivePlaylist`]: segments are pushed as they finish; the oldest
//!   beyond the window leave, advancing `EXT-X-MEDIA-SEQUENCE`, and each
//!   leaving segment that carried `EXT-X-DISCONTINUITY` advances
//!   `EXT-X-DISCONTINUITY-SEQUENCE` (RFC 8216 6.2.2), so every segment keeps
//!   its media and discontinuity sequence numbers across reloads.
//!   [`LivePlaylist::render`] writes the whole text.
//! - **Version** (RFC 8216 section 7): 6 when the playlist uses
//!   `EXT-X-MAP` (fMP4: EXT-X-MAP without EXT-X-I-FRAMES-ONLY needs 6), else
//!   3 (TS: decimal `EXTINF` durations need 3; nothing else used needs
//!   more). The multivariant playlist uses 3: none of its tags or
//!   attributes need more.
//! - **Target duration**: the larger of the hint and the longest segment
//!   ever pushed, each as its printed `EXTINF` (milliseconds) rounded to
//!   the nearest second, as RFC 8216 4.3.3.1 measures it (rounding up would
//!   turn one 2.049 s segment into a 3 s target for the rest of the
//!   stream, and players poll and join by the target).
//!   It never decreases: RFC 8216 4.3.3.1 does not let it change, and a
//!   segment longer than the hint (a long GOP) is the one case that raises
//!   it.
//! - Quoted attribute values cannot be escaped in HLS: `"`, CR and LF are
//!   dropped from them, and CR/LF from URI lines.
//!
//! [`codecs_string`] gives the `CODECS` entry of a track (and the DASH
//! `@codecs`); [`iso8601_utc_ms`] the date-time format HLS and DASH share.

mod codecs;
mod date_time;
mod media_playlist;
mod multivariant;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use codecs::codecs_string;
pub use date_time::{days_from_civil, iso8601_utc_ms};
pub use media_playlist::{HlsSegment, LivePlaylist};
pub use multivariant::{AudioRendition, Variant, master_playlist};

/// `s` as the inside of an HLS quoted-string: without `"`, CR and LF,
/// which the format cannot carry.
fn quoted_string(s: &str) -> impl std::fmt::Display + '_ {
    Filtered(s, &['"', '\r', '\n'])
}

/// `s` as a URI line: without CR and LF.
fn uri_line(s: &str) -> impl std::fmt::Display + '_ {
    Filtered(s, &['\r', '\n'])
}

/// A string displayed without some characters.
struct Filtered<'a>(&'a str, &'static [char]);

impl std::fmt::Display for Filtered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in self.0.split(self.1) {
            f.write_str(part)?;
        }
        Ok(())
    }
}
