//! MPEG-TS muxer tests: a small transport stream reader checks every packet,
//! the continuity counters, PAT/PMT CRCs and the PES packets. Decoding with
//! ffprobe/ffmpeg is in tests/tests/packager_interop.rs.
use std::collections::HashMap;

use bytes::Bytes;

use super::*;
use crate::Error;

use crate::media::{AudioSpecificConfig, Codec, Frame, Track, rescale};

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
    };
}

/// One PES packet read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pes {
    pub stream_id: u8,
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub payload: Vec<u8>,
    pub random_access: bool,
    pub pcr: Option<i64>,
    /// Index of the PES among all PES packets and PSI of the stream.
    pub position: usize,
}

/// A transport stream taken apart.
#[derive(Debug, Default)]
pub(super) struct Demuxed {
    pub pes: HashMap<u16, Vec<Pes>>,
    /// (stream_type, pid, descriptors) of the last PMT.
    pub streams: Vec<(u8, u16, Vec<u8>)>,
    pub pcr_pid: Option<u16>,
    /// (pid, pcr) in stream order.
    pub pcrs: Vec<(u16, i64)>,
    /// Positions (in the same count as [`Pes::position`]) of PMTs.
    pub pmt_positions: Vec<usize>,
    pub pat_count: usize,
}

fn read_ts(b: &[u8]) -> i64 {
    (i64::from(b[0] & 0x0E) << 29)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

/// Parse a whole stream, asserting that it is well formed: 188-byte packets
/// with the sync byte, continuous counters per PID, valid adaptation fields,
/// PSI with good CRCs, PES headers consistent with their lengths.
pub(super) fn demux(data: &[u8]) -> Demuxed {
    assert_eq!(data.len() % PACKET_LEN, 0, "not whole packets");
    let mut d = Demuxed::default();
    let mut last_cc: HashMap<u16, u8> = HashMap::new();
    let mut open: HashMap<u16, (Vec<u8>, bool, Option<i64>)> = HashMap::new();
    let mut position = 0usize;
    let mut pending_pos: HashMap<u16, usize> = HashMap::new();
    let finish = |d: &mut Demuxed, pid: u16, buf: Vec<u8>, rai: bool, pcr, pos: usize| {
        assert!(buf.len() >= 9, "short PES on {pid:#x}");
        assert_eq!(&buf[..3], &[0, 0, 1], "PES start code");
        let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
        if len != 0 {
            assert_eq!(len + 6, buf.len(), "PES_packet_length on {pid:#x}");
        }
        assert_eq!(buf[6] & 0xC0, 0x80);
        let flags = buf[7] >> 6;
        let hdl = usize::from(buf[8]);
        let (pts, dts) = match flags {
            2 => {
                assert_eq!(buf[9] >> 4, 2);
                (Some(read_ts(&buf[9..14])), None)
            }
            3 => {
                assert_eq!(buf[9] >> 4, 3);
                assert_eq!(buf[14] >> 4, 1);
                (Some(read_ts(&buf[9..14])), Some(read_ts(&buf[14..19])))
            }
            _ => (None, None),
        };
        d.pes.entry(pid).or_default().push(Pes {
            stream_id: buf[3],
            pts,
            dts,
            payload: buf[9 + hdl..].to_vec(),
            random_access: rai,
            pcr,
            position: pos,
        });
    };
    for p in data.chunks(PACKET_LEN) {
        assert_eq!(p[0], SYNC_BYTE);
        assert_eq!(p[1] & 0x80, 0, "transport_error_indicator");
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        let afc = (p[3] >> 4) & 3;
        assert_ne!(afc, 0, "reserved adaptation_field_control");
        let cc = p[3] & 0x0F;
        let has_payload = afc & 1 != 0;
        if let Some(&last) = last_cc.get(&pid) {
            let expected = if has_payload { (last + 1) & 0x0F } else { last };
            assert_eq!(cc, expected, "CC on PID {pid:#x}");
        }
        last_cc.insert(pid, cc);
        let mut off = 4;
        let (mut rai, mut pcr) = (false, None);
        if afc & 2 != 0 {
            let len = usize::from(p[4]);
            assert!(len <= if has_payload { 182 } else { 183 });
            if len > 0 {
                let flags = p[5];
                rai = flags & 0x40 != 0;
                if flags & 0x10 != 0 {
                    let b = &p[6..12];
                    let base = (i64::from(b[0]) << 25)
                        | (i64::from(b[1]) << 17)
                        | (i64::from(b[2]) << 9)
                        | (i64::from(b[3]) << 1)
                        | i64::from(b[4] >> 7);
                    pcr = Some(base);
                    d.pcrs.push((pid, base));
                }
                let fields = 1 + if flags & 0x10 != 0 { 6 } else { 0 };
                assert_eq!(flags & 0x0F, 0, "unexpected AF fields");
                assert!(
                    p[5 + fields..5 + len].iter().all(|&b| b == 0xFF),
                    "stuffing"
                );
            }
            off = 5 + len;
        }
        if !has_payload {
            assert_eq!(off, PACKET_LEN, "adaptation-only packet not full");
            continue;
        }
        let payload = &p[off..];
        if pid == PAT_PID || Some(pid) == Some(PMT_PID) {
            assert!(pusi, "PSI in one packet");
            let ptr = usize::from(payload[0]);
            let sec = &payload[1 + ptr..];
            let len = usize::from(u16::from_be_bytes([sec[1] & 0x0F, sec[2]]));
            let sec = &sec[..3 + len];
            assert_eq!(crc32_mpeg2(sec), 0, "CRC of table {}", sec[0]);
            if pid == PAT_PID {
                assert_eq!(sec[0], 0);
                assert_eq!(&sec[8..12], &[0, 1, 0xF0, 0x00]);
                d.pat_count += 1;
            } else {
                assert_eq!(sec[0], 2);
                d.pcr_pid = Some(u16::from_be_bytes([sec[8] & 0x1F, sec[9]]));
                let pil = usize::from(u16::from_be_bytes([sec[10] & 0x0F, sec[11]]));
                let mut es = &sec[12 + pil..sec.len() - 4];
                d.streams.clear();
                while !es.is_empty() {
                    let epid = u16::from_be_bytes([es[1] & 0x1F, es[2]]);
                    let il = usize::from(u16::from_be_bytes([es[3] & 0x0F, es[4]]));
                    d.streams.push((es[0], epid, es[5..5 + il].to_vec()));
                    es = &es[5 + il..];
                }
                d.pmt_positions.push(position);
                position += 1;
            }
            continue;
        }
        if pusi {
            if let Some((buf, r, pc)) = open.remove(&pid) {
                finish(&mut d, pid, buf, r, pc, pending_pos[&pid]);
            }
            open.insert(pid, (payload.to_vec(), rai, pcr));
            pending_pos.insert(pid, position);
            position += 1;
        } else {
            assert!(!rai, "random_access_indicator after the PES start");
            let (buf, _, _) = open.get_mut(&pid).expect("payload before PUSI");
            buf.extend_from_slice(payload);
        }
    }
    for (pid, (buf, r, pc)) in open {
        finish(&mut d, pid, buf, r, pc, pending_pos[&pid]);
    }
    d
}

/// NAL units of an Annex B stream (4-byte start codes as the muxer writes).
pub(super) fn annex_b_nals(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    assert!(b.starts_with(&[0, 0, 0, 1]), "Annex B start");
    b = &b[4..];
    loop {
        match b.windows(4).position(|w| w == [0, 0, 0, 1]) {
            Some(i) => {
                out.push(&b[..i]);
                b = &b[i + 4..];
            }
            None => {
                out.push(b);
                return out;
            }
        }
    }
}

fn h264_track() -> Track {
    Track::with_config(0, Codec::H264, 1000, fixture!("avcC_1920x1080.bin")).unwrap()
}

fn aac_track(id: u32) -> Track {
    let asc = AudioSpecificConfig::encode(2, 44100, 2);
    Track::with_config(id, Codec::Aac, 44100, Bytes::from(asc)).unwrap()
}

/// An AVCC payload with NAL units of the given types and sizes.
fn avcc(nals: &[(u8, usize)]) -> Bytes {
    let mut v = Vec::new();
    for (i, &(t, n)) in nals.iter().enumerate() {
        v.extend_from_slice(&(n as u32 + 1).to_be_bytes());
        v.push(0x60 | t);
        v.extend((0..n).map(|k| (k * 7 + i) as u8 | 0x80));
    }
    Bytes::from(v)
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    assert_eq!(crc32_mpeg2(b""), 0xFFFF_FFFF);
}

#[test]
fn psi_tables() {
    let mut m = TsMuxer::new(&[h264_track(), aac_track(1)]).unwrap();
    let mut out = Vec::new();
    m.write_psi(&mut out);
    m.write_psi(&mut out);
    assert_eq!(out.len(), 4 * PACKET_LEN);
    let d = demux(&out);
    assert_eq!(d.pat_count, 2);
    assert_eq!(d.pcr_pid, Some(0x100));
    assert_eq!(
        d.streams,
        vec![
            (STREAM_TYPE_H264, 0x100, vec![]),
            (STREAM_TYPE_AAC_ADTS, 0x101, vec![])
        ]
    );
    // The PCR goes on the video track even when audio comes first.
    let m = TsMuxer::new(&[aac_track(1), h264_track()]).unwrap();
    assert_eq!(m.pcr_pid(), 0x101);
    assert_eq!(m.pid(1), Some(0x100));
}

#[test]
fn h264_aac_stream_reads_back() {
    let video = h264_track();
    let audio = aac_track(1);
    let mut m = TsMuxer::new(&[video, audio]).unwrap();
    let mut frames = Vec::new();
    // 15 fps video (PCR gaps need audio-driven PCR packets), 80 ms B-frame
    // offset; AAC frames of 1024 samples at 44.1 kHz.
    for i in 0..60i64 {
        let key = i % 20 == 0;
        let size = if key {
            6000
        } else {
            50 + (i as usize * 37) % 900
        };
        frames.push(Frame {
            track: 0,
            dts: i * 66,
            pts: i * 66 + 80,
            keyframe: key,
            payload: avcc(&[(6, 10), (if key { 5 } else { 1 }, size)]),
        });
    }
    for i in 0..170i64 {
        frames.push(Frame {
            track: 1,
            dts: i * 1024,
            pts: i * 1024,
            keyframe: true,
            payload: Bytes::from(vec![i as u8; 100 + (i as usize % 300)]),
        });
    }
    frames.sort_by_key(|f| rescale(f.dts, if f.track == 0 { 1000 } else { 44100 }, 90000));
    let mut out = Vec::new();
    for f in &frames {
        m.write_frame(f, &mut out).unwrap();
    }
    let d = demux(&out);
    let vpes = &d.pes[&0x100];
    let apes = &d.pes[&0x101];
    assert_eq!(vpes.len(), 60);
    assert_eq!(apes.len(), 170);
    let vframes: Vec<_> = frames.iter().filter(|f| f.track == 0).collect();
    for (f, p) in vframes.iter().zip(vpes) {
        assert_eq!(p.stream_id, 0xE0);
        assert_eq!(p.pts, Some(rescale(f.pts, 1000, 90000)));
        assert_eq!(p.dts, Some(rescale(f.dts, 1000, 90000)));
        assert_eq!(p.random_access, f.keyframe);
        assert!(p.pcr.is_some(), "PCR on every video PES");
        let nals = annex_b_nals(&p.payload);
        assert_eq!(nals[0], &[0x09, 0xF0], "AUD first");
        let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1F).collect();
        if f.keyframe {
            assert_eq!(types, vec![9, 7, 8, 6, 5]);
            // A PMT right before each keyframe.
            assert!(d.pmt_positions.contains(&(p.position - 1)));
        } else {
            assert_eq!(types, vec![9, 6, 1]);
        }
    }
    let aframes: Vec<_> = frames.iter().filter(|f| f.track == 1).collect();
    for (f, p) in aframes.iter().zip(apes) {
        assert_eq!(p.stream_id, 0xC0);
        assert_eq!(p.pts, Some(rescale(f.pts, 44100, 90000)));
        assert_eq!(p.dts, None);
        let h = &p.payload[..7];
        assert_eq!(&h[..2], &[0xFF, 0xF1]);
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        assert_eq!(len, p.payload.len());
        assert_eq!(&p.payload[7..], &f.payload[..]);
        // profile LC (1), 44.1 kHz (index 4), 2 channels
        assert_eq!(h[2], (1 << 6) | (4 << 2));
        assert_eq!(h[3] >> 6, 2);
    }
    // PCRs only on the video PID, never decreasing, at most ~40 ms apart
    // (plus one audio frame: PCRs go out with frames).
    assert!(d.pcrs.iter().all(|&(pid, _)| pid == 0x100));
    for w in d.pcrs.windows(2) {
        assert!(w[1].1 >= w[0].1);
        assert!(w[1].1 - w[0].1 <= PCR_INTERVAL + 2100, "{w:?}");
    }
}

#[test]
fn timestamps_wrap_at_33_bits() {
    let mut m = TsMuxer::new(&[aac_track(1)]).unwrap();
    let mut t = aac_track(1);
    t.timebase = 90000;
    m.set_track(&t).unwrap();
    let mut out = Vec::new();
    let ts = (1i64 << 33) + 12345;
    let f = Frame {
        track: 1,
        dts: ts,
        pts: ts,
        keyframe: true,
        payload: Bytes::from_static(b"abc"),
    };
    m.write_frame(&f, &mut out).unwrap();
    let d = demux(&out);
    assert_eq!(d.pes[&0x100][0].pts, Some(12345));
    assert_eq!(d.pcrs, vec![(0x100, 12345 - PCR_DELAY)]);
}

#[test]
fn hevc_gets_aud_and_parameter_sets() {
    let t = Track::with_config(0, Codec::H265, 90000, fixture!("hvcC_640x360.bin")).unwrap();
    let mut m = TsMuxer::new(&[t]).unwrap();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    for nal in [[0x46u8, 0x01, 0x50].as_slice(), &[0x26, 0x01, 0xAA, 0xBB]] {
        payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        payload.extend_from_slice(nal);
    }
    let f = Frame {
        track: 0,
        dts: 0,
        pts: 3000,
        keyframe: true,
        payload: Bytes::from(payload),
    };
    m.write_frame(&f, &mut out).unwrap();
    let d = demux(&out);
    assert_eq!(d.streams[0].0, STREAM_TYPE_HEVC);
    let p = &d.pes[&0x100][0];
    let types: Vec<u8> = annex_b_nals(&p.payload)
        .iter()
        .map(|n| (n[0] >> 1) & 0x3F)
        .collect();
    // The AUD in the payload is replaced by the muxer's.
    assert_eq!(types, vec![35, 32, 33, 34, 19]);
}

#[test]
fn opus_descriptors_and_control_header() {
    let t = Track::with_config(1, Codec::Opus, 48000, fixture!("dOps_stereo.bin")).unwrap();
    let mut m = TsMuxer::new(&[t]).unwrap();
    let mut out = Vec::new();
    for (i, n) in [10usize, 255, 300].into_iter().enumerate() {
        let f = Frame {
            track: 1,
            dts: i as i64 * 960,
            pts: i as i64 * 960,
            keyframe: true,
            payload: Bytes::from(vec![0xAB; n]),
        };
        m.write_frame(&f, &mut out).unwrap();
    }
    let d = demux(&out);
    assert_eq!(
        d.streams,
        vec![(
            STREAM_TYPE_PRIVATE_PES,
            0x100,
            vec![0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2]
        )]
    );
    let pes = &d.pes[&0x100];
    assert_eq!(pes[0].stream_id, 0xBD);
    // The first packet carries the pre-skip (312) as start trim.
    assert_eq!(&pes[0].payload[..5], &[0x7F, 0xF0, 10, 0x01, 0x38]);
    assert_eq!(&pes[1].payload[..4], &[0x7F, 0xE0, 0xFF, 0]);
    assert_eq!(&pes[2].payload[..4], &[0x7F, 0xE0, 0xFF, 45]);
    assert_eq!(pes[2].payload.len(), 304);
}

#[test]
fn refused_tracks_and_bad_frames() {
    let is_mux_error = |e: Error| {
        matches!(
            e,
            Error::InvalidConfig {
                what: "MPEG-TS mux",
                ..
            }
        )
    };
    assert!(is_mux_error(TsMuxer::new(&[]).unwrap_err()));
    let av1 = Track::with_config(0, Codec::Av1, 1000, fixture!("av1C_640x360.bin")).unwrap();
    assert!(is_mux_error(TsMuxer::new(&[av1]).unwrap_err()));
    assert!(is_mux_error(
        TsMuxer::new(&[Track::new(0, Codec::H264, 1000)]).unwrap_err()
    ));
    let mut six = fixture!("dOps_stereo.bin").to_vec();
    six[1] = 6;
    six[10] = 1;
    let opus = Track::new(1, Codec::Opus, 48000);
    let opus = Track {
        config: Some(Bytes::from(six)),
        ..opus
    };
    assert!(is_mux_error(TsMuxer::new(&[opus]).unwrap_err()));
    assert!(is_mux_error(
        TsMuxer::new(&[aac_track(1), aac_track(1)]).unwrap_err()
    ));

    let mut m = TsMuxer::new(&[h264_track(), aac_track(1)]).unwrap();
    let mut out = Vec::new();
    let bad = Frame {
        track: 0,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from_static(&[0, 0, 0, 9, 0x65, 1]),
    };
    assert!(matches!(
        m.write_frame(&bad, &mut out),
        Err(Error::Truncated { .. })
    ));
    let long_aac = Frame {
        track: 1,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from(vec![0; 9000]),
    };
    assert!(is_mux_error(
        m.write_frame(&long_aac, &mut out).unwrap_err()
    ));
    let unknown = Frame {
        track: 7,
        ..long_aac
    };
    assert!(is_mux_error(m.write_frame(&unknown, &mut out).unwrap_err()));
    assert!(out.is_empty(), "nothing written on error");
}
