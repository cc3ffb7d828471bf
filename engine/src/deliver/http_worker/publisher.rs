//! Publishing a live stream on this core, whoever brings the media: an
//! RTMP connection (FLV tag bodies) or a stream source such as MPEG-TS over
//! UDP (demuxed frames, turned into FLV tag bodies here so that every output
//! — FLV, RTMP, TS, HLS, DASH — is fed one way).
//!
//! A [`Publisher`] is the stream's packaging state: the FLV parser that
//! finds tracks and keyframes, the timestamp [`Rebaser`], the item
//! numbering, the stream head and the segmented [`StreamPackager`]. It is
//! independent of any connection: the worker takes it out of whatever owns
//! it, feeds it a tag with [`Worker::publish_tag`], and puts it back.
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use spate_packager::flv::{FlvEvent, FlvMuxer, FlvStream, TagType};
use spate_packager::media::{Frame, MediaKind, Track};

use super::Worker;
use crate::live::{
    LiveItem, LiveMsg, Packaged, PublishRefusal, Rebaser, StreamHead, StreamId, StreamPackager,
    StreamSettings, TagKind,
};

/// A stream being published from this core.
#[derive(Debug)]
pub(super) struct Publisher {
    pub(super) name: Arc<str>,
    pub(super) id: StreamId,
    flv: FlvStream,
    rebaser: Rebaser,
    next_seq: u64,
    head: StreamHead,
    settings: StreamSettings,
    packager: Box<StreamPackager>,
    /// Sources that bring frames (not FLV tags): the muxer that writes
    /// their FLV tag bodies, and which track ids it carries.
    frame_mux: Option<FrameMux>,
}

/// FLV tag bodies for frame sources: the first video and the first audio
/// track (FLV carries one of each).
#[derive(Debug)]
struct FrameMux {
    tracks: Vec<Track>,
    muxer: Option<FlvMuxer>,
    /// Tracks whose sequence header went out since the muxer was made.
    announced: Vec<u32>,
}

/// The number of a new stream's first segment: the time in unix seconds, so
/// segment URLs of different incarnations of a stream never collide (a
/// segment lasts at least a second).
fn first_segment_number() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Worker {
    /// Claim `name` for a publisher on this core (`who` names it in logs)
    /// and announce the stream to every core. A claim within its grace is
    /// taken over: numbering, timeline and segments continue. On refusal,
    /// the description to give the publisher.
    pub(super) fn begin_publish(
        &mut self,
        name: &str,
        who: &str,
    ) -> Result<Box<Publisher>, String> {
        let now = self.now.get();
        let result = self
            .registry
            .settings(name)
            .and_then(|st| self.registry.claim(name, self.index, now).map(|c| (st, c)));
        let (settings, mut claim) = match result {
            Ok(v) => v,
            Err(why) => {
                self.counters.publish_refused += 1;
                let description = match why {
                    PublishRefusal::Busy => format!("{name} is already being published"),
                    PublishRefusal::Unknown => format!("{name} is not a configured stream"),
                    PublishRefusal::BadName => format!("{name} is not a valid stream name"),
                };
                tracing::info!("{who}: publish refused: {description}");
                return Err(description);
            }
        };
        let continuing = claim.next_seq > 0;
        let packager = match claim.packager.take() {
            Some(mut p) => {
                p.discontinuity();
                p
            }
            None => Box::new(StreamPackager::new(
                Arc::from(name),
                settings.segmented,
                first_segment_number(),
            )),
        };
        tracing::info!(
            "{who}: publishing {name}{}",
            if continuing {
                " (publisher reconnected within the grace)"
            } else {
                ""
            }
        );
        self.graced
            .retain(|(n, id, _)| !(**n == *name && *id == claim.id));
        let name: Arc<str> = Arc::from(name);
        let publisher = Box::new(Publisher {
            name: name.clone(),
            id: claim.id,
            flv: FlvStream::new(),
            rebaser: Rebaser::continuing(claim.last_ts_ms, !continuing),
            next_seq: claim.next_seq,
            head: (*claim.head).clone(),
            settings,
            packager,
            frame_mux: None,
        });
        let id = claim.id;
        let limits = settings.limits;
        let skip = settings.skip_lag_ms;
        self.broadcast(|| LiveMsg::Start {
            id,
            name: name.clone(),
            limits,
            skip_lag_ms: skip,
        });
        let head = claim.head.clone();
        self.broadcast(|| LiveMsg::Head {
            id,
            head: head.clone(),
        });
        Ok(publisher)
    }

    /// The publisher stopped: the stream waits for it (or another publisher
    /// of the name) for the reconnect grace.
    pub(super) fn finish_publish(&mut self, p: Box<Publisher>, who: &str) {
        let now = self.now.get();
        let until = now + Duration::from_millis(p.settings.grace_ms);
        let (name, id, grace_ms) = (p.name.clone(), p.id, p.settings.grace_ms);
        let resume = crate::live::Resume {
            next_seq: p.next_seq,
            last_ts_ms: p.rebaser.last_out(),
            head: Arc::new(p.head.clone()),
            packager: Some(p.packager),
        };
        self.registry.release(&name, id, until, resume);
        tracing::info!(
            "{who}: publisher of {name} left; stream kept {grace_ms} ms for a reconnect"
        );
        self.graced.push((name, id, until));
    }

    /// One tag of the stream (an RTMP message body, or an FLV tag body made
    /// from a frame): package it once for every output and send it to every
    /// core.
    pub(super) fn publish_tag(
        &mut self,
        p: &mut Publisher,
        kind: TagKind,
        ts_ms: u32,
        body: Bytes,
    ) {
        let chunk = self.rtmp_chunk_size;
        let tag_type = match kind {
            TagKind::Audio => TagType::Audio,
            TagKind::Video => TagType::Video,
            TagKind::Script => TagType::Script,
        };
        let mut keyframe = false;
        let mut head_changed = false;
        let mut frames = Vec::new();
        if kind == TagKind::Script {
            p.head.metadata = Some(body.clone());
            head_changed = true;
        } else if p.flv.handle_tag(tag_type, ts_ms, body.clone()).is_err() {
            // A tag we cannot read is passed through as is; players may.
        }
        while let Some(ev) = p.flv.poll_event() {
            match ev {
                FlvEvent::Track { track, .. } => {
                    if track.kind() == MediaKind::Video {
                        p.head.video_seq = Some(body.clone());
                        p.head.has_video = true;
                    } else {
                        p.head.audio_seq = Some(body.clone());
                        p.head.has_audio = true;
                    }
                    head_changed = true;
                    p.packager.on_track(track);
                }
                FlvEvent::Frame(f) => {
                    keyframe = if kind == TagKind::Video {
                        f.keyframe
                    } else {
                        !p.head.has_video
                    };
                    frames.push(f);
                }
                _ => {}
            }
        }
        if kind == TagKind::Script {
            // Metadata reaches viewers in their prologue only: players
            // (ffmpeg among them) take a script tag mid-stream for a data or
            // subtitle track.
            let id = p.id;
            let head = Arc::new(p.head.clone());
            self.broadcast(|| LiveMsg::Head {
                id,
                head: head.clone(),
            });
            return;
        }
        let before = p.rebaser.rebases;
        let ts = p.rebaser.map(i64::from(ts_ms));
        let rebased = p.rebaser.rebases - before;
        if rebased > 0 {
            tracing::info!(
                "stream {}: publisher timestamp jumped to {ts_ms} ms; output continues at {ts} ms",
                p.name
            );
            p.packager.discontinuity();
        }
        // Segmented outputs: the frame on the stream's timeline.
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut ts_bytes = None;
        let mut ts_start = false;
        let mut views = Vec::new();
        for mut f in frames {
            let cts = f.pts - f.dts;
            f.dts = ts;
            f.pts = ts + cts;
            let o = p.packager.on_frame(&f, wall_ms);
            ts_bytes = o.ts.or(ts_bytes);
            ts_start |= o.starts_segment;
            views.extend(o.view);
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        let id = p.id;
        let head = head_changed.then(|| Arc::new(p.head.clone()));
        let mut packaged = Packaged::new(kind, ts as u32, body, chunk);
        // The TS muxer writes PAT/PMT before every video keyframe and at
        // every segment start: a TS viewer may start at either.
        packaged.ts_start =
            ts_bytes.is_some() && (ts_start || (keyframe && kind == TagKind::Video));
        packaged.ts = ts_bytes;
        let item = Arc::new(packaged);
        self.counters.rebases += rebased;
        if let Some(head) = head {
            self.broadcast(|| LiveMsg::Head {
                id,
                head: head.clone(),
            });
        }
        for view in views {
            self.counters.segments += 1;
            self.broadcast(|| LiveMsg::Segments {
                id,
                view: view.clone(),
            });
        }
        self.broadcast(|| LiveMsg::Item {
            id,
            item: LiveItem {
                seq,
                dts_ms: ts,
                keyframe,
                value: item.clone(),
            },
        });
    }

    /// A track of a frame source (a TS PMT entry with its configuration)
    /// appeared or changed. The first video and the first audio track are
    /// published (FLV carries one of each); others are left out with a log
    /// line.
    pub(super) fn publish_source_track(&mut self, p: &mut Publisher, track: Track) {
        let fm = p.frame_mux.get_or_insert_with(|| FrameMux {
            tracks: Vec::new(),
            muxer: None,
            announced: Vec::new(),
        });
        let kind = track.kind();
        if let Some(t) = fm.tracks.iter_mut().find(|t| t.id == track.id) {
            if *t == track {
                return;
            }
            *t = track;
        } else if fm.tracks.iter().any(|t| t.kind() == kind) {
            tracing::info!(
                "stream {}: track {} ({}) not published: one {} track per stream for now",
                p.name,
                track.id,
                track.codec,
                if kind == MediaKind::Video {
                    "video"
                } else {
                    "audio"
                }
            );
            return;
        } else {
            fm.tracks.push(track);
        }
        // FLV's track ids are 0 (video) and 1 (audio).
        let flv_tracks: Vec<Track> = fm
            .tracks
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.id = if t.kind() == MediaKind::Video {
                    spate_packager::flv::VIDEO_TRACK
                } else {
                    spate_packager::flv::AUDIO_TRACK
                };
                t
            })
            .collect();
        fm.announced.clear();
        fm.muxer = match FlvMuxer::new(&flv_tracks) {
            Ok(m) => Some(m),
            Err(e) => {
                self.counters.source_errors += 1;
                tracing::info!("stream {}: tracks cannot be published: {e}", p.name);
                None
            }
        };
    }

    /// A frame of a frame source (timebase of its track): written as an FLV
    /// tag body (the one copy of its payload) and published like an RTMP
    /// publisher's tag. Frames of tracks that are not published, or before
    /// their track's configuration, are dropped.
    pub(super) fn publish_source_frame(&mut self, p: &mut Publisher, frame: &Frame) {
        let Some(fm) = p.frame_mux.as_mut() else {
            return;
        };
        let Some(track) = fm.tracks.iter().find(|t| t.id == frame.track) else {
            return;
        };
        let Some(muxer) = fm.muxer.as_ref() else {
            return;
        };
        let video = track.kind() == MediaKind::Video;
        let flv_id = if video {
            spate_packager::flv::VIDEO_TRACK
        } else {
            spate_packager::flv::AUDIO_TRACK
        };
        // The muxer's tracks keep the source's timebase; only the id is
        // FLV's.
        let mut frame = frame.clone();
        let dts_ms = spate_packager::media::rescale(frame.dts, track.timebase, 1000);
        frame.track = flv_id;
        let kind = if video {
            TagKind::Video
        } else {
            TagKind::Audio
        };
        let ts = dts_ms.clamp(0, i64::from(u32::MAX)) as u32;
        let mut tags = Vec::new();
        if !fm.announced.contains(&flv_id) {
            let mut out = BytesMut::new();
            if muxer.write_sequence_header(flv_id, ts, &mut out).is_ok() && out.len() > 15 {
                // write_sequence_header writes a whole tag: header (11),
                // body, PreviousTagSize (4).
                let body = out.freeze().slice(11..);
                let body = body.slice(..body.len() - 4);
                tags.push(body);
            }
            fm.announced.push(flv_id);
        }
        let mut out = BytesMut::with_capacity(frame.payload.len() + 32);
        match muxer.write_frame_copy(&frame, &mut out) {
            Ok(()) if out.len() > 15 => {
                let body = out.freeze().slice(11..);
                tags.push(body.slice(..body.len() - 4));
            }
            Ok(()) => {}
            Err(e) => {
                self.counters.source_errors += 1;
                tracing::debug!("stream {}: frame not published: {e}", p.name);
            }
        }
        for body in tags {
            self.publish_tag(p, kind, ts, body);
        }
    }
}
