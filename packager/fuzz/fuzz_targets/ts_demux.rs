//! Arbitrary bytes, split at arbitrary points, into the MPEG-TS demuxer.
//!
//! Input layout: `[config][n][n split sizes][stream...]`. Config bits: 0
//! small limits (2 kB PES, 3 streams, 1 program, 3 kB buffered); 1 put a
//! valid PAT + PMT (H.264, HEVC, AAC, MP3, Opus, AC-3 on PIDs 0x100..) in
//! front so the fuzzer reaches the PES layer at once; 2 overwrite every
//! 188th byte with a sync byte (packet alignment found at once). The stream
//! is pushed in pieces of the given sizes (cycled; 0 means "the rest").
//! Checks: the events and stats equal those of one contiguous push; frames
//! only of announced tracks, payloads non-empty and shorter than
//! `max_pes_bytes`, DTS never decreasing per track between Discontinuity
//! events, Discontinuity/TrackRemoved only of announced tracks, ids never
//! reused, timebase 90 kHz; every track the muxer accepts and every frame
//! of it re-mux through `TsMuxer` without error.
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use spate_packager::ts::{
    PACKET_LEN, SYNC_BYTE, TS_TIMEBASE, TsDemuxLimits, TsDemuxer, TsEvent, TsMuxer, crc32_mpeg2,
};

fn psi(pid: u16, table_id: u8, ext: u16, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut sec = vec![table_id, 0xB0 | (len >> 8) as u8, len as u8];
    sec.extend_from_slice(&ext.to_be_bytes());
    sec.extend_from_slice(&[0xC1, 0, 0]);
    sec.extend_from_slice(body);
    let crc = crc32_mpeg2(&sec);
    sec.extend_from_slice(&crc.to_be_bytes());
    let mut p = vec![SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
    p.extend_from_slice(&sec);
    p.resize(PACKET_LEN, 0xFF);
    p
}

fn header() -> Vec<u8> {
    let mut out = psi(0, 0, 1, &[0, 1, 0xF0, 0x00]);
    let mut body = vec![0xE1, 0x00, 0xF0, 0x00];
    let streams: [(u8, &[u8]); 6] = [
        (0x1B, &[]),
        (0x24, &[]),
        (0x0F, &[]),
        (0x03, &[]),
        (0x06, &[0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2]),
        (0x81, &[]),
    ];
    for (i, (t, d)) in streams.iter().enumerate() {
        body.push(*t);
        body.extend_from_slice(&(0xE100 + i as u16).to_be_bytes());
        body.extend_from_slice(&(0xF000 | d.len() as u16).to_be_bytes());
        body.extend_from_slice(d);
    }
    out.extend(psi(0x1000, 2, 1, &body));
    out
}

fn drain(d: &mut TsDemuxer, events: &mut Vec<TsEvent>) {
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let mut input = if config & 2 != 0 { header() } else { Vec::new() };
    let body_start = input.len();
    input.extend_from_slice(stream);
    if config & 4 != 0 {
        for i in (body_start..input.len()).step_by(PACKET_LEN) {
            input[i] = SYNC_BYTE;
        }
    }
    let limits = if config & 1 != 0 {
        TsDemuxLimits {
            max_pes_bytes: 2000,
            max_streams: 3,
            max_programs: 1,
            max_buffered_bytes: 3000,
        }
    } else {
        TsDemuxLimits::default()
    };

    // Reference: one contiguous push.
    let mut whole = TsDemuxer::new(limits);
    let mut expected = Vec::new();
    whole.push(&input);
    drain(&mut whole, &mut expected);
    whole.finish();
    drain(&mut whole, &mut expected);

    let mut split = TsDemuxer::new(limits);
    let mut got = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let size = match sizes.get(i % sizes.len().max(1)) {
            Some(&s) if s > 0 => usize::from(s),
            _ => input.len() - pos,
        };
        let end = (pos + size).min(input.len());
        split.push(&input[pos..end]);
        drain(&mut split, &mut got);
        pos = end;
        i += 1;
    }
    split.finish();
    drain(&mut split, &mut got);
    assert_eq!(got, expected, "split changed the events");
    assert_eq!(split.stats(), whole.stats(), "split changed the stats");

    // Invariants, and re-muxing of what came out.
    let mut live: HashMap<u32, (u16, u16)> = HashMap::new();
    let mut removed: HashSet<u32> = HashSet::new();
    let mut last_dts: HashMap<u32, i64> = HashMap::new();
    let mut muxers: HashMap<u32, TsMuxer> = HashMap::new();
    let mut out = Vec::new();
    for e in &expected {
        match e {
            TsEvent::Track { track, program, pid } => {
                assert!(!removed.contains(&track.id), "id reused");
                assert_eq!(track.timebase, TS_TIMEBASE);
                if let Some(&at) = live.get(&track.id) {
                    assert_eq!(at, (*program, *pid), "track moved");
                }
                live.insert(track.id, (*program, *pid));
                match TsMuxer::new(std::slice::from_ref(track)) {
                    Ok(m) => {
                        muxers.insert(track.id, m);
                    }
                    Err(_) => {
                        muxers.remove(&track.id);
                    }
                }
            }
            TsEvent::TrackRemoved { id } => {
                assert!(live.remove(id).is_some(), "removed an unannounced track");
                removed.insert(*id);
                last_dts.remove(id);
                muxers.remove(id);
            }
            TsEvent::Discontinuity { id } => {
                assert!(live.contains_key(id), "discontinuity of an unannounced track");
                last_dts.remove(id);
            }
            TsEvent::Frame(f) => {
                assert!(live.contains_key(&f.track), "frame of an unannounced track");
                assert!(!f.payload.is_empty());
                assert!(f.payload.len() < limits.max_pes_bytes);
                if let Some(&l) = last_dts.get(&f.track) {
                    assert!(f.dts >= l, "dts went back without a discontinuity");
                }
                last_dts.insert(f.track, f.dts);
                if let Some(m) = muxers.get_mut(&f.track) {
                    out.clear();
                    m.write_frame(f, &mut out).expect("demuxed frame re-muxes");
                }
            }
        }
    }
});
