//! Box-level checks with a small box walker, and decoding with ffprobe /
//! ffmpeg of init + fragments built from the FLV fixtures.
use std::process::Command;

use bytes::Bytes;

use super::*;
use crate::flv::{FlvDemuxer, FlvEvent, FlvStream};
use crate::media::{Codec, Frame, Track};

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
    };
}

/// A parsed box: type, byte range, header length, children.
#[derive(Debug)]
pub(super) struct Node {
    pub typ: [u8; 4],
    pub start: usize,
    pub body: usize,
    pub end: usize,
    pub children: Vec<Node>,
}

/// Bytes to skip in a box body before its child boxes, for boxes that
/// have children.
fn child_offset(typ: &[u8; 4]) -> Option<usize> {
    Some(match typ {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof" | b"traf" => {
            0
        }
        b"stsd" | b"dref" => 8,
        b"avc1" | b"hvc1" | b"av01" | b"vp09" => 78,
        b"mp4a" | b"Opus" => 28,
        _ => return None,
    })
}

/// Walk the boxes of `data[start..end]`; panics unless the sizes tile the
/// range exactly, recursively.
pub(super) fn walk(data: &[u8], start: usize, end: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut pos = start;
    while pos < end {
        assert!(pos + 8 <= end, "box header at {pos} crosses the end {end}");
        let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let typ: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        let mut body = pos + 8;
        if size == 1 {
            size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize;
            body = pos + 16;
        }
        assert!(size >= body - pos, "box {:?} at {pos}: size {size}", typ);
        let box_end = pos + size;
        assert!(
            box_end <= end,
            "box {} at {pos} size {size} overruns {end}",
            String::from_utf8_lossy(&typ)
        );
        let children = match child_offset(&typ) {
            Some(skip) => walk(data, body + skip, box_end),
            None => Vec::new(),
        };
        nodes.push(Node {
            typ,
            start: pos,
            body,
            end: box_end,
            children,
        });
        pos = box_end;
    }
    assert_eq!(pos, end, "boxes do not end at {end}");
    nodes
}

/// All nodes at `path` (box types from the top).
pub(super) fn find<'a>(nodes: &'a [Node], path: &[&str]) -> Vec<&'a Node> {
    let mut out = Vec::new();
    for n in nodes {
        if n.typ == path[0].as_bytes() {
            if path.len() == 1 {
                out.push(n);
            } else {
                out.extend(find(&n.children, &path[1..]));
            }
        }
    }
    out
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

/// A parsed `trun`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Trun {
    pub version: u8,
    pub data_offset: i32,
    /// (duration, size, flags, composition offset)
    pub samples: Vec<(u32, u32, u32, i32)>,
}

pub(super) fn parse_trun(d: &[u8], n: &Node) -> Trun {
    let b = n.body;
    let version = d[b];
    let flags = be32(d, b) & 0xff_ffff;
    assert_eq!(flags & !0x800, 0x701, "unexpected trun flags {flags:#x}");
    let count = be32(d, b + 4) as usize;
    let mut p = b + 8;
    let data_offset = be32(d, p) as i32;
    p += 4;
    let mut samples = Vec::new();
    for _ in 0..count {
        let dur = be32(d, p);
        let size = be32(d, p + 4);
        let fl = be32(d, p + 8);
        p += 12;
        let cto = if flags & 0x800 != 0 {
            p += 4;
            be32(d, p - 4) as i32
        } else {
            0
        };
        samples.push((dur, size, fl, cto));
    }
    assert_eq!(p, n.end, "trun length");
    Trun {
        version,
        data_offset,
        samples,
    }
}

pub(super) fn tfdt(d: &[u8], n: &Node) -> u64 {
    assert_eq!(d[n.body], 1, "tfdt version 1");
    u64::from_be_bytes(d[n.body + 4..n.body + 12].try_into().unwrap())
}

fn frame(track: u32, dts: i64, pts: i64, keyframe: bool, payload: &'static [u8]) -> Frame {
    Frame {
        track,
        dts,
        pts,
        keyframe,
        payload: Bytes::from_static(payload),
    }
}

fn h264_track() -> Track {
    Track::with_config(0, Codec::H264, 90000, fixture!("avcC_1920x1080.bin")).unwrap()
}

fn aac_track() -> Track {
    Track::with_config(1, Codec::Aac, 44100, Bytes::from_static(&[0x12, 0x10])).unwrap()
}

#[test]
fn init_segment_h264_aac() {
    let init = init_segment(&[h264_track(), aac_track()]).unwrap();
    let top = walk(&init, 0, init.len());
    let types: Vec<_> = top.iter().map(|n| n.typ).collect();
    assert_eq!(types, [*b"ftyp", *b"moov"]);
    let ftyp = &init[top[0].body..top[0].end];
    assert_eq!(ftyp, b"iso6\0\0\0\0iso6cmfcdashmp41");
    assert_eq!(find(&top, &["moov", "mvhd"]).len(), 1);
    assert_eq!(find(&top, &["moov", "trak"]).len(), 2);
    let trex = find(&top, &["moov", "mvex", "trex"]);
    assert_eq!(trex.len(), 2);
    assert_eq!(be32(&init, trex[0].body + 4), 1);
    assert_eq!(be32(&init, trex[1].body + 4), 2);
    // tkhd: track IDs and video size (16.16).
    let tkhd = find(&top, &["moov", "trak", "tkhd"]);
    assert_eq!(be32(&init, tkhd[0].body + 12), 1);
    assert_eq!(be32(&init, tkhd[0].end - 8), 1920 << 16);
    assert_eq!(be32(&init, tkhd[0].end - 4), 1080 << 16);
    assert_eq!(be32(&init, tkhd[1].body + 12), 2);
    // mdhd timescales are the track timebases.
    let mdhd = find(&top, &["moov", "trak", "mdia", "mdhd"]);
    assert_eq!(be32(&init, mdhd[0].body + 12), 90000);
    assert_eq!(be32(&init, mdhd[1].body + 12), 44100);
    let hdlr = find(&top, &["moov", "trak", "mdia", "hdlr"]);
    assert_eq!(&init[hdlr[0].body + 8..hdlr[0].body + 12], b"vide");
    assert_eq!(&init[hdlr[1].body + 8..hdlr[1].body + 12], b"soun");
    assert_eq!(
        find(&top, &["moov", "trak", "mdia", "minf", "vmhd"]).len(),
        1
    );
    assert_eq!(
        find(&top, &["moov", "trak", "mdia", "minf", "smhd"]).len(),
        1
    );
    let url = find(
        &top,
        &["moov", "trak", "mdia", "minf", "dinf", "dref", "url "],
    );
    assert_eq!(url.len(), 2);
    for t in ["stts", "stsc", "stsz", "stco"] {
        assert_eq!(
            find(&top, &["moov", "trak", "mdia", "minf", "stbl", t]).len(),
            2,
            "{t}"
        );
    }
    let stbl = ["moov", "trak", "mdia", "minf", "stbl", "stsd"];
    let avcc = find(&top, &[&stbl[..], &["avc1", "avcC"]].concat());
    assert_eq!(avcc.len(), 1);
    assert_eq!(
        &init[avcc[0].body..avcc[0].end],
        &fixture!("avcC_1920x1080.bin")[..]
    );
    let avc1 = find(&top, &[&stbl[..], &["avc1"]].concat())[0];
    assert_eq!(
        u16::from_be_bytes([init[avc1.body + 24], init[avc1.body + 25]]),
        1920
    );
    let esds = find(&top, &[&stbl[..], &["mp4a", "esds"]].concat());
    assert_eq!(esds.len(), 1);
    check_esds(
        &init[esds[0].body + 4..esds[0].end],
        0x40,
        Some(&[0x12, 0x10]),
    );
    let mp4a = find(&top, &[&stbl[..], &["mp4a"]].concat())[0];
    assert_eq!(
        u16::from_be_bytes([init[mp4a.body + 16], init[mp4a.body + 17]]),
        2
    );
    assert_eq!(be32(&init, mp4a.body + 24), 44100 << 16);
}

/// Read one descriptor: (tag, body, rest).
fn read_descriptor(d: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = d[0];
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let b = d[i];
        len = len << 7 | usize::from(b & 0x7f);
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    assert!(i + len <= d.len(), "descriptor {tag} length {len} overruns");
    (tag, &d[i..i + len], &d[i + len..])
}

fn check_esds(d: &[u8], object_type: u8, dsi: Option<&[u8]>) {
    let (tag, es, rest) = read_descriptor(d);
    assert_eq!((tag, rest.len()), (3, 0));
    let (tag, dcd, rest) = read_descriptor(&es[3..]);
    assert_eq!(tag, 4);
    let (sl_tag, sl, end) = read_descriptor(rest);
    assert_eq!((sl_tag, sl, end.len()), (6, &[2u8][..], 0));
    assert_eq!(dcd[0], object_type);
    assert_eq!(dcd[1], 0x15);
    match dsi {
        Some(dsi) => {
            let (tag, body, rest) = read_descriptor(&dcd[13..]);
            assert_eq!((tag, body, rest.len()), (5, dsi, 0));
        }
        None => assert_eq!(dcd.len(), 13),
    }
}

#[test]
fn descriptor_lengths_use_more_bytes_when_needed() {
    let mut out = Vec::new();
    boxes::descriptor(&mut out, 5, &[7; 200]).unwrap();
    assert_eq!(&out[..3], &[5, 0x81, 0x48]);
    let (tag, body, rest) = read_descriptor(&out);
    assert_eq!((tag, body.len(), rest.len()), (5, 200, 0));
    // A long AudioSpecificConfig still gives a consistent esds.
    let t = Track::with_config(1, Codec::Aac, 48000, Bytes::from(vec![0x11, 0x90])).unwrap();
    let mut t2 = t.clone();
    let mut long = vec![0x11, 0x90];
    long.resize(300, 0);
    t2.config = Some(Bytes::from(long.clone()));
    let init = init_segment(&[t2]).unwrap();
    let top = walk(&init, 0, init.len());
    let esds = find(
        &top,
        &[
            "moov", "trak", "mdia", "minf", "stbl", "stsd", "mp4a", "esds",
        ],
    )[0];
    check_esds(&init[esds.body + 4..esds.end], 0x40, Some(&long));
}

#[test]
fn init_segment_hevc_av1_opus_mp3() {
    let tracks = [
        Track::with_config(0, Codec::H265, 1000, fixture!("hvcC_640x360.bin")).unwrap(),
        Track::with_config(1, Codec::Opus, 48000, fixture!("OpusHead_mono.bin")).unwrap(),
        Track::with_config(2, Codec::Av1, 1000, fixture!("av1C_640x360.bin")).unwrap(),
        Track::with_config(3, Codec::Opus, 48000, fixture!("dOps_stereo.bin")).unwrap(),
        Track::new(4, Codec::Mp3, 1000),
    ];
    let init = init_segment(&tracks).unwrap();
    let top = walk(&init, 0, init.len());
    let stsd = ["moov", "trak", "mdia", "minf", "stbl", "stsd"];
    let hvcc = find(&top, &[&stsd[..], &["hvc1", "hvcC"]].concat());
    assert_eq!(
        &init[hvcc[0].body..hvcc[0].end],
        &fixture!("hvcC_640x360.bin")[..]
    );
    assert_eq!(
        find(&top, &[&stsd[..], &["av01", "av1C"]].concat()).len(),
        1
    );
    let dops = find(&top, &[&stsd[..], &["Opus", "dOps"]].concat());
    assert_eq!(dops.len(), 2);
    // OpusHead (mono, pre-skip 312, 48 kHz) converted to big-endian dOps.
    assert_eq!(
        &init[dops[0].body..dops[0].end],
        &[0, 1, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
    );
    assert_eq!(
        &init[dops[1].body..dops[1].end],
        &fixture!("dOps_stereo.bin")[..]
    );
    let esds = find(&top, &[&stsd[..], &["mp4a", "esds"]].concat());
    check_esds(&init[esds[0].body + 4..esds[0].end], 0x6b, None);
    assert_eq!(find(&top, &["moov", "mvex", "trex"]).len(), 5);
}

#[test]
fn init_segment_errors() {
    assert!(init_segment(&[]).is_err());
    assert!(init_segment(&[Track::new(0, Codec::H264, 1000)]).is_err());
    assert!(init_segment(&[Track::new(0, Codec::Ac3, 1000)]).is_err());
    assert!(init_segment(&[h264_track(), h264_track()]).is_err());
    assert!(init_segment(&[Track::new(u32::MAX, Codec::Mp3, 1000)]).is_err());
}

#[test]
fn fragment_samples_and_offsets() {
    // IPBB-style video with composition offsets, plus audio.
    let video = [
        frame(0, 0, 3000, true, b"I-frame"),
        frame(0, 3000, 12000, false, b"P"),
        frame(0, 6000, 6000, false, b"B1"),
        frame(0, 9000, 9000, false, b"B2.."),
    ];
    let audio = [
        frame(1, 0, 0, true, b"aac0"),
        frame(1, 1024, 1024, true, b"aac1!"),
    ];
    let mut out = Vec::new();
    write_styp(&mut out).unwrap();
    let payloads = write_fragment(
        7,
        &[
            TrackRun {
                track: 0,
                frames: &video,
                end_dts: Some(12000),
            },
            TrackRun {
                track: 1,
                frames: &audio,
                end_dts: None,
            },
        ],
        &mut out,
    )
    .unwrap();
    let head_len = out.len();
    let sent: Vec<Bytes> = video
        .iter()
        .chain(&audio)
        .map(|f| f.payload.clone())
        .collect();
    assert_eq!(payloads, sent);
    // Same memory, not copies.
    assert_eq!(payloads[0].as_ptr(), video[0].payload.as_ptr());
    let mut wire = out.clone();
    for p in &payloads {
        wire.extend_from_slice(p);
    }
    let top = walk(&wire, 0, wire.len());
    let types: Vec<_> = top.iter().map(|n| n.typ).collect();
    assert_eq!(types, [*b"styp", *b"moof", *b"mdat"]);
    assert_eq!(top[2].body, head_len);
    let moof = &top[1];
    assert_eq!(be32(&wire, find(&top, &["moof", "mfhd"])[0].body + 4), 7);
    let tfhd = find(&top, &["moof", "traf", "tfhd"]);
    assert_eq!(be32(&wire, tfhd[0].body) & 0xff_ffff, 0x02_0000);
    assert_eq!(be32(&wire, tfhd[0].body + 4), 1);
    assert_eq!(be32(&wire, tfhd[1].body + 4), 2);
    let tfdts = find(&top, &["moof", "traf", "tfdt"]);
    assert_eq!(tfdt(&wire, tfdts[0]), 0);
    let truns: Vec<_> = find(&top, &["moof", "traf", "trun"])
        .into_iter()
        .map(|n| parse_trun(&wire, n))
        .collect();
    assert_eq!(truns[0].version, 1);
    assert_eq!(
        truns[0].samples,
        [
            (3000, 7, SYNC_SAMPLE_FLAGS, 3000),
            (3000, 1, NON_SYNC_SAMPLE_FLAGS, 9000),
            (3000, 2, NON_SYNC_SAMPLE_FLAGS, 0),
            (3000, 4, NON_SYNC_SAMPLE_FLAGS, 0),
        ]
    );
    // Audio: no composition offsets, so version 0 without the field; the
    // last duration repeats the previous one.
    assert_eq!(truns[1].version, 0);
    assert_eq!(
        truns[1].samples,
        [
            (1024, 4, SYNC_SAMPLE_FLAGS, 0),
            (1024, 5, SYNC_SAMPLE_FLAGS, 0)
        ]
    );
    // data_offset is relative to the moof and lands on the first payload
    // byte of each run.
    let v0 = moof.start + truns[0].data_offset as usize;
    assert_eq!(v0, top[2].body);
    assert_eq!(&wire[v0..v0 + 7], b"I-frame");
    let a0 = moof.start + truns[1].data_offset as usize;
    assert_eq!(&wire[a0..a0 + 4], b"aac0");
    assert_eq!(a0, v0 + 7 + 1 + 2 + 4);
}

#[test]
fn fragment_errors() {
    let one = [frame(0, 0, 0, true, b"x")];
    let run = |frames: &[Frame], end| {
        let mut out = Vec::new();
        write_fragment(
            1,
            &[TrackRun {
                track: 0,
                frames,
                end_dts: end,
            }],
            &mut out,
        )
    };
    assert!(run(&one, None).is_err(), "single frame, no end");
    assert!(run(&one, Some(10)).is_ok());
    assert!(run(&one, Some(-1)).is_err(), "end before last dts");
    assert!(run(&[frame(0, -5, -5, true, b"x")], Some(0)).is_err());
    assert!(run(&[frame(1, 0, 0, true, b"x")], Some(1)).is_err());
    assert!(
        run(
            &[frame(0, 10, 10, true, b"x"), frame(0, 5, 5, true, b"y")],
            None
        )
        .is_err()
    );
    assert!(run(&[frame(0, 0, 1 << 40, true, b"x")], Some(1)).is_err());
    // Empty runs write no traf.
    let mut out = Vec::new();
    let p = write_fragment(
        1,
        &[TrackRun {
            track: 0,
            frames: &[],
            end_dts: None,
        }],
        &mut out,
    )
    .unwrap();
    assert!(p.is_empty());
    let top = walk(&out, 0, out.len());
    assert!(find(&top, &["moof", "traf"]).is_empty());
}

// ---------------------------------------------------------------------------
// Decoding with ffmpeg.

fn demux_flv(data: Bytes) -> (Vec<Track>, Vec<Frame>) {
    let mut d = FlvDemuxer::new();
    d.push_bytes(data);
    let mut s = FlvStream::new();
    let mut tracks: Vec<Track> = Vec::new();
    let mut frames = Vec::new();
    while let Some(t) = d.next_tag().unwrap() {
        s.handle_tag(t.tag_type, t.timestamp, t.body).unwrap();
        while let Some(e) = s.poll_event() {
            match e {
                FlvEvent::Track { track, .. } => {
                    tracks.retain(|t| t.id != track.id);
                    tracks.push(track);
                }
                FlvEvent::Frame(f) => frames.push(f),
                _ => {}
            }
        }
    }
    tracks.sort_by_key(|t| t.id);
    (tracks, frames)
}

/// init + one fragment per video GOP (all tracks' frames with dts in it),
/// payloads concatenated, for the given tracks.
fn fragmented_file(tracks: &[Track], frames: &[Frame]) -> Vec<u8> {
    let mut file = init_segment(tracks).unwrap();
    let ids: Vec<u32> = tracks.iter().map(|t| t.id).collect();
    let frames: Vec<&Frame> = frames.iter().filter(|f| ids.contains(&f.track)).collect();
    let video = tracks.iter().find(|t| t.codec.is_video()).map(|t| t.id);
    // Fragment boundaries: video keyframes (or every 10th audio frame).
    let mut cuts: Vec<i64> = match video {
        Some(v) => frames
            .iter()
            .filter(|f| f.track == v && f.keyframe)
            .map(|f| f.dts)
            .collect(),
        None => frames.iter().step_by(10).map(|f| f.dts).collect(),
    };
    cuts.dedup();
    cuts[0] = i64::MIN;
    cuts.push(i64::MAX);
    for (seq, w) in (1..).zip(cuts.windows(2)) {
        let per_track: Vec<(u32, Vec<Frame>, Option<i64>)> = ids
            .iter()
            .map(|&id| {
                let all: Vec<&&Frame> = frames.iter().filter(|f| f.track == id).collect();
                let inside: Vec<Frame> = all
                    .iter()
                    .filter(|f| f.dts >= w[0] && f.dts < w[1])
                    .map(|f| (**f).clone())
                    .collect();
                let end = all.iter().find(|f| f.dts >= w[1]).map(|f| f.dts);
                let end = match (end, inside.len()) {
                    (None, 1) => Some(inside[0].dts + 20),
                    (e, _) => e,
                };
                (id, inside, end)
            })
            .collect();
        let runs: Vec<TrackRun<'_>> = per_track
            .iter()
            .map(|(id, f, end)| TrackRun {
                track: *id,
                frames: f,
                end_dts: *end,
            })
            .collect();
        let payloads = write_fragment(seq, &runs, &mut file).unwrap();
        for p in payloads {
            file.extend_from_slice(&p);
        }
    }
    let top = walk(&file, 0, file.len());
    assert_eq!(find(&top, &["moof"]).len(), cuts.len() - 1);
    file
}

fn ffprobe(path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_packets",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is required for this test (apt-get install ffmpeg)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ffmpeg_decodes(path: &std::path::Path) {
    assert!(
        std::path::Path::new("/usr/bin/ffmpeg").exists(),
        "/usr/bin/ffmpeg is required for this test"
    );
    let out = Command::new("/usr/bin/ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(path);
}

fn temp_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spate-fmp4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn ffmpeg_decodes_h264_aac_fragments() {
    let (tracks, frames) = demux_flv(fixture!("h264_aac.flv"));
    assert_eq!(tracks.len(), 2);
    let count = |id| frames.iter().filter(|f| f.track == id).count();
    // Both tracks in one init segment.
    let path = temp_file("h264_aac.mp4", &fragmented_file(&tracks, &frames));
    let json = compact(&ffprobe(&path));
    assert!(
        json.contains(&format!(
            r#"{{"codec_name":"h264","width":320,"height":180,"nb_read_packets":"{}"}}"#,
            count(0)
        )),
        "{json}"
    );
    assert!(
        json.contains(&format!(
            r#"{{"codec_name":"aac","nb_read_packets":"{}"}}"#,
            count(1)
        )),
        "{json}"
    );
    ffmpeg_decodes(&path);
    // CMAF: one track per init segment.
    for (t, name) in [(&tracks[0], "h264"), (&tracks[1], "aac")] {
        let path = temp_file(
            &format!("cmaf_{name}.mp4"),
            &fragmented_file(std::slice::from_ref(t), &frames),
        );
        let json = compact(&ffprobe(&path));
        assert!(
            json.contains(&format!(r#""codec_name":"{name}""#)),
            "{json}"
        );
        assert!(
            json.contains(&format!(r#""nb_read_packets":"{}""#, count(t.id))),
            "{json}"
        );
        ffmpeg_decodes(&path);
    }
}

#[test]
fn ffmpeg_decodes_h264_mp3_fragments() {
    let (tracks, frames) = demux_flv(fixture!("h264_mp3.flv"));
    let path = temp_file("h264_mp3.mp4", &fragmented_file(&tracks, &frames));
    let json = compact(&ffprobe(&path));
    assert!(
        json.contains(r#""codec_name":"h264","width":160,"height":90"#),
        "{json}"
    );
    assert!(json.contains(r#""codec_name":"mp3""#), "{json}");
    ffmpeg_decodes(&path);
}

// ---------------------------------------------------------------------------
// HEVC, AV1 and Opus: ffmpeg 5.1 cannot put them in FLV, so take the
// samples out of an fMP4 ffmpeg writes and write them again with ours.

/// Run ffmpeg with `args`, writing fragmented MP4 to stdout.
fn ffmpeg_fmp4(args: &[&str]) -> Vec<u8> {
    let out = Command::new("/usr/bin/ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .args([
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            "pipe:1",
        ])
        .output()
        .expect("/usr/bin/ffmpeg is required for this test");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Tracks (config = the sample entry's config box payload) and frames of
/// a fragmented MP4 (ffmpeg's flavour: default-base-is-moof, trex
/// defaults).
fn read_fmp4(d: &[u8], codecs: &[(&[u8; 4], Codec)]) -> (Vec<Track>, Vec<Frame>) {
    let top = walk(d, 0, d.len());
    let mut tracks = Vec::new();
    let mut defaults = std::collections::HashMap::new();
    for trak in find(&top, &["moov", "trak"]) {
        let sub = std::slice::from_ref(trak);
        let tkhd = find(sub, &["trak", "tkhd"])[0];
        let id = be32(d, tkhd.body + 12);
        let mdhd = find(sub, &["trak", "mdia", "mdhd"])[0];
        let timescale = be32(d, mdhd.body + 12);
        let entry = &find(sub, &["trak", "mdia", "minf", "stbl", "stsd"])[0].children[0];
        let codec = codecs
            .iter()
            .find(|(t, _)| **t == entry.typ)
            .unwrap_or_else(|| panic!("sample entry {:?}", entry.typ))
            .1;
        let cfg = &entry.children[0];
        let config = Bytes::copy_from_slice(&d[cfg.body..cfg.end]);
        if config.is_empty() {
            // ffmpeg's empty_moov av1C before libaom's extradata: filled
            // in from the first keyframe below.
            tracks.push(Track::new(id - 1, codec, timescale));
        } else {
            tracks.push(Track::with_config(id - 1, codec, timescale, config).unwrap());
        }
    }
    for trex in find(&top, &["moov", "mvex", "trex"]) {
        let id = be32(d, trex.body + 4);
        defaults.insert(
            id,
            (
                be32(d, trex.body + 12),
                be32(d, trex.body + 16),
                be32(d, trex.body + 20),
            ),
        );
    }
    let mut frames = Vec::new();
    for moof in find(&top, &["moof"]) {
        for traf in &moof.children {
            if &traf.typ != b"traf" {
                continue;
            }
            let mut dts = 0u64;
            let (mut dur0, mut size0, mut flags0) = (0, 0, 0);
            let mut id = 0;
            for b in &traf.children {
                let p = b.body;
                let fl = be32(d, p) & 0xff_ffff;
                match &b.typ {
                    b"tfhd" => {
                        id = be32(d, p + 4);
                        (dur0, size0, flags0) = defaults[&id];
                        let mut q = p + 8;
                        assert_eq!(fl & 1, 0, "base_data_offset");
                        if fl & 2 != 0 {
                            q += 4;
                        }
                        if fl & 8 != 0 {
                            dur0 = be32(d, q);
                            q += 4;
                        }
                        if fl & 0x10 != 0 {
                            size0 = be32(d, q);
                            q += 4;
                        }
                        if fl & 0x20 != 0 {
                            flags0 = be32(d, q);
                        }
                    }
                    b"tfdt" => {
                        dts = if d[p] == 1 {
                            u64::from_be_bytes(d[p + 4..p + 12].try_into().unwrap())
                        } else {
                            u64::from(be32(d, p + 4))
                        };
                    }
                    b"trun" => {
                        let n = be32(d, p + 4);
                        let mut q = p + 8;
                        let mut pos = moof.start;
                        if fl & 1 != 0 {
                            pos = (pos as i64 + i64::from(be32(d, q) as i32)) as usize;
                            q += 4;
                        }
                        let mut first_flags = None;
                        if fl & 4 != 0 {
                            first_flags = Some(be32(d, q));
                            q += 4;
                        }
                        for i in 0..n {
                            let mut take = |bit: u32, default: u32| {
                                if fl & bit != 0 {
                                    q += 4;
                                    be32(d, q - 4)
                                } else {
                                    default
                                }
                            };
                            let dur = take(0x100, dur0);
                            let size = take(0x200, size0) as usize;
                            let mut flags = take(0x400, flags0);
                            let cto = take(0x800, 0) as i32;
                            if i == 0
                                && let Some(f) = first_flags
                            {
                                flags = f;
                            }
                            frames.push(Frame {
                                track: id - 1,
                                dts: dts as i64,
                                pts: dts as i64 + i64::from(cto),
                                keyframe: flags & 0x1_0000 == 0,
                                payload: Bytes::copy_from_slice(&d[pos..pos + size]),
                            });
                            pos += size;
                            dts += u64::from(dur);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for t in tracks.iter_mut().filter(|t| t.config.is_none()) {
        assert_eq!(t.codec, Codec::Av1);
        let first = frames.iter().find(|f| f.track == t.id).unwrap();
        let mut av1c = vec![0x81, 0x00, 0x0c, 0x00];
        av1c.extend_from_slice(&sequence_header_obu(&first.payload));
        *t = Track::with_config(t.id, t.codec, t.timebase, Bytes::from(av1c)).unwrap();
    }
    (tracks, frames)
}

/// The sequence header OBU (with its header) of a temporal unit.
fn sequence_header_obu(tu: &[u8]) -> Vec<u8> {
    let mut pos = 0;
    while pos < tu.len() {
        let start = pos;
        let header = tu[pos];
        pos += 1 + usize::from(header & 0x04 != 0);
        assert!(header & 0x02 != 0, "OBU without size field");
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let b = tu[pos];
            pos += 1;
            size |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        pos += size;
        if (header >> 3) & 0x0f == 1 {
            return tu[start..pos].to_vec();
        }
    }
    panic!("no sequence header OBU in the first AV1 frame");
}

fn remux_and_decode(name: &str, source: &[u8], codecs: &[(&[u8; 4], Codec)], expect: &[&str]) {
    let (tracks, frames) = read_fmp4(source, codecs);
    assert_eq!(tracks.len(), expect.len());
    assert!(frames.len() > 10);
    if expect.contains(&"hevc") {
        assert!(
            frames.iter().any(|f| f.pts != f.dts),
            "B-frames: composition offsets exercised"
        );
    }
    let path = temp_file(name, &fragmented_file(&tracks, &frames));
    let json = compact(&ffprobe(&path));
    for (t, codec) in tracks.iter().zip(expect) {
        assert!(
            json.contains(&format!(r#""codec_name":"{codec}""#)),
            "{json}"
        );
        let n = frames.iter().filter(|f| f.track == t.id).count();
        assert!(
            json.contains(&format!(r#""nb_read_packets":"{n}""#)),
            "{codec}: {n} packets expected: {json}"
        );
    }
    ffmpeg_decodes(&path);
}

#[test]
fn ffmpeg_decodes_hevc_opus_fragments() {
    let src = ffmpeg_fmp4(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=192x108:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "1",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error:keyint=10:bframes=2",
        "-tag:v",
        "hvc1",
        "-c:a",
        "libopus",
    ]);
    remux_and_decode(
        "hevc_opus.mp4",
        &src,
        &[(b"hvc1", Codec::H265), (b"Opus", Codec::Opus)],
        &["hevc", "opus"],
    );
}

#[test]
fn ffmpeg_decodes_av1_fragments() {
    let src = ffmpeg_fmp4(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=128x72:rate=25",
        "-t",
        "0.6",
        "-c:v",
        "libaom-av1",
        "-cpu-used",
        "8",
        "-g",
        "5",
    ]);
    remux_and_decode("av1.mp4", &src, &[(b"av01", Codec::Av1)], &["av1"]);
}
