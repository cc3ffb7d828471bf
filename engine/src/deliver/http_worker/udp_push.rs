//! Pushing live streams out as MPEG-TS over UDP (multicast or unicast,
//! plain or RTP-wrapped), paced by the PCR against the real-time clock, as a
//! multicast source must be: no bursts of a whole GOP, datagrams spread the
//! way the stream's own clock says.
//!
//! Follow one packet: a `[[push]]` rule names a stream (`live+` = every
//! wildcard of `live`) and a target. Each core runs the pushes whose (stream,
//! target) hashes to it, from its own replica of the stream: a push is a
//! cursor into the stream's live window, like a progressive TS viewer. New
//! items' TS packets (the same bytes the HLS segments are made of) are
//! queued as 188-byte slices (no copy) → every packet carrying a PCR gets
//! its send time, `anchor_time + (pcr - anchor_pcr) / 27 MHz`, and packets
//! between two PCRs are spread evenly between their times → seven packets
//! make a datagram (RTP: with a 12-byte header, payload type 33), sent by a
//! `sendmsg` through the ring with iovecs into the shared packets at its
//! first packet's time → the worker's wait for completions
//! (`io_uring_enter` with a timeout) ends at the earliest due datagram of
//! all its pushes.
//!
//! Limits: at most `MAX_QUEUED` packets wait per push (a publisher sending
//! faster than real time, or a PCR that stops, drops the oldest and
//! re-anchors, counted); a PCR jump of more than a second, or falling more
//! than 500 ms behind, re-anchors (counted).
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{opcode, types};
use socket2::Socket;

use super::{Token, Worker};
use crate::deliver::push::{PushTarget, push_matches};
use crate::live::{Next, StreamId, ViewerCursor};
use spate_packager::ts::packet_pcr;

/// Completion kinds.
pub(super) const PUSH_SEND: u8 = 15;

const PACKETS_PER_DATAGRAM: usize = 7;
const MAX_QUEUED: usize = 40_000;
const MAX_IN_FLIGHT: usize = 64;
/// How far ahead of the first PCR's send time a push starts (lets the
/// next PCR arrive so the first packets can be spread).
const START_DELAY: Duration = Duration::from_millis(100);
const PCR_HZ: f64 = 27_000_000.0;

/// TS bytes of one item, consumed 188 bytes at a time from `start`.
#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// Packets of `bytes` already sent.
    start: usize,
}

impl Chunk {
    fn packets(&self) -> usize {
        self.bytes.len() / 188 - self.start
    }
}

/// A datagram in flight: the iovecs point into `hold`.
#[derive(Debug)]
struct Datagram {
    rtp_head: [u8; 12],
    iov: [libc::iovec; PACKETS_PER_DATAGRAM + 1],
    msg: libc::msghdr,
    hold: Vec<Bytes>,
}

/// One running push.
#[derive(Debug)]
pub(super) struct Push {
    stream: StreamId,
    label: String,
    target: PushTarget,
    sock: Option<Socket>,
    cursor: Option<ViewerCursor>,
    synced: bool,
    /// Queued TS, whole items (no per-packet bookkeeping).
    queue: VecDeque<Chunk>,
    /// Packet numbers (counted since the push started) of the first queued
    /// packet and of the one after the last.
    head: u64,
    tail: u64,
    /// Timing points: (packet number of a PCR packet, its send time),
    /// oldest first; trimmed so that the second is past `head`.
    pcrs: VecDeque<(u64, Instant)>,
    /// (PCR, send time) that PCR times are computed from.
    anchor: Option<(u64, Instant)>,
    /// The last PCR value seen (jumps re-anchor).
    last_pcr: Option<u64>,
    in_flight: Vec<Option<Box<Datagram>>>,
    in_flight_count: usize,
    /// Datagram boxes to reuse (boxed: a datagram in flight must not move,
    /// the kernel reads its msghdr and iovecs).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Datagram>>,
    rtp_seq: u16,
    /// Counters: datagrams sent, re-anchors, packets dropped, send errors.
    pub(super) sent: u64,
    pub(super) reanchors: u64,
    pub(super) dropped: u64,
    pub(super) send_errors: u64,
    stopped: bool,
    /// Stream name, target URL as used and as configured (for triggers).
    name: String,
    url: String,
    configured: String,
}

impl Push {
    /// (stream, target URL) of a push that is running.
    pub(super) fn running(&self) -> Option<(StreamId, &str)> {
        (!self.stopped).then_some((self.stream, self.url.as_str()))
    }

    fn new(stream: StreamId, name: &str, url: &str, target: PushTarget) -> Self {
        Self {
            stream,
            label: format!("push of {name} to {url}"),
            target,
            sock: None,
            cursor: None,
            synced: false,
            queue: VecDeque::new(),
            head: 0,
            tail: 0,
            pcrs: VecDeque::new(),
            anchor: None,
            last_pcr: None,
            in_flight: Vec::new(),
            in_flight_count: 0,
            spare: Vec::new(),
            rtp_seq: 0,
            sent: 0,
            reanchors: 0,
            dropped: 0,
            send_errors: 0,
            stopped: false,
            name: name.to_string(),
            url: url.to_string(),
            configured: url.to_string(),
        }
    }

    /// Forget everything queued and the clock (start again at a keyframe).
    fn reset(&mut self) {
        self.queue.clear();
        self.head = self.tail;
        self.pcrs.clear();
        self.anchor = None;
        self.last_pcr = None;
    }

    /// Queue an item's TS packets; each PCR packet becomes a timing point.
    fn enqueue(&mut self, ts: &Bytes, now: Instant) {
        let n = ts.len() / 188;
        if n == 0 {
            return;
        }
        for i in 0..n {
            let Some(pcr) = packet_pcr(&ts[i * 188..(i + 1) * 188]) else {
                continue;
            };
            let at = match (self.anchor, self.last_pcr) {
                (Some((p0, t0)), Some(last)) if pcr > last && pcr - last < PCR_HZ as u64 => {
                    t0 + Duration::from_secs_f64((pcr - p0) as f64 / PCR_HZ)
                }
                _ => {
                    // First PCR, or a jump: anchor here.
                    if self.anchor.is_some() {
                        self.reanchors += 1;
                    }
                    let t0 = now + START_DELAY;
                    self.anchor = Some((pcr, t0));
                    t0
                }
            };
            self.last_pcr = Some(pcr);
            self.pcrs.push_back((self.tail + i as u64, at));
        }
        self.queue.push_back(Chunk {
            bytes: ts.clone(),
            start: 0,
        });
        self.tail += n as u64;
        if self.tail - self.head > MAX_QUEUED as u64 {
            let dropped = self.tail - self.head;
            self.reset();
            self.dropped += dropped;
        }
    }

    /// Packets that may go in the next datagram (those up to the newest
    /// timing point, at most a datagram's worth).
    fn timed_packets(&self) -> u64 {
        let Some(&(last, _)) = self.pcrs.back() else {
            return 0;
        };
        (last + 1)
            .saturating_sub(self.head)
            .min(PACKETS_PER_DATAGRAM as u64)
    }

    /// Send time of packet `g` (>= head): between the timing points around
    /// it, evenly; packets before the first point go with it.
    fn time_of(&self, g: u64) -> Option<Instant> {
        let &(g0, t0) = self.pcrs.front()?;
        if g <= g0 {
            return Some(t0);
        }
        let &(g1, t1) = self.pcrs.get(1)?;
        let frac = (g - g0) as f64 / (g1 - g0).max(1) as f64;
        Some(t0 + t1.saturating_duration_since(t0).mul_f64(frac.min(1.0)))
    }

    /// When the next datagram is due.
    fn next_due(&self) -> Option<Instant> {
        if self.in_flight_count >= MAX_IN_FLIGHT || self.head == self.tail {
            return None;
        }
        let want = (self.tail - self.head).min(PACKETS_PER_DATAGRAM as u64);
        if self.timed_packets() < want {
            return None;
        }
        self.time_of(self.head)
    }

    /// Take the next `n` packets as iovec pieces into `hold`.
    fn take(&mut self, n: u64, hold: &mut Vec<Bytes>) {
        let mut left = n as usize;
        while left > 0 {
            let Some(c) = self.queue.front_mut() else {
                break;
            };
            let k = c.packets().min(left);
            hold.push(c.bytes.slice(c.start * 188..(c.start + k) * 188));
            c.start += k;
            left -= k;
            if c.packets() == 0 {
                self.queue.pop_front();
            }
        }
        self.head += n - left as u64;
        while self.pcrs.len() >= 2 && self.pcrs[1].0 <= self.head {
            self.pcrs.pop_front();
        }
    }

    /// Move every time by `shift` (the loop fell far behind).
    fn delay(&mut self, shift: Duration) {
        for p in self.pcrs.iter_mut() {
            p.1 += shift;
        }
        if let Some((pcr, t)) = self.anchor {
            self.anchor = Some((pcr, t + shift));
        }
    }
}

impl Worker {
    /// A stream started on this core's replica: start the pushes that cover
    /// it and belong to this core.
    pub(super) fn pushes_on_start(&mut self, id: StreamId, name: &str) {
        let workers = self.mesh.workers().max(1);
        let rules: Vec<(String, PushTarget)> = self
            .push_rules
            .iter()
            .filter(|(pattern, url, _)| {
                push_matches(pattern, name)
                    && super::sources::owner_of(&format!("{name} {url}"), workers) == self.index
            })
            .map(|(_, url, t)| (url.clone(), t.clone()))
            .collect();
        for (url, target) in rules {
            // Running already (a reload re-offers every rule; the target
            // may differ from the rule's if PUSH_OUT_START rewrote it).
            if self
                .pushes
                .iter()
                .any(|p| p.stream == id && p.configured == url && !p.stopped)
            {
                continue;
            }
            // PUSH_OUT_START may hold the push back (blocking) and change
            // its target: then `push_start` is called with its answer.
            if self.trigger_push_out_start(id, name, &url) {
                self.push_start(id, name, &url, &url, target);
            }
        }
    }

    /// A reload: take `config`'s `[[push]]` rules; pushes no rule covers
    /// any more stop, and new rules start for the streams live now.
    pub(super) fn reload_push_rules(&mut self, config: &crate::config::Config) {
        self.push_rules = config
            .pushes
            .iter()
            .filter_map(|p| {
                PushTarget::parse(&p.target)
                    .ok()
                    .map(|t| (p.stream.clone(), p.target.clone(), t))
            })
            .collect();
        for i in 0..self.pushes.len() {
            let p = &self.pushes[i];
            if p.stopped {
                continue;
            }
            let name = self.live.streams.get(&p.stream).map(|s| s.name.clone());
            let covered = name.is_some_and(|name| {
                self.push_rules
                    .iter()
                    .any(|(pattern, url, _)| *url == p.configured && push_matches(pattern, &name))
            });
            if !covered {
                let p = &mut self.pushes[i];
                tracing::info!("{}: stopped (its rule was removed by a reload)", p.label);
                p.stopped = true;
                p.reset();
            }
        }
        self.compact_pushes();
        let live: Vec<(StreamId, std::sync::Arc<str>)> = self
            .live
            .streams
            .iter()
            .map(|(&id, s)| (id, s.name.clone()))
            .collect();
        for (id, name) in live {
            self.pushes_on_start(id, &name);
        }
    }

    /// Start one push of stream `id` to `target` (unless it runs already).
    pub(super) fn push_start(
        &mut self,
        id: StreamId,
        name: &str,
        url: &str,
        configured: &str,
        target: PushTarget,
    ) {
        if self
            .pushes
            .iter()
            .any(|p| p.stream == id && p.target == target && !p.stopped)
        {
            return;
        }
        let mut p = Push::new(id, name, url, target);
        p.configured = configured.to_string();
        match p.target.open() {
            Ok(s) => {
                tracing::info!("{}: started", p.label);
                p.sock = Some(s);
            }
            Err(e) => {
                self.counters.push_errors += 1;
                tracing::warn!("{}: cannot open: {e}", p.label);
                return;
            }
        }
        self.pushes.push(p);
    }

    /// A stream ended: stop its pushes (they go once their sends are back).
    pub(super) fn pushes_on_end(&mut self, id: StreamId) {
        let ended: Vec<(String, String, String, u64)> = self
            .pushes
            .iter()
            .filter(|p| p.stream == id && !p.stopped)
            .map(|p| (p.name.clone(), p.configured.clone(), p.url.clone(), p.sent))
            .collect();
        for (name, configured, url, sent) in ended {
            self.trigger_push_ended(&name, &configured, &url, sent);
        }
        for p in self.pushes.iter_mut().filter(|p| p.stream == id) {
            if !p.stopped {
                tracing::info!(
                    "{}: stopped ({} datagrams, {} re-anchors, {} packets dropped)",
                    p.label,
                    p.sent,
                    p.reanchors,
                    p.dropped
                );
            }
            p.stopped = true;
            p.reset();
        }
        self.compact_pushes();
    }

    /// Drop stopped pushes. Sends in flight name their push by index, so
    /// entries move only when no push has a send in flight.
    fn compact_pushes(&mut self) {
        if self.pushes.iter().any(|p| p.stopped)
            && self
                .pushes
                .iter()
                .all(|p| p.in_flight.iter().all(Option::is_none))
        {
            self.pushes.retain(|p| !p.stopped);
        }
    }

    /// New items of stream `id`: queue their TS packets on its pushes.
    pub(super) fn pushes_pump(&mut self, id: StreamId) {
        let now = self.now.get();
        let Some(st) = self.live.streams.get(&id) else {
            return;
        };
        for p in self
            .pushes
            .iter_mut()
            .filter(|p| p.stream == id && !p.stopped)
        {
            if p.cursor.is_none() {
                match st.window.join_point() {
                    Some(j) => p.cursor = Some(ViewerCursor::at(j)),
                    None => continue,
                }
            }
            let mut cursor = p.cursor.take().expect("set above");
            let mut lost = false;
            loop {
                match st.window.next_for(&mut cursor, i64::MAX) {
                    Next::Send(seq) => {
                        if let Some(item) = st.window.get(seq) {
                            p.synced |= item.value.ts_start;
                            if p.synced
                                && let Some(ts) = &item.value.ts
                            {
                                p.enqueue(ts, now);
                            }
                        }
                        cursor.advance();
                    }
                    Next::Skipped(_) => {}
                    Next::Wait => break,
                    Next::Lost => {
                        // Fell out of the window (mesh gap): start again at
                        // the newest keyframe.
                        lost = true;
                        p.synced = false;
                        p.reset();
                        p.reanchors += 1;
                        break;
                    }
                }
            }
            if !lost {
                p.cursor = Some(cursor);
            }
        }
        self.pushes_send_due();
    }

    /// Send every datagram that is due, then arm the timer for the next.
    pub(super) fn pushes_send_due(&mut self) {
        let now = Instant::now();
        let mut entries = Vec::new();
        for (pi, p) in self.pushes.iter_mut().enumerate() {
            let Some(sock) = p.sock.as_ref() else {
                continue;
            };
            let fd = sock.as_raw_fd();
            while let Some(due) = p.next_due() {
                if due > now {
                    break;
                }
                if now.duration_since(due) > Duration::from_millis(500) {
                    // Far behind (the loop was starved): shift the clock
                    // rather than burst.
                    p.reanchors += 1;
                    p.delay(now.duration_since(due));
                    continue;
                }
                let n = p.timed_packets();
                let mut d = p.spare.pop().unwrap_or_else(|| {
                    Box::new(Datagram {
                        rtp_head: [0; 12],
                        iov: [libc::iovec {
                            iov_base: std::ptr::null_mut(),
                            iov_len: 0,
                        }; PACKETS_PER_DATAGRAM + 1],
                        // SAFETY: msghdr is plain old data; all-zero is valid.
                        msg: unsafe { std::mem::zeroed() },
                        hold: Vec::with_capacity(3),
                    })
                });
                d.hold.clear();
                p.take(n, &mut d.hold);
                let mut k = 0;
                if p.target.rtp {
                    let ts90 = p.anchor.map_or(0, |(pcr, t0)| {
                        (pcr / 300).wrapping_add(
                            (now.saturating_duration_since(t0).as_micros() * 9 / 100) as u64,
                        )
                    }) as u32;
                    d.rtp_head[0] = 0x80;
                    d.rtp_head[1] = 33;
                    d.rtp_head[2..4].copy_from_slice(&p.rtp_seq.to_be_bytes());
                    d.rtp_head[4..8].copy_from_slice(&ts90.to_be_bytes());
                    d.rtp_head[8..12].copy_from_slice(&0x5350_4154u32.to_be_bytes());
                    p.rtp_seq = p.rtp_seq.wrapping_add(1);
                    d.iov[0] = libc::iovec {
                        iov_base: d.rtp_head.as_mut_ptr().cast(),
                        iov_len: 12,
                    };
                    k = 1;
                }
                for b in &d.hold {
                    d.iov[k] = libc::iovec {
                        iov_base: b.as_ptr() as *mut _,
                        iov_len: b.len(),
                    };
                    k += 1;
                }
                d.msg.msg_iov = d.iov.as_mut_ptr();
                d.msg.msg_iovlen = k;
                let slot = match p.in_flight.iter().position(Option::is_none) {
                    Some(s) => s,
                    None => {
                        p.in_flight.push(None);
                        p.in_flight.len() - 1
                    }
                };
                let e = opcode::SendMsg::new(types::Fd(fd), &d.msg)
                    .build()
                    .user_data(Token::new(PUSH_SEND, pi as u32, slot as u32).0);
                p.in_flight[slot] = Some(d);
                p.in_flight_count += 1;
                p.sent += 1;
                entries.push(e);
            }
        }
        for e in entries {
            self.push(e);
        }
    }

    /// When the loop must wake next for a paced send.
    pub(super) fn next_push_due(&self) -> Option<Instant> {
        self.pushes.iter().filter_map(Push::next_due).min()
    }

    /// A push datagram's send completed.
    pub(super) fn on_push_send(&mut self, t: Token, res: i32) {
        let (pi, slot) = (t.slot() as usize, t.generation() as usize);
        let Some(p) = self.pushes.get_mut(pi) else {
            return;
        };
        if let Some(mut d) = p.in_flight.get_mut(slot).and_then(Option::take) {
            p.in_flight_count -= 1;
            d.hold.clear();
            if p.spare.len() < MAX_IN_FLIGHT {
                p.spare.push(d);
            }
        }
        if res < 0 {
            p.send_errors += 1;
            self.counters.push_errors += 1;
            if p.send_errors.is_power_of_two() {
                tracing::info!(
                    "{}: send failed ({} so far): {}",
                    p.label,
                    p.send_errors,
                    std::io::Error::from_raw_os_error(-res)
                );
            }
        }
        self.compact_pushes();
        self.pushes_send_due();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_between_pcrs_are_spread_evenly() {
        let mut p = Push::new(
            1,
            "s",
            "u",
            PushTarget::parse("tsudp://127.0.0.1:9").unwrap(),
        );
        let pcr_packet = |pcr: u64| {
            let mut b = vec![0xFFu8; 188];
            b[..6].copy_from_slice(&[0x47, 0x01, 0x00, 0x30, 7, 0x10]);
            let base = pcr / 300;
            let ext = pcr % 300;
            b[6] = (base >> 25) as u8;
            b[7] = (base >> 17) as u8;
            b[8] = (base >> 9) as u8;
            b[9] = (base >> 1) as u8;
            b[10] = ((base & 1) << 7) as u8 | 0x7E | (ext >> 8) as u8;
            b[11] = ext as u8;
            b
        };
        let plain = {
            let mut b = vec![0u8; 188];
            b[0] = 0x47;
            b[3] = 0x10;
            b
        };
        let now = Instant::now();
        let mut chunk = pcr_packet(27_000_000);
        for _ in 0..9 {
            chunk.extend_from_slice(&plain);
        }
        chunk.extend_from_slice(&pcr_packet(27_000_000 + 270_000)); // +10 ms
        p.enqueue(&Bytes::from(chunk), now);
        let times: Vec<Instant> = (0..11).map(|g| p.time_of(g).unwrap()).collect();
        assert_eq!(p.timed_packets(), 7);
        let mut hold = Vec::new();
        p.take(7, &mut hold);
        assert_eq!(hold.iter().map(|b| b.len()).sum::<usize>(), 7 * 188);
        assert_eq!(p.head, 7);
        assert_eq!(p.timed_packets(), 4);
        assert_eq!(times.len(), 11);
        let first = times[0];
        assert_eq!(times[10] - first, Duration::from_millis(10));
        for (k, t) in times.iter().enumerate() {
            let want = Duration::from_micros(1000 * k as u64);
            let got = *t - first;
            assert!(
                got.as_micros().abs_diff(want.as_micros()) <= 1,
                "packet {k}: {got:?} want {want:?}"
            );
        }
        assert_eq!(packet_pcr(&pcr_packet(123_456_789)), Some(123_456_789));
    }
}
