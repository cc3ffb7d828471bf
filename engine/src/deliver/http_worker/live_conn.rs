//! Live connections on a worker: RTMP sessions (publishers and players) and
//! HTTP-FLV viewers.
//!
//! Follow one frame: an RTMP publisher's receive completes → the bytes go
//! into its [`rtmp::ServerSession`] → `Event::Media` hands over the FLV tag
//! body as `Bytes` (a slice of the reassembled message) → [`FlvStream`]
//! learns tracks and keyframes → the [`Rebaser`] maps the timestamp onto the
//! stream's monotonic timeline → [`Packaged::new`] writes the 11-byte FLV
//! tag header and the RTMP chunk headers once (the body is shared, never
//! copied) → the item goes into this core's [`LiveWindow`] and, as the same
//! `Arc`, into every other core's mesh queue → on each core, every viewer of
//! the stream that is not mid-send gets a `sendmsg` whose iovecs point into
//! the shared items (FLV: tag header, body, trailer; RTMP: chunk headers and
//! body slices) → when the kernel took it all, the next batch.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use io_uring::{opcode, types};
use spate_protocols::rtmp::{self, MediaKind};

use super::{LIVE_SEND, Phase, SOCKOPT, Token, Worker, WorkerMsg};
use crate::live::{LiveMsg, Next, PLAY_STREAM_ID, Packaged, StreamId, TagKind, ViewerCursor};

/// Most iovecs handed to one sendmsg (IOV_MAX is 1024).
const MAX_IOV: usize = 1000;
/// Most bytes queued into one sendmsg batch.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// Bytes on their way to the socket: iovecs into shared buffers that are
/// held here until the kernel has taken them.
#[derive(Debug)]
pub(super) struct Outbox {
    iov: Vec<libc::iovec>,
    hold: Vec<Bytes>,
    items: Vec<Arc<Packaged>>,
    msg: libc::msghdr,
    first: usize,
    bytes: usize,
    in_flight: bool,
}

impl Outbox {
    fn new() -> Self {
        Self {
            iov: Vec::new(),
            hold: Vec::new(),
            items: Vec::new(),
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
            first: 0,
            bytes: 0,
            in_flight: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.first >= self.iov.len()
    }

    fn full(&self) -> bool {
        self.iov.len() >= MAX_IOV - 200 || self.bytes >= MAX_BATCH_BYTES
    }

    fn push_slice(&mut self, ptr: *const u8, len: usize) {
        if len == 0 {
            return;
        }
        self.iov.push(libc::iovec {
            iov_base: ptr as *mut _,
            iov_len: len,
        });
        self.bytes += len;
    }

    fn push_bytes(&mut self, b: Bytes) {
        self.push_slice(b.as_ptr(), b.len());
        self.hold.push(b);
    }

    fn push_flv(&mut self, item: &Arc<Packaged>) {
        self.push_slice(item.flv_head.as_ptr(), 11);
        self.push_slice(item.body.as_ptr(), item.body.len());
        self.push_slice(item.flv_trailer.as_ptr(), 4);
        self.items.push(item.clone());
    }

    fn push_rtmp(&mut self, item: &Arc<Packaged>) {
        for p in &item.rtmp {
            self.push_slice(p.as_ptr(), p.len());
        }
        self.items.push(item.clone());
    }

    fn clear(&mut self) {
        self.iov.clear();
        self.hold.clear();
        self.items.clear();
        self.first = 0;
        self.bytes = 0;
    }

    /// The kernel took `n` bytes: drop what was sent, trim a partial iovec.
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.first < self.iov.len() {
            let v = &mut self.iov[self.first];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.first += 1;
            } else {
                // SAFETY: n < iov_len, so the new base stays inside the
                // buffer this iovec describes.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut _;
                v.iov_len -= n;
                n = 0;
            }
        }
        if self.is_empty() {
            self.clear();
        }
    }

    fn prepare(&mut self) -> *const libc::msghdr {
        let n = (self.iov.len() - self.first).min(MAX_IOV);
        self.msg.msg_iov = self.iov[self.first..].as_mut_ptr();
        self.msg.msg_iovlen = n;
        &self.msg
    }
}

/// What a progressive viewer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ViewerFormat {
    /// HTTP-FLV.
    Flv,
    /// RTMP play on (message stream id, chunk size).
    Rtmp(u32, u32),
    /// MPEG-TS over HTTP (`/<stream>.ts`).
    Ts,
}

/// A viewer of a live stream: where it is, and in which format.
#[derive(Debug)]
pub(super) struct LiveViewer {
    stream: StreamId,
    /// `None` until the prologue (head, metadata, sequence headers) is out.
    cursor: Option<ViewerCursor>,
    format: ViewerFormat,
    /// TS: the first item sent started with PAT/PMT (items before the first
    /// such item are skipped).
    ts_synced: bool,
    /// TS: the rendition it gets (`?video=` / `?audio=`; 0 = default).
    ts_rendition: usize,
    /// FLV/RTMP: timestamp of the item it joined at. Audio stamped before it
    /// (sources interleave audio up to hundreds of ms behind video) is not
    /// sent, so the viewer's media starts at its first keyframe, on every
    /// track: players and ffmpeg take the earliest timestamp as the start,
    /// and 30 fps video stamped in ms from an audio-led start made ffmpeg's
    /// frame-rate rounding see repeated frame times.
    start_ms: u32,
}

/// The live part of a connection.
#[derive(Debug)]
pub(super) struct LiveConn {
    pub(super) rtmp: Option<Box<rtmp::ServerSession>>,
    /// RTMP control/command bytes waiting to be sent, in order.
    txq: VecDeque<Bytes>,
    out: Outbox,
    viewer: Option<LiveViewer>,
    publisher: Option<Box<super::publisher::Publisher>>,
    /// Close once everything queued is sent.
    pub(super) close_when_sent: bool,
    /// Bytes received from the peer (sessions in the API).
    pub(super) bytes_in: u64,
    /// Bytes the kernel took for the peer.
    pub(super) bytes_out: u64,
}

/// What a live connection is attached to, for the API's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attachment<'a> {
    /// Publishing this stream.
    Publisher(&'a str),
    /// Watching this stream, in this format.
    Viewer(StreamId, ViewerFormat),
}

impl LiveConn {
    /// A fresh RTMP connection.
    pub(super) fn rtmp(now: Instant, limits: &rtmp::Limits) -> Box<Self> {
        Box::new(Self {
            rtmp: Some(Box::new(rtmp::ServerSession::new(now, limits.clone()))),
            txq: VecDeque::new(),
            out: Outbox::new(),
            viewer: None,
            publisher: None,
            close_when_sent: false,
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    /// The stream this connection publishes, if it does.
    pub(super) fn publisher_name(&self) -> Option<&str> {
        self.publisher.as_deref().map(|p| &*p.name)
    }

    /// The RTMP session, if this is an RTMP connection.
    pub(super) fn rtmp_session(&self) -> Option<&rtmp::ServerSession> {
        self.rtmp.as_deref()
    }

    /// Refuse the pending publish (onStatus error), close once sent.
    pub(super) fn refuse_publish(&mut self, code: &str, description: &str) {
        if let Some(s) = self.rtmp.as_deref_mut() {
            s.reject_publish(code, description);
        }
        self.close_when_sent = true;
    }

    /// Refuse the pending play (onStatus error), close once sent.
    pub(super) fn refuse_play(&mut self, code: &str, description: &str) {
        if let Some(s) = self.rtmp.as_deref_mut() {
            s.reject_play(code, description);
        }
        self.close_when_sent = true;
    }

    /// Publisher or viewer of which stream (`None`: an RTMP connection that
    /// has not started either yet).
    pub(super) fn attachment(&self) -> Option<Attachment<'_>> {
        if let Some(p) = &self.publisher {
            return Some(Attachment::Publisher(&p.name));
        }
        self.viewer
            .as_ref()
            .map(|v| Attachment::Viewer(v.stream, v.format))
    }

    /// Whether it came in on the RTMP listener.
    pub(super) fn is_rtmp(&self) -> bool {
        self.rtmp.is_some()
    }

    /// The publisher on this connection, if it publishes.
    pub(super) fn publisher(&self) -> Option<&super::publisher::Publisher> {
        self.publisher.as_deref()
    }

    /// Bytes received from the peer.
    pub(super) fn input(&mut self, now: Instant, data: &[u8]) {
        if let Some(s) = self.rtmp.as_deref_mut() {
            s.handle_input(now, data);
        }
        // An HTTP-FLV viewer has nothing more to say: its input is ignored.
    }
}

impl Worker {
    /// Queue a live message for every other worker (woken at the end of the
    /// loop turn) and apply it here.
    pub(super) fn broadcast(&mut self, make: impl Fn() -> LiveMsg) {
        for to in 0..self.mesh.workers() {
            if to == self.index {
                continue;
            }
            match self.mesh.push(to, WorkerMsg::Live(make())) {
                Ok(()) => self.wake_mask |= 1 << to,
                Err(_) => self.counters.mesh_drops += 1,
            }
        }
        let msg = make();
        self.on_live_msg(msg);
    }

    /// Wake the workers that were sent messages this turn.
    pub(super) fn flush_wakes(&mut self) {
        let mut mask = std::mem::take(&mut self.wake_mask);
        while mask != 0 {
            let to = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.mesh.wake(to);
        }
    }

    /// A live message from the mesh (or from this core's own publisher).
    pub(super) fn on_live_msg(&mut self, msg: LiveMsg) {
        let started = match &msg {
            LiveMsg::Start { id, name, .. } if !self.push_rules.is_empty() => {
                Some((*id, name.clone()))
            }
            _ => None,
        };
        let applied = self.live.apply(msg);
        if let Some((id, name)) = started {
            self.pushes_on_start(id, &name);
        }
        let Some((id, ended)) = applied else {
            return;
        };
        if ended {
            self.pushes_on_end(id);
        }
        let viewers = match self.live.streams.get(&id) {
            Some(s) => s.viewers.clone(),
            None => return,
        };
        if ended {
            for (slot, generation) in viewers {
                self.close(slot, generation);
            }
            self.live.remove(id);
            return;
        }
        // Viewers are pumped once at the end of the loop turn, so every item
        // that arrived in this turn (one publisher read often holds a video
        // frame and several audio frames; a mesh wake drains many) goes out
        // in one sendmsg per viewer, at no added latency.
        if !self.dirty_streams.contains(&id) {
            self.dirty_streams.push(id);
        }
    }

    /// Pump the viewers of every stream that got items this loop turn, and
    /// of every held-back stream whose `[live] viewer_coalesce_ms` is up. A
    /// stream pumped less than that long ago waits for the rest of it, so
    /// each viewer gets one send per interval, carrying every frame that
    /// arrived in it.
    pub(super) fn pump_dirty_streams(&mut self) {
        let now = self.now.get();
        if !self.deferred_streams.is_empty() {
            let dirty = &mut self.dirty_streams;
            self.deferred_streams.retain(|&(id, due)| {
                if now < due {
                    return true;
                }
                if !dirty.contains(&id) {
                    dirty.push(id);
                }
                false
            });
        }
        while let Some(id) = self.dirty_streams.pop() {
            let viewers = match self.live.streams.get_mut(&id) {
                Some(s) => {
                    if !s.coalesce.is_zero() {
                        if let Some(due) = s.last_pump.map(|t| t + s.coalesce)
                            && now < due
                        {
                            if !self.deferred_streams.iter().any(|&(d, _)| d == id) {
                                self.deferred_streams.push((id, due));
                            }
                            continue;
                        }
                        s.last_pump = Some(now);
                    }
                    s.viewers.clone()
                }
                None => continue,
            };
            for (slot, generation) in viewers {
                self.live_pump(slot, generation);
            }
            if !self.pushes.is_empty() {
                self.pushes_pump(id);
            }
        }
    }

    /// When the earliest held-back stream is due (the loop's wait ends then).
    pub(super) fn next_pump_due(&self) -> Option<Instant> {
        self.deferred_streams.iter().map(|&(_, due)| due).min()
    }

    /// Cap a viewer socket's send buffer (`[live] viewer_send_buffer`), so a
    /// viewer that stops reading is noticed within seconds, not after the
    /// kernel has absorbed megabytes.
    fn cap_send_buffer(&mut self, slot: u32, generation: u32) {
        if *self.viewer_sndbuf <= 0 {
            return;
        }
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let e = opcode::SetSockOpt::new(
            types::Fixed(c.fd),
            libc::SOL_SOCKET as u32,
            libc::SO_SNDBUF as u32,
            (&*self.viewer_sndbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
        .build()
        .user_data(Token::new(SOCKOPT, 0, 0).0);
        self.push(e);
    }

    /// Start an HTTP-FLV or HTTP-TS viewer on a connection whose request
    /// named a live stream.
    pub(super) fn start_progressive_viewer(
        &mut self,
        slot: u32,
        generation: u32,
        req: &spate_protocols::http::Request,
        name: &str,
        format: ViewerFormat,
    ) {
        let Some(&id) = self.live.by_name.get(name) else {
            return;
        };
        let mut ts_rendition = 0;
        if format == ViewerFormat::Ts
            && req.query.as_deref().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.starts_with("video=") || kv.starts_with("audio="))
            })
        {
            let chosen = match self
                .live
                .streams
                .get(&id)
                .and_then(|s| s.segmented.as_ref())
            {
                Some(view) => view.select_ts_rendition(req.query.as_deref()),
                None => Err("the stream's tracks are not known yet (no segment so far)".into()),
            };
            match chosen {
                Ok(r) => ts_rendition = r,
                Err(why) => {
                    self.respond_not_found(slot, generation, req, &format!("{name}.ts: {why}\n"));
                    return;
                }
            }
        }
        let head = if req.method == spate_protocols::http::Method::Head {
            None
        } else {
            Some(())
        };
        let http_head = Bytes::from_static(if format == ViewerFormat::Ts {
            b"HTTP/1.1 200 OK\r\nServer: spate\r\nContent-Type: video/mp2t\r\nCache-Control: no-cache, no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nServer: spate\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache, no-store\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        });
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let mut live = Box::new(LiveConn {
            rtmp: None,
            txq: VecDeque::new(),
            out: Outbox::new(),
            viewer: None,
            publisher: None,
            close_when_sent: head.is_none(),
            bytes_in: 0,
            bytes_out: 0,
        });
        live.txq.push_back(http_head);
        if head.is_some() {
            live.viewer = Some(LiveViewer {
                stream: id,
                cursor: None,
                format,
                ts_synced: false,
                ts_rendition,
                start_ms: 0,
            });
            if let Some(s) = self.live.streams.get_mut(&id) {
                s.viewers.push((slot, generation));
            }
        }
        c.live = Some(live);
        self.cap_send_buffer(slot, generation);
        self.live_pump(slot, generation);
    }

    /// 404 with a message saying why.
    pub(super) fn respond_not_found(
        &mut self,
        slot: u32,
        generation: u32,
        req: &spate_protocols::http::Request,
        message: &str,
    ) {
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        let mut head = spate_protocols::http::response::simple(
            404,
            message,
            &[],
            std::time::SystemTime::now(),
            keep_alive,
        );
        if req.method == spate_protocols::http::Method::Head {
            let cut = head
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(head.len(), |p| p + 4);
            head.truncate(cut);
        }
        let log = self.log_line(req);
        self.start_transfer(slot, generation, head, None, 0..0, 404, !keep_alive, log);
    }

    /// Act on an RTMP session's outputs.
    pub(super) fn live_drive(&mut self, slot: u32, generation: u32) {
        loop {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                return;
            };
            if c.phase != Phase::Open {
                return;
            }
            let Some(l) = c.live.as_deref_mut() else {
                return;
            };
            let Some(s) = l.rtmp.as_deref_mut() else {
                return;
            };
            let Some(out) = s.poll_output() else {
                break;
            };
            match out {
                rtmp::Output::Transmit(b) => l.txq.push_back(b),
                rtmp::Output::Close(err) => {
                    if let Some(e) = err {
                        self.counters.rtmp_errors += 1;
                        tracing::info!("w{}/c{slot}.{generation}: rtmp: {e}; closing", self.index);
                    }
                    l.close_when_sent = true;
                    break;
                }
                rtmp::Output::Event(ev) => self.on_rtmp_event(slot, generation, ev),
            }
        }
        self.live_pump(slot, generation);
    }

    fn on_rtmp_event(&mut self, slot: u32, generation: u32, ev: rtmp::Event) {
        match ev {
            rtmp::Event::Publish { app, name, .. } => {
                self.on_publish(slot, generation, &app, &name);
            }
            rtmp::Event::Unpublish { .. } => {
                self.end_publish(slot, generation);
                if let Some(l) = self.live_mut(slot, generation) {
                    l.close_when_sent = true;
                }
            }
            rtmp::Event::Play {
                app, name, query, ..
            } => self.on_rtmp_play(slot, generation, &app, &name, query.as_deref()),
            rtmp::Event::StopPlay { .. } => {
                self.stop_viewing(slot, generation);
                if let Some(l) = self.live_mut(slot, generation) {
                    l.close_when_sent = true;
                }
            }
            rtmp::Event::Metadata { payload, .. } => {
                self.on_publisher_tag(slot, generation, TagKind::Script, 0, payload);
            }
            rtmp::Event::Media {
                kind,
                timestamp_ms,
                payload,
            } => {
                let kind = match kind {
                    MediaKind::Audio => TagKind::Audio,
                    MediaKind::Video => TagKind::Video,
                };
                self.on_publisher_tag(slot, generation, kind, timestamp_ms, payload);
            }
            _ => {}
        }
    }

    fn live_mut(&mut self, slot: u32, generation: u32) -> Option<&mut LiveConn> {
        self.conns.get_mut(slot, generation)?.live.as_deref_mut()
    }

    pub(super) fn on_publish(&mut self, slot: u32, generation: u32, app: &str, key: &str) {
        if self.trigger_publish_rewrite(slot, generation, app, key) {
            return;
        }
        let now = self.now.get();
        let mut conn = self.conn_id(slot, generation);
        if let Some((peer, _)) = self.conn_peer(slot, generation) {
            conn = format!("{conn} from {peer}");
        }
        // Publish keys map the key to a stream name (after RTMP_PUSH_REWRITE
        // above, before PUSH_REWRITE / STREAM_PUSH here).
        let named = match self.publish_stream_name(app, key, &conn) {
            Ok(name) => match self.trigger_publish_checks(slot, generation, app, key, name) {
                Some(name) => Ok(name),
                None => return,
            },
            Err(e) => Err(e),
        };
        match named.and_then(|name| self.begin_publish(&name, &conn)) {
            Ok(publisher) => {
                if let Some(l) = self.live_mut(slot, generation) {
                    if let Some(s) = l.rtmp.as_deref_mut() {
                        s.accept_publish(now);
                    }
                    l.publisher = Some(publisher);
                }
            }
            Err(description) => {
                if let Some(l) = self.live_mut(slot, generation) {
                    if let Some(s) = l.rtmp.as_deref_mut() {
                        s.reject_publish("NetStream.Publish.BadName", &description);
                    }
                    l.close_when_sent = true;
                }
                self.live_drive(slot, generation);
            }
        }
    }

    fn on_publisher_tag(
        &mut self,
        slot: u32,
        generation: u32,
        kind: TagKind,
        ts_ms: u32,
        body: Bytes,
    ) {
        let Some(l) = self.live_mut(slot, generation) else {
            return;
        };
        let Some(mut p) = l.publisher.take() else {
            return;
        };
        self.publish_tag(&mut p, kind, ts_ms, body);
        if let Some(l) = self.live_mut(slot, generation) {
            l.publisher = Some(p);
        }
    }

    /// The publisher of this connection stopped (or the connection went):
    /// the stream waits for it for the reconnect grace.
    fn end_publish(&mut self, slot: u32, generation: u32) {
        let Some(l) = self.live_mut(slot, generation) else {
            return;
        };
        let Some(p) = l.publisher.take() else {
            return;
        };
        let who = self.conn_id(slot, generation);
        self.finish_publish(p, &who);
    }

    pub(super) fn on_play(&mut self, slot: u32, generation: u32, app: &str, key: &str) {
        let name = self.registry.rtmp_name(app, key);
        let Some(name) = self.trigger_play_gate(slot, generation, app, key, name) else {
            return;
        };
        let id = self.live.by_name.get(name.as_str()).copied();
        if id.is_none() && self.demand_rtmp_play(slot, generation, app, key, &name) {
            return;
        }
        let Some(l) = self.live_mut(slot, generation) else {
            return;
        };
        let Some(s) = l.rtmp.as_deref_mut() else {
            return;
        };
        let Some(id) = id else {
            s.reject_play(
                "NetStream.Play.StreamNotFound",
                &format!("{name} is not live"),
            );
            l.close_when_sent = true;
            let conn = self.conn_id(slot, generation);
            tracing::info!("{conn}: play of {name} refused: not live");
            self.live_drive(slot, generation);
            return;
        };
        s.accept_play();
        let stream_id = s.play_stream_id().unwrap_or(PLAY_STREAM_ID);
        let chunk = s.out_chunk_size();
        l.viewer = Some(LiveViewer {
            stream: id,
            cursor: None,
            format: ViewerFormat::Rtmp(stream_id, chunk),
            ts_synced: false,
            ts_rendition: 0,
            start_ms: 0,
        });
        if let Some(st) = self.live.streams.get_mut(&id) {
            st.viewers.push((slot, generation));
        }
        self.cap_send_buffer(slot, generation);
    }

    fn stop_viewing(&mut self, slot: u32, generation: u32) {
        let Some(l) = self.live_mut(slot, generation) else {
            return;
        };
        let Some(v) = l.viewer.take() else {
            return;
        };
        if let Some(st) = self.live.streams.get_mut(&v.stream) {
            st.viewers.retain(|&(s, g)| (s, g) != (slot, generation));
        }
    }

    /// The connection is closing: leave its stream, end its publish.
    pub(super) fn live_on_close(&mut self, slot: u32, generation: u32) {
        self.trigger_conn_closed(slot, generation);
        self.stop_viewing(slot, generation);
        self.end_publish(slot, generation);
    }

    /// Fill and submit the next send of a live connection: queued RTMP
    /// control bytes first, then (for a viewer) its prologue and the items
    /// from its cursor.
    pub(super) fn live_pump(&mut self, slot: u32, generation: u32) {
        let now = self.now.get();
        let send_timeout = self.send_timeout;
        let chunk_cfg = self.rtmp_chunk_size;
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if c.phase != Phase::Open {
            return;
        }
        let fd = c.fd;
        let Some(l) = c.live.as_deref_mut() else {
            return;
        };
        if l.out.in_flight {
            return;
        }
        while let Some(b) = l.txq.pop_front() {
            l.out.push_bytes(b);
        }
        let mut lost = false;
        if let Some(v) = l.viewer.as_mut()
            && let Some(st) = self.live.streams.get(&v.stream)
        {
            if v.cursor.is_none()
                && let Some(join) = st.window.join_point()
            {
                let ts = st.window.get(join).map_or(0, |i| i.value.ts_ms);
                match v.format {
                    ViewerFormat::Flv => l.out.push_bytes(st.head.flv_prologue(ts)),
                    ViewerFormat::Rtmp(sid, cs) => {
                        for b in st.head.rtmp_prologue(ts, sid, cs) {
                            l.out.push_bytes(b);
                        }
                    }
                    ViewerFormat::Ts => {}
                }
                v.cursor = Some(ViewerCursor::at(join));
                v.start_ms = ts;
            }
            if let Some(cursor) = v.cursor.as_mut() {
                while !l.out.full() {
                    match st.window.next_for(cursor, st.skip_lag_ms) {
                        Next::Send(seq) => {
                            let Some(item) = st.window.get(seq) else {
                                break;
                            };
                            match v.format {
                                // Frames of tracks FLV does not carry are
                                // for TS viewers only.
                                ViewerFormat::Flv | ViewerFormat::Rtmp(..) if !item.value.flv => {}
                                ViewerFormat::Flv | ViewerFormat::Rtmp(..)
                                    if item.value.kind == TagKind::Audio
                                        && item.value.ts_ms < v.start_ms => {}
                                ViewerFormat::Flv => l.out.push_flv(&item.value),
                                ViewerFormat::Ts => {
                                    if let Some((b, start)) = item.value.ts_of(v.ts_rendition) {
                                        v.ts_synced |= start;
                                        if v.ts_synced {
                                            l.out.push_bytes(b.clone());
                                        }
                                    }
                                }
                                ViewerFormat::Rtmp(PLAY_STREAM_ID, cs) if cs == chunk_cfg => {
                                    l.out.push_rtmp(&item.value)
                                }
                                ViewerFormat::Rtmp(sid, cs) => {
                                    let p = &item.value;
                                    let mut pieces = Vec::new();
                                    let h = rtmp::MessageHeader {
                                        csid: p.rtmp_csid(),
                                        timestamp: p.ts_ms,
                                        type_id: p.rtmp_type(),
                                        stream_id: sid,
                                    };
                                    rtmp::encode_message(&h, &p.body, cs, &mut pieces);
                                    for b in pieces {
                                        l.out.push_bytes(b);
                                    }
                                }
                            }
                            cursor.advance();
                        }
                        Next::Skipped(_) => {
                            self.counters.viewer_skips += 1;
                            // A TS viewer restarts at its rendition's next
                            // PAT/PMT (the skip lands on a keyframe of the
                            // first video track).
                            v.ts_synced = false;
                        }
                        Next::Wait => break,
                        Next::Lost => {
                            lost = true;
                            break;
                        }
                    }
                }
            }
        }
        if lost {
            self.counters.viewers_dropped += 1;
            tracing::info!(
                "{}: viewer fell out of the live window; dropped",
                self.conn_id(slot, generation)
            );
            self.close(slot, generation);
            return;
        }
        if l.out.is_empty() {
            c.deadline = None;
            if l.close_when_sent {
                self.linger_or_close(slot, generation);
            }
            return;
        }
        l.out.in_flight = true;
        let msg = l.out.prepare();
        c.ops += 1;
        self.counters.live_sends += 1;
        c.deadline = Some(now + send_timeout);
        let e = opcode::SendMsg::new(types::Fixed(fd), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(Token::new(LIVE_SEND, slot, generation).0);
        self.push(e);
    }

    /// A live send completed.
    pub(super) fn on_live_send(&mut self, t: Token, res: i32) {
        let (slot, generation) = (t.slot(), t.generation());
        if res > 0 {
            self.trigger_sent(slot, generation, res as usize);
        }
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        c.ops -= 1;
        if let Some(l) = c.live.as_deref_mut() {
            l.out.in_flight = false;
            if res > 0 {
                l.out.advance(res as usize);
                l.bytes_out += res as u64;
                self.counters.live_bytes_out += res as u64;
            }
        }
        if c.phase == Phase::Closing {
            self.maybe_free(slot, generation);
            return;
        }
        if res < 0 {
            if -res != libc::ECANCELED {
                tracing::debug!(
                    "{}: live send failed: {}",
                    self.conn_id(slot, generation),
                    std::io::Error::from_raw_os_error(-res)
                );
            }
            self.close(slot, generation);
            return;
        }
        c.deadline = None;
        self.live_pump(slot, generation);
    }

    /// Per tick: RTMP session timers, and streams whose publisher did not
    /// come back within the grace.
    pub(super) fn live_tick(&mut self) {
        let now = self.now.get();
        let all: Vec<(u32, u32)> = self.conns.slots().collect();
        let mut slots = Vec::new();
        for (s, g) in all {
            let due = self.conns.get_mut(s, g).is_some_and(|c| {
                c.phase == Phase::Open
                    && c.live.as_ref().is_some_and(|l| {
                        l.rtmp
                            .as_ref()
                            .and_then(|r| r.poll_timeout())
                            .is_some_and(|d| now >= d)
                    })
            });
            if due {
                slots.push((s, g));
            }
        }
        for (slot, generation) in slots {
            if let Some(s) = self
                .live_mut(slot, generation)
                .and_then(|l| l.rtmp.as_deref_mut())
            {
                s.handle_timeout(now);
            }
            self.live_drive(slot, generation);
        }
        let expired: Vec<(Arc<str>, StreamId)> = self
            .graced
            .iter()
            .filter(|(_, _, until)| now >= *until)
            .map(|(n, id, _)| (n.clone(), *id))
            .collect();
        self.graced.retain(|(_, _, until)| now < *until);
        for (name, id) in expired {
            if self.registry.expire(&name, id, now) {
                tracing::info!("stream {name} ended (no publisher within the grace)");
                self.broadcast(|| LiveMsg::End { id });
                self.trigger_stream_ended(&name);
            }
        }
    }
}
