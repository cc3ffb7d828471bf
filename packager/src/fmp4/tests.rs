//! Box-level checks with a small box walker. Decoding with ffprobe/ffmpeg is
//! in tests/tests/packager_interop.rs.

use bytes::Bytes;

use super::*;

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
