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

#[derive(Debug)]
struct Queued {
    packet: Bytes,
    /// Send time, once known (PCR packets and those between two PCRs).
    at: Option<Instant>,
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
    queue: VecDeque<Queued>,
    /// Index in `queue` of the last packet with a known time (a PCR packet).
    timed_until: Option<usize>,
    anchor: Option<(u64, Instant)>,
    last_pcr: Option<(u64, Instant, usize)>,
    in_flight: Vec<Option<Box<Datagram>>>,
    rtp_seq: u16,
    /// Counters: datagrams sent, re-anchors, packets dropped, send errors.
    pub(super) sent: u64,
    pub(super) reanchors: u64,
    pub(super) dropped: u64,
    pub(super) send_errors: u64,
    stopped: bool,
}

impl Push {
    fn new(stream: StreamId, name: &str, url: &str, target: PushTarget) -> Self {
        Self {
            stream,
            label: format!("push of {name} to {url}"),
            target,
            sock: None,
            cursor: None,
            synced: false,
            queue: VecDeque::new(),
            timed_until: None,
            anchor: None,
            last_pcr: None,
            in_flight: Vec::new(),
            rtp_seq: 0,
            sent: 0,
            reanchors: 0,
            dropped: 0,
            send_errors: 0,
            stopped: false,
        }
    }

    /// Queue a chunk of TS packets, timing PCR packets and the packets
    /// since the previous PCR.
    fn enqueue(&mut self, ts: &Bytes, now: Instant) {
        let mut off = 0;
        while off + 188 <= ts.len() {
            let packet = ts.slice(off..off + 188);
            off += 188;
            let pcr = packet_pcr(&packet);
            self.queue.push_back(Queued { packet, at: None });
            let idx = self.queue.len() - 1;
            let Some(pcr) = pcr else { continue };
            let at = match (self.anchor, self.last_pcr) {
                (Some((p0, t0)), Some((last, last_at, _)))
                    if pcr > last && pcr - last < PCR_HZ as u64 =>
                {
                    let _ = last_at;
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
            // Spread the packets since the previous PCR packet evenly.
            let (from, from_at) = match self.last_pcr {
                Some((_, t, i)) if i < idx => (i, t),
                _ => (idx, at),
            };
            let span = (idx - from).max(1) as f64;
            for k in from + 1..=idx {
                let frac = (k - from) as f64 / span;
                let t = from_at + at.saturating_duration_since(from_at).mul_f64(frac);
                self.queue[k].at = Some(t);
            }
            // Packets before the first PCR go with it.
            for q in self.queue.iter_mut().take(idx) {
                if q.at.is_none() {
                    q.at = Some(at);
                }
            }
            self.queue[idx].at = Some(at);
            self.last_pcr = Some((pcr, at, idx));
            self.timed_until = Some(idx);
        }
        if self.queue.len() > MAX_QUEUED {
            let n = self.queue.len() - MAX_QUEUED / 2;
            self.queue.drain(..n);
            self.dropped += n as u64;
            self.anchor = None;
            self.last_pcr = None;
            self.timed_until = None;
        }
    }

    /// When the next datagram is due.
    fn next_due(&self) -> Option<Instant> {
        if self.in_flight.iter().flatten().count() >= MAX_IN_FLIGHT {
            return None;
        }
        let timed = self.timed_until?;
        if timed + 1 < PACKETS_PER_DATAGRAM.min(self.queue.len()) {
            return None;
        }
        self.queue.front().and_then(|q| q.at)
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
                push_matches(pattern, name) && {
                    let h = format!("{name} {url}")
                        .bytes()
                        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                        });
                    (h % workers as u64) as usize == self.index
                }
            })
            .map(|(_, url, t)| (url.clone(), t.clone()))
            .collect();
        for (url, target) in rules {
            if self
                .pushes
                .iter()
                .any(|p| p.stream == id && p.target == target && !p.stopped)
            {
                continue;
            }
            let mut p = Push::new(id, name, &url, target);
            match p.target.open() {
                Ok(s) => {
                    tracing::info!("{}: started", p.label);
                    p.sock = Some(s);
                }
                Err(e) => {
                    self.counters.push_errors += 1;
                    tracing::warn!("{}: cannot open: {e}", p.label);
                    continue;
                }
            }
            self.pushes.push(p);
        }
    }

    /// A stream ended: stop its pushes (they go once their sends are back).
    pub(super) fn pushes_on_end(&mut self, id: StreamId) {
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
            p.queue.clear();
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
                        p.queue.clear();
                        p.anchor = None;
                        p.last_pcr = None;
                        p.timed_until = None;
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
                    // Far behind (the loop was starved): re-anchor rather
                    // than burst.
                    p.reanchors += 1;
                    let shift = now.duration_since(due);
                    for q in p.queue.iter_mut() {
                        if let Some(t) = q.at.as_mut() {
                            *t += shift;
                        }
                    }
                    if let Some((pcr, t)) = p.anchor {
                        p.anchor = Some((pcr, t + shift));
                    }
                    if let Some((pcr, t, i)) = p.last_pcr {
                        p.last_pcr = Some((pcr, t + shift, i));
                    }
                    continue;
                }
                let n = PACKETS_PER_DATAGRAM
                    .min(p.queue.len())
                    .min(p.timed_until.map_or(0, |t| t + 1));
                let mut d = Box::new(Datagram {
                    rtp_head: [0; 12],
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; PACKETS_PER_DATAGRAM + 1],
                    // SAFETY: msghdr is plain old data; all-zero is valid.
                    msg: unsafe { std::mem::zeroed() },
                    hold: Vec::with_capacity(n),
                });
                for q in p.queue.drain(..n) {
                    d.hold.push(q.packet);
                }
                p.timed_until = p.timed_until.and_then(|t| t.checked_sub(n));
                if let Some((pcr, t, i)) = p.last_pcr {
                    p.last_pcr = i.checked_sub(n).map(|i| (pcr, t, i));
                }
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
        if let Some(s) = p.in_flight.get_mut(slot) {
            *s = None;
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
        let times: Vec<Instant> = p.queue.iter().map(|q| q.at.unwrap()).collect();
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
