//! The scenario runner's MPEG-TS-over-UDP publisher (`protocol = "udp-ts"`):
//! what an encoder or headend sends to Spate's `[[stream]] source =
//! "tsudp://…"` (or ffmpeg's `-i udp://…`, SRS's and MediaMTX's UDP/MPEG-TS
//! inputs). `protocol = "rtp-ts"` sends the same datagrams each behind a
//! 12-byte RTP header (RFC 3550, payload type 33 = MP2T per RFC 2250 and
//! RFC 3551; sequence number +1 per datagram, timestamp = the frame's DTS
//! at 90 kHz, one SSRC per socket), for Spate's `source = "tsrtp://…"` and
//! RTP/MPEG-TS contribution inputs.
//!
//! The FLV source is read like the RTMP publisher's (`live_publish::load`,
//! looped with continuing timestamps by its `Position`); each audio and
//! video tag becomes a [`Frame`] through `spate_packager::flv::FlvStream`
//! (tracks from the file's first sequence header of each kind, timebase
//! 1000) and is muxed by `spate_packager::ts::TsMuxer`: video on PID 0x100,
//! audio on 0x101, PCR on the video PID, PAT/PMT before the first frame and
//! before every video keyframe, PTS/DTS = the tag's timestamp (ms) × 90
//! (+ the composition offset for PTS), so a server that maps 90 kHz back
//! to ms gets the publisher's timestamps. A frame's packets leave at its
//! due time (real-time pace), in datagrams of 7 × 188 = 1316 bytes and
//! the frame's remainder in one shorter datagram (whole packets), so
//! nothing waits for the next frame. The send instant of every video
//! frame is recorded by timestamp in [`SendTimes`], as for RTMP.
//!
//! UDP has no session: the publisher does not know whether anyone listens.
//! The socket is connected, so an ICMP port-unreachable on loopback shows
//! up as `ECONNREFUSED` on a later send: warned about once, and sending
//! goes on (the server may come up later).
//!
//! `reconnect_every`: an outage instead of a reconnect. At the first video
//! keyframe after the interval, nothing is sent for 1 s; then sending goes
//! on from a new socket (a new source port, like a restarted encoder) at
//! the next keyframe due, so the timestamps keep wall-clock pace and jump
//! by about a second (Spate keeps such a stream online: it is shorter
//! than `[live] source_timeout`, and a 1 s step forward is not rebased).
//! Counted in `times.reconnects`.
//!
//! Latency note: an MPEG-TS video PES has no length, so a demuxer knows a
//! frame is complete only when the next PES on its PID starts. A server
//! demuxing TS (Spate's ingest does) passes video frame N on when frame
//! N + 1 arrives: about one frame interval more than over RTMP.
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spate_packager::flv::{FlvEvent, FlvStream, TagType};
use spate_packager::media::{Frame, MediaKind, Track};
use spate_packager::ts::TsMuxer;

use crate::live_publish::{self, Position, Publisher, SendTimes, SrcTag};
use crate::scenario::UdpUrl;

/// One transport packet.
pub(crate) const PACKET: usize = 188;
/// A full datagram: 7 packets (what fits a 1500-byte Ethernet MTU).
pub(crate) const DATAGRAM: usize = 7 * PACKET;
/// How long a `reconnect_every` outage lasts.
const PAUSE: Duration = Duration::from_secs(1);
/// RTP payload type of MPEG-TS (RFC 3551, static).
pub(crate) const RTP_PT_MP2T: u8 = 33;
/// An RTP header without CSRCs or extension.
pub(crate) const RTP_HEADER: usize = 12;

/// The RTP sender state of one socket (`rtp-ts`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rtp {
    pub(crate) seq: u16,
    pub(crate) ssrc: u32,
}

impl Rtp {
    /// A new sender: SSRC and first sequence number from the clock and the
    /// pid (RFC 3550 wants them random; unpredictable enough here).
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let x = (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            seq: (x >> 16) as u16,
            ssrc: (x >> 32) as u32,
        }
    }

    /// The header of the next datagram (timestamp `ts90`, 90 kHz).
    pub(crate) fn header(&mut self, ts90: u32) -> [u8; RTP_HEADER] {
        let mut h = [0u8; RTP_HEADER];
        h[0] = 0x80; // version 2, no padding, no extension, no CSRC
        h[1] = RTP_PT_MP2T; // marker 0
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts90.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        h
    }
}

/// The source file, ready to mux.
pub(crate) struct TsSource {
    pub(crate) tags: Vec<SrcTag>,
    /// Timestamp offset of the next pass (ms).
    pub(crate) pass_len: u32,
    /// The muxer's tracks: video, then audio if the file has it.
    pub(crate) tracks: Vec<Track>,
    /// Per tag: its frame at the file's timestamps; `None` for sequence
    /// headers, metadata and tags that did not parse.
    pub(crate) frames: Vec<Option<Frame>>,
}

impl TsSource {
    /// Read an FLV file (H.264 or HEVC video; AAC, MP3 or no audio).
    pub(crate) fn load(path: &str) -> Result<Self, String> {
        let (tags, pass_len) = live_publish::load(path)?;
        Self::from_tags(tags, pass_len).map_err(|e| format!("{path}: {e}"))
    }

    fn from_tags(tags: Vec<SrcTag>, pass_len: u32) -> Result<Self, String> {
        let mut flv = FlvStream::new();
        let (mut video, mut audio): (Option<Track>, Option<Track>) = (None, None);
        let mut frames = Vec::with_capacity(tags.len());
        for t in &tags {
            let mut frame = None;
            // A tag that does not parse is skipped (not sent).
            if flv.handle_tag(t.kind, t.ts, t.body.clone()).is_ok() {
                while let Some(ev) = flv.poll_event() {
                    match ev {
                        FlvEvent::Track { track, .. } => {
                            let slot = if track.kind() == MediaKind::Video {
                                &mut video
                            } else {
                                &mut audio
                            };
                            // The first configuration of each kind: the
                            // muxer keeps it for the whole run.
                            slot.get_or_insert(track);
                        }
                        FlvEvent::Frame(f) => frame = Some(f),
                        _ => {}
                    }
                }
            }
            frames.push(frame);
        }
        let Some(video) = video else {
            return Err("no video sequence header (H.264 or HEVC): nothing to mux".into());
        };
        if !tags
            .iter()
            .zip(&frames)
            .any(|(t, f)| f.is_some() && t.is_keyframe())
        {
            return Err("no video keyframe".into());
        }
        let mut tracks = vec![video];
        if let Some(a) = audio {
            match TsMuxer::new(&[tracks[0].clone(), a.clone()]) {
                Ok(_) => tracks.push(a),
                Err(e) => {
                    eprintln!(
                        "spate-bench run: udp-ts: the audio track ({}) is left out: {e}",
                        a.codec
                    );
                    let id = a.id;
                    for f in frames.iter_mut() {
                        if f.as_ref().is_some_and(|f| f.track == id) {
                            *f = None;
                        }
                    }
                }
            }
        }
        TsMuxer::new(&tracks).map_err(|e| format!("cannot mux as MPEG-TS: {e}"))?;
        Ok(Self {
            tags,
            pass_len,
            tracks,
            frames,
        })
    }

    /// A fresh muxer for the tracks.
    pub(crate) fn muxer(&self) -> TsMuxer {
        TsMuxer::new(&self.tracks).expect("checked when loaded")
    }

    /// Append tag `index`'s frame at timestamp `ts` (ms) as TS packets;
    /// false (nothing appended) for a tag without a frame.
    pub(crate) fn mux(
        &self,
        muxer: &mut TsMuxer,
        index: usize,
        ts: u32,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let Some(f) = &self.frames[index] else {
            return Ok(false);
        };
        let mut f = f.clone();
        let cts = f.pts - f.dts;
        f.dts = i64::from(ts);
        f.pts = f.dts + cts;
        muxer
            .write_frame(&f, out)
            .map_err(|e| io::Error::other(format!("MPEG-TS mux at {ts} ms: {e}")))?;
        Ok(true)
    }
}

/// The datagrams `buf` (whole packets) is sent in: 7 packets each, the
/// last one shorter.
pub(crate) fn datagrams(buf: &[u8]) -> std::slice::Chunks<'_, u8> {
    debug_assert!(buf.len().is_multiple_of(PACKET));
    buf.chunks(DATAGRAM)
}

/// A UDP socket connected to `addr`.
fn open(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    Ok(s)
}

/// Send `buf` in [`datagrams`], each behind an RTP header when `rtp` is
/// given (timestamp `ts90`); returns how many were refused (ICMP port
/// unreachable from an earlier one: nobody listens).
fn send_all(
    sock: &UdpSocket,
    buf: &[u8],
    mut rtp: Option<&mut Rtp>,
    ts90: u32,
    scratch: &mut Vec<u8>,
) -> io::Result<u64> {
    let mut refused = 0;
    for d in datagrams(buf) {
        let d = match rtp.as_deref_mut() {
            Some(r) => {
                scratch.clear();
                scratch.extend_from_slice(&r.header(ts90));
                scratch.extend_from_slice(d);
                &scratch[..]
            }
            None => d,
        };
        match sock.send(d) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// Publish `source` as MPEG-TS over UDP to `url` until `stop` is set, with
/// a 1 s outage every `reconnect_every` (module docs). Returns once the
/// socket is open.
pub fn start(
    url: &UdpUrl,
    source: &str,
    times: Arc<SendTimes>,
    stop: Arc<AtomicBool>,
    reconnect_every: Option<Duration>,
) -> Result<Publisher, String> {
    start_with_pause(url, source, times, stop, reconnect_every, PAUSE)
}

fn start_with_pause(
    url: &UdpUrl,
    source: &str,
    times: Arc<SendTimes>,
    stop: Arc<AtomicBool>,
    reconnect_every: Option<Duration>,
    pause: Duration,
) -> Result<Publisher, String> {
    let src = TsSource::load(source)?;
    let label = format!("{}://{}", url.scheme(), url.hostport());
    let rtp = url.rtp;
    let addr = url
        .hostport()
        .to_socket_addrs()
        .map_err(|e| format!("publisher {label}: {e}"))?
        .next()
        .ok_or_else(|| format!("publisher {label}: no address"))?;
    let sock = open(addr).map_err(|e| format!("publisher {label}: {e}"))?;
    let thread = std::thread::Builder::new()
        .name("publisher-ts".into())
        .spawn(move || {
            let out = Outage {
                every: reconnect_every,
                pause,
            };
            let r = run(&src, sock, addr, rtp, &times, &stop, out, &label);
            times.stopped.store(true, Ordering::Relaxed);
            r.map_err(|e| format!("publisher: {e}"))
        })
        .map_err(|e| e.to_string())?;
    Ok(Publisher { thread })
}

#[derive(Clone, Copy)]
struct Outage {
    every: Option<Duration>,
    pause: Duration,
}

#[allow(clippy::too_many_arguments)]
fn run(
    src: &TsSource,
    mut sock: UdpSocket,
    addr: SocketAddr,
    rtp: bool,
    times: &SendTimes,
    stop: &AtomicBool,
    outage: Outage,
    label: &str,
) -> io::Result<()> {
    let mut muxer = src.muxer();
    let mut pos = Position::new(&src.tags);
    let mut out = Vec::with_capacity(256 * 1024);
    let mut pause_at = outage.every.map(|d| Instant::now() + d);
    // After an outage: skip to the first keyframe due from here on.
    let mut resume_from: Option<Instant> = None;
    let mut warned = false;
    let mut rtp = rtp.then(Rtp::new);
    let mut scratch = Vec::with_capacity(RTP_HEADER + DATAGRAM);
    loop {
        while pos.index < src.tags.len() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let i = pos.index;
            let t = &src.tags[i];
            if src.frames[i].is_none() {
                pos.index += 1;
                continue;
            }
            let ts = t.ts + pos.offset;
            let due = pos.due(ts);
            let key = t.is_keyframe();
            if key && pause_at.is_some_and(|p| Instant::now() >= p) {
                let end = Instant::now() + outage.pause;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    std::thread::sleep((end - now).min(Duration::from_millis(50)));
                }
                sock = open(addr)?;
                // A restarted encoder: a new SSRC and sequence.
                if rtp.is_some() {
                    rtp = Some(Rtp::new());
                }
                times.reconnects.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                resume_from = Some(now);
                pause_at = outage.every.map(|d| now + d);
            }
            if let Some(r) = resume_from {
                if !(key && due >= r) {
                    pos.index += 1;
                    continue;
                }
                resume_from = None;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            out.clear();
            src.mux(&mut muxer, i, ts, &mut out)?;
            if t.kind == TagType::Video && !t.setup {
                times.record(ts, times.now_us());
                times.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            times
                .bytes_sent
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            // RFC 2250: a 90 kHz timestamp; the frame's DTS.
            let ts90 = ts.wrapping_mul(90);
            if send_all(&sock, &out, rtp.as_mut(), ts90, &mut scratch)? > 0 && !warned {
                warned = true;
                eprintln!(
                    "spate-bench run: TS publisher {label}: nothing listens there (ICMP port unreachable); still sending"
                );
            }
            pos.index += 1;
        }
        pos.next_pass(src.pass_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_packager::ts::{TsDemuxLimits, TsDemuxer, TsEvent};

    /// 1 s of 320x180 H.264 (30 fps, B-frames, a keyframe every 15) + AAC.
    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packager/tests/fixtures/h264_aac.flv"
    );

    fn pid(p: &[u8]) -> u16 {
        (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])
    }

    fn random_access(p: &[u8]) -> bool {
        p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x40 != 0
    }

    /// Two passes of the fixture muxed as the publisher does: the bytes,
    /// and (dts, pts) in ms of every video frame in send order.
    fn mux_two_passes(src: &TsSource) -> (Vec<u8>, Vec<(i64, i64)>) {
        let mut m = src.muxer();
        let mut pos = Position::new(&src.tags);
        let mut all = Vec::new();
        let mut video = Vec::new();
        while pos.pass < 2 {
            while pos.index < src.tags.len() {
                let t = &src.tags[pos.index];
                let ts = t.ts + pos.offset;
                let mut out = Vec::new();
                if src.mux(&mut m, pos.index, ts, &mut out).unwrap() {
                    assert!(!out.is_empty());
                    let f = src.frames[pos.index].as_ref().unwrap();
                    if t.kind == TagType::Video {
                        video.push((i64::from(ts), i64::from(ts) + f.pts - f.dts));
                    }
                }
                all.extend_from_slice(&out);
                pos.index += 1;
            }
            pos.next_pass(src.pass_len);
        }
        (all, video)
    }

    #[test]
    fn fixture_becomes_h264_and_aac_tracks() {
        let src = TsSource::load(FIXTURE).unwrap();
        let codecs: Vec<String> = src.tracks.iter().map(|t| t.codec.to_string()).collect();
        assert_eq!(src.tracks.len(), 2, "{codecs:?}");
        assert_eq!(src.tracks[0].kind(), MediaKind::Video);
        assert_eq!(src.tracks[1].kind(), MediaKind::Audio);
        let video = src
            .frames
            .iter()
            .flatten()
            .filter(|f| f.track == src.tracks[0].id)
            .count();
        let audio = src.frames.iter().flatten().count() - video;
        assert_eq!((video, audio), (30, 45));
        // Sequence headers and metadata have no frame.
        for (t, f) in src.tags.iter().zip(&src.frames) {
            assert_eq!(t.setup, f.is_none(), "tag at {} ms", t.ts);
        }
        assert!(TsSource::load("/nonexistent.flv").is_err());
    }

    #[test]
    fn datagrams_are_whole_packets_with_psi_before_every_keyframe() {
        let src = TsSource::load(FIXTURE).unwrap();
        let (bytes, _) = mux_two_passes(&src);
        assert!(bytes.len().is_multiple_of(PACKET));
        let mut n = 0;
        for d in datagrams(&bytes) {
            assert!(!d.is_empty() && d.len() <= DATAGRAM);
            assert!(
                d.len().is_multiple_of(PACKET),
                "datagram of {} bytes",
                d.len()
            );
            for p in d.chunks(PACKET) {
                assert_eq!(p[0], 0x47);
            }
            n += 1;
        }
        assert!(n > 10);
        let packets: Vec<&[u8]> = bytes.chunks(PACKET).collect();
        assert_eq!(pid(packets[0]), 0, "PAT first");
        assert_eq!(pid(packets[1]), 0x1000, "then the PMT");
        let mut keyframes = 0;
        for (i, p) in packets.iter().enumerate() {
            if pid(p) == 0x100 && p[1] & 0x40 != 0 && random_access(p) {
                keyframes += 1;
                assert!(i >= 2, "keyframe at packet {i}");
                assert_eq!(pid(packets[i - 2]), 0, "PAT before the keyframe at {i}");
                assert_eq!(
                    pid(packets[i - 1]),
                    0x1000,
                    "PMT before the keyframe at {i}"
                );
            }
        }
        // 30 frames with a keyframe every 15, twice.
        assert_eq!(keyframes, 4);
        let pats = packets.iter().filter(|p| pid(p) == 0).count();
        assert_eq!(pats, keyframes);
    }

    #[test]
    fn demuxed_timestamps_are_ms_times_90() {
        let src = TsSource::load(FIXTURE).unwrap();
        let (bytes, sent) = mux_two_passes(&src);
        assert_eq!(sent.len(), 60);
        assert!(sent.iter().any(|(d, p)| p != d), "the fixture has B-frames");
        let mut d = TsDemuxer::new(TsDemuxLimits::default());
        // Datagram by datagram, as a receiver gets them.
        for dg in datagrams(&bytes) {
            d.push(dg);
        }
        d.finish();
        let mut tracks = Vec::new();
        let mut video = Vec::new();
        let mut audio = 0;
        while let Some(ev) = d.poll_event() {
            match ev {
                TsEvent::Track { track, pid, .. } => {
                    assert_eq!(track.timebase, 90_000);
                    tracks.push((track.kind(), pid));
                }
                TsEvent::Frame(f) if f.track == 0 => video.push((f.dts, f.pts, f.keyframe)),
                TsEvent::Frame(_) => audio += 1,
                TsEvent::Discontinuity { id } => panic!("discontinuity on track {id}"),
                TsEvent::TrackRemoved { id } => panic!("track {id} removed"),
            }
        }
        assert_eq!(
            tracks,
            [(MediaKind::Video, 0x100), (MediaKind::Audio, 0x101)]
        );
        assert_eq!(video.len(), sent.len());
        for ((dts, pts, _), (sd, sp)) in video.iter().zip(&sent) {
            assert_eq!((*dts, *pts), (sd * 90, sp * 90));
        }
        assert!(video[0].2, "starts at a keyframe");
        assert_eq!(audio, 90);
        let st = d.stats();
        assert_eq!(
            (st.cc_errors, st.pes_errors, st.resyncs, st.skipped_bytes),
            (0, 0, 0, 0)
        );
    }

    /// Receive on `sock` until `until`; the datagrams.
    fn receive(sock: &UdpSocket, until: Instant) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    fn video_dts_ms(datagrams: &[Vec<u8>]) -> Vec<u32> {
        let mut d = TsDemuxer::new(TsDemuxLimits::default());
        for dg in datagrams {
            d.push(dg);
        }
        d.finish();
        let mut out = Vec::new();
        while let Some(ev) = d.poll_event() {
            if let TsEvent::Frame(f) = ev
                && f.track == 0
            {
                assert_eq!(f.dts % 90, 0);
                out.push((f.dts / 90) as u32);
            }
        }
        out
    }

    #[test]
    fn publishes_over_udp_and_records_every_video_frame() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let url = crate::scenario::parse_udp_url(&format!("udp://127.0.0.1:{port}/x")).unwrap();
        let times = Arc::new(SendTimes::new());
        let stop = Arc::new(AtomicBool::new(false));
        let p = start(&url, FIXTURE, times.clone(), stop.clone(), None).unwrap();
        let mut got = receive(&rx, Instant::now() + Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        p.thread.join().unwrap().unwrap();
        // Whatever went out before it saw `stop`.
        got.extend(receive(&rx, Instant::now() + Duration::from_millis(100)));
        assert!(
            got.iter()
                .all(|d| d.len().is_multiple_of(PACKET) && d.len() <= DATAGRAM && d[0] == 0x47)
        );
        assert!(got.iter().any(|d| d.len() == DATAGRAM));
        let dts = video_dts_ms(&got);
        // Real-time pace: about 1.5 s of a 30 fps source, looped.
        let sent = times.frames_sent.load(Ordering::Relaxed);
        assert!((30..=55).contains(&sent), "{sent} frames in 1.5 s");
        assert_eq!(dts.len() as u64, sent);
        for ts in &dts {
            assert!(times.sent_us(*ts).is_some(), "no send record for {ts} ms");
        }
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{dts:?}");
        let bytes = times.bytes_sent.load(Ordering::Relaxed);
        assert_eq!(bytes, got.iter().map(|d| d.len() as u64).sum::<u64>());
        assert_eq!(times.reconnects.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rtp_ts_wraps_every_datagram_in_an_rtp_header() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let url = crate::scenario::parse_udp_url(&format!("rtp://127.0.0.1:{port}/x")).unwrap();
        assert!(url.rtp);
        let times = Arc::new(SendTimes::new());
        let stop = Arc::new(AtomicBool::new(false));
        let p = start(&url, FIXTURE, times.clone(), stop.clone(), None).unwrap();
        let mut got = receive(&rx, Instant::now() + Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        p.thread.join().unwrap().unwrap();
        got.extend(receive(&rx, Instant::now() + Duration::from_millis(100)));
        assert!(got.len() > 20, "{} datagrams", got.len());
        let ssrc = &got[0][8..12];
        let mut payloads = Vec::new();
        let mut stamps = Vec::new();
        for (i, d) in got.iter().enumerate() {
            assert!(d.len() > RTP_HEADER, "datagram {i}: {} bytes", d.len());
            assert_eq!(d[0], 0x80, "datagram {i}: version 2, no CSRC/extension");
            assert_eq!(d[1], RTP_PT_MP2T, "datagram {i}: payload type");
            assert_eq!(&d[8..12], ssrc, "datagram {i}: one SSRC");
            if i > 0 {
                let prev = u16::from_be_bytes([got[i - 1][2], got[i - 1][3]]);
                let seq = u16::from_be_bytes([d[2], d[3]]);
                assert_eq!(seq, prev.wrapping_add(1), "datagram {i}: sequence");
            }
            let ts = &d[RTP_HEADER..];
            assert!(ts.len().is_multiple_of(PACKET) && ts.len() <= DATAGRAM);
            assert_eq!(ts[0], 0x47);
            stamps.push(u32::from_be_bytes([d[4], d[5], d[6], d[7]]));
            payloads.push(ts.to_vec());
        }
        // The payloads are the udp-ts stream: every video frame recorded,
        // and RTP timestamps are frames' DTS at 90 kHz.
        let dts = video_dts_ms(&payloads);
        assert_eq!(dts.len() as u64, times.frames_sent.load(Ordering::Relaxed));
        for ts in &dts {
            assert!(times.sent_us(*ts).is_some(), "no send record for {ts} ms");
            assert!(
                stamps.contains(&ts.wrapping_mul(90)),
                "no RTP timestamp for the frame at {ts} ms"
            );
        }
    }

    #[test]
    fn an_outage_pauses_then_resumes_at_a_keyframe_with_later_timestamps() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let url = crate::scenario::parse_udp_url(&format!("udp://127.0.0.1:{port}")).unwrap();
        let times = Arc::new(SendTimes::new());
        let stop = Arc::new(AtomicBool::new(false));
        let p = start_with_pause(
            &url,
            FIXTURE,
            times.clone(),
            stop.clone(),
            Some(Duration::from_millis(400)),
            Duration::from_millis(300),
        )
        .unwrap();
        let got = receive(&rx, Instant::now() + Duration::from_millis(1600));
        stop.store(true, Ordering::Relaxed);
        p.thread.join().unwrap().unwrap();
        assert!(times.reconnects.load(Ordering::Relaxed) >= 1);
        let dts = video_dts_ms(&got);
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{dts:?}");
        // The outage skipped media: a step of about the pause or more.
        assert!(
            dts.windows(2).any(|w| w[1] - w[0] >= 250),
            "no gap in {dts:?}"
        );
        for ts in &dts {
            assert!(times.sent_us(*ts).is_some(), "no send record for {ts} ms");
        }
    }
}
