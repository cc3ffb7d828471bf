//! Stream sources on a worker: MPEG-TS over UDP (unicast or multicast,
//! plain or RTP-wrapped), received through the ring.
//!
//! Follow one datagram: the source's UDP socket has a multishot receive
//! armed with buffer selection (the same provided-buffer ring as the
//! connections) → the completion names a buffer → the TS bytes (after the
//! RTP header, for `tsrtp://`) go into the source's [`TsDemuxer`] and the
//! buffer goes back → the demuxer's tracks and frames go to the stream's
//! [`Publisher`](super::publisher::Publisher), exactly as an RTMP
//! publisher's tags do (FLV tag bodies are made from the frames) → every
//! output, on every core.
//!
//! A source is *online* from its first track until it has sent nothing for
//! `[live] source_timeout`; then the stream goes into its reconnect grace
//! like a publisher that left, and ends after it. Bad datagrams, lost sync,
//! continuity gaps and unsupported streams are counted and logged (rate
//! limited) with the source's URL; nothing else is disturbed.
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use spate_packager::ts::{TsDemuxLimits, TsDemuxer, TsEvent};

use super::publisher::Publisher;
use super::{Token, Worker};
use crate::ingest::{self, SourceUrl, UdpSource};

/// Completion kind of a source's receive (slot = source index).
pub(super) const SRC_RECV: u8 = 14;

/// How long a source that could not be opened waits before trying again.
const REOPEN_EVERY: Duration = Duration::from_secs(5);
/// At most one log line per source per this long for its bad input.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One stream source owned by this worker.
#[derive(Debug)]
pub(super) struct Source {
    /// Stream name.
    name: String,
    url: UdpSource,
    /// Shown in logs.
    label: String,
    sock: Option<socket2::Socket>,
    armed: bool,
    reopen_at: Option<Instant>,
    demux: TsDemuxer,
    publisher: Option<Box<Publisher>>,
    last_data: Option<Instant>,
    /// Publish refused (name busy): try again after this.
    claim_retry_at: Option<Instant>,
    last_log: Option<Instant>,
    /// Demuxer counters already reported.
    reported: (u64, u64, u64),
    bad_datagrams: u64,
}

impl Source {
    fn new(name: String, url: UdpSource) -> Self {
        let label = format!("source {} ({})", name, SourceUrl::TsUdp(url.clone()));
        Self {
            name,
            url,
            label,
            sock: None,
            armed: false,
            reopen_at: None,
            demux: TsDemuxer::new(TsDemuxLimits::default()),
            publisher: None,
            last_data: None,
            claim_retry_at: None,
            last_log: None,
            reported: (0, 0, 0),
            bad_datagrams: 0,
        }
    }
}

/// The sources of `config` that worker `index` of `workers` runs: each
/// configured stream with a UDP source goes to one worker, by its name.
pub(super) fn sources_for(
    config: &crate::config::Config,
    index: usize,
    workers: usize,
) -> Vec<Source> {
    let mut out = Vec::new();
    for st in &config.streams {
        let Some(url) = st.source.as_deref() else {
            continue;
        };
        let Ok(SourceUrl::TsUdp(u)) = SourceUrl::parse(url) else {
            continue;
        };
        let h = st.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        if (h % workers.max(1) as u64) as usize == index {
            out.push(Source::new(st.name.clone(), u));
        }
    }
    out
}

impl Worker {
    /// Open (or reopen) the sources whose sockets are not open, and arm
    /// their receives.
    pub(super) fn open_sources(&mut self) {
        let now = self.now.get();
        let bgid = self.bufs.group();
        for i in 0..self.sources.len() {
            let s = &mut self.sources[i];
            if s.sock.is_none() && s.reopen_at.is_none_or(|t| now >= t) {
                match ingest::open_udp(&s.url) {
                    Ok(sock) => {
                        tracing::info!("{}: listening", s.label);
                        s.sock = Some(sock);
                        s.reopen_at = None;
                    }
                    Err(e) => {
                        self.counters.source_errors += 1;
                        tracing::warn!(
                            "{}: cannot open: {e}; retrying every {} s",
                            s.label,
                            REOPEN_EVERY.as_secs()
                        );
                        s.reopen_at = Some(now + REOPEN_EVERY);
                        continue;
                    }
                }
            }
            if let Some(sock) = &s.sock
                && !s.armed
            {
                s.armed = true;
                let e = opcode::RecvMulti::new(types::Fd(sock.as_raw_fd()), bgid)
                    .build()
                    .user_data(Token::new(SRC_RECV, i as u32, 0).0);
                self.push(e);
            }
        }
    }

    /// A datagram (or an error) for source `t.slot()`.
    pub(super) fn on_source_recv(&mut self, t: Token, res: i32, flags: u32) {
        let i = t.slot() as usize;
        let bid = super::ring::buffer_id(flags);
        let more = super::ring::more(flags);
        if i >= self.sources.len() {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        }
        if !more {
            self.sources[i].armed = false;
        }
        if res > 0 {
            let b = bid.expect("a receive with data names its buffer");
            let now = self.now.get();
            let s = &mut self.sources[i];
            let data = self.bufs.get(b, res as usize);
            match ingest::ts_payload(data, s.url.rtp) {
                Some(ts) => s.demux.push(ts),
                None => s.bad_datagrams += 1,
            }
            s.last_data = Some(now);
            self.bufs.recycle(b);
            self.drain_source(i);
        } else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            if res < 0 && -res != libc::ENOBUFS && -res != libc::ECANCELED {
                self.counters.source_errors += 1;
                tracing::warn!(
                    "{}: receive failed: {}",
                    self.sources[i].label,
                    std::io::Error::from_raw_os_error(-res)
                );
            }
        }
        if self.shutdown_at.is_none() {
            self.open_sources();
        }
    }

    /// Hand what the demuxer found to the stream's publisher, claiming the
    /// stream on the first track.
    fn drain_source(&mut self, i: usize) {
        let now = self.now.get();
        loop {
            let Some(ev) = self.sources[i].demux.poll_event() else {
                break;
            };
            if self.sources[i].publisher.is_none() {
                if matches!(ev, TsEvent::Frame(_) | TsEvent::Discontinuity { .. })
                    || self.sources[i].claim_retry_at.is_some_and(|t| now < t)
                {
                    // Frames before the stream is claimed carry nothing a
                    // viewer could start with; a refused claim waits.
                    continue;
                }
                let name = self.sources[i].name.clone();
                let label = self.sources[i].label.clone();
                match self.begin_publish(&name, &label) {
                    Ok(p) => {
                        self.sources[i].publisher = Some(p);
                        self.sources[i].claim_retry_at = None;
                    }
                    Err(_) => {
                        self.sources[i].claim_retry_at = Some(now + REOPEN_EVERY);
                        continue;
                    }
                }
            }
            let Some(mut p) = self.sources[i].publisher.take() else {
                continue;
            };
            match ev {
                TsEvent::Track { track, .. } => self.publish_source_track(&mut p, track),
                TsEvent::Frame(f) => self.publish_source_frame(&mut p, &f),
                _ => {}
            }
            self.sources[i].publisher = Some(p);
        }
        self.report_source_errors(i, false);
    }

    /// Log (rate limited) and count what went wrong in a source's input.
    fn report_source_errors(&mut self, i: usize, force: bool) {
        let now = self.now.get();
        let s = &mut self.sources[i];
        let st = s.demux.stats();
        let current = (
            st.resyncs + st.pes_errors + st.unsupported_streams,
            st.cc_errors,
            s.bad_datagrams,
        );
        if current == s.reported {
            return;
        }
        if !force && s.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            return;
        }
        let (errs, cc, bad) = (
            current.0.saturating_sub(s.reported.0),
            current.1.saturating_sub(s.reported.1),
            current.2.saturating_sub(s.reported.2),
        );
        s.reported = current;
        s.last_log = Some(now);
        let label = s.label.clone();
        self.counters.source_errors += errs + cc + bad;
        tracing::info!(
            "{label}: bad input since the last report: {errs} resyncs/PES errors/unsupported streams, {cc} continuity gaps, {bad} datagrams that were not RTP"
        );
    }

    /// Per tick: sources that went quiet go offline; closed ones reopen.
    pub(super) fn sources_tick(&mut self) {
        let now = self.now.get();
        let timeout = self.source_timeout;
        for i in 0..self.sources.len() {
            let quiet = self.sources[i]
                .last_data
                .is_some_and(|t| now >= t + timeout);
            if quiet && let Some(p) = self.sources[i].publisher.take() {
                self.report_source_errors(i, true);
                let label = self.sources[i].label.clone();
                tracing::info!("{label}: no data for {} s; offline", timeout.as_secs_f64());
                self.finish_publish(p, &label);
                // A fresh demuxer: the next sender starts from its PAT.
                let s = &mut self.sources[i];
                s.demux = TsDemuxer::new(TsDemuxLimits::default());
                s.reported = (0, 0, s.bad_datagrams);
                s.last_data = None;
            }
        }
        if self.shutdown_at.is_none() {
            self.open_sources();
        }
    }

    /// Shutdown: close the sockets (their receives end) and end publishing.
    pub(super) fn close_sources(&mut self) {
        for i in 0..self.sources.len() {
            if let Some(p) = self.sources[i].publisher.take() {
                let label = self.sources[i].label.clone();
                self.finish_publish(p, &label);
            }
            if let Some(sock) = &self.sources[i].sock {
                let e = opcode::AsyncCancel::new(Token::new(SRC_RECV, i as u32, 0).0)
                    .build()
                    .user_data(Token::new(super::CLOSE, 0, 0).0);
                let _ = sock;
                self.push(e);
            }
        }
    }
}
