//! DASH: the dynamic MPD (ISO/IEC 23009-1) of live CMAF delivery.
//!
//! Text only, pure (no clock: every time is a value in the [`LiveMpd`]).
//! [`write_mpd`] writes one Period (`id="0"`, `start="PT0S"`) with one
//! AdaptationSet per [`DashRepresentation`] (a track: video or audio) — or
//! one per [`adaptation_set`](DashRepresentation::adaptation_set) key, for
//! renditions a player switches between —, each
//! with a `SegmentTemplate` using `$Number$` and a `SegmentTimeline`:
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="…isoff-live:2011,…cmaf:2019"
//!      type="dynamic" availabilityStartTime="…" publishTime="…" minimumUpdatePeriod="PT2.000S" …>
//!   <Period id="0" start="PT0S">
//!     <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
//!       <Representation id="v" codecs="avc1.640028" bandwidth="2000000" width="1920" height="1080" frameRate="25">
//!         <SegmentTemplate timescale="90000" initialization="$RepresentationID$/init.mp4"
//!                          media="$RepresentationID$/$Number$.m4s" startNumber="5">
//!           <SegmentTimeline><S t="900000" d="180000" r="2"/></SegmentTimeline>
//! …
//!   <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="…"/>
//! </MPD>
//! ```
//!
//! - **Profiles**: `urn:mpeg:dash:profile:isoff-live:2011` (SegmentTemplate
//!   addressing) and `urn:mpeg:dash:profile:cmaf:2019` (the CMAF profile of
//!   ISO/IEC 23009-1 4th edition: the segments are CMAF fragments from
//!   [`fmp4`](crate::fmp4)).
//! - **Time**: media time 0 of every representation is
//!   `availabilityStartTime` (no `presentationTimeOffset`), so the caller
//!   keeps the fMP4 `tfdt` of each track on that common origin. Durations
//!   are xs:duration in seconds with milliseconds (`PT1.234S`), dates
//!   ISO 8601 UTC with milliseconds.
//! - **SegmentTimeline**: runs of equal `d` become one `S` with `r`; `t` is
//!   written on the first `S` and wherever a segment does not start where
//!   the previous one ended.
//! - **Audio** representations carry `audioSamplingRate` and an
//!   `AudioChannelConfiguration` (scheme
//!   `urn:mpeg:dash:23003:3:audio_channel_configuration:2011`).
//! - **End of the live stream** ([`LiveMpd::ended`]): `type` stays
//!   `dynamic` (a player that already joined keeps its timeline), the
//!   `minimumUpdatePeriod` is left out (the MPD will not change again) and
//!   `mediaPresentationDuration` is set to the end of the last segment —
//!   the way DASH-IF IOP ends a live presentation.
//! - Attribute values are XML-escaped; control characters are dropped.

mod mpd;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use mpd::{
    CMAF_PROFILE, DashRepresentation, LIVE_PROFILE, LiveMpd, UTC_TIMING_HTTP_ISO, write_mpd,
};
