//! Stream sources on a worker: MPEG-TS over UDP (unicast or multicast,
//! plain or RTP-wrapped), received through the ring; and the part every TS
//! source shares ([`TsIngest`]: demuxer → publisher, online/offline, bad
//! input reports), used by `ts-exec:` sources (`exec_sources.rs`) and
//! `http://` pull sources (`http_sources.rs`) too.
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

/// One UDP stream source owned by this worker.
#[derive(Debug)]
pub(super) struct Source {
    url: UdpSource,
    sock: Option<socket2::Socket>,
    armed: bool,
    reopen_at: Option<Instant>,
    /// Removed by a reload: closed, never reopened. The slot stays (its
    /// index names it in completions still in flight).
    retired: bool,
    pub(super) ing: TsIngest,
}

impl Source {
    fn new(name: String, url: UdpSource) -> Self {
        let label = format!("source {} ({})", name, SourceUrl::TsUdp(url.clone()));
        Self {
            url,
            sock: None,
            armed: false,
            reopen_at: None,
            retired: false,
            ing: TsIngest::new(name, label),
        }
    }
}

/// What every MPEG-TS source has, whatever brings its bytes: the demuxer,
/// the stream's publisher while it is online, and what was reported.
#[derive(Debug)]
pub(super) struct TsIngest {
    /// Stream name.
    pub(super) name: String,
    /// Shown in logs.
    pub(super) label: String,
    pub(super) demux: TsDemuxer,
    pub(super) publisher: Option<Box<Publisher>>,
    pub(super) last_data: Option<Instant>,
    /// Publish refused (name busy): try again after this.
    claim_retry_at: Option<Instant>,
    last_log: Option<Instant>,
    /// Counters already reported: demuxer errors, continuity gaps, bad
    /// datagrams, bytes skipped.
    reported: (u64, u64, u64, u64),
    /// Input units that were not TS at all (UDP: non-RTP datagrams on an RTP
    /// source).
    pub(super) bad_datagrams: u64,
}

impl TsIngest {
    pub(super) fn new(name: String, label: String) -> Self {
        Self {
            name,
            label,
            demux: TsDemuxer::new(TsDemuxLimits::default()),
            publisher: None,
            last_data: None,
            claim_retry_at: None,
            last_log: None,
            reported: (0, 0, 0, 0),
            bad_datagrams: 0,
        }
    }
}

/// Which source a [`TsIngest`] belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum IngestRef {
    /// `Worker::sources[i]`.
    Udp(usize),
    /// `Worker::exec.sources[i]`.
    Exec(usize),
    /// `Worker::http[i]`.
    Http(usize),
}

/// The sources of `config` that worker `index` of `workers` runs: each
/// configured stream with a UDP source goes to one worker, by its name
/// ([`owner_of`]).
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
        if owner_of(&st.name, workers) == index {
            out.push(Source::new(st.name.clone(), u));
        }
    }
    out
}

/// The worker that runs the source of stream `name` (a hash of the name).
pub(super) fn owner_of(name: &str, workers: usize) -> usize {
    (super::fnv1a(name.as_bytes()) % workers.max(1) as u64) as usize
}

impl Worker {
    /// Open (or reopen) the sources whose sockets are not open, and arm
    /// their receives.
    pub(super) fn open_sources(&mut self) {
        let now = self.now.get();
        let bgid = self.bufs.group();
        for i in 0..self.sources.len() {
            let s = &mut self.sources[i];
            if s.retired {
                continue;
            }
            if s.sock.is_none() && s.reopen_at.is_none_or(|t| now >= t) {
                match ingest::open_udp(&s.url) {
                    Ok(sock) => {
                        tracing::info!("{}: listening", s.ing.label);
                        s.sock = Some(sock);
                        s.reopen_at = None;
                    }
                    Err(e) => {
                        self.counters.source_errors += 1;
                        tracing::warn!(
                            "{}: cannot open: {e}; retrying every {} s",
                            s.ing.label,
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
        if self.sources[i].retired {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        }
        if res > 0 {
            let b = bid.expect("a receive with data names its buffer");
            let now = self.now.get();
            let s = &mut self.sources[i];
            let data = self.bufs.get(b, res as usize);
            match ingest::ts_payload(data, s.url.rtp) {
                Some(ts) => s.ing.demux.push(ts),
                None => s.ing.bad_datagrams += 1,
            }
            s.ing.last_data = Some(now);
            self.bufs.recycle(b);
            self.drain_ts(IngestRef::Udp(i));
        } else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            if res < 0 && -res != libc::ENOBUFS && -res != libc::ECANCELED {
                self.counters.source_errors += 1;
                tracing::warn!(
                    "{}: receive failed: {}",
                    self.sources[i].ing.label,
                    std::io::Error::from_raw_os_error(-res)
                );
            }
        }
        if self.shutdown_at.is_none() {
            self.open_sources();
        }
    }

    /// The shared state of a TS source.
    pub(super) fn ingest(&mut self, r: IngestRef) -> &mut TsIngest {
        match r {
            IngestRef::Udp(i) => &mut self.sources[i].ing,
            IngestRef::Exec(i) => &mut self.exec.sources[i].ing,
            IngestRef::Http(i) => &mut self.http[i].ing,
        }
    }

    /// Hand what the demuxer found to the stream's publisher, claiming the
    /// stream on the first track.
    pub(super) fn drain_ts(&mut self, r: IngestRef) {
        let now = self.now.get();
        loop {
            let Some(ev) = self.ingest(r).demux.poll_event() else {
                break;
            };
            if self.ingest(r).publisher.is_none() {
                if matches!(ev, TsEvent::Frame(_) | TsEvent::Discontinuity { .. })
                    || self.ingest(r).claim_retry_at.is_some_and(|t| now < t)
                {
                    // Frames before the stream is claimed carry nothing a
                    // viewer could start with; a refused claim waits.
                    continue;
                }
                let name = self.ingest(r).name.clone();
                let label = self.ingest(r).label.clone();
                match self.begin_publish(&name, &label) {
                    Ok(p) => {
                        let ing = self.ingest(r);
                        ing.publisher = Some(p);
                        ing.claim_retry_at = None;
                    }
                    Err(_) => {
                        self.ingest(r).claim_retry_at = Some(now + REOPEN_EVERY);
                        continue;
                    }
                }
            }
            let Some(mut p) = self.ingest(r).publisher.take() else {
                continue;
            };
            match ev {
                TsEvent::Track { track, .. } => self.publish_source_track(&mut p, track),
                TsEvent::Frame(f) => self.publish_source_frame(&mut p, &f),
                _ => {}
            }
            self.ingest(r).publisher = Some(p);
        }
        self.report_ts_errors(r, false);
    }

    /// Log (rate limited) and count what went wrong in a source's input.
    fn report_ts_errors(&mut self, r: IngestRef, force: bool) {
        let now = self.now.get();
        let s = self.ingest(r);
        let st = s.demux.stats();
        let current = (
            st.resyncs + st.pes_errors + st.unsupported_streams,
            st.cc_errors,
            s.bad_datagrams,
            st.skipped_bytes,
        );
        if current == s.reported {
            return;
        }
        if !force && s.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            return;
        }
        let (errs, cc, bad, skipped) = (
            current.0.saturating_sub(s.reported.0),
            current.1.saturating_sub(s.reported.1),
            current.2.saturating_sub(s.reported.2),
            current.3.saturating_sub(s.reported.3),
        );
        s.reported = current;
        s.last_log = Some(now);
        let label = s.label.clone();
        self.counters.source_errors += errs + cc + bad;
        let datagrams = if bad > 0 {
            format!(", {bad} datagrams that were not RTP")
        } else {
            String::new()
        };
        tracing::info!(
            "{label}: bad input since the last report: {errs} resyncs/PES errors/unsupported streams, {cc} continuity gaps, {skipped} bytes skipped (not TS packets){datagrams}"
        );
    }

    /// The source stopped bringing media (`why`, for the log): its stream
    /// goes into the reconnect grace (if it was online), and the next bytes
    /// start from a fresh demuxer (from their PAT).
    pub(super) fn ts_offline(&mut self, r: IngestRef, why: &str) {
        self.report_ts_errors(r, true);
        if let Some(p) = self.ingest(r).publisher.take() {
            let label = self.ingest(r).label.clone();
            tracing::info!("{label}: {why}; offline");
            self.finish_publish(p, &label);
        }
        let s = self.ingest(r);
        s.demux = TsDemuxer::new(TsDemuxLimits::default());
        s.reported = (0, 0, s.bad_datagrams, 0);
        s.last_data = None;
    }

    /// Per tick: sources that went quiet go offline; closed ones reopen.
    pub(super) fn sources_tick(&mut self) {
        let now = self.now.get();
        let timeout = self.source_timeout;
        for i in 0..self.sources.len() {
            let ing = &self.sources[i].ing;
            let quiet = ing.last_data.is_some_and(|t| now >= t + timeout);
            if quiet && ing.publisher.is_some() {
                let why = format!("no data for {} s", timeout.as_secs_f64());
                self.ts_offline(IngestRef::Udp(i), &why);
            }
        }
        if self.shutdown_at.is_none() {
            self.open_sources();
        }
    }

    /// A reload: stop the UDP sources `config` no longer has for this
    /// worker (their streams go into the reconnect grace, then end) and
    /// start the new ones. Unchanged sources are not touched.
    pub(super) fn reload_udp_sources(&mut self, config: &crate::config::Config) {
        let wanted = sources_for(config, self.index, self.mesh.workers());
        for i in 0..self.sources.len() {
            let s = &self.sources[i];
            if s.retired
                || wanted
                    .iter()
                    .any(|w| w.ing.name == s.ing.name && w.url == s.url)
            {
                continue;
            }
            self.retire_source(i);
        }
        for w in wanted {
            let present = self
                .sources
                .iter()
                .any(|s| !s.retired && s.ing.name == w.ing.name && s.url == w.url);
            if !present {
                tracing::info!("{}: added by a reload", w.ing.label);
                self.sources.push(w);
            }
        }
        self.open_sources();
    }

    /// Close source `i` for good (a reload removed it).
    fn retire_source(&mut self, i: usize) {
        tracing::info!(
            "{}: removed by a reload; closing",
            self.sources[i].ing.label
        );
        if let Some(p) = self.sources[i].ing.publisher.take() {
            let label = self.sources[i].ing.label.clone();
            self.finish_publish(p, &label);
        }
        let s = &mut self.sources[i];
        s.retired = true;
        if s.sock.take().is_some() {
            let e = opcode::AsyncCancel::new(Token::new(SRC_RECV, i as u32, 0).0)
                .build()
                .user_data(Token::new(super::CLOSE, 0, 0).0);
            self.push(e);
        }
    }

    /// Shutdown: close the sockets (their receives end) and end publishing.
    pub(super) fn close_sources(&mut self) {
        for i in 0..self.sources.len() {
            if let Some(p) = self.sources[i].ing.publisher.take() {
                let label = self.sources[i].ing.label.clone();
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
