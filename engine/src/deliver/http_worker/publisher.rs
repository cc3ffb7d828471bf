//! Publishing a live stream on this core, whoever brings the media: an
//! RTMP connection (FLV tag bodies) or a stream source such as MPEG-TS over
//! UDP (demuxed frames).
//!
//! RTMP tags are parsed into frames for the segmented packager here. A
//! frame source's frames go the other way: every track goes to the
//! [`StreamPackager`] directly (all video renditions, all audio tracks: TS
//! renditions, CMAF, DASH), on the stream's rebased timeline, and the first
//! video and first audio track are also written as FLV tag bodies for FLV
//! and RTMP viewers (FLV carries one of each). Frames of the other tracks
//! become items only TS viewers of their rendition get.
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
    LiveItem, LiveMsg, Packaged, PublishRefusal, Rebaser, SegmentedView, StreamHead, StreamId,
    StreamPackager, StreamSettings, TagKind, TsPiece,
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
    /// What the API reports: media bytes in and the input rate.
    pub(super) input: InputRate,
}

/// Media bytes a publisher brought in, and its rate over about a second
/// (one add and one compare per tag: no clock read, the loop's `now`).
#[derive(Debug, Clone, Copy)]
pub(super) struct InputRate {
    /// When the publish started.
    pub(super) since: std::time::Instant,
    /// Media payload bytes so far.
    pub(super) bytes: u64,
    /// Bits per second over the last full window.
    pub(super) bitrate: u64,
    mark_at: std::time::Instant,
    mark_bytes: u64,
}

impl InputRate {
    fn new(now: std::time::Instant) -> Self {
        Self {
            since: now,
            bytes: 0,
            bitrate: 0,
            mark_at: now,
            mark_bytes: 0,
        }
    }

    fn add(&mut self, now: std::time::Instant, n: usize) {
        self.bytes += n as u64;
        let dt = now.saturating_duration_since(self.mark_at);
        if dt >= Duration::from_secs(1) {
            self.bitrate = ((self.bytes - self.mark_bytes) as f64 * 8.0 / dt.as_secs_f64()) as u64;
            self.mark_at = now;
            self.mark_bytes = self.bytes;
        }
    }
}

impl Publisher {
    /// The stream's tracks as the packager knows them.
    pub(super) fn tracks(&self) -> &[Track] {
        self.packager.tracks()
    }

    /// Segment-store arenas the packager holds, and their bytes.
    pub(super) fn store_usage(&self) -> (u64, u64) {
        self.packager.store_usage()
    }
}

/// FLV tag bodies for frame sources: the first video and the first audio
/// track (FLV carries one of each).
#[derive(Debug)]
struct FrameMux {
    /// Every track of the source (their timebases).
    all: Vec<Track>,
    /// The tracks FLV carries.
    tracks: Vec<Track>,
    muxer: Option<FlvMuxer>,
    /// Tracks whose sequence header went out since the muxer was made.
    announced: Vec<u32>,
}

/// A frame source's frame as the packager already made it: what its FLV
/// tag carries along.
#[derive(Debug, Default)]
struct Packed {
    ts: Vec<TsPiece>,
    views: Vec<Arc<SegmentedView>>,
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
            input: InputRate::new(now),
        });
        let id = claim.id;
        let limits = settings.limits;
        let skip = settings.skip_lag_ms;
        let coalesce = settings.coalesce;
        self.broadcast(|| LiveMsg::Start {
            id,
            name: name.clone(),
            limits,
            skip_lag_ms: skip,
            coalesce,
        });
        let head = claim.head.clone();
        self.broadcast(|| LiveMsg::Head {
            id,
            head: head.clone(),
        });
        self.trigger_stream_live(&name, id, continuing);
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
        self.trigger_stream_offline(&name, id);
        tracing::info!(
            "{who}: publisher of {name} left; stream kept {grace_ms} ms for a reconnect"
        );
        self.graced.push((name, id, until));
    }

    /// One tag of the stream (an RTMP message body): package it once for
    /// every output and send it to every core.
    pub(super) fn publish_tag(
        &mut self,
        p: &mut Publisher,
        kind: TagKind,
        ts_ms: u32,
        body: Bytes,
    ) {
        p.input.add(self.now.get(), body.len());
        self.publish_flv_tag(p, kind, ts_ms, body, None);
    }

    /// A tag: from RTMP (`packed: None`: parsed into frames for the
    /// packager, timestamp rebased here), or an FLV tag body made from a
    /// frame source's frame (`Some`: already packaged, `ts_ms` already on
    /// the stream's timeline).
    fn publish_flv_tag(
        &mut self,
        p: &mut Publisher,
        kind: TagKind,
        ts_ms: u32,
        body: Bytes,
        packed: Option<Packed>,
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
                    if packed.is_none() {
                        p.packager.on_track(track);
                    }
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
        let (ts, rebased, pieces, views) = match packed {
            Some(packed) => (i64::from(ts_ms), 0, packed.ts, packed.views),
            None => {
                let before = p.rebaser.rebases;
                let ts = p
                    .rebaser
                    .map_lane(i64::from(ts_ms), usize::from(kind != TagKind::Video));
                let rebased = p.rebaser.rebases - before;
                if rebased > 0 {
                    tracing::info!(
                        "stream {}: publisher timestamp jumped to {ts_ms} ms; output continues at {ts} ms",
                        p.name
                    );
                    p.packager.discontinuity();
                }
                // Segmented outputs: the frame on the stream's timeline.
                let wall_ms = wall_clock_ms();
                let mut pieces = Vec::new();
                let mut views = Vec::new();
                for mut f in frames {
                    let cts = f.pts - f.dts;
                    f.dts = ts;
                    f.pts = ts + cts;
                    let o = p.packager.on_frame(&f, wall_ms);
                    pieces.extend(o.ts);
                    views.extend(o.view);
                }
                (ts, rebased, pieces, views)
            }
        };
        let seq = p.next_seq;
        p.next_seq += 1;
        let id = p.id;
        let head = head_changed.then(|| Arc::new(p.head.clone()));
        let mut packaged = Packaged::new(kind, ts as u32, body, chunk);
        // The TS muxer writes PAT/PMT before every video keyframe and at
        // every segment start: a TS viewer may start at either.
        packaged.set_ts(pieces);
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
        self.trigger_media(id, ts);
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
    /// appeared or changed. Every track goes to the segmented packager;
    /// the first video and the first audio track also to FLV (which carries
    /// one of each).
    pub(super) fn publish_source_track(&mut self, p: &mut Publisher, track: Track) {
        let fm = p.frame_mux.get_or_insert_with(|| FrameMux {
            all: Vec::new(),
            tracks: Vec::new(),
            muxer: None,
            announced: Vec::new(),
        });
        match fm.all.iter_mut().find(|t| t.id == track.id) {
            Some(t) if *t == track => return,
            Some(t) => *t = track.clone(),
            None => fm.all.push(track.clone()),
        }
        p.packager.on_track(track.clone());
        let kind = track.kind();
        if let Some(t) = fm.tracks.iter_mut().find(|t| t.id == track.id) {
            *t = track;
        } else if fm.tracks.iter().any(|t| t.kind() == kind) {
            tracing::debug!(
                "stream {}: track {} ({}) not in FLV/RTMP (one {} track there); in TS renditions and CMAF",
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

    /// A frame of a frame source (timebase of its track): moved onto the
    /// stream's timeline (one rebasing offset for every track), packaged
    /// once by the segmented packager, and published as an item — with its
    /// FLV tag body (the one copy of its payload for FLV) if FLV carries its
    /// track, else for TS viewers only. Frames before their track's
    /// configuration are dropped.
    pub(super) fn publish_source_frame(&mut self, p: &mut Publisher, frame: &Frame) {
        p.input.add(self.now.get(), frame.payload.len());
        let Some(fm) = p.frame_mux.as_ref() else {
            return;
        };
        let Some(timebase) = fm
            .all
            .iter()
            .find(|t| t.id == frame.track)
            .map(|t| t.timebase)
        else {
            return;
        };
        let video = fm
            .all
            .iter()
            .any(|t| t.id == frame.track && t.kind() == MediaKind::Video);
        let kind = if video {
            TagKind::Video
        } else {
            TagKind::Audio
        };
        // The stream's timeline: one offset (ms) for every track, applied
        // in each track's timebase.
        let dts_ms = spate_packager::media::rescale(frame.dts, timebase, 1000);
        let before = p.rebaser.rebases;
        let ts = p.rebaser.map_lane(dts_ms, usize::from(!video));
        let rebased = p.rebaser.rebases - before;
        if rebased > 0 {
            tracing::info!(
                "stream {}: source timestamp jumped to {dts_ms} ms; output continues at {ts} ms",
                p.name
            );
            p.packager.discontinuity();
            self.counters.rebases += rebased;
        }
        let offset = spate_packager::media::rescale(ts - dts_ms, 1000, timebase);
        let mut frame = frame.clone();
        frame.dts += offset;
        frame.pts += offset;
        let o = p.packager.on_frame(&frame, wall_clock_ms());
        let packed = Packed {
            ts: o.ts,
            views: o.view.into_iter().collect(),
        };
        let ts_ms = ts.clamp(0, i64::from(u32::MAX)) as u32;
        let Some(fm) = p.frame_mux.as_mut() else {
            return;
        };
        let flv = fm
            .tracks
            .iter()
            .any(|t| t.id == frame.track)
            .then_some(())
            .and(fm.muxer.as_ref());
        let Some(muxer) = flv else {
            self.publish_ts_only(p, kind, ts_ms, packed);
            return;
        };
        let flv_id = if video {
            spate_packager::flv::VIDEO_TRACK
        } else {
            spate_packager::flv::AUDIO_TRACK
        };
        // The muxer's tracks keep the source's timebase; only the id is
        // FLV's. Its tag timestamps are the rebased ones.
        frame.track = flv_id;
        frame.dts -= offset;
        frame.pts -= offset;
        let mut header = None;
        if !fm.announced.contains(&flv_id) {
            let mut out = BytesMut::new();
            if muxer.write_sequence_header(flv_id, ts_ms, &mut out).is_ok() && out.len() > 15 {
                // write_sequence_header writes a whole tag: header (11),
                // body, PreviousTagSize (4).
                let body = out.freeze().slice(11..);
                header = Some(body.slice(..body.len() - 4));
            }
            fm.announced.push(flv_id);
        }
        let mut out = BytesMut::with_capacity(frame.payload.len() + 32);
        let body = match muxer.write_frame_copy(&frame, &mut out) {
            Ok(()) if out.len() > 15 => {
                let body = out.freeze().slice(11..);
                Some(body.slice(..body.len() - 4))
            }
            Ok(()) => None,
            Err(e) => {
                self.counters.source_errors += 1;
                tracing::debug!("stream {}: frame not in FLV: {e}", p.name);
                None
            }
        };
        if let Some(h) = header {
            self.publish_flv_tag(p, kind, ts_ms, h, Some(Packed::default()));
        }
        match body {
            Some(body) => self.publish_flv_tag(p, kind, ts_ms, body, Some(packed)),
            None => self.publish_ts_only(p, kind, ts_ms, packed),
        }
    }

    /// An item only TS viewers get: a frame source's frame of a track FLV
    /// does not carry (or could not write).
    fn publish_ts_only(&mut self, p: &mut Publisher, kind: TagKind, ts_ms: u32, packed: Packed) {
        let id = p.id;
        for view in packed.views {
            self.counters.segments += 1;
            self.broadcast(|| LiveMsg::Segments {
                id,
                view: view.clone(),
            });
        }
        if packed.ts.is_empty() {
            return;
        }
        let mut packaged = Packaged::ts_only(kind, ts_ms);
        packaged.set_ts(packed.ts);
        let item = Arc::new(packaged);
        let seq = p.next_seq;
        p.next_seq += 1;
        self.broadcast(|| LiveMsg::Item {
            id,
            item: LiveItem {
                seq,
                dts_ms: i64::from(ts_ms),
                keyframe: false,
                value: item.clone(),
            },
        });
    }
}
