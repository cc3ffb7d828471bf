//! [`TsMuxer`]: tracks and frames to 188-byte transport packets.
use super::*;
use crate::Error;
use crate::media::{
    AudioSpecificConfig, AvcConfig, Codec, Frame, HevcConfig, NAL_PPS, NAL_SPS, NAL_VPS, OpusHead,
    Track, rescale,
};

const MASK33: i64 = (1 << 33) - 1;
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// H.264 access unit delimiter, primary_pic_type 7 (any slice type).
const H264_AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
/// HEVC access unit delimiter (type 35), pic_type 2 (I, P or B).
const HEVC_AUD: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];
const H264_NAL_AUD: u8 = 9;
const HEVC_NAL_AUD: u8 = 35;
const ADTS_HEADER_LEN: usize = 7;
const MAX_ADTS_FRAME: usize = 0x1FFF;
/// Room for a PMT section in one packet: 184 bytes minus the pointer field.
const MAX_PMT_SECTION: usize = PACKET_LEN - 4 - 1;

fn mux_error(track: u32, reason: impl std::fmt::Display) -> Error {
    Error::InvalidConfig {
        what: "MPEG-TS mux",
        reason: format!("track {track}: {reason}"),
    }
}

/// How a track's frames become PES payload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EsForm {
    /// AVCC to Annex B, AUD, SPS/PPS before keyframes.
    H264,
    /// As H.264 with HEVC NAL headers, VPS/SPS/PPS.
    Hevc,
    /// ADTS header (bytes 0..7 with the frame length still 0) + raw AU.
    Aac([u8; ADTS_HEADER_LEN]),
    /// Whole MPEG audio frames as they are.
    Mp3,
    /// `opus_control_header` + packet; the start trim still to signal
    /// (the head's pre-skip, in 48 kHz samples).
    Opus(u16),
}

#[derive(Debug, Clone)]
struct EsTrack {
    id: u32,
    timebase: u32,
    pid: u16,
    stream_id: u8,
    stream_type: u8,
    video: bool,
    /// ES_info descriptors for the PMT.
    descriptors: Vec<u8>,
    form: EsForm,
    nal_length_size: usize,
    /// Parameter sets in Annex B form, written before each keyframe.
    param_sets: Vec<u8>,
    /// Continuity counter of the next packet with payload.
    cc: u8,
}

impl EsTrack {
    fn new(track: &Track, pid: u16, stream_id: u8) -> Result<EsTrack, Error> {
        let id = track.id;
        if track.timebase == 0 {
            return Err(mux_error(id, "timebase 0"));
        }
        let config = || {
            track
                .config
                .as_ref()
                .ok_or_else(|| mux_error(id, format!("{} without configuration", track.codec)))
        };
        let mut es = EsTrack {
            id,
            timebase: track.timebase,
            pid,
            stream_id,
            stream_type: 0,
            video: track.codec.is_video(),
            descriptors: Vec::new(),
            form: EsForm::Mp3,
            nal_length_size: 0,
            param_sets: Vec::new(),
            cc: 0,
        };
        match track.codec {
            Codec::H264 => {
                let c = AvcConfig::parse(config()?)?;
                es.stream_type = STREAM_TYPE_H264;
                es.form = EsForm::H264;
                es.nal_length_size = usize::from(c.nal_length_size);
                for nal in c.sps.iter().chain(&c.pps) {
                    es.param_sets.extend_from_slice(&START_CODE);
                    es.param_sets.extend_from_slice(nal);
                }
            }
            Codec::H265 => {
                let c = HevcConfig::parse(config()?)?;
                es.stream_type = STREAM_TYPE_HEVC;
                es.form = EsForm::Hevc;
                es.nal_length_size = usize::from(c.nal_length_size);
                for t in [NAL_VPS, NAL_SPS, NAL_PPS] {
                    for nal in c.nalus(t) {
                        es.param_sets.extend_from_slice(&START_CODE);
                        es.param_sets.extend_from_slice(nal);
                    }
                }
            }
            Codec::Aac => {
                let c = AudioSpecificConfig::parse(config()?)?;
                es.stream_type = STREAM_TYPE_AAC_ADTS;
                es.form = EsForm::Aac(adts_template(id, &c)?);
            }
            Codec::Mp3 => {
                let low = track.info.sample_rate.is_some_and(|r| r < 32000);
                es.stream_type = if low {
                    STREAM_TYPE_MPEG2_AUDIO
                } else {
                    STREAM_TYPE_MPEG1_AUDIO
                };
                es.form = EsForm::Mp3;
            }
            Codec::Opus => {
                let h = OpusHead::parse(config()?)?;
                if h.mapping_family != 0 || h.channels > 2 {
                    return Err(mux_error(
                        id,
                        format!(
                            "Opus with channel mapping family {} and {} channels: only \
                             family 0 (mono/stereo) is written",
                            h.mapping_family, h.channels
                        ),
                    ));
                }
                es.stream_type = STREAM_TYPE_PRIVATE_PES;
                es.form = EsForm::Opus(h.pre_skip);
                // registration_descriptor "Opus", then the DVB extension
                // descriptor with the Opus extension tag and channel_config_code.
                es.descriptors = vec![0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, h.channels];
            }
            c => return Err(mux_error(id, format!("codec {c} not supported in MPEG-TS"))),
        }
        if es.nal_length_size != 0 && !(1..=4).contains(&es.nal_length_size) {
            return Err(mux_error(id, "NAL length size not 1..=4"));
        }
        Ok(es)
    }

    /// Bytes of PES payload this frame becomes; checks the payload.
    fn es_len(&self, frame: &Frame) -> Result<usize, Error> {
        let p = &frame.payload;
        Ok(match &self.form {
            EsForm::H264 | EsForm::Hevc => {
                let mut n = if self.form == EsForm::H264 {
                    H264_AUD.len()
                } else {
                    HEVC_AUD.len()
                };
                if frame.keyframe {
                    n += self.param_sets.len();
                }
                self.for_each_nal(p, |nal| n += START_CODE.len() + nal.len())?;
                n
            }
            EsForm::Aac(_) => {
                let n = ADTS_HEADER_LEN + p.len();
                if n > MAX_ADTS_FRAME {
                    return Err(mux_error(
                        self.id,
                        format!("AAC frame of {} bytes too long for ADTS", p.len()),
                    ));
                }
                n
            }
            EsForm::Mp3 => p.len(),
            EsForm::Opus(pending) => {
                let trim = if opus_trim(*pending, p) > 0 { 2 } else { 0 };
                2 + p.len() / 255 + 1 + trim + p.len()
            }
        })
    }

    /// Calls `f` with each NAL unit of an AVCC payload, skipping empty units
    /// and access unit delimiters (the muxer writes its own).
    fn for_each_nal(&self, mut p: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), Error> {
        let ls = self.nal_length_size;
        while !p.is_empty() {
            if p.len() < ls {
                return Err(Error::Truncated {
                    what: "MPEG-TS mux: NAL unit length",
                    needed: ls,
                    had: p.len(),
                });
            }
            let len = p[..ls]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            let rest = &p[ls..];
            if rest.len() < len {
                return Err(Error::Truncated {
                    what: "MPEG-TS mux: NAL unit",
                    needed: len,
                    had: rest.len(),
                });
            }
            let nal = &rest[..len];
            p = &rest[len..];
            let is_aud = match (nal.first(), &self.form) {
                (None, _) => true,
                (Some(b), EsForm::H264) => b & 0x1F == H264_NAL_AUD,
                (Some(b), _) => (b >> 1) & 0x3F == HEVC_NAL_AUD,
            };
            if !is_aud {
                f(nal);
            }
        }
        Ok(())
    }

    fn pmt_entry_len(&self) -> usize {
        5 + self.descriptors.len()
    }
}

/// The ADTS header of a frame of this configuration, frame length 0.
fn adts_template(track: u32, c: &AudioSpecificConfig) -> Result<[u8; 7], Error> {
    // HE-AAC (SBR/PS) is signalled implicitly: ADTS carries the core.
    let object_type = c.base_object_type;
    if !(1..=4).contains(&object_type) {
        return Err(mux_error(
            track,
            format!("AAC object type {object_type} cannot be signalled in ADTS"),
        ));
    }
    let Some(sf_index) = crate::media::AAC_SAMPLE_RATES
        .iter()
        .position(|&r| r == c.core_sample_rate)
    else {
        return Err(mux_error(
            track,
            format!("AAC sample rate {} has no ADTS index", c.core_sample_rate),
        ));
    };
    let ch = c.channel_config;
    if ch == 0 || ch > 7 {
        return Err(mux_error(
            track,
            format!("AAC channel configuration {ch} cannot be signalled in ADTS"),
        ));
    }
    let profile = object_type - 1;
    Ok([
        0xFF,
        0xF1, // MPEG-4, layer 0, no CRC
        (profile << 6) | ((sf_index as u8) << 2) | ((ch >> 2) & 1),
        (ch & 3) << 6,
        0,
        0x1F, // buffer fullness 0x7FF (VBR)
        0xFC, // one raw data block
    ])
}

/// Samples (at 48 kHz) of an Opus packet, from its TOC byte (RFC 6716
/// 3.1); 0 for an empty or malformed packet.
fn opus_samples(p: &[u8]) -> u32 {
    let Some(&toc) = p.first() else { return 0 };
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => p.get(1).map_or(0, |b| u32::from(b & 0x3F)),
    };
    frame * count
}

/// The start trim to signal with this packet while `pending` pre-skip
/// samples remain (at most 13 bits, as the field allows).
fn opus_trim(pending: u16, p: &[u8]) -> u16 {
    (u32::from(pending).min(opus_samples(p)).min(0x1FFF)) as u16
}

/// Writes one PES packet as transport packets, taking the PES bytes in
/// pieces; knows the total up front so it can stuff the last packet.
struct PesWriter<'a> {
    out: &'a mut Vec<u8>,
    pid: u16,
    cc: u8,
    remaining: usize,
    room: usize,
    first: bool,
    pcr: Option<i64>,
    random_access: bool,
}

impl PesWriter<'_> {
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.room == 0 {
                self.start_packet();
            }
            let n = self.room.min(data.len());
            self.out.extend_from_slice(&data[..n]);
            self.room -= n;
            self.remaining -= n;
            data = &data[n..];
        }
    }

    fn start_packet(&mut self) {
        let mut af = [0u8; 7];
        let mut af_len = 0;
        if self.first && (self.pcr.is_some() || self.random_access) {
            af[0] = if self.random_access { 0x40 } else { 0 };
            af_len = 1;
            if let Some(pcr) = self.pcr {
                af[0] |= 0x10;
                put_pcr(&mut af[1..7], pcr);
                af_len = 7;
            }
        }
        let af_total = if af_len > 0 { 1 + af_len } else { 0 };
        let cap = PACKET_LEN - 4 - af_total;
        let len = cap.min(self.remaining);
        let stuff = cap - len;
        let has_af = af_total > 0 || stuff > 0;
        let pusi = if self.first { 0x40 } else { 0 };
        self.out.extend_from_slice(&[
            SYNC_BYTE,
            pusi | (self.pid >> 8) as u8,
            self.pid as u8,
            if has_af { 0x30 } else { 0x10 } | self.cc,
        ]);
        self.cc = (self.cc + 1) & 0x0F;
        if af_len > 0 {
            self.out.push((af_len + stuff) as u8);
            self.out.extend_from_slice(&af[..af_len]);
            self.out.resize(self.out.len() + stuff, 0xFF);
        } else if stuff == 1 {
            self.out.push(0);
        } else if stuff > 1 {
            self.out.extend_from_slice(&[(stuff - 1) as u8, 0]);
            self.out.resize(self.out.len() + stuff - 2, 0xFF);
        }
        self.room = len;
        self.first = false;
    }
}

/// 33-bit base (27 MHz / 300) and extension 0.
fn put_pcr(b: &mut [u8], pcr90: i64) {
    let base = (pcr90 & MASK33) as u64;
    b[0] = (base >> 25) as u8;
    b[1] = (base >> 17) as u8;
    b[2] = (base >> 9) as u8;
    b[3] = (base >> 1) as u8;
    b[4] = (((base & 1) as u8) << 7) | 0x7E;
    b[5] = 0;
}

/// A PTS or DTS field with its 4-bit prefix and marker bits.
fn put_ts(b: &mut [u8], prefix: u8, ts: i64) {
    let ts = (ts & MASK33) as u64;
    b[0] = (prefix << 4) | (((ts >> 29) as u8) & 0x0E) | 1;
    b[1] = (ts >> 22) as u8;
    b[2] = (((ts >> 14) as u8) & 0xFE) | 1;
    b[3] = (ts >> 7) as u8;
    b[4] = ((ts << 1) as u8) | 1;
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The CRC-32 of MPEG-2 PSI sections (polynomial 0x04C11DB7, initial value
/// 0xFFFFFFFF, not reflected, no final XOR). A section including its CRC
/// gives 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |c, &b| {
        (c << 8) ^ CRC_TABLE[((c >> 24) as u8 ^ b) as usize]
    })
}

/// An MPEG-TS muxer for one program: see the [module docs](super) for PIDs,
/// stream types and what is inserted.
///
/// Use: [`new`](Self::new) with the tracks, then
/// [`write_frame`](Self::write_frame) for each frame in decode order
/// (interleaved across tracks as they come). PAT/PMT come by themselves
/// before the first frame and each keyframe of the PCR track; call
/// [`write_psi`](Self::write_psi) at any other segment start. Everything is
/// appended to the caller's `Vec`, whole 188-byte packets only.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    tracks: Vec<EsTrack>,
    pcr_index: usize,
    pat_cc: u8,
    pmt_cc: u8,
    pmt_version: u8,
    last_pcr: Option<i64>,
    psi_written: bool,
}

impl TsMuxer {
    /// A muxer for these tracks (at least one; ids unique). H.264, HEVC, AAC
    /// and Opus need their configuration; AV1, VP9, AC-3 and E-AC-3 are
    /// refused, as are Opus streams other than mono/stereo mapping family 0
    /// and AAC that ADTS cannot signal. Errors are
    /// [`Error::InvalidConfig`] with `what: "MPEG-TS mux"` naming the track.
    pub fn new(tracks: &[Track]) -> Result<TsMuxer, Error> {
        if tracks.is_empty() {
            return Err(Error::InvalidConfig {
                what: "MPEG-TS mux",
                reason: "no tracks".into(),
            });
        }
        let mut es = Vec::with_capacity(tracks.len());
        let (mut videos, mut audios, mut opus) = (0u8, 0u8, 0u8);
        for (i, t) in tracks.iter().enumerate() {
            if tracks[..i].iter().any(|o| o.id == t.id) {
                return Err(mux_error(t.id, "duplicate track id"));
            }
            let stream_id = match t.codec {
                Codec::Opus => {
                    opus += 1;
                    0xBD
                }
                c if c.is_video() => {
                    videos += 1;
                    0xE0 + videos - 1
                }
                _ => {
                    audios += 1;
                    0xC0 + audios - 1
                }
            };
            if videos > 16 || audios > 32 || opus > 1 {
                return Err(mux_error(t.id, "too many tracks of this kind"));
            }
            es.push(EsTrack::new(t, FIRST_ES_PID + i as u16, stream_id)?);
        }
        let pmt_len = 12 + es.iter().map(EsTrack::pmt_entry_len).sum::<usize>() + 4;
        if pmt_len > MAX_PMT_SECTION {
            return Err(Error::InvalidConfig {
                what: "MPEG-TS mux",
                reason: format!("{} tracks do not fit in a one-packet PMT", tracks.len()),
            });
        }
        let pcr_index = es.iter().position(|t| t.video).unwrap_or(0);
        Ok(TsMuxer {
            tracks: es,
            pcr_index,
            pat_cc: 0,
            pmt_cc: 0,
            pmt_version: 0,
            last_pcr: None,
            psi_written: false,
        })
    }

    /// Replace the configuration of the track with `track.id` (a new
    /// sequence header). The codec may change within its kind; the PMT
    /// version is bumped when its content changes. The PID stays.
    pub fn set_track(&mut self, track: &Track) -> Result<(), Error> {
        let i = self.index(track.id)?;
        let old = &self.tracks[i];
        if old.video != track.codec.is_video()
            || (track.codec == Codec::Opus) != (old.stream_id == 0xBD)
        {
            return Err(mux_error(track.id, "a track cannot change kind"));
        }
        let mut es = EsTrack::new(track, old.pid, old.stream_id)?;
        es.cc = old.cc;
        if let (EsForm::Opus(new), EsForm::Opus(left)) = (&mut es.form, &old.form) {
            *new = *left;
        }
        if es.stream_type != old.stream_type || es.descriptors != old.descriptors {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.tracks[i] = es;
        Ok(())
    }

    /// The PID of the track with this id.
    pub fn pid(&self, track: u32) -> Option<u16> {
        self.tracks.iter().find(|t| t.id == track).map(|t| t.pid)
    }

    /// The PID that carries the PCR.
    pub fn pcr_pid(&self) -> u16 {
        self.tracks[self.pcr_index].pid
    }

    fn index(&self, track: u32) -> Result<usize, Error> {
        self.tracks
            .iter()
            .position(|t| t.id == track)
            .ok_or_else(|| mux_error(track, "unknown track"))
    }

    /// Append a PAT and a PMT packet (376 bytes).
    pub fn write_psi(&mut self, out: &mut Vec<u8>) {
        out.reserve(2 * PACKET_LEN);
        // PAT
        let start = self.psi_header(out, PAT_PID, true);
        let s = out.len();
        out.extend_from_slice(&[0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0x00, 0x00]);
        out.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        out.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        finish_section(out, s, start);
        // PMT
        let start = self.psi_header(out, PMT_PID, false);
        let s = out.len();
        let len = 9
            + self
                .tracks
                .iter()
                .map(EsTrack::pmt_entry_len)
                .sum::<usize>()
            + 4;
        out.extend_from_slice(&[0x02, 0xB0 | (len >> 8) as u8, len as u8]);
        out.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        out.extend_from_slice(&[0xC1 | (self.pmt_version << 1), 0x00, 0x00]);
        out.extend_from_slice(&(0xE000 | self.pcr_pid()).to_be_bytes());
        out.extend_from_slice(&[0xF0, 0x00]);
        for t in &self.tracks {
            out.push(t.stream_type);
            out.extend_from_slice(&(0xE000 | t.pid).to_be_bytes());
            out.extend_from_slice(&(0xF000 | t.descriptors.len() as u16).to_be_bytes());
            out.extend_from_slice(&t.descriptors);
        }
        finish_section(out, s, start);
        self.psi_written = true;
    }

    /// Packet header and pointer field of a PSI packet; returns the
    /// packet's start.
    fn psi_header(&mut self, out: &mut Vec<u8>, pid: u16, pat: bool) -> usize {
        let cc = if pat {
            &mut self.pat_cc
        } else {
            &mut self.pmt_cc
        };
        let start = out.len();
        out.extend_from_slice(&[SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | *cc, 0]);
        *cc = (*cc + 1) & 0x0F;
        start
    }

    /// Append one frame as a PES packet in transport packets (plus PAT/PMT
    /// before the first frame and keyframes of the PCR track, and a
    /// PCR-only packet when the PCR is due). PTS/DTS are the frame's,
    /// rescaled to 90 kHz and wrapped at 33 bits; DTS is written when it
    /// differs from PTS. Video PES packets have length 0 (unbounded).
    ///
    /// On error (unknown track, truncated NAL unit, a frame too long for
    /// ADTS or an audio PES) nothing was appended.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
        let idx = self.index(frame.track)?;
        let t = &self.tracks[idx];
        let es_len = t.es_len(frame)?;
        let pts = rescale(frame.pts, t.timebase, 90_000);
        let dts = rescale(frame.dts, t.timebase, 90_000);
        let has_dts = pts != dts;
        let hdr_data_len = if has_dts { 10 } else { 5 };
        let pes_len = 9 + hdr_data_len + es_len;
        let length_field = if t.video {
            0
        } else {
            u16::try_from(pes_len - 6).map_err(|_| {
                mux_error(
                    t.id,
                    format!("audio frame of {es_len} bytes too long for a PES"),
                )
            })?
        };
        let video = t.video;
        out.reserve((pes_len / 176 + 5) * PACKET_LEN);

        if !self.psi_written || (idx == self.pcr_index && frame.keyframe && video) {
            self.write_psi(out);
        }
        let candidate = (dts - PCR_DELAY).max(0);
        let mut pcr = None;
        if idx == self.pcr_index {
            let p = self.last_pcr.map_or(candidate, |l| candidate.max(l));
            self.last_pcr = Some(p);
            pcr = Some(p);
        } else if self.last_pcr.is_none_or(|l| candidate - l >= PCR_INTERVAL) {
            let p = self.last_pcr.map_or(candidate, |l| candidate.max(l));
            self.last_pcr = Some(p);
            self.write_pcr_only(out, p);
        }

        let t = &mut self.tracks[idx];
        let mut w = PesWriter {
            out,
            pid: t.pid,
            cc: t.cc,
            remaining: pes_len,
            room: 0,
            first: true,
            pcr,
            random_access: video && frame.keyframe,
        };
        let mut hdr = [0u8; 19];
        hdr[..4].copy_from_slice(&[0, 0, 1, t.stream_id]);
        hdr[4..6].copy_from_slice(&length_field.to_be_bytes());
        hdr[6] = 0x84; // '10', data_alignment_indicator
        hdr[7] = if has_dts { 0xC0 } else { 0x80 };
        hdr[8] = hdr_data_len as u8;
        if has_dts {
            put_ts(&mut hdr[9..14], 0x3, pts);
            put_ts(&mut hdr[14..19], 0x1, dts);
        } else {
            put_ts(&mut hdr[9..14], 0x2, pts);
        }
        w.push(&hdr[..9 + hdr_data_len]);
        let p = &frame.payload;
        match &t.form {
            EsForm::H264 | EsForm::Hevc => {
                w.push(if t.form == EsForm::H264 {
                    &H264_AUD
                } else {
                    &HEVC_AUD
                });
                if frame.keyframe {
                    w.push(&t.param_sets);
                }
                t.for_each_nal(p, |nal| {
                    w.push(&START_CODE);
                    w.push(nal);
                })?;
            }
            EsForm::Aac(template) => {
                let mut h = *template;
                let n = ADTS_HEADER_LEN + p.len();
                h[3] |= ((n >> 11) & 3) as u8;
                h[4] = (n >> 3) as u8;
                h[5] |= ((n & 7) as u8) << 5;
                w.push(&h);
                w.push(p);
            }
            EsForm::Mp3 => w.push(p),
            EsForm::Opus(pending) => {
                let trim = opus_trim(*pending, p);
                w.push(&[0x7F, if trim > 0 { 0xF0 } else { 0xE0 }]);
                for _ in 0..p.len() / 255 {
                    w.push(&[0xFF]);
                }
                w.push(&[(p.len() % 255) as u8]);
                if trim > 0 {
                    w.push(&trim.to_be_bytes());
                }
                w.push(p);
            }
        }
        debug_assert_eq!(w.remaining, 0);
        debug_assert_eq!(w.room, 0);
        t.cc = w.cc;
        if let EsForm::Opus(pending) = &mut t.form {
            *pending -= opus_trim(*pending, p);
        }
        Ok(())
    }

    /// A packet on the PCR PID with only an adaptation field carrying `pcr`
    /// (no payload, so the continuity counter repeats the last one).
    fn write_pcr_only(&mut self, out: &mut Vec<u8>, pcr: i64) {
        let t = &self.tracks[self.pcr_index];
        let cc = t.cc.wrapping_sub(1) & 0x0F;
        let mut af = [0u8; 6];
        put_pcr(&mut af, pcr);
        out.extend_from_slice(&[
            SYNC_BYTE,
            (t.pid >> 8) as u8,
            t.pid as u8,
            0x20 | cc,
            183,
            0x10,
        ]);
        out.extend_from_slice(&af);
        out.resize(out.len() + PACKET_LEN - 12, 0xFF);
    }
}

/// Append the CRC of the section starting at `s`, then fill the packet
/// starting at `start` with 0xFF.
fn finish_section(out: &mut Vec<u8>, s: usize, start: usize) {
    let crc = crc32_mpeg2(&out[s..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.resize(start + PACKET_LEN, 0xFF);
}
