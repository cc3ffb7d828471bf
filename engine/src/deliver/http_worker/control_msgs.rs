//! Requests of the control plane, answered on the worker's own loop from
//! its own state (no lock, no shared counter).
use std::collections::HashMap;

use spate_packager::media::{MediaKind, Track};

use super::live_conn::{Attachment, ViewerFormat};
use super::publisher::Publisher;
use super::{Phase, Worker};
use crate::control::{
    ConnectionCounts, ControlRequest, PublisherSnapshot, PushSnapshot, SessionSnapshot,
    StreamSnapshot, TrackSnapshot, ViewerCounts, WorkerSnapshot,
};

/// The API's name of a viewer's format.
fn viewer_connector(f: ViewerFormat) -> &'static str {
    match f {
        ViewerFormat::Flv => "http-flv",
        ViewerFormat::Ts => "http-ts",
        ViewerFormat::Rtmp(..) => "rtmp",
    }
}

fn track_snapshot(t: &Track) -> TrackSnapshot {
    let video = t.kind() == MediaKind::Video;
    TrackSnapshot {
        id: t.id,
        kind: if video { "video" } else { "audio" },
        codec: t.codec.name().to_string(),
        width: t.info.width.filter(|_| video),
        height: t.info.height.filter(|_| video),
        sample_rate: t.info.sample_rate.filter(|_| !video),
        channels: t.info.channels.filter(|_| !video),
    }
}

impl Worker {
    pub(super) fn on_control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            ControlRequest::Sessions(reply) => {
                let _ = reply.send(self.sessions());
            }
            ControlRequest::Kick { id, stream, reply } => {
                let n = self.kick(id.as_deref(), stream.as_deref());
                let _ = reply.send(n);
            }
            ControlRequest::Reload(config) => self.apply_config(config),
        }
    }

    fn publisher_snapshot(&self, p: &Publisher, connector: &'static str) -> PublisherSnapshot {
        let now = self.now.get();
        let (store_arenas, store_bytes) = p.store_usage();
        PublisherSnapshot {
            connector,
            tracks: p.tracks().iter().map(track_snapshot).collect(),
            bytes_in: p.input.bytes,
            bitrate_in: p.input.bitrate,
            seconds: now.saturating_duration_since(p.input.since).as_secs_f64(),
            store_arenas,
            store_bytes,
        }
    }

    /// Every publisher on this core, by stream name.
    fn publishers(&self) -> HashMap<&str, PublisherSnapshot> {
        let mut out = HashMap::new();
        for (slot, generation) in self.conns.slots() {
            if let Some(p) = self
                .conns
                .get(slot, generation)
                .and_then(|c| c.live.as_deref())
                .and_then(|l| l.publisher())
            {
                out.insert(&*p.name, self.publisher_snapshot(p, "rtmp"));
            }
        }
        let sources = self
            .sources
            .iter()
            .map(|s| (&s.ing, "ts-udp"))
            .chain(self.http.iter().map(|s| (&s.ing, "http-pull")))
            .chain(self.exec.sources.iter().map(|s| (&s.ing, "ts-exec")));
        for (ing, connector) in sources {
            if let Some(p) = ing.publisher.as_deref() {
                out.insert(&*p.name, self.publisher_snapshot(p, connector));
            }
        }
        out
    }

    fn snapshot(&self) -> crate::control::WorkerSnapshot {
        let mut connections = ConnectionCounts::default();
        for (slot, generation) in self.conns.slots() {
            let Some(c) = self.conns.get(slot, generation) else {
                continue;
            };
            if c.phase == Phase::Closing {
                continue;
            }
            if c.live.as_deref().is_some_and(|l| l.is_rtmp()) {
                connections.rtmp += 1;
            } else {
                connections.http += 1;
            }
        }
        let mut publishers = self.publishers();
        let mut streams = Vec::with_capacity(self.live.streams.len());
        for (&id, ls) in &self.live.streams {
            if self.live.by_name.get(&ls.name) != Some(&id) {
                // An ended incarnation whose viewers are being closed.
                continue;
            }
            let mut viewers = ViewerCounts {
                hls_requests: ls.hls_requests,
                cmaf_requests: ls.cmaf_requests,
                ..ViewerCounts::default()
            };
            for &(slot, generation) in &ls.viewers {
                let format = self
                    .conns
                    .get(slot, generation)
                    .and_then(|c| c.live.as_deref())
                    .and_then(|l| l.attachment());
                match format {
                    Some(Attachment::Viewer(_, ViewerFormat::Flv)) => viewers.flv += 1,
                    Some(Attachment::Viewer(_, ViewerFormat::Ts)) => viewers.ts += 1,
                    Some(Attachment::Viewer(_, ViewerFormat::Rtmp(..))) => viewers.rtmp += 1,
                    _ => {}
                }
            }
            let (mut segments, mut segment_bytes) = (0u64, 0u64);
            if let Some(view) = &ls.segmented {
                let lists = view
                    .ts_renditions
                    .iter()
                    .map(|r| &r.segments)
                    .chain(view.cmaf_tracks.iter().map(|t| &t.segments));
                for list in lists {
                    segments += list.len() as u64;
                    segment_bytes += list.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
                }
            }
            streams.push(StreamSnapshot {
                name: ls.name.to_string(),
                viewers,
                publisher: publishers.remove(&*ls.name),
                reconnecting: self
                    .graced
                    .iter()
                    .any(|(n, gid, _)| *gid == id && *n == ls.name),
                segments,
                segment_bytes,
            });
        }
        let pushes = self
            .pushes
            .iter()
            .filter_map(|p| p.running())
            .filter_map(|(id, url)| {
                self.live.streams.get(&id).map(|ls| PushSnapshot {
                    stream: ls.name.to_string(),
                    target: url.to_string(),
                    worker: self.index,
                })
            })
            .collect();
        WorkerSnapshot {
            index: self.index,
            counters: self.counters.clone(),
            connections,
            streams,
            pushes,
            event_loop: self.loop_stats.snapshot(),
        }
    }

    /// The connection's stream and role, if it is attached to one.
    fn attached(&self, slot: u32, generation: u32) -> Option<(&str, &'static str, &'static str)> {
        let c = self.conns.get(slot, generation)?;
        if c.phase == Phase::Closing {
            return None;
        }
        match c.live.as_deref()?.attachment()? {
            Attachment::Publisher(name) => Some((name, "publisher", "rtmp")),
            Attachment::Viewer(id, format) => {
                let ls = self.live.streams.get(&id)?;
                Some((&ls.name, "viewer", viewer_connector(format)))
            }
        }
    }

    fn sessions(&self) -> Vec<SessionSnapshot> {
        let now = self.now.get();
        let mut out = Vec::new();
        for (slot, generation) in self.conns.slots() {
            let Some((stream, role, connector)) = self.attached(slot, generation) else {
                continue;
            };
            let Some(c) = self.conns.get(slot, generation) else {
                continue;
            };
            let (bytes_up, bytes_down) = c
                .live
                .as_deref()
                .map_or((0, 0), |l| (l.bytes_in, l.bytes_out));
            out.push(SessionSnapshot {
                id: self.conn_id(slot, generation),
                stream: stream.to_string(),
                role,
                connector,
                peer: c.peer.get().to_string(),
                seconds: now
                    .saturating_duration_since(
                        self.epoch + std::time::Duration::from_secs(u64::from(c.since_s)),
                    )
                    .as_secs_f64(),
                bytes_up,
                bytes_down,
            });
        }
        out
    }

    /// Close the session `id` (if it is on this worker) or every session of
    /// `stream`; the number closed.
    fn kick(&mut self, id: Option<&str>, stream: Option<&str>) -> usize {
        let mut targets = Vec::new();
        if let Some(id) = id
            && let Some((w, slot, generation)) = parse_session_id(id)
            && w == self.index
            && self.attached(slot, generation).is_some()
        {
            targets.push((slot, generation));
        }
        if let Some(stream) = stream {
            for (slot, generation) in self.conns.slots() {
                if self
                    .attached(slot, generation)
                    .is_some_and(|(s, _, _)| s == stream)
                    && !targets.contains(&(slot, generation))
                {
                    targets.push((slot, generation));
                }
            }
        }
        for &(slot, generation) in &targets {
            tracing::info!(
                "{}: closed by the API (kick)",
                self.conn_id(slot, generation)
            );
            self.close(slot, generation);
        }
        self.counters.kicked += targets.len() as u64;
        targets.len()
    }
}

/// `w0/c12.3` → (worker 0, slot 12, generation 3).
pub(crate) fn parse_session_id(id: &str) -> Option<(usize, u32, u32)> {
    let rest = id.strip_prefix('w')?;
    let (w, rest) = rest.split_once("/c")?;
    let (slot, generation) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(w) || !digits(slot) || !digits(generation) {
        return None;
    }
    Some((
        w.parse().ok()?,
        slot.parse().ok()?,
        generation.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_session_id;

    #[test]
    fn session_ids_parse_strictly() {
        assert_eq!(parse_session_id("w0/c12.3"), Some((0, 12, 3)));
        assert_eq!(parse_session_id("w11/c0.0"), Some((11, 0, 0)));
        for bad in [
            "",
            "w/c1.2",
            "w0/c1",
            "w0c1.2",
            "x0/c1.2",
            "w0/c1.2.3",
            "w0/c-1.2",
        ] {
            assert_eq!(parse_session_id(bad), None, "{bad}");
        }
    }
}
