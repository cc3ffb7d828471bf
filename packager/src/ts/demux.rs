//! [`TsDemuxer`]: 188-byte transport packets to tracks and frames.
use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::es::{
    AudioFormat, AudioKey, MAX_AUDIO_FRAME, PesError, Scan, annex_b_units, extend_ts,
    parse_pes_header,
};
use super::*;
use crate::media::{
    AudioSpecificConfig, AvcConfig, Codec, Frame, HevcConfig, NAL_PPS, NAL_SPS, NAL_VPS, OpusHead,
    Track, avc_pps_id, avc_sps_id, hevc_parameter_set_id,
};

/// Timebase of every track the demuxer makes: the 90 kHz of PTS/DTS.
pub const TS_TIMEBASE: u32 = 90_000;
/// PID of null packets (ignored).
pub const NULL_PID: u16 = 0x1FFF;
/// Stream type of AAC in LATM/LOAS framing (not supported: counted).
pub const STREAM_TYPE_AAC_LATM: u8 = 0x11;
/// Stream type of AC-3 (ATSC A/52, System A).
pub const STREAM_TYPE_AC3: u8 = 0x81;
/// Stream type of E-AC-3 (ATSC A/52 annex G).
pub const STREAM_TYPE_EAC3: u8 = 0x87;

/// Longest PSI section this demuxer assembles (ISO/IEC 13818-1 allows
/// 1021-byte PAT/PMT sections and 4093-byte private sections).
const MAX_SECTION: usize = 4096;
const PID_COUNT: usize = 8192;
const NO_CC: u8 = 0xFF;

/// Bounds on what a [`TsDemuxer`] keeps for hostile or broken input. Build
/// with `TsDemuxLimits { max_pes_bytes: …, ..Default::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsDemuxLimits {
    /// Largest PES packet assembled (header included); a longer one is
    /// dropped and counted in [`TsDemuxStats::pes_errors`] (and
    /// [`limit_drops`](TsDemuxStats::limit_drops)). Every frame payload is
    /// shorter than this. Default 8 MiB.
    pub max_pes_bytes: usize,
    /// Elementary streams tracked across all programs; PMT entries beyond
    /// this get no track and are counted in `limit_drops`. Default 64.
    pub max_streams: usize,
    /// Programs tracked from the PAT (each has a PMT PID to read); more are
    /// ignored and counted in `limit_drops`. Default 64.
    pub max_programs: usize,
    /// PES bytes buffered across all streams at once; a PES that would
    /// take the total past this is dropped and counted. Default 32 MiB.
    pub max_buffered_bytes: usize,
}

impl Default for TsDemuxLimits {
    fn default() -> Self {
        TsDemuxLimits {
            max_pes_bytes: 8 << 20,
            max_streams: 64,
            max_programs: 64,
            max_buffered_bytes: 32 << 20,
        }
    }
}

/// Counters of everything the demuxer found, dropped or repaired. Nothing
/// here stops the demuxer: bad input is counted and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// Transport packets taken (at a sync byte, 188 bytes).
    pub packets: u64,
    /// Times packet alignment was found again after bytes had to be
    /// skipped (garbage, a truncated packet, a lost sync byte).
    pub resyncs: u64,
    /// Bytes skipped while looking for packet alignment, including
    /// truncated packets and an incomplete packet at the end of input.
    pub skipped_bytes: u64,
    /// Continuity counter gaps on PSI and elementary stream PIDs (packets
    /// lost or reordered).
    pub cc_errors: u64,
    /// Packets sent twice in a row (same continuity counter), dropped as
    /// ISO/IEC 13818-1 allows.
    pub duplicate_packets: u64,
    /// Packets with `transport_error_indicator` set, dropped.
    pub transport_errors: u64,
    /// Packets with a reserved adaptation_field_control or an adaptation
    /// field longer than the packet, dropped.
    pub invalid_packets: u64,
    /// PES packets dropped: no start code, header past the end, shorter
    /// than their PES_packet_length when the next one started, cut by a
    /// continuity gap, over [`TsDemuxLimits::max_pes_bytes`], or a video
    /// PES without PTS.
    pub pes_errors: u64,
    /// PSI sections that failed their CRC or did not parse.
    pub psi_errors: u64,
    /// Elementary stream data that did not parse: runs of bytes that are
    /// no audio frame, Annex B without a start code, parameter sets that
    /// do not parse, frames of a kind that is not passed on (ADTS with
    /// several raw data blocks, AC-3 inside E-AC-3, empty Opus packets).
    pub es_errors: u64,
    /// Frames dropped: before their track's configuration was known
    /// (H.264/HEVC before the first SPS/PPS), audio without any timestamp
    /// to interpolate from, incomplete audio frames at a continuity gap or
    /// at the end.
    pub dropped_frames: u64,
    /// PMT changes after a program's first PMT (new version, or new
    /// content under the same version).
    pub pmt_changes: u64,
    /// PAT changes after the first PAT.
    pub pat_changes: u64,
    /// PMT entries of stream types this demuxer does not read (LATM AAC,
    /// subtitles, SCTE-35, ID3, private data without a known descriptor,
    /// Opus beyond stereo…), counted once per (program, PID, stream type).
    pub unsupported_streams: u64,
    /// Things dropped because a [`TsDemuxLimits`] bound was reached.
    pub limit_drops: u64,
    /// Adaptation fields with `discontinuity_indicator` set.
    pub discontinuity_flags: u64,
    /// Backward DTS steps on a track without a continuity gap or flag;
    /// each got a [`TsEvent::Discontinuity`] before the frame.
    pub timestamp_jumps: u64,
    /// PCRs read.
    pub pcrs: u64,
    /// Frames handed out.
    pub frames: u64,
}

/// What [`TsDemuxer::poll_event`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsEvent {
    /// A track appeared or its configuration changed (from the PMT plus the
    /// first access unit's parameter sets / ADTS header, so it comes before
    /// the first [`Frame`](TsEvent::Frame) of that track, once its
    /// configuration is known). Ids are stable per (program, PID) as long
    /// as the stream type stays, assigned in PMT order from 0 across
    /// programs (programs in the order their first PMT arrives) and never
    /// reused. Timebase 90 000.
    Track {
        /// The track.
        track: Track,
        /// Program number (from the PAT/PMT).
        program: u16,
        /// The PID carrying it.
        pid: u16,
    },
    /// A track's PID left the PMT (or the PMT changed its stream type, or
    /// the program left the PAT). Only for tracks announced before.
    TrackRemoved {
        /// The track id.
        id: u32,
    },
    /// An access unit of an announced track.
    Frame(Frame),
    /// A continuity gap or `discontinuity_indicator` on a track's PID (for
    /// the PCR PID: on every track of the program), or its DTS stepped
    /// back: frames after this may not follow on from those before. At
    /// most one between two frames of a track; only for announced tracks.
    Discontinuity {
        /// The track id.
        id: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidRole {
    None,
    /// PAT or PMT sections.
    Psi,
    /// The elementary stream with this track id.
    Es(u32),
}

/// A PSI section being assembled.
#[derive(Debug, Default)]
struct SectionBuf {
    buf: Vec<u8>,
    active: bool,
}

#[derive(Debug)]
struct Program {
    pmt_pid: u16,
    pcr_pid: u16,
    /// The last PMT section applied, to skip repeats cheaply.
    last_pmt: Option<Vec<u8>>,
    /// (pid, track id) in PMT order.
    streams: Vec<(u16, u32)>,
    /// (pid, stream type) counted as unsupported.
    unsupported: Vec<(u16, u8)>,
    /// Reference for extending 33-bit timestamps: the last DTS/PCR.
    ts_ref: Option<i64>,
    pcr: Option<i64>,
}

/// What a stream's PMT entry says it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EsKind {
    H264,
    Hevc,
    Audio(Codec, AudioFormat),
}

#[derive(Debug, Default)]
struct ParamSets {
    vps: BTreeMap<u32, Bytes>,
    sps: BTreeMap<u32, Bytes>,
    pps: BTreeMap<u32, Bytes>,
}

#[derive(Debug)]
struct EsStream {
    program: u16,
    pid: u16,
    stream_type: u8,
    kind: EsKind,
    /// Opus channel count from the PMT descriptor.
    opus_channels: u8,
    announced: Option<Track>,
    /// A Discontinuity was queued since the last frame.
    disc_sent: bool,
    last_dts: Option<i64>,
    cc: u8,
    // PES assembly.
    pes: BytesMut,
    pes_active: bool,
    /// PES_packet_length + 6, or 0 for unbounded.
    pes_total: usize,
    pes_rai: bool,
    size_hint: usize,
    // Video.
    params: ParamSets,
    audio_key: Option<AudioKey>,
    // Audio framing.
    carry: Vec<u8>,
    /// (base pts, samples since, rate)
    clock: Option<(i64, u64, u32)>,
}

/// An MPEG-TS demuxer: every program, every elementary stream it can read,
/// as [`Track`]s and [`Frame`]s. See the [module docs](super) and
/// `docs/media.md` for what is read and how bad input is handled.
///
/// Use: [`push`](Self::push) bytes as they come (any split), drain
/// [`poll_event`](Self::poll_event) until `None` after each push, and call
/// [`finish`](Self::finish) at the end of input (then drain again). Events
/// wait in a queue until polled, so a caller that never polls holds them
/// all.
#[derive(Debug)]
pub struct TsDemuxer {
    limits: TsDemuxLimits,
    stats: TsDemuxStats,
    events: VecDeque<TsEvent>,
    /// Input not yet consumed (at most a few packets).
    input: Vec<u8>,
    synced: bool,
    /// Bytes were skipped since alignment was last found.
    lost: bool,
    roles: Vec<PidRole>,
    /// Continuity counter of the last packet with payload, per PSI PID.
    psi_cc: BTreeMap<u16, u8>,
    sections: BTreeMap<u16, SectionBuf>,
    /// PAT: section number → (program, PMT PID) entries; version.
    pat: BTreeMap<u8, Vec<(u16, u16)>>,
    pat_version: Option<u8>,
    last_pat: Option<Vec<u8>>,
    programs: BTreeMap<u16, Program>,
    streams: BTreeMap<u32, EsStream>,
    next_id: u32,
    buffered: usize,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        TsDemuxer::new(TsDemuxLimits::default())
    }
}

impl TsDemuxer {
    /// A demuxer with these limits.
    pub fn new(limits: TsDemuxLimits) -> Self {
        let mut roles = vec![PidRole::None; PID_COUNT];
        roles[usize::from(PAT_PID)] = PidRole::Psi;
        TsDemuxer {
            limits,
            stats: TsDemuxStats::default(),
            events: VecDeque::new(),
            input: Vec::new(),
            synced: false,
            lost: false,
            roles,
            psi_cc: BTreeMap::new(),
            sections: BTreeMap::new(),
            pat: BTreeMap::new(),
            pat_version: None,
            last_pat: None,
            programs: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_id: 0,
            buffered: 0,
        }
    }

    /// Bytes of a transport stream in pieces of any size (datagrams of
    /// 7×188, a pipe's reads, anything). Packets are found by their sync
    /// bytes: after garbage, alignment is taken at the first 0x47 that has
    /// another 188 and 376 bytes on (fewer at the end of input), and while
    /// aligned a packet is taken when the byte after it is a sync byte too
    /// (so the last packet of a piece waits for the next piece's first
    /// byte, or for [`finish`](Self::finish)). The same events come out
    /// whatever the split.
    pub fn push(&mut self, data: &[u8]) {
        if self.input.is_empty() {
            let used = self.process(data, false);
            self.input.extend_from_slice(&data[used..]);
        } else {
            let mut input = std::mem::take(&mut self.input);
            input.extend_from_slice(data);
            let used = self.process(&input, false);
            input.drain(..used);
            self.input = input;
        }
    }

    /// Next event, in stream order.
    pub fn poll_event(&mut self) -> Option<TsEvent> {
        self.events.pop_front()
    }

    /// End of input: take the packets still waiting, count an incomplete
    /// last packet as skipped, and flush what is being assembled: PES
    /// packets of unbounded length (video, which otherwise end only at the
    /// next PES start) are complete; bounded ones still short are dropped
    /// and counted, as are partial audio frames. Pushing more afterwards
    /// starts a new alignment search; PSI, tracks and continuity counters
    /// carry on.
    pub fn finish(&mut self) {
        let input = std::mem::take(&mut self.input);
        let used = self.process(&input, true);
        self.skip(input.len() - used);
        self.lost = false;
        self.synced = false;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.complete_pes(id);
            if let Some(s) = self.streams.get_mut(&id)
                && !s.carry.is_empty()
            {
                s.carry.clear();
                self.stats.dropped_frames += 1;
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &TsDemuxStats {
        &self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> &TsDemuxLimits {
        &self.limits
    }

    /// The last PCR of a program, in 90 kHz ticks (the 33-bit base; the
    /// 27 MHz extension is dropped), extended past the wrap on the same
    /// timeline as the program's frame timestamps, so `frame.dts - pcr` is
    /// how far ahead of the system clock a frame is. `None` before the
    /// first PCR or for a program that has none (PCR_PID 0x1FFF, or a PCR
    /// PID that never carries one: pace by DTS then).
    pub fn pcr(&self, program: u16) -> Option<i64> {
        self.programs.get(&program).and_then(|p| p.pcr)
    }

    /// Program numbers from the PAT, ascending.
    pub fn programs(&self) -> impl Iterator<Item = u16> + '_ {
        self.programs.keys().copied()
    }

    /// The announced tracks (the latest version of each), by id.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> + '_ {
        self.streams.values().filter_map(|s| s.announced.as_ref())
    }

    // ---- packet alignment ----

    /// Take the packets of `buf`; returns how many bytes were consumed
    /// (taken or skipped). At the end of input, checks for alignment use
    /// the bytes there are.
    fn process(&mut self, buf: &[u8], at_end: bool) -> usize {
        let mut pos = 0;
        loop {
            if self.synced {
                if buf.len() - pos < PACKET_LEN {
                    return pos;
                }
                if buf[pos] != SYNC_BYTE {
                    self.synced = false;
                    continue;
                }
                let mut lost_after = false;
                match buf.get(pos + PACKET_LEN) {
                    Some(&SYNC_BYTE) => {}
                    Some(_) => {
                        // Either this packet is cut short (the next one
                        // starts inside it) or garbage follows it.
                        match confirmed_sync(buf, pos + 1, pos + PACKET_LEN, at_end) {
                            Probe::Found(n) => {
                                self.skip(n - pos);
                                self.stats.resyncs += 1;
                                self.lost = false;
                                pos = n;
                                continue;
                            }
                            Probe::NeedMore(_) => return pos,
                            Probe::None => lost_after = true,
                        }
                    }
                    None if !at_end => return pos,
                    None => {}
                }
                let packet: &[u8; PACKET_LEN] = buf[pos..pos + PACKET_LEN]
                    .try_into()
                    .unwrap_or(&[0; PACKET_LEN]);
                self.packet(packet);
                pos += PACKET_LEN;
                if lost_after {
                    self.synced = false;
                }
            } else {
                let start = pos;
                match confirmed_sync(buf, pos, buf.len(), at_end) {
                    Probe::Found(n) => {
                        self.skip(n - start);
                        if self.lost {
                            self.stats.resyncs += 1;
                            self.lost = false;
                        }
                        self.synced = true;
                        pos = n;
                    }
                    Probe::NeedMore(n) => {
                        self.skip(n - start);
                        return n;
                    }
                    // At the end, what is left cannot hold a packet
                    // (finish counts it); otherwise no packet can start in
                    // these bytes.
                    Probe::None if at_end => return start,
                    Probe::None => {
                        self.skip(buf.len() - start);
                        return buf.len();
                    }
                }
            }
        }
    }

    /// Count bytes skipped in the alignment search; the next alignment
    /// found is a resync.
    fn skip(&mut self, n: usize) {
        if n > 0 {
            self.stats.skipped_bytes += n as u64;
            self.lost = true;
        }
    }

    // ---- packets ----

    fn packet(&mut self, p: &[u8; PACKET_LEN]) {
        self.stats.packets += 1;
        if p[1] & 0x80 != 0 {
            self.stats.transport_errors += 1;
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        if pid == NULL_PID {
            return;
        }
        let afc = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0F;
        if afc == 0 {
            self.stats.invalid_packets += 1;
            return;
        }
        let mut offset = 4;
        let (mut discontinuity, mut rai, mut pcr) = (false, false, None);
        if afc & 2 != 0 {
            let len = usize::from(p[4]);
            if len > if afc == 3 { 182 } else { 183 } {
                self.stats.invalid_packets += 1;
                return;
            }
            if len > 0 {
                let flags = p[5];
                discontinuity = flags & 0x80 != 0;
                rai = flags & 0x40 != 0;
                if flags & 0x10 != 0 && len >= 7 {
                    let b = &p[6..12];
                    pcr = Some(
                        (u64::from(b[0]) << 25)
                            | (u64::from(b[1]) << 17)
                            | (u64::from(b[2]) << 9)
                            | (u64::from(b[3]) << 1)
                            | u64::from(b[4] >> 7),
                    );
                }
            }
            offset = 5 + len;
        }
        if let Some(pcr) = pcr {
            self.stats.pcrs += 1;
            for prog in self.programs.values_mut() {
                if prog.pcr_pid == pid {
                    let v = extend_ts(prog.ts_ref, pcr);
                    prog.ts_ref = Some(v);
                    prog.pcr = Some(v);
                }
            }
        }
        if discontinuity {
            self.stats.discontinuity_flags += 1;
        }
        let payload = if afc & 1 != 0 { &p[offset..] } else { &[][..] };
        match self.roles[usize::from(pid)] {
            PidRole::None => {
                if discontinuity {
                    self.pcr_discontinuity(pid);
                }
            }
            PidRole::Psi => {
                if afc & 1 == 0 {
                    return;
                }
                let last = self.psi_cc.insert(pid, cc);
                let continuous = match last {
                    Some(l) if l == cc && !discontinuity => {
                        self.stats.duplicate_packets += 1;
                        return;
                    }
                    Some(l) => discontinuity || cc == (l + 1) & 0x0F,
                    None => true,
                };
                if !continuous {
                    self.stats.cc_errors += 1;
                }
                self.psi_packet(pid, pusi, payload, continuous);
            }
            PidRole::Es(id) => {
                if discontinuity {
                    self.mark_discontinuity(id);
                    self.pcr_discontinuity(pid);
                }
                if afc & 1 == 0 {
                    return;
                }
                let Some(s) = self.streams.get_mut(&id) else {
                    return;
                };
                let last = std::mem::replace(&mut s.cc, cc);
                if last != NO_CC && !discontinuity {
                    if cc == last {
                        self.stats.duplicate_packets += 1;
                        return;
                    }
                    if cc != (last + 1) & 0x0F {
                        self.stats.cc_errors += 1;
                        self.continuity_gap(id);
                    }
                }
                self.es_packet(id, pusi, rai, payload);
            }
        }
    }

    /// A `discontinuity_indicator` on a program's PCR PID: a new system
    /// time base for every track of the program.
    fn pcr_discontinuity(&mut self, pid: u16) {
        let ids: Vec<u32> = self
            .programs
            .values()
            .filter(|p| p.pcr_pid == pid)
            .flat_map(|p| p.streams.iter().map(|&(_, id)| id))
            .collect();
        for id in ids {
            self.mark_discontinuity(id);
        }
    }

    /// Queue a Discontinuity for the track (once until its next frame) and
    /// forget its timing.
    fn mark_discontinuity(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.last_dts = None;
        s.clock = None;
        if s.announced.is_some() && !s.disc_sent {
            s.disc_sent = true;
            self.events.push_back(TsEvent::Discontinuity { id });
        }
    }

    /// Packets were lost on a stream's PID: the PES being assembled and
    /// any partial audio frame are broken.
    fn continuity_gap(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if s.pes_active {
                self.buffered -= s.pes.len();
                s.pes.clear();
                s.pes_active = false;
                self.stats.pes_errors += 1;
            }
            if !s.carry.is_empty() {
                s.carry.clear();
                self.stats.dropped_frames += 1;
            }
        }
        self.mark_discontinuity(id);
    }

    // ---- PSI ----

    fn psi_packet(&mut self, pid: u16, pusi: bool, payload: &[u8], continuous: bool) {
        let mut done: Vec<Vec<u8>> = Vec::new();
        {
            let sb = self.sections.entry(pid).or_default();
            if !continuous {
                sb.active = false;
                sb.buf.clear();
            }
            let mut data = payload;
            if pusi {
                let Some((&pointer, rest)) = data.split_first() else {
                    return;
                };
                let pointer = usize::from(pointer);
                if pointer > rest.len() {
                    sb.active = false;
                    sb.buf.clear();
                    self.stats.psi_errors += 1;
                    return;
                }
                if sb.active {
                    sb.buf.extend_from_slice(&rest[..pointer]);
                    take_section(sb, &mut done);
                }
                sb.active = false;
                sb.buf.clear();
                data = &rest[pointer..];
                // Sections starting in this packet.
                while let Some(&table_id) = data.first() {
                    if table_id == 0xFF {
                        break;
                    }
                    sb.buf.clear();
                    sb.active = true;
                    let total = section_total(data);
                    match total {
                        Some(t) if t <= data.len() => {
                            sb.buf.extend_from_slice(&data[..t]);
                            take_section(sb, &mut done);
                            data = &data[t..];
                        }
                        _ => {
                            sb.buf.extend_from_slice(data);
                            take_section(sb, &mut done);
                            break;
                        }
                    }
                }
            } else if sb.active {
                sb.buf.extend_from_slice(data);
                take_section(sb, &mut done);
            }
        }
        for section in done {
            match section {
                s if s.is_empty() => self.stats.psi_errors += 1,
                s => self.section(pid, &s),
            }
        }
    }

    fn section(&mut self, pid: u16, s: &[u8]) {
        if crc32_mpeg2(s) != 0 || s.len() < 12 || s[1] & 0x80 == 0 {
            self.stats.psi_errors += 1;
            return;
        }
        if s[5] & 1 == 0 {
            return; // current_next_indicator 0: not yet applicable
        }
        match (pid, s[0]) {
            (PAT_PID, 0x00) => self.pat_section(s),
            (PAT_PID, _) => {}
            (_, 0x02) => self.pmt_section(pid, s),
            _ => {}
        }
    }

    fn pat_section(&mut self, s: &[u8]) {
        if self.last_pat.as_deref() == Some(s) {
            return;
        }
        let version = (s[5] >> 1) & 0x1F;
        let section_number = s[6];
        let body = &s[8..s.len() - 4];
        if !body.len().is_multiple_of(4) {
            self.stats.psi_errors += 1;
            return;
        }
        if self.last_pat.is_some() {
            self.stats.pat_changes += 1;
        }
        self.last_pat = Some(s.to_vec());
        if self.pat_version != Some(version) {
            self.pat.clear();
            self.pat_version = Some(version);
        }
        let entries: Vec<(u16, u16)> = body
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u16::from_be_bytes([e[2] & 0x1F, e[3]]),
                )
            })
            .filter(|&(program, _)| program != 0)
            .collect();
        self.pat.insert(section_number, entries);
        let mut wanted: BTreeMap<u16, u16> = BTreeMap::new();
        for &(program, pmt_pid) in self.pat.values().flatten() {
            wanted.entry(program).or_insert(pmt_pid);
        }
        // Programs gone or moved.
        let gone: Vec<u16> = self
            .programs
            .iter()
            .filter(|(n, p)| wanted.get(n) != Some(&p.pmt_pid))
            .map(|(&n, _)| n)
            .collect();
        for n in gone {
            self.remove_program(n);
        }
        for (program, pmt_pid) in wanted {
            if self.programs.contains_key(&program) {
                continue;
            }
            let role = self.roles[usize::from(pmt_pid)];
            let shared_pmt = self.programs.values().any(|p| p.pmt_pid == pmt_pid);
            if pmt_pid == NULL_PID || !(role == PidRole::None || shared_pmt) {
                self.stats.psi_errors += 1;
                continue;
            }
            if self.programs.len() >= self.limits.max_programs {
                self.stats.limit_drops += 1;
                continue;
            }
            self.roles[usize::from(pmt_pid)] = PidRole::Psi;
            self.programs.insert(
                program,
                Program {
                    pmt_pid,
                    pcr_pid: NULL_PID,
                    last_pmt: None,
                    streams: Vec::new(),
                    unsupported: Vec::new(),
                    ts_ref: None,
                    pcr: None,
                },
            );
        }
    }

    fn remove_program(&mut self, n: u16) {
        let Some(p) = self.programs.remove(&n) else {
            return;
        };
        for (_, id) in p.streams {
            self.remove_stream(id);
        }
        if !self.programs.values().any(|o| o.pmt_pid == p.pmt_pid) {
            self.roles[usize::from(p.pmt_pid)] = PidRole::None;
            self.sections.remove(&p.pmt_pid);
            self.psi_cc.remove(&p.pmt_pid);
        }
    }

    fn remove_stream(&mut self, id: u32) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        if s.pes_active {
            self.buffered -= s.pes.len();
        }
        self.roles[usize::from(s.pid)] = PidRole::None;
        if s.announced.is_some() {
            self.events.push_back(TsEvent::TrackRemoved { id });
        }
    }

    fn pmt_section(&mut self, pid: u16, s: &[u8]) {
        let number = u16::from_be_bytes([s[3], s[4]]);
        let Some(prog) = self.programs.get(&number) else {
            return;
        };
        if prog.pmt_pid != pid || prog.last_pmt.as_deref() == Some(s) {
            return;
        }
        let Some(entries) = parse_pmt(s) else {
            self.stats.psi_errors += 1;
            return;
        };
        let first = prog.last_pmt.is_none();
        if !first {
            self.stats.pmt_changes += 1;
        }
        let pcr_pid = u16::from_be_bytes([s[8] & 0x1F, s[9]]);
        let old = prog.streams.clone();
        let old_unsupported = prog.unsupported.clone();
        // Which old streams stay: same PID, same stream type and codec.
        let mut kept: Vec<(u16, u32)> = Vec::new();
        for &(spid, id) in &old {
            let same = self.streams.get(&id).is_some_and(|st| {
                entries
                    .iter()
                    .find(|e| e.pid == spid)
                    .is_some_and(|e| e.stream_type == st.stream_type && e.kind == Some(st.kind))
            });
            if same {
                kept.push((spid, id));
            } else {
                self.remove_stream(id);
            }
        }
        let mut streams = Vec::new();
        let mut unsupported = Vec::new();
        let mut seen: Vec<u16> = Vec::new();
        for e in &entries {
            if seen.contains(&e.pid) {
                continue;
            }
            seen.push(e.pid);
            if let Some(&k) = kept.iter().find(|k| k.0 == e.pid) {
                if let Some(st) = self.streams.get_mut(&k.1) {
                    st.opus_channels = e.opus_channels;
                }
                streams.push(k);
                continue;
            }
            let Some(kind) = e.kind else {
                if !old_unsupported.contains(&(e.pid, e.stream_type)) {
                    self.stats.unsupported_streams += 1;
                }
                unsupported.push((e.pid, e.stream_type));
                continue;
            };
            if e.pid == NULL_PID || e.pid < 0x10 || self.roles[usize::from(e.pid)] != PidRole::None
            {
                self.stats.psi_errors += 1;
                continue;
            }
            if self.streams.len() >= self.limits.max_streams {
                self.stats.limit_drops += 1;
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.roles[usize::from(e.pid)] = PidRole::Es(id);
            self.streams.insert(
                id,
                EsStream {
                    program: number,
                    pid: e.pid,
                    stream_type: e.stream_type,
                    kind,
                    opus_channels: e.opus_channels,
                    announced: None,
                    disc_sent: false,
                    last_dts: None,
                    cc: NO_CC,
                    pes: BytesMut::new(),
                    pes_active: false,
                    pes_total: 0,
                    pes_rai: false,
                    size_hint: 0,
                    params: ParamSets::default(),
                    audio_key: None,
                    carry: Vec::new(),
                    clock: None,
                },
            );
            streams.push((e.pid, id));
        }
        if let Some(prog) = self.programs.get_mut(&number) {
            prog.pcr_pid = pcr_pid;
            prog.streams = streams;
            prog.unsupported = unsupported;
            prog.last_pmt = Some(s.to_vec());
        }
    }

    // ---- PES ----

    fn es_packet(&mut self, id: u32, pusi: bool, rai: bool, payload: &[u8]) {
        if pusi {
            self.complete_pes(id);
        }
        let max_pes = self.limits.max_pes_bytes;
        let max_buffered = self.limits.max_buffered_bytes;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if pusi {
            s.pes_active = true;
            s.pes_rai = rai;
            s.pes_total = match payload {
                [0, 0, 1, _, a, b, ..] => match usize::from(u16::from_be_bytes([*a, *b])) {
                    0 => 0,
                    n => n + 6,
                },
                _ => 0,
            };
            let want = if s.pes_total > 0 {
                s.pes_total
            } else {
                s.size_hint + s.size_hint / 4 + PACKET_LEN
            };
            s.pes = BytesMut::with_capacity(want.min(max_pes).min(max_buffered));
        } else if !s.pes_active {
            return;
        }
        if s.pes.len() + payload.len() > max_pes || self.buffered + payload.len() > max_buffered {
            self.buffered -= s.pes.len();
            s.pes = BytesMut::new();
            s.pes_active = false;
            self.stats.pes_errors += 1;
            self.stats.limit_drops += 1;
            return;
        }
        s.pes.extend_from_slice(payload);
        self.buffered += payload.len();
        if s.pes_total > 0 && s.pes.len() >= s.pes_total {
            self.complete_pes(id);
        }
    }

    /// The PES of a stream ends: at the next PES start, at its length, or
    /// at the end of input.
    fn complete_pes(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if !s.pes_active {
            return;
        }
        s.pes_active = false;
        let pes = std::mem::take(&mut s.pes);
        self.buffered -= pes.len();
        if s.pes_total > 0 && pes.len() < s.pes_total {
            // Cut short: the next PES started early (or input ended).
            self.stats.pes_errors += 1;
            return;
        }
        s.size_hint = pes.len();
        let rai = s.pes_rai;
        let pes = pes.freeze();
        let header = match parse_pes_header(&pes) {
            Ok(h) => h,
            Err(PesError::StartCode | PesError::Truncated | PesError::Marker) => {
                self.stats.pes_errors += 1;
                return;
            }
        };
        if header.stream_id == 0xBE {
            return; // padding_stream
        }
        let payload = pes.slice(header.payload_offset..header.payload_end);
        let Some(prog) = self.programs.get_mut(&s.program) else {
            return;
        };
        let dts_raw = header.dts.or(header.pts);
        let (pts, dts) = match (header.pts, dts_raw) {
            (Some(p), Some(d)) => {
                let dts = extend_ts(prog.ts_ref, d);
                prog.ts_ref = Some(dts);
                (Some(extend_ts(Some(dts), p)), Some(dts))
            }
            _ => (None, None),
        };
        match s.kind {
            EsKind::H264 | EsKind::Hevc => self.video_pes(id, dts.zip(pts), rai, payload),
            EsKind::Audio(_, format) => self.audio_pes(id, format, pts, payload),
        }
    }

    fn push_frame(&mut self, id: u32, dts: i64, pts: i64, keyframe: bool, payload: Bytes) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.last_dts.is_some_and(|last| dts < last) && !s.disc_sent {
            self.stats.timestamp_jumps += 1;
            self.events.push_back(TsEvent::Discontinuity { id });
        }
        s.last_dts = Some(dts);
        s.disc_sent = false;
        self.stats.frames += 1;
        self.events.push_back(TsEvent::Frame(Frame {
            track: id,
            dts,
            pts,
            keyframe,
            payload,
        }));
    }

    fn announce(&mut self, id: u32, track: Track) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.announced.as_ref() == Some(&track) {
            return;
        }
        s.announced = Some(track.clone());
        self.events.push_back(TsEvent::Track {
            track,
            program: s.program,
            pid: s.pid,
        });
    }

    // ---- video ----

    fn video_pes(&mut self, id: u32, ts: Option<(i64, i64)>, rai: bool, payload: Bytes) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let hevc = s.kind == EsKind::Hevc;
        let Some((units, leading)) = annex_b_units(&payload) else {
            if !payload.is_empty() {
                self.stats.es_errors += 1;
                self.stats.dropped_frames += 1;
            }
            return;
        };
        if leading > 0 {
            self.stats.es_errors += 1;
        }
        let mut keyframe = rai;
        let mut changed = false;
        let mut bad_params = false;
        let mut size = 0;
        let mut keep: Vec<(usize, usize)> = Vec::with_capacity(units.len());
        for &(a, b) in &units {
            let nal = &payload[a..b];
            let (kind, param) = if hevc {
                let t = (nal[0] >> 1) & 0x3F;
                match t {
                    35 => (NalClass::Skip, None),
                    NAL_VPS => (NalClass::Param, Some(0)),
                    NAL_SPS => (NalClass::Param, Some(1)),
                    NAL_PPS => (NalClass::Param, Some(2)),
                    16..=23 => (NalClass::Key, None),
                    _ => (NalClass::Other, None),
                }
            } else {
                match nal[0] & 0x1F {
                    9 => (NalClass::Skip, None),
                    7 => (NalClass::Param, Some(1)),
                    8 => (NalClass::Param, Some(2)),
                    5 => (NalClass::Key, None),
                    _ => (NalClass::Other, None),
                }
            };
            match kind {
                NalClass::Skip => {}
                NalClass::Param => {
                    let which = param.unwrap_or(0);
                    let id = if hevc {
                        hevc_parameter_set_id(nal)
                    } else if which == 1 {
                        avc_sps_id(nal)
                    } else {
                        avc_pps_id(nal)
                    };
                    match id {
                        Ok(psid) => {
                            let map = match which {
                                0 => &mut s.params.vps,
                                1 => &mut s.params.sps,
                                _ => &mut s.params.pps,
                            };
                            if map.get(&psid).map(|b| &b[..]) != Some(nal) {
                                map.insert(psid, payload.slice(a..b));
                                changed = true;
                            }
                        }
                        Err(_) => bad_params = true,
                    }
                }
                NalClass::Key => {
                    keyframe = true;
                    size += 4 + (b - a);
                    keep.push((a, b));
                }
                NalClass::Other => {
                    size += 4 + (b - a);
                    keep.push((a, b));
                }
            }
        }
        if bad_params {
            self.stats.es_errors += 1;
        }
        if changed {
            let p = &s.params;
            let sps: Vec<Bytes> = p.sps.values().cloned().collect();
            let pps: Vec<Bytes> = p.pps.values().cloned().collect();
            let ready = !sps.is_empty() && !pps.is_empty() && (!hevc || !p.vps.is_empty());
            if ready {
                let record = if hevc {
                    let vps: Vec<Bytes> = p.vps.values().cloned().collect();
                    HevcConfig::record_from_parameter_sets(&vps, &sps, &pps)
                } else {
                    AvcConfig::record_from_parameter_sets(&sps, &pps)
                };
                let codec = if hevc { Codec::H265 } else { Codec::H264 };
                match record.and_then(|r| Track::with_config(id, codec, TS_TIMEBASE, r.into())) {
                    Ok(track) => self.announce(id, track),
                    Err(_) => self.stats.es_errors += 1,
                }
            }
        }
        if keep.is_empty() {
            return;
        }
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if s.announced.is_none() {
            self.stats.dropped_frames += 1;
            return;
        }
        let Some((dts, pts)) = ts else {
            // Part of an access unit split over PES packets: not supported.
            self.stats.pes_errors += 1;
            self.stats.dropped_frames += 1;
            return;
        };
        let mut out = Vec::with_capacity(size);
        for (a, b) in keep {
            out.extend_from_slice(&((b - a) as u32).to_be_bytes());
            out.extend_from_slice(&payload[a..b]);
        }
        self.push_frame(id, dts, pts, keyframe, Bytes::from(out));
    }

    // ---- audio ----

    fn audio_pes(&mut self, id: u32, format: AudioFormat, pts: Option<i64>, payload: Bytes) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let carry_len = s.carry.len();
        let data = if carry_len == 0 {
            payload
        } else {
            let mut v = std::mem::take(&mut s.carry);
            v.extend_from_slice(&payload);
            Bytes::from(v)
        };
        let mut pos = 0;
        let mut in_garbage = false;
        let mut rebased = false;
        while pos < data.len() {
            let rest = &data[pos..];
            let f = match format.scan(rest) {
                Scan::Frame(f) => f,
                Scan::NeedMore => break,
                Scan::Bad => {
                    if !in_garbage {
                        in_garbage = true;
                        self.stats.es_errors += 1;
                    }
                    pos += 1;
                    continue;
                }
                Scan::Skip(n) => {
                    self.stats.es_errors += 1;
                    pos += n.max(1);
                    in_garbage = false;
                    continue;
                }
            };
            if f.len > rest.len() {
                break;
            }
            in_garbage = false;
            // The PES's PTS belongs to the first frame starting in it.
            let s = self.streams.get_mut(&id).expect("stream");
            if !rebased && pos >= carry_len {
                rebased = true;
                if let Some(p) = pts {
                    s.clock = Some((p, 0, f.rate));
                }
            }
            let frame_pts = match &mut s.clock {
                Some((base, n, rate)) => {
                    if *rate != f.rate {
                        *base += crate::media::rescale(*n as i64, *rate, TS_TIMEBASE);
                        *n = 0;
                        *rate = f.rate;
                    }
                    let t = *base + crate::media::rescale(*n as i64, *rate, TS_TIMEBASE);
                    *n += u64::from(f.samples);
                    Some(t)
                }
                None => None,
            };
            let frame = data.slice(pos + f.payload_offset..pos + f.len);
            pos += f.len;
            if frame.is_empty() {
                self.stats.es_errors += 1;
                continue;
            }
            let Some(t) = frame_pts else {
                self.stats.dropped_frames += 1;
                continue;
            };
            self.audio_config(id, f.key);
            if self.streams.get(&id).is_some_and(|s| s.announced.is_some()) {
                self.push_frame(id, t, t, true, frame);
            } else {
                self.stats.dropped_frames += 1;
            }
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let left = data.len() - pos.min(data.len());
        if left > MAX_AUDIO_FRAME {
            self.stats.es_errors += 1;
        } else if left > 0 {
            s.carry.extend_from_slice(&data[data.len() - left..]);
        }
    }

    /// Announce (or re-announce) an audio track from a frame header.
    fn audio_config(&mut self, id: u32, key: AudioKey) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let EsKind::Audio(codec, _) = s.kind else {
            return;
        };
        if s.announced.is_some() {
            match (s.audio_key, key) {
                (_, AudioKey::Opus { .. }) => return,
                (Some(k), _) if k == key => return,
                _ => {}
            }
        }
        s.audio_key = Some(key);
        let track = match key {
            AudioKey::Adts {
                object_type,
                sf_index,
                channels,
            } => {
                let asc = AudioSpecificConfig::encode(
                    object_type,
                    crate::media::AAC_SAMPLE_RATES[usize::from(sf_index)],
                    channels,
                );
                Track::with_config(id, Codec::Aac, TS_TIMEBASE, asc.into())
            }
            AudioKey::Plain {
                sample_rate,
                channels,
            } => {
                let mut t = Track::new(id, codec, TS_TIMEBASE);
                t.info.sample_rate = Some(sample_rate);
                t.info.channels = Some(channels);
                Ok(t)
            }
            AudioKey::Opus { start_trim } => {
                let head = OpusHead {
                    channels: s.opus_channels,
                    pre_skip: start_trim,
                    input_sample_rate: 48000,
                    output_gain: 0,
                    mapping_family: 0,
                };
                Track::with_config(id, Codec::Opus, TS_TIMEBASE, head.to_opus_head().into())
            }
        };
        match track {
            Ok(t) => self.announce(id, t),
            Err(_) => self.stats.es_errors += 1,
        }
    }
}

/// Result of looking for a confirmed packet start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Found(usize),
    /// The candidate here needs bytes past the end of the buffer to be
    /// decided.
    NeedMore(usize),
    None,
}

/// The first `n` in `from..to` where a sync byte has sync bytes 188 and 376
/// bytes on (at the end of input: as far as the input goes, with at least
/// one whole packet).
fn confirmed_sync(buf: &[u8], from: usize, to: usize, at_end: bool) -> Probe {
    for n in from..to.min(buf.len()) {
        if buf[n] != SYNC_BYTE {
            continue;
        }
        let a = buf.get(n + PACKET_LEN);
        let b = buf.get(n + 2 * PACKET_LEN);
        if a.is_some_and(|&x| x != SYNC_BYTE) || b.is_some_and(|&x| x != SYNC_BYTE) {
            continue;
        }
        if b.is_some() || (at_end && n + PACKET_LEN <= buf.len()) {
            return Probe::Found(n);
        }
        if !at_end {
            return Probe::NeedMore(n);
        }
    }
    Probe::None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NalClass {
    /// Access unit delimiters: dropped.
    Skip,
    /// Parameter sets: into the configuration.
    Param,
    /// IDR / IRAP slices.
    Key,
    Other,
}

/// If the section in `sb` is complete (or can never be), move it to `done`
/// (an empty vector for a section that is too long).
fn take_section(sb: &mut SectionBuf, done: &mut Vec<Vec<u8>>) {
    if !sb.active {
        return;
    }
    match section_total(&sb.buf) {
        Some(t) if t > MAX_SECTION => {
            done.push(Vec::new());
            sb.active = false;
            sb.buf.clear();
        }
        Some(t) if t <= sb.buf.len() => {
            sb.buf.truncate(t);
            done.push(std::mem::take(&mut sb.buf));
            sb.active = false;
        }
        _ if sb.buf.len() > MAX_SECTION => {
            done.push(Vec::new());
            sb.active = false;
            sb.buf.clear();
        }
        _ => {}
    }
}

/// Bytes of the section starting at `d[0]`, once its length is there.
fn section_total(d: &[u8]) -> Option<usize> {
    (d.len() >= 3).then(|| 3 + (usize::from(d[1] & 0x0F) << 8 | usize::from(d[2])))
}

#[derive(Debug, Clone, Copy)]
struct PmtEntry {
    stream_type: u8,
    pid: u16,
    kind: Option<EsKind>,
    opus_channels: u8,
}

/// The elementary streams of a PMT section (CRC already checked); `None`
/// when the loops run past the section.
fn parse_pmt(s: &[u8]) -> Option<Vec<PmtEntry>> {
    let end = s.len().checked_sub(4)?;
    let program_info_len = usize::from(u16::from_be_bytes([s[10] & 0x0F, s[11]]));
    let mut pos = 12usize.checked_add(program_info_len)?;
    if pos > end {
        return None;
    }
    let program_descriptors = &s[12..pos];
    let program_reg = registration(program_descriptors);
    let mut out = Vec::new();
    while pos < end {
        let e = s.get(pos..pos + 5)?;
        let info_len = usize::from(u16::from_be_bytes([e[3] & 0x0F, e[4]]));
        let descriptors = s.get(pos + 5..pos + 5 + info_len)?;
        if pos + 5 + info_len > end {
            return None;
        }
        let stream_type = e[0];
        let pid = u16::from_be_bytes([e[1] & 0x1F, e[2]]);
        let reg = registration(descriptors).or(program_reg);
        let mut opus_channels = 2;
        let kind = match stream_type {
            STREAM_TYPE_H264 => Some(EsKind::H264),
            STREAM_TYPE_HEVC => Some(EsKind::Hevc),
            STREAM_TYPE_AAC_ADTS => Some(EsKind::Audio(Codec::Aac, AudioFormat::Adts)),
            STREAM_TYPE_MPEG1_AUDIO | STREAM_TYPE_MPEG2_AUDIO => {
                Some(EsKind::Audio(Codec::Mp3, AudioFormat::MpegAudio))
            }
            STREAM_TYPE_AC3 => Some(EsKind::Audio(Codec::Ac3, AudioFormat::Ac3)),
            STREAM_TYPE_EAC3 => Some(EsKind::Audio(Codec::Eac3, AudioFormat::Eac3)),
            STREAM_TYPE_PRIVATE_PES => {
                let has = |tag: u8| descriptor(descriptors, tag).is_some();
                if reg == Some(*b"Opus") {
                    // DVB extension descriptor, Opus extension tag 0x80:
                    // channel_config_code.
                    let code = descriptor(descriptors, 0x7F)
                        .filter(|d| d.len() >= 2 && d[0] == 0x80)
                        .map_or(2, |d| d[1]);
                    match code {
                        1 | 2 => {
                            opus_channels = code;
                            Some(EsKind::Audio(Codec::Opus, AudioFormat::Opus))
                        }
                        0 => Some(EsKind::Audio(Codec::Opus, AudioFormat::Opus)),
                        _ => None,
                    }
                } else if has(0x7A) || reg == Some(*b"EAC3") {
                    Some(EsKind::Audio(Codec::Eac3, AudioFormat::Eac3))
                } else if has(0x6A) || reg == Some(*b"AC-3") {
                    Some(EsKind::Audio(Codec::Ac3, AudioFormat::Ac3))
                } else {
                    None
                }
            }
            _ => None,
        };
        out.push(PmtEntry {
            stream_type,
            pid,
            kind,
            opus_channels,
        });
        pos += 5 + info_len;
    }
    Some(out)
}

/// The body of the first descriptor with this tag.
fn descriptor(mut d: &[u8], tag: u8) -> Option<&[u8]> {
    while d.len() >= 2 {
        let len = usize::from(d[1]);
        let body = d.get(2..2 + len)?;
        if d[0] == tag {
            return Some(body);
        }
        d = &d[2 + len..];
    }
    None
}

/// The format_identifier of a registration descriptor (tag 5).
fn registration(d: &[u8]) -> Option<[u8; 4]> {
    descriptor(d, 0x05)
        .and_then(|b| b.get(..4))
        .map(|b| [b[0], b[1], b[2], b[3]])
}
