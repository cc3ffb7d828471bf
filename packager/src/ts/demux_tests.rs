//! TsDemuxer tests: ffmpeg-made fixtures, hand-made packets for every bad
//! input rule, and our muxer's output read back.
use bytes::Bytes;

use super::*;
use crate::media::{AvcConfig, Codec, Frame, HevcConfig, OpusHead, Track};

/// Demux `data` pushed in pieces of `piece` bytes (0: one push), then
/// finish; all events and the stats.
pub(super) fn demux_all(
    data: &[u8],
    piece: usize,
    limits: TsDemuxLimits,
) -> (Vec<TsEvent>, TsDemuxStats) {
    let mut d = TsDemuxer::new(limits);
    let mut events = Vec::new();
    let chunks: Vec<&[u8]> = if piece == 0 {
        vec![data]
    } else {
        data.chunks(piece).collect()
    };
    for c in chunks {
        d.push(c);
        while let Some(e) = d.poll_event() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    (events, d.stats().clone())
}

fn tracks(events: &[TsEvent]) -> Vec<(Track, u16, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Track {
                track,
                program,
                pid,
            } => Some((track.clone(), *program, *pid)),
            _ => None,
        })
        .collect()
}

fn frames(events: &[TsEvent], id: u32) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Frame(f) if f.track == id => Some(f),
            _ => None,
        })
        .collect()
}

const AVCC: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/avcC_1920x1080.bin"
));

fn h264_track(id: u32) -> Track {
    Track::with_config(id, Codec::H264, 90_000, Bytes::from_static(AVCC)).unwrap()
}

fn aac_track(id: u32) -> Track {
    let asc = crate::media::AudioSpecificConfig::encode(2, 48000, 2);
    Track::with_config(id, Codec::Aac, 90_000, Bytes::from(asc)).unwrap()
}

/// An AVCC access unit: an SEI and an IDR or non-IDR slice of `n` bytes.
fn au(key: bool, n: usize, seed: u8) -> Bytes {
    let mut v = Vec::new();
    for (t, len) in [(6u8, 5usize), (if key { 5 } else { 1 }, n)] {
        v.extend_from_slice(&(len as u32 + 1).to_be_bytes());
        v.push(0x60 | t);
        v.extend((0..len).map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed) | 0x80));
    }
    Bytes::from(v)
}

fn video(dts: i64, key: bool, n: usize) -> Frame {
    Frame {
        track: 0,
        dts,
        pts: dts + 3000,
        keyframe: key,
        payload: au(key, n, dts as u8),
    }
}

fn audio(id: u32, ts: i64, n: usize) -> Frame {
    Frame {
        track: id,
        dts: ts,
        pts: ts,
        keyframe: true,
        payload: Bytes::from(vec![(ts / 1920) as u8 | 1; n]),
    }
}

/// H.264 (id 0, PID 0x100) + AAC 48 kHz (id 1, PID 0x101): 10 video frames
/// at 25 fps (keyframes at 0 and 5), 20 AAC frames; one TS.
fn av_stream() -> (Vec<u8>, Vec<Frame>) {
    let mut m = TsMuxer::new(&[h264_track(0), aac_track(1)]).unwrap();
    let mut frames = Vec::new();
    for i in 0..10 {
        frames.push(video(i * 3600, i % 5 == 0, 300 + 97 * i as usize));
    }
    for i in 0..20 {
        frames.push(audio(1, i * 1920, 100 + i as usize * 13));
    }
    frames.sort_by_key(|f| (f.dts, f.track));
    let mut out = Vec::new();
    for f in &frames {
        m.write_frame(f, &mut out).unwrap();
    }
    (out, frames)
}

fn packets(ts: &[u8]) -> Vec<&[u8]> {
    ts.chunks(PACKET_LEN).collect()
}

fn pid_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[1] & 0x1F, p[2]])
}

/// The frames of `events` with Discontinuity/Track/TrackRemoved dropped.
fn all_frames(events: &[TsEvent]) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

fn sorted(mut f: Vec<Frame>) -> Vec<Frame> {
    f.sort_by_key(|f| (f.dts, f.track));
    f
}

/// A PSI packet with one section (table_id, extension, version, body).
fn psi_packet(pid: u16, cc: u8, table_id: u8, ext: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut sec = vec![table_id, 0xB0 | (len >> 8) as u8, len as u8];
    sec.extend_from_slice(&ext.to_be_bytes());
    sec.extend_from_slice(&[0xC1 | (version << 1), 0, 0]);
    sec.extend_from_slice(body);
    let crc = crc32_mpeg2(&sec);
    sec.extend_from_slice(&crc.to_be_bytes());
    let mut p = vec![SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0];
    p.extend_from_slice(&sec);
    p.resize(PACKET_LEN, 0xFF);
    p
}

fn pat(cc: u8, version: u8, programs: &[(u16, u16)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(n, pid) in programs {
        body.extend_from_slice(&n.to_be_bytes());
        body.extend_from_slice(&(0xE000 | pid).to_be_bytes());
    }
    psi_packet(PAT_PID, cc, 0, 1, version, &body)
}

fn pmt(
    pid: u16,
    cc: u8,
    program: u16,
    version: u8,
    pcr_pid: u16,
    streams: &[(u8, u16, &[u8])],
) -> Vec<u8> {
    let mut body = (0xE000 | pcr_pid).to_be_bytes().to_vec();
    body.extend_from_slice(&[0xF0, 0]);
    for &(t, spid, desc) in streams {
        body.push(t);
        body.extend_from_slice(&(0xE000 | spid).to_be_bytes());
        body.extend_from_slice(&(0xF000 | desc.len() as u16).to_be_bytes());
        body.extend_from_slice(desc);
    }
    psi_packet(pid, cc, 2, program, version, &body)
}

/// One PES as packets on `pid`, CCs from `cc`; `pcr` in the first.
fn pes(
    pid: u16,
    cc: &mut u8,
    stream_id: u8,
    pts: Option<u64>,
    bounded: bool,
    es: &[u8],
) -> Vec<u8> {
    let mut b = vec![0, 0, 1, stream_id, 0, 0, 0x80];
    match pts {
        Some(t) => {
            b.extend_from_slice(&[0x80, 5]);
            b.extend_from_slice(&[
                0x21 | ((t >> 29) as u8 & 0x0E),
                (t >> 22) as u8,
                ((t >> 14) as u8 & 0xFE) | 1,
                (t >> 7) as u8,
                ((t << 1) as u8) | 1,
            ]);
        }
        None => b.extend_from_slice(&[0, 0]),
    }
    b.extend_from_slice(es);
    if bounded {
        let n = (b.len() - 6) as u16;
        b[4..6].copy_from_slice(&n.to_be_bytes());
    }
    let mut out = Vec::new();
    let mut first = true;
    let mut rest = &b[..];
    while !rest.is_empty() {
        let n = rest.len().min(184);
        let stuff = 184 - n;
        out.extend_from_slice(&[
            SYNC_BYTE,
            if first { 0x40 } else { 0 } | (pid >> 8) as u8,
            pid as u8,
            if stuff > 0 { 0x30 } else { 0x10 } | *cc,
        ]);
        if stuff > 0 {
            out.push((stuff - 1) as u8);
            if stuff > 1 {
                out.push(0);
                out.resize(out.len() + stuff - 2, 0xFF);
            }
        }
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        *cc = (*cc + 1) & 0x0F;
        first = false;
    }
    out
}

fn adts(payload_len: usize, fill: u8) -> Vec<u8> {
    let n = payload_len + 7;
    // AAC-LC, 48 kHz (index 3), 2 channels
    let mut v = vec![
        0xFF,
        0xF1,
        (1 << 6) | (3 << 2),
        (2 << 6) | (n >> 11) as u8,
        (n >> 3) as u8,
        ((n & 7) as u8) << 5 | 0x1F,
        0xFC,
    ];
    v.resize(n, fill);
    v
}

#[test]
fn ffmpeg_fixtures() {
    // Expected numbers from ffprobe 5.1:
    //   ffprobe -v error -count_frames -count_packets -show_entries \
    //     program=program_id:stream=index,codec_name,width,height,sample_rate,channels,nb_read_packets,nb_read_frames,id \
    //     -of compact <file>
    // and first/last (dts, pts) and byte totals summed from
    //   ffprobe -show_entries packet=stream_index,pts,dts,flags,size -of csv
    // (AAC sizes there include the 7-byte ADTS headers: 4218 - 45 * 7 = 3903).
    // (codec, program, pid, width/rate, height/channels, frames, keyframes, first (dts, pts), last dts, payload bytes or None)
    type Want = (
        Codec,
        u16,
        u16,
        u32,
        u32,
        usize,
        usize,
        (i64, i64),
        i64,
        Option<usize>,
    );
    let cases: [(&[u8], &[Want]); 3] = [
        (
            include_bytes!("fixtures/h264_aac.ts"),
            &[
                (
                    Codec::H264,
                    1,
                    0x100,
                    160,
                    90,
                    15,
                    1,
                    (126000, 138000),
                    210000,
                    None,
                ),
                (
                    Codec::Aac,
                    1,
                    0x101,
                    44100,
                    2,
                    45,
                    45,
                    (135910, 135910),
                    227862,
                    Some(3903),
                ),
            ],
        ),
        (
            include_bytes!("fixtures/two_programs.ts"),
            &[
                (
                    Codec::H264,
                    1,
                    0x100,
                    160,
                    90,
                    15,
                    1,
                    (126000, 138000),
                    210000,
                    None,
                ),
                (
                    Codec::Aac,
                    1,
                    0x102,
                    44100,
                    2,
                    45,
                    45,
                    (135910, 135910),
                    227862,
                    Some(3903),
                ),
                (
                    Codec::H264,
                    2,
                    0x101,
                    96,
                    54,
                    15,
                    1,
                    (126000, 138000),
                    210000,
                    None,
                ),
                (
                    Codec::Mp3,
                    2,
                    0x103,
                    44100,
                    2,
                    40,
                    40,
                    (135745, 135745),
                    227434,
                    Some(4180),
                ),
            ],
        ),
        (
            include_bytes!("fixtures/hevc_opus_ac3.ts"),
            &[
                (
                    Codec::H265,
                    1,
                    0x100,
                    128,
                    72,
                    10,
                    1,
                    (126000, 144000),
                    207000,
                    None,
                ),
                (
                    Codec::Opus,
                    1,
                    0x101,
                    48000,
                    2,
                    51,
                    51,
                    (143415, 143415),
                    233415,
                    Some(4945),
                ),
                (
                    Codec::Ac3,
                    1,
                    0x102,
                    48000,
                    2,
                    32,
                    32,
                    (143520, 143520),
                    232800,
                    Some(8192),
                ),
            ],
        ),
    ];
    for (data, want) in cases {
        let (events, stats) = demux_all(data, 0, TsDemuxLimits::default());
        let mut got = tracks(&events);
        got.sort_by_key(|t| t.0.id);
        assert_eq!(got.len(), want.len());
        for (id, ((t, program, pid), w)) in got.iter().zip(want).enumerate() {
            // Ids in PMT order across programs.
            assert_eq!(t.id, id as u32);
            assert_eq!((t.codec, *program, *pid), (w.0, w.1, w.2), "track {id}");
            assert_eq!(t.timebase, 90_000);
            if t.codec.is_video() {
                assert_eq!((t.info.width, t.info.height), (Some(w.3), Some(w.4)));
            } else {
                assert_eq!(
                    (t.info.sample_rate, t.info.channels),
                    (Some(w.3), Some(w.4 as u8))
                );
            }
            let f = frames(&events, t.id);
            assert_eq!(f.len(), w.5, "frames of track {id}");
            assert_eq!(f.iter().filter(|f| f.keyframe).count(), w.6);
            assert_eq!((f[0].dts, f[0].pts), w.7);
            assert_eq!(f.last().unwrap().dts, w.8);
            if let Some(bytes) = w.9 {
                assert_eq!(f.iter().map(|f| f.payload.len()).sum::<usize>(), bytes);
            }
            assert!(f.windows(2).all(|p| p[1].dts > p[0].dts));
        }
        assert_eq!(
            stats.frames as usize,
            want.iter().map(|w| w.5).sum::<usize>()
        );
        assert_eq!(
            (
                stats.cc_errors,
                stats.pes_errors,
                stats.es_errors,
                stats.dropped_frames,
                stats.skipped_bytes
            ),
            (0, 0, 0, 0, 0)
        );
        // Any split gives the same events.
        for piece in [1, 7, 188, 1316, 5000] {
            assert_eq!(
                demux_all(data, piece, TsDemuxLimits::default()).0,
                events,
                "piece {piece}"
            );
        }
    }
    // Our avcC equals the one ffmpeg writes when remuxing the TS to MP4
    // (`ffmpeg -i h264_aac.ts -map 0:v -c copy out.mp4`).
    let (events, _) = demux_all(
        include_bytes!("fixtures/h264_aac.ts"),
        0,
        TsDemuxLimits::default(),
    );
    let avcc: String = tracks(&events)[0]
        .0
        .config
        .as_ref()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        avcc,
        "01640009ffe1001967640009acd9428df930110000030001000003001e0f12259601000468efbcb0fdf8f800"
    );
    let (events, _) = demux_all(
        include_bytes!("fixtures/hevc_opus_ac3.ts"),
        0,
        TsDemuxLimits::default(),
    );
    let t = &tracks(&events)[0].0;
    let c = HevcConfig::parse(t.config.as_ref().unwrap()).unwrap();
    assert_eq!((c.profile, c.level, c.nal_length_size), (1, 30, 4));
    assert_eq!(
        c.arrays.iter().map(|a| a.nal_type).collect::<Vec<_>>(),
        vec![32, 33, 34]
    );
    let opus = &tracks(&events)[1].0;
    let head = OpusHead::parse(opus.config.as_ref().unwrap()).unwrap();
    assert_eq!((head.channels, head.pre_skip), (2, 312));
}

#[test]
fn muxed_stream_reads_back() {
    let (ts, frames) = av_stream();
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let mut t = tracks(&events);
    t.sort_by_key(|t| t.0.id);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].0.codec, Codec::H264);
    assert_eq!((t[0].1, t[0].2), (PROGRAM_NUMBER, FIRST_ES_PID));
    let c = AvcConfig::parse(t[0].0.config.as_ref().unwrap()).unwrap();
    let orig = AvcConfig::parse(&Bytes::from_static(AVCC)).unwrap();
    assert_eq!((c.sps, c.pps), (orig.sps, orig.pps));
    assert_eq!(t[1].0.config.as_deref(), aac_track(1).config.as_deref());
    assert_eq!(sorted(all_frames(&events)), frames);
    assert_eq!(stats.frames, 30);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, TsEvent::Discontinuity { .. }))
    );
    // The Track event comes before the first frame of its track.
    for id in 0..2 {
        let track_at = events
            .iter()
            .position(|e| matches!(e, TsEvent::Track { track, .. } if track.id == id));
        let frame_at = events
            .iter()
            .position(|e| matches!(e, TsEvent::Frame(f) if f.track == id));
        assert!(track_at < frame_at);
    }
}

#[test]
fn resync_after_garbage() {
    let (ts, frames) = av_stream();
    let mut dirty = b"garbage G\x47\x47 more".to_vec();
    let lead = dirty.len();
    let p = packets(&ts);
    for (i, pk) in p.iter().enumerate() {
        dirty.extend_from_slice(pk);
        if i == 5 {
            // A datagram of garbage with sync bytes 188 apart but not 376.
            let mut g = vec![0u8; 377];
            g[5] = 0x47;
            g[193] = 0x47;
            dirty.extend_from_slice(&g);
        }
    }
    for piece in [0, 1, 100, 1316] {
        let (events, stats) = demux_all(&dirty, piece, TsDemuxLimits::default());
        assert_eq!(sorted(all_frames(&events)), frames, "piece {piece}");
        assert_eq!(stats.resyncs, 2);
        assert_eq!(stats.skipped_bytes as usize, lead + 377);
        assert_eq!(stats.packets as usize, p.len());
        assert_eq!(stats.cc_errors, 0);
    }
}

#[test]
fn truncated_packet_is_dropped_and_counted() {
    let (ts, frames) = av_stream();
    let p = packets(&ts);
    // Cut an audio packet short: it is dropped, its PID sees a CC gap, the
    // video goes on undisturbed.
    let victim = (20..p.len()).find(|&i| pid_of(p[i]) == 0x101).unwrap();
    let mut cut = Vec::new();
    for (i, pk) in p.iter().enumerate() {
        cut.extend_from_slice(if i == victim { &pk[..100] } else { pk });
    }
    let (events, stats) = demux_all(&cut, 0, TsDemuxLimits::default());
    assert_eq!(stats.resyncs, 1);
    assert_eq!(stats.skipped_bytes, 100);
    let got = all_frames(&events);
    let video: Vec<_> = frames.iter().filter(|f| f.track == 0).cloned().collect();
    assert_eq!(
        got.iter()
            .filter(|f| f.track == 0)
            .cloned()
            .collect::<Vec<_>>(),
        video
    );
    assert_eq!(got.iter().filter(|f| f.track == 1).count(), 19);
    assert_eq!(stats.cc_errors, 1);
    assert!(events.contains(&TsEvent::Discontinuity { id: 1 }));
}

#[test]
fn continuity_gap_marks_discontinuity() {
    let (ts, muxed) = av_stream();
    let p = packets(&ts);
    // Drop the 2nd packet of video frame 6's PES (a middle packet).
    let starts: Vec<usize> = (0..p.len())
        .filter(|&i| pid_of(p[i]) == 0x100 && p[i][1] & 0x40 != 0)
        .collect();
    let drop = starts[6] + 1;
    assert_eq!(pid_of(p[drop]), 0x100);
    let lossy: Vec<u8> = p
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != drop)
        .flat_map(|(_, pk)| pk.to_vec())
        .collect();
    let (events, stats) = demux_all(&lossy, 0, TsDemuxLimits::default());
    assert_eq!(stats.cc_errors, 1);
    assert_eq!(stats.pes_errors, 1);
    let video: Vec<&Frame> = frames(&events, 0);
    assert_eq!(video.len(), 9);
    assert!(video.iter().all(|f| f.dts != 6 * 3600));
    // The Discontinuity comes right after frame 5, before frame 7.
    let at = events
        .iter()
        .position(|e| *e == TsEvent::Discontinuity { id: 0 })
        .unwrap();
    let before = events[..at]
        .iter()
        .filter(|e| matches!(e, TsEvent::Frame(f) if f.track == 0))
        .count();
    assert_eq!(before, 6);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TsEvent::Discontinuity { .. }))
            .count(),
        1
    );
    // Audio is untouched.
    assert_eq!(
        all_frames(&events)
            .into_iter()
            .filter(|f| f.track == 1)
            .collect::<Vec<_>>(),
        muxed
            .iter()
            .filter(|f| f.track == 1)
            .cloned()
            .collect::<Vec<_>>()
    );
}

#[test]
fn duplicate_and_errored_packets_are_dropped() {
    let (ts, frames) = av_stream();
    let p = packets(&ts);
    let mut out = Vec::new();
    for (i, pk) in p.iter().enumerate() {
        out.extend_from_slice(pk);
        if i == 10 {
            out.extend_from_slice(pk); // sent twice
        }
    }
    let mut tei = p[3].to_vec();
    tei[1] |= 0x80;
    out.extend_from_slice(&tei);
    let (events, stats) = demux_all(&out, 0, TsDemuxLimits::default());
    assert_eq!(sorted(all_frames(&events)), frames);
    assert_eq!(
        (
            stats.duplicate_packets,
            stats.transport_errors,
            stats.cc_errors
        ),
        (1, 1, 0)
    );
}

#[test]
fn pmt_version_change_adds_and_removes_tracks() {
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    let mut cc = [0u8; 4];
    ts.extend(pmt(
        0x1000,
        0,
        1,
        0,
        0x1FFF,
        &[(0x0F, 0x101, &[]), (0x03, 0x102, &[])],
    ));
    let mp3 = {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, stereo: 417 bytes.
        let mut f = vec![0xFF, 0xFB, 0x90, 0x04];
        f.resize(417, 0x55);
        f
    };
    ts.extend(pes(0x101, &mut cc[1], 0xC0, Some(1000), true, &adts(50, 1)));
    ts.extend(pes(0x102, &mut cc[2], 0xC1, Some(1000), true, &mp3));
    // Same content again: nothing happens.
    ts.extend(pmt(
        0x1000,
        1,
        1,
        0,
        0x1FFF,
        &[(0x0F, 0x101, &[]), (0x03, 0x102, &[])],
    ));
    // Version 1: MP3 gone, H.264 on 0x100 first, AAC stays; LATM counted.
    ts.extend(pmt(
        0x1000,
        2,
        1,
        1,
        0x100,
        &[(0x1B, 0x100, &[]), (0x0F, 0x101, &[]), (0x11, 0x103, &[])],
    ));
    ts.extend(pes(0x101, &mut cc[1], 0xC0, Some(3000), true, &adts(60, 2)));
    ts.extend(pes(0x102, &mut cc[2], 0xC1, Some(3000), true, &mp3)); // no longer in the PMT
    // Version 2: the AAC PID now says MP3: a new track.
    ts.extend(pmt(
        0x1000,
        3,
        1,
        2,
        0x100,
        &[(0x1B, 0x100, &[]), (0x03, 0x101, &[]), (0x11, 0x103, &[])],
    ));
    ts.extend(pes(0x101, &mut cc[1], 0xC0, Some(5000), true, &mp3));
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let summary: Vec<String> = events
        .iter()
        .map(|e| match e {
            TsEvent::Track { track, pid, .. } => {
                format!("track {} {} {pid:#x}", track.id, track.codec)
            }
            TsEvent::TrackRemoved { id } => format!("removed {id}"),
            TsEvent::Frame(f) => format!("frame {} {}", f.track, f.dts),
            TsEvent::Discontinuity { id } => format!("discontinuity {id}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "track 0 aac 0x101",
            "frame 0 1000",
            "track 1 mp3 0x102",
            "frame 1 1000",
            "removed 1",
            "frame 0 3000",
            "removed 0",
            "track 3 mp3 0x101",
            "frame 3 5000",
        ]
    );
    assert_eq!(stats.pmt_changes, 2);
    assert_eq!(stats.unsupported_streams, 1, "LATM counted once");
    assert_eq!(stats.es_errors + stats.pes_errors + stats.psi_errors, 0);
}

#[test]
fn pat_change_removes_program() {
    let mut ts = pat(0, 0, &[(1, 0x1000), (2, 0x1001)]);
    let mut cc = [0u8; 2];
    ts.extend(pmt(0x1000, 0, 1, 0, 0x1FFF, &[(0x0F, 0x101, &[])]));
    ts.extend(pmt(0x1001, 0, 2, 0, 0x1FFF, &[(0x0F, 0x201, &[])]));
    ts.extend(pes(0x101, &mut cc[0], 0xC0, Some(0), true, &adts(20, 1)));
    ts.extend(pes(0x201, &mut cc[1], 0xC0, Some(0), true, &adts(20, 1)));
    ts.extend(pat(1, 1, &[(2, 0x1001)]));
    ts.extend(pes(0x101, &mut cc[0], 0xC0, Some(2000), true, &adts(20, 1)));
    ts.extend(pes(0x201, &mut cc[1], 0xC0, Some(2000), true, &adts(20, 1)));
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    assert!(events.contains(&TsEvent::TrackRemoved { id: 0 }));
    assert_eq!(frames(&events, 0).len(), 1);
    assert_eq!(frames(&events, 1).len(), 2);
    assert_eq!(stats.pat_changes, 1);
}

#[test]
fn audio_pes_across_packets_with_several_frames() {
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    ts.extend(pmt(0x1000, 0, 1, 0, 0x1FFF, &[(0x0F, 0x101, &[])]));
    let mut cc = 0;
    // 5 ADTS frames in one 1.5 kB PES, then a PES without PTS (its frames
    // follow on), then one whose PTS rebases.
    let es: Vec<u8> = (0..5).flat_map(|i| adts(300, i)).collect();
    ts.extend(pes(0x101, &mut cc, 0xC0, Some(90_000), true, &es));
    ts.extend(pes(0x101, &mut cc, 0xC0, None, true, &adts(10, 9)));
    ts.extend(pes(0x101, &mut cc, 0xC0, Some(200_000), true, &adts(10, 9)));
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let f = frames(&events, 0);
    // 1024 samples at 48 kHz = 1920 ticks.
    let dts: Vec<i64> = f.iter().map(|f| f.dts).collect();
    assert_eq!(
        dts,
        [90_000, 91_920, 93_840, 95_760, 97_680, 99_600, 200_000]
    );
    assert!(
        f[..5]
            .iter()
            .enumerate()
            .all(|(i, f)| f.payload[..] == vec![i as u8; 300][..])
    );
    assert_eq!(stats.pes_errors + stats.es_errors, 0);
}

#[test]
fn adts_frame_split_over_two_pes() {
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    ts.extend(pmt(0x1000, 0, 1, 0, 0x1FFF, &[(0x0F, 0x101, &[])]));
    let mut cc = 0;
    let es: Vec<u8> = (0..3).flat_map(|i| adts(100, i)).collect();
    // PES 1: frame 0 and half of frame 1; PES 2 (PTS of frame 2): the rest.
    ts.extend(pes(0x101, &mut cc, 0xC0, Some(10_000), true, &es[..160]));
    ts.extend(pes(0x101, &mut cc, 0xC0, Some(13_840), true, &es[160..]));
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let f = frames(&events, 0);
    assert_eq!(
        f.iter().map(|f| f.dts).collect::<Vec<_>>(),
        [10_000, 11_920, 13_840]
    );
    assert_eq!(f[1].payload[..], [1u8; 100][..]);
    assert_eq!(stats.es_errors, 0);
}

#[test]
fn unbounded_video_pes_ends_at_next_start_or_finish() {
    let mut m = TsMuxer::new(&[h264_track(0)]).unwrap();
    let mut out = Vec::new();
    m.write_frame(&video(0, true, 1000), &mut out).unwrap();
    let mut d = TsDemuxer::default();
    d.push(&out);
    let mut events = Vec::new();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    assert!(events.is_empty(), "a length-0 PES waits for the next start");
    let mut out2 = Vec::new();
    m.write_frame(&video(3600, false, 500), &mut out2).unwrap();
    d.push(&out2);
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    assert_eq!(all_frames(&events), vec![video(0, true, 1000)]);
    d.finish();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    assert_eq!(
        all_frames(&events),
        vec![video(0, true, 1000), video(3600, false, 500)]
    );
}

#[test]
fn lying_pmt_counts_errors() {
    // PMT says H.264 on 0x101 but AAC is carried; and AAC on 0x102
    // carrying H.264. The honest AAC on 0x103 is undisturbed.
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    ts.extend(pmt(
        0x1000,
        0,
        1,
        0,
        0x1FFF,
        &[(0x1B, 0x101, &[]), (0x0F, 0x102, &[]), (0x0F, 0x103, &[])],
    ));
    let (v, _) = av_stream();
    let h264_es: Vec<u8> = {
        let d = super::tests::demux(&v);
        d.pes[&0x100][0].payload.clone()
    };
    let mut cc = [0u8; 4];
    for i in 0..4u64 {
        ts.extend(pes(
            0x101,
            &mut cc[1],
            0xE0,
            Some(i * 3600),
            false,
            &adts(200, 3),
        ));
        ts.extend(pes(0x102, &mut cc[2], 0xC0, Some(i * 3600), true, &h264_es));
        ts.extend(pes(
            0x103,
            &mut cc[3],
            0xC0,
            Some(i * 1920),
            true,
            &adts(50, 4),
        ));
    }
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let t = tracks(&events);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0.id, 2);
    assert_eq!(frames(&events, 2).len(), 4);
    assert!(stats.es_errors >= 4, "{stats:?}");
    assert!(stats.dropped_frames >= 4, "{stats:?}");
}

#[test]
fn pts_wrap_keeps_increasing() {
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    ts.extend(pmt(0x1000, 0, 1, 0, 0x1FFF, &[(0x0F, 0x101, &[])]));
    let mut cc = 0;
    let wrap = 1u64 << 33;
    let start = wrap - 3 * 1920;
    for i in 0..6u64 {
        ts.extend(pes(
            0x101,
            &mut cc,
            0xC0,
            Some((start + i * 1920) % wrap),
            true,
            &adts(10, 1),
        ));
    }
    let (events, stats) = demux_all(&ts, 0, TsDemuxLimits::default());
    let dts: Vec<i64> = frames(&events, 0).iter().map(|f| f.dts).collect();
    let want: Vec<i64> = (0..6).map(|i| (start + i * 1920) as i64).collect();
    assert_eq!(dts, want);
    assert_eq!(stats.timestamp_jumps, 0);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TsEvent::Discontinuity { .. }))
    );
}

#[test]
fn backward_jump_is_a_discontinuity_and_no_pcr_is_fine() {
    let mut ts = pat(0, 0, &[(1, 0x1000)]);
    ts.extend(pmt(0x1000, 0, 1, 0, 0x1FFF, &[(0x0F, 0x101, &[])]));
    let mut cc = 0;
    for t in [900_000u64, 901_920, 500, 2420] {
        ts.extend(pes(0x101, &mut cc, 0xC0, Some(t), true, &adts(10, 1)));
    }
    let mut d = TsDemuxer::default();
    d.push(&ts);
    d.finish();
    let mut events = Vec::new();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            TsEvent::Frame(f) => f.dts.to_string(),
            TsEvent::Discontinuity { .. } => "disc".into(),
            _ => "track".into(),
        })
        .collect();
    assert_eq!(kinds, ["track", "900000", "901920", "disc", "500", "2420"]);
    assert_eq!(d.stats().timestamp_jumps, 1);
    assert_eq!(d.pcr(1), None, "PCR_PID 0x1FFF: no PCR");
    assert_eq!(d.stats().pcrs, 0);
}

#[test]
fn pcr_is_exposed_per_program() {
    let (ts, _) = av_stream();
    let mut d = TsDemuxer::default();
    d.push(&ts);
    d.finish();
    // The muxer's PCR is DTS - 100 ms, clamped at 0, never decreasing;
    // the last video DTS is 9 * 3600.
    let pcr = d.pcr(PROGRAM_NUMBER).unwrap();
    assert!((9 * 3600 - PCR_DELAY..=9 * 3600).contains(&pcr), "{pcr}");
    assert_eq!(d.pcr(7), None);
    assert_eq!(d.programs().collect::<Vec<_>>(), vec![1]);
    assert_eq!(d.tracks().count(), 2);
}

#[test]
fn discontinuity_indicator_marks_tracks() {
    let (ts, _) = av_stream();
    let mut p: Vec<Vec<u8>> = packets(&ts).into_iter().map(<[u8]>::to_vec).collect();
    // Set discontinuity_indicator on the PCR of video frame 4 (PCR PID =
    // video PID): every track of the program gets a Discontinuity.
    let i = (0..p.len())
        .filter(|&i| pid_of(&p[i]) == 0x100 && p[i][1] & 0x40 != 0)
        .nth(4)
        .unwrap();
    assert_eq!(p[i][3] & 0x20, 0x20);
    p[i][5] |= 0x80;
    let (events, stats) = demux_all(&p.concat(), 0, TsDemuxLimits::default());
    assert_eq!(stats.discontinuity_flags, 1);
    assert!(events.contains(&TsEvent::Discontinuity { id: 0 }));
    assert!(events.contains(&TsEvent::Discontinuity { id: 1 }));
    assert_eq!(stats.frames, 30, "no data lost");
}

#[test]
fn limits_are_enforced() {
    let (ts, _) = av_stream();
    let small = TsDemuxLimits {
        max_pes_bytes: 600,
        ..Default::default()
    };
    let (events, stats) = demux_all(&ts, 0, small);
    // Video frames of 300 + 97 i bytes plus SPS/PPS on keyframes: the
    // first three fit (with headers); the rest are dropped.
    assert!(stats.limit_drops > 0 && stats.pes_errors == stats.limit_drops);
    for f in all_frames(&events) {
        assert!(f.payload.len() < 600);
    }
    let one = TsDemuxLimits {
        max_streams: 1,
        ..Default::default()
    };
    let (events, stats) = demux_all(&ts, 0, one);
    assert_eq!(tracks(&events).len(), 1);
    assert_eq!(stats.limit_drops, 1);
    let buffered = TsDemuxLimits {
        max_buffered_bytes: 400,
        ..Default::default()
    };
    let (_, stats) = demux_all(&ts, 0, buffered);
    assert!(stats.limit_drops > 0);
}

#[test]
fn garbage_never_panics() {
    let (ts, _) = av_stream();
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for round in 0..200 {
        let mut data = ts.clone();
        for _ in 0..(round % 20 + 1) {
            let i = next() as usize % data.len();
            data[i] = next() as u8;
        }
        if round % 3 == 0 {
            let cut = next() as usize % data.len();
            data.truncate(cut);
        }
        let piece = next() as usize % 400;
        let (a, _) = demux_all(&data, piece, TsDemuxLimits::default());
        assert_eq!(a, demux_all(&data, 0, TsDemuxLimits::default()).0);
    }
    let noise: Vec<u8> = (0..20_000)
        .map(|_| next() as u8 & 0x47 | (next() as u8 & 0x40))
        .collect();
    demux_all(&noise, 0, TsDemuxLimits::default());
}
