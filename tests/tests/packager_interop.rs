//! The packager's muxers against real decoders: MPEG-TS and fMP4/CMAF built
//! from the FLV fixtures (packager/tests/fixtures) are read back with
//! ffprobe and decoded with ffmpeg. These live here, not in packager/, which
//! stays pure (no files, no processes).

macro_rules! fixture {
    ($name:literal) => {
        bytes::Bytes::from(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../packager/tests/fixtures/",
                $name
            ))
            .expect("packager fixture"),
        )
    };
}

mod ts_interop {
    use bytes::Bytes;
    use spate_packager::flv::{FlvDemuxer, FlvEvent, FlvStream};
    use spate_packager::media::{Codec, Frame, Track};
    use spate_packager::ts::*;

    /// Mux an FLV fixture through FlvStream → TsMuxer; returns the TS bytes
    /// and the number of frames per track id.
    fn mux_flv(file: Bytes) -> (Vec<u8>, [usize; 2]) {
        let mut dmx = FlvDemuxer::new();
        dmx.push_bytes(file);
        let mut stream = FlvStream::new();
        let mut tracks: Vec<Track> = Vec::new();
        let mut frames = Vec::new();
        while let Some(tag) = dmx.next_tag().unwrap() {
            stream
                .handle_tag(tag.tag_type, tag.timestamp, tag.body)
                .unwrap();
            while let Some(ev) = stream.poll_event() {
                match ev {
                    FlvEvent::Track { track, .. } => tracks.push(track),
                    FlvEvent::Frame(f) => frames.push(f),
                    _ => {}
                }
            }
        }
        let mut m = TsMuxer::new(&tracks).unwrap();
        let mut out = Vec::new();
        for f in &frames {
            m.write_frame(f, &mut out).unwrap();
        }
        let count = |id| frames.iter().filter(|f| f.track == id).count();
        (out, [count(0), count(1)])
    }

    fn run(cmd: &str, args: &[&str]) -> (String, String) {
        let o = std::process::Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {cmd} (needed by this test): {e}"));
        assert!(
            o.status.success(),
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[test]
    fn ffmpeg_reads_muxed_fixtures() {
        assert!(
            std::path::Path::new("/usr/bin/ffprobe").exists(),
            "/usr/bin/ffprobe is missing: install ffmpeg to run the MPEG-TS interop test"
        );
        for (name, file, audio) in [
            ("h264_aac", fixture!("h264_aac.flv"), "aac"),
            ("h264_mp3", fixture!("h264_mp3.flv"), "mp3"),
        ] {
            let (ts, counts) = mux_flv(file);
            let path =
                std::env::temp_dir().join(format!("spate-ts-{name}-{}.ts", std::process::id()));
            std::fs::write(&path, &ts).unwrap();
            let p = path.to_str().unwrap();
            let (json, _) = run(
                "ffprobe",
                &[
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name",
                    "-of",
                    "json",
                    p,
                ],
            );
            assert!(json.contains("\"h264\""), "{json}");
            assert!(json.contains(&format!("\"{audio}\"")), "{json}");
            // Every frame muxed is decoded.
            let (frames, _) = run(
                "ffprobe",
                &[
                    "-v",
                    "error",
                    "-count_frames",
                    "-show_entries",
                    "stream=nb_read_frames",
                    "-of",
                    "csv=p=0",
                    p,
                ],
            );
            let decoded: Vec<usize> = frames
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.parse().unwrap())
                .collect();
            // The program's streams are listed first, then the same streams again.
            assert_eq!(
                decoded[decoded.len() - 2..],
                counts,
                "decoded frames per stream in {name}"
            );
            let (_, log) = run("ffmpeg", &["-v", "debug", "-i", p, "-f", "null", "-"]);
            assert_eq!(log.matches("Continuity check failed").count(), 0, "{log}");
            let (_, errors) = run("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
            assert_eq!(errors.trim(), "", "decode errors in {name}");
            // A segment cut at the second keyframe (where the muxer repeated
            // PAT/PMT) decodes on its own, as an HLS segment must.
            let second_pat = ts
                .chunks(PACKET_LEN)
                .enumerate()
                .filter(|(_, pk)| pk[1] & 0x1F == 0 && pk[2] == 0)
                .nth(1)
                .map(|(i, _)| i);
            // h264_mp3.flv has a single keyframe (GOP 250 over 1 s).
            assert_eq!(second_pat.is_some(), name == "h264_aac");
            if let Some(i) = second_pat {
                std::fs::write(&path, &ts[i * PACKET_LEN..]).unwrap();
                let (_, errors) = run("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
                assert_eq!(errors.trim(), "", "decode errors in a segment of {name}");
            }
            if std::env::var_os("SPATE_KEEP_TS").is_none() {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }

    #[test]
    fn ffmpeg_reads_opus_descriptors() {
        // 20 ms stereo CELT frames with no coded data (TOC only: decoded as
        // concealment), enough for ffprobe to see the stream from the PMT.
        let t = Track::with_config(1, Codec::Opus, 48000, fixture!("dOps_stereo.bin")).unwrap();
        let mut m = TsMuxer::new(&[t]).unwrap();
        let mut out = Vec::new();
        for i in 0..50i64 {
            let f = Frame {
                track: 1,
                dts: i * 960,
                pts: i * 960,
                keyframe: true,
                payload: Bytes::from_static(&[0xFC]),
            };
            m.write_frame(&f, &mut out).unwrap();
        }
        let path = std::env::temp_dir().join(format!("spate-ts-opus-{}.ts", std::process::id()));
        std::fs::write(&path, &out).unwrap();
        let p = path.to_str().unwrap();
        let (json, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,channels,sample_rate",
                "-of",
                "json",
                p,
            ],
        );
        assert!(json.contains("\"opus\""), "{json}");
        assert!(json.contains("\"channels\": 2"), "{json}");
        let (_, log) = run("ffmpeg", &["-v", "debug", "-i", p, "-f", "null", "-"]);
        assert_eq!(log.matches("Continuity check failed").count(), 0, "{log}");
        let (_, errors) = run("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
        assert_eq!(errors.trim(), "", "decode errors");
        if std::env::var_os("SPATE_KEEP_TS").is_none() {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

mod fmp4_interop {
    use std::process::Command;

    use bytes::Bytes;
    use spate_packager::flv::{FlvDemuxer, FlvEvent, FlvStream};
    use spate_packager::fmp4::*;
    use spate_packager::media::{Codec, Frame, Track};

    /// A parsed box: type, byte range, header length, children.
    #[derive(Debug)]
    struct Node {
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
            b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof"
            | b"traf" => 0,
            b"stsd" | b"dref" => 8,
            b"avc1" | b"hvc1" | b"av01" | b"vp09" => 78,
            b"mp4a" | b"Opus" => 28,
            _ => return None,
        })
    }

    /// Walk the boxes of `data[start..end]`; panics unless the sizes tile the
    /// range exactly, recursively.
    fn walk(data: &[u8], start: usize, end: usize) -> Vec<Node> {
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
    fn find<'a>(nodes: &'a [Node], path: &[&str]) -> Vec<&'a Node> {
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
}
