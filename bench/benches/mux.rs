//! Packaging throughput: MPEG-TS muxing and fMP4 fragmenting of a recorded
//! H.264/AAC stream, per core (run it pinned: `scripts/bench-mux.sh` does).
//!
//! Input: FLV recordings made by `scripts/bench-mux.sh` (20 s of 720p30
//! testsrc2 + sine, libx264 at 1 and 8 Mbit/s, AAC 128k). Paths come from
//! `SPATE_BENCH_FLV_1M` / `SPATE_BENCH_FLV_8M`, default
//! `target/bench-media/{1M,8M}.flv`. Each file is demuxed once, outside the
//! timed loops, with `FlvDemuxer` + `FlvStream` into tracks and frames.
//!
//! Timed, per stream, throughput = the frames' total payload bytes:
//! - `ts`: one `TsMuxer`, `write_frame` for every frame into one reused
//!   `Vec` (cleared per iteration, capacity kept).
//! - `fmp4`: frames grouped (outside the loop) into 2 s fragments cut at
//!   video keyframes, audio cut at the same instant; per fragment
//!   `write_styp` + `write_fragment` into one reused head `Vec`. The payload
//!   `Bytes` it returns are kept until the end of the iteration (so their
//!   reference counts are taken and dropped inside the loop), never copied:
//!   what a `writev` delivery of head + shared payloads costs.
//! - `fmp4_copy`: the same, plus the payloads copied after each head into
//!   one output `Vec`: what a store of whole segments costs.
//! - `flv_demux`: for reference, the demux that the loops leave out
//!   (`FlvDemuxer` over the whole file, `FlvStream` to frames), since
//!   `ffmpeg -c copy`, the peer in the script, does demux + mux.
//!
//! `SPATE_BENCH_MUX_DUMP=DIR` writes what one pass produces to
//! `DIR/{1M,8M}.ts` and `.mp4` (init segment + the copied fragments), to
//! check with ffprobe that the timed work makes a valid stream.
//!
//! Clock: wall time, or with `SPATE_BENCH_CLOCK=cpu` the bench thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`), which leaves out the time other
//! processes hold the core: on a shared machine that is what "per core"
//! means.
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spate_packager::flv::{FlvDemuxer, FlvEvent, FlvStream, VIDEO_TRACK};
use spate_packager::fmp4::{TrackRun, init_segment, write_fragment, write_styp};
use spate_packager::media::{Frame, Track};
use spate_packager::ts::TsMuxer;

/// Fragment length: a cut at the first video keyframe at least this far
/// (in ms, the FLV timebase) after the fragment's start.
const FRAGMENT_MS: i64 = 2000;

/// The streams: label and the environment variable naming its FLV.
const STREAMS: [(&str, &str); 2] = [("1M", "SPATE_BENCH_FLV_1M"), ("8M", "SPATE_BENCH_FLV_8M")];

/// Wall time or this thread's CPU time, chosen by `SPATE_BENCH_CLOCK`
/// (`wall`, the default, or `cpu`).
struct Clock {
    cpu: bool,
    origin: Instant,
    wall: WallTime,
}

impl Clock {
    fn from_env() -> Clock {
        let cpu = match std::env::var("SPATE_BENCH_CLOCK").as_deref() {
            Err(_) | Ok("wall") => false,
            Ok("cpu") => true,
            Ok(other) => panic!("SPATE_BENCH_CLOCK={other}: expected wall or cpu"),
        };
        Clock {
            cpu,
            origin: Instant::now(),
            wall: WallTime,
        }
    }

    fn now(&self) -> Duration {
        if !self.cpu {
            return self.origin.elapsed();
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call's duration.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }
    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

struct Input {
    label: &'static str,
    file: Vec<u8>,
    tracks: Vec<Track>,
    frames: Vec<Frame>,
    payload_bytes: u64,
}

fn flv_path(label: &str, var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/bench-media")
            .join(format!("{label}.flv")),
    }
}

/// Demux a whole FLV that `feed` pushes into the demuxer: the tracks (last
/// version of each, in id order) and every frame in file order. Panics on a
/// config change mid-stream, which the recordings do not have.
fn demux(feed: impl FnOnce(&mut FlvDemuxer)) -> (Vec<Track>, Vec<Frame>) {
    let mut demuxer = FlvDemuxer::new();
    feed(&mut demuxer);
    let mut stream = FlvStream::new();
    let mut tracks: Vec<Track> = Vec::new();
    let mut frames = Vec::new();
    while let Some(tag) = demuxer.next_tag().expect("FLV tag") {
        stream
            .handle_tag(tag.tag_type, tag.timestamp, tag.body)
            .expect("FLV tag body");
        while let Some(ev) = stream.poll_event() {
            match ev {
                FlvEvent::Track {
                    track,
                    config_error,
                } => {
                    assert!(config_error.is_none(), "track config: {config_error:?}");
                    assert!(
                        frames.iter().all(|f: &Frame| f.track != track.id),
                        "track {} changed configuration mid-stream",
                        track.id
                    );
                    tracks.retain(|t| t.id != track.id);
                    tracks.push(track);
                }
                FlvEvent::Frame(f) => frames.push(f),
                _ => {}
            }
        }
    }
    assert_eq!(demuxer.buffered(), 0, "trailing bytes after the last tag");
    tracks.sort_by_key(|t| t.id);
    (tracks, frames)
}

fn load(label: &'static str, var: &str) -> Input {
    let path = flv_path(label, var);
    let file = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the {label} recording {}: {e}\n\
             run scripts/bench-mux.sh (it records target/bench-media/*.flv with ffmpeg), \
             or point {var} at an H.264/AAC FLV",
            path.display()
        )
    });
    // Pushed as one shared buffer (`push_bytes`, no copy): the payloads
    // are slices of it. `Into::into`/`Clone::clone` let the compiler name
    // `bytes::Bytes`, which this crate does not depend on.
    let shared = Into::into(file.clone());
    let (tracks, frames) = demux(|d| d.push_bytes(Clone::clone(&shared)));
    assert!(
        tracks.len() == 2 && !frames.is_empty(),
        "{}: expected a video and an audio track with frames, got {} tracks and {} frames",
        path.display(),
        tracks.len(),
        frames.len()
    );
    let payload_bytes = frames.iter().map(|f| f.payload.len() as u64).sum();
    Input {
        label,
        file,
        tracks,
        frames,
        payload_bytes,
    }
}

/// One fragment: per track (in `tracks` order), its frames and the dts
/// where the run ends.
struct Fragment {
    runs: Vec<(u32, Vec<Frame>, Option<i64>)>,
}

/// Cut at video keyframes ≥ [`FRAGMENT_MS`] after the fragment's start;
/// each frame goes to the fragment whose time range holds its dts (so
/// audio is cut at the same instant as video).
fn fragments(input: &Input) -> Vec<Fragment> {
    let mut cuts = vec![i64::MIN];
    let mut start = None;
    for f in &input.frames {
        if f.track == VIDEO_TRACK && f.keyframe {
            match start {
                None => start = Some(f.dts),
                Some(s) if f.dts - s >= FRAGMENT_MS => {
                    cuts.push(f.dts);
                    start = Some(f.dts);
                }
                Some(_) => {}
            }
        }
    }
    let mut per: Vec<Vec<Vec<Frame>>> = vec![vec![Vec::new(); input.tracks.len()]; cuts.len()];
    for f in &input.frames {
        let i = cuts.partition_point(|&c| c <= f.dts) - 1;
        let t = input.tracks.iter().position(|t| t.id == f.track).unwrap();
        per[i][t].push(f.clone());
    }
    let mut out: Vec<Fragment> = Vec::with_capacity(per.len());
    for (i, runs) in per.iter().enumerate() {
        let runs = runs
            .iter()
            .enumerate()
            .map(|(t, frames)| {
                // The run ends where the track's next fragment starts.
                let end = per[i + 1..]
                    .iter()
                    .find_map(|next| next[t].first().map(|f| f.dts));
                (input.tracks[t].id, frames.clone(), end)
            })
            .collect();
        out.push(Fragment { runs });
    }
    out
}

fn ts_mux(tracks: &[Track], frames: &[Frame], out: &mut Vec<u8>) {
    out.clear();
    let mut mux = TsMuxer::new(tracks).expect("TS muxer");
    for f in frames {
        mux.write_frame(f, out).expect("TS write_frame");
    }
}

fn benches(c: &mut Criterion<Clock>) {
    let inputs: Vec<Input> = STREAMS.iter().map(|&(l, v)| load(l, v)).collect();
    let mut g = c.benchmark_group("mux");
    g.measurement_time(Duration::from_secs(5));
    for input in &inputs {
        let frags = fragments(input);
        let runs: Vec<Vec<TrackRun<'_>>> = frags
            .iter()
            .map(|fr| {
                fr.runs
                    .iter()
                    .map(|(track, frames, end_dts)| TrackRun {
                        track: *track,
                        frames,
                        end_dts: *end_dts,
                    })
                    .collect()
            })
            .collect();

        // fMP4 by reference: heads into one reused `Vec`, the payload lists
        // `write_fragment` returns kept until the next iteration's clear.
        let fmp4_refs = |head: &mut Vec<u8>, kept: &mut Vec<_>| {
            head.clear();
            kept.clear();
            for (i, r) in runs.iter().enumerate() {
                write_styp(head).expect("styp");
                kept.push(write_fragment(i as u32 + 1, r, head).expect("fragment"));
            }
        };
        // fMP4 as whole segments: each fragment's payloads copied after its
        // head, all into one reused `Vec`.
        let fmp4_copy = |seg: &mut Vec<u8>| {
            seg.clear();
            for (i, r) in runs.iter().enumerate() {
                write_styp(seg).expect("styp");
                for p in write_fragment(i as u32 + 1, r, seg).expect("fragment") {
                    seg.extend_from_slice(&p);
                }
            }
        };

        let mut ts_out = Vec::new();
        ts_mux(&input.tracks, &input.frames, &mut ts_out);
        let (mut head, mut kept) = (Vec::new(), Vec::new());
        fmp4_refs(&mut head, &mut kept);
        let mdat: u64 = kept.iter().flatten().map(|p| p.len() as u64).sum();
        assert_eq!(mdat, input.payload_bytes, "mdat bodies = all payloads");
        let mut seg = Vec::new();
        fmp4_copy(&mut seg);
        assert_eq!(seg.len() as u64, head.len() as u64 + mdat);
        if let Some(dir) = std::env::var_os("SPATE_BENCH_MUX_DUMP") {
            let dir = PathBuf::from(dir);
            let mut mp4 = init_segment(&input.tracks).expect("init segment");
            mp4.extend_from_slice(&seg);
            for (ext, bytes) in [("ts", &ts_out), ("mp4", &mp4)] {
                let path = dir.join(format!("{}.{ext}", input.label));
                std::fs::write(&path, bytes)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            }
        }
        let video = input
            .frames
            .iter()
            .filter(|f| f.track == VIDEO_TRACK)
            .count();
        let first = input.frames.first().map_or(0, |f| f.dts);
        let last = input.frames.last().map_or(0, |f| f.dts);
        eprintln!(
            "mux input {}: file_bytes={} frames={} video_frames={} audio_frames={} \
             duration_ms={} payload_bytes={} ts_bytes={} fmp4_fragments={} fmp4_head_bytes={}",
            input.label,
            input.file.len(),
            input.frames.len(),
            video,
            input.frames.len() - video,
            last - first,
            input.payload_bytes,
            ts_out.len(),
            frags.len(),
            head.len(),
        );

        g.throughput(Throughput::BytesDecimal(input.payload_bytes));
        g.bench_function(BenchmarkId::new("ts", input.label), |b| {
            b.iter(|| {
                ts_mux(&input.tracks, black_box(&input.frames), &mut ts_out);
                black_box(ts_out.len())
            })
        });
        g.bench_function(BenchmarkId::new("fmp4", input.label), |b| {
            b.iter(|| {
                fmp4_refs(&mut head, &mut kept);
                black_box((head.len(), kept.len()))
            })
        });
        g.bench_function(BenchmarkId::new("fmp4_copy", input.label), |b| {
            b.iter(|| {
                fmp4_copy(&mut seg);
                black_box(seg.len())
            })
        });
        let shared = Into::into(input.file.clone());
        g.bench_function(BenchmarkId::new("flv_demux", input.label), |b| {
            b.iter(|| black_box(demux(|d| d.push_bytes(Clone::clone(&shared))).1.len()))
        });
    }
    g.finish();
}

criterion_group! {
    name = mux;
    config = Criterion::default().with_measurement(Clock::from_env());
    targets = benches
}
criterion_main!(mux);
