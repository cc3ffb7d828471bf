//! The initialization segment: `ftyp` + `moov`.
use super::boxes::{self, close, descriptor, err, matrix, open, open_full, u16, u32, u64};
use super::mp4_track_id;
use crate::Error;
use crate::media::{AudioSpecificConfig, Codec, MediaKind, OpusHead, Track};

/// Major brand of the init segment and of `styp`.
pub const MAJOR_BRAND: &[u8; 4] = b"iso6";
/// Compatible brands of the init segment.
pub const COMPATIBLE_BRANDS: [&[u8; 4]; 4] = [b"iso6", b"cmfc", b"dash", b"mp41"];

/// The `moov` timescale (only `mvhd`, whose duration is 0, uses it).
const MOVIE_TIMESCALE: u32 = 1000;

/// An initialization segment (`ftyp` + `moov`) for `tracks`.
///
/// CMAF wants one track per init segment; several are allowed (one `trak`
/// and one `trex` each, in the order given). Every track needs its codec
/// configuration where the codec has one: H.264 (`avc1` + `avcC`), HEVC
/// (`hvc1` + `hvcC`), AV1 (`av01` + `av1C`), VP9 (`vp09` + `vpcC`), AAC
/// (`mp4a` + `esds` with the AudioSpecificConfig), MP3 (`mp4a` + `esds`,
/// object type 0x6B) and Opus (`Opus` + `dOps`, converted from `OpusHead`
/// when needed). AC-3 and E-AC-3 are not supported yet (they need `dac3` /
/// `dec3` built from a syncframe). The media timescale of each track is
/// its [`Track::timebase`]; MP4 track IDs are `Track::id + 1`.
pub fn init_segment(tracks: &[Track]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(1024);
    write_init_segment(tracks, &mut out)?;
    Ok(out)
}

/// [`init_segment`] appended to `out`. On error `out` may hold a partial
/// segment.
pub fn write_init_segment(tracks: &[Track], out: &mut Vec<u8>) -> Result<(), Error> {
    if tracks.is_empty() {
        return Err(err("init segment without tracks"));
    }
    let mut ids = Vec::with_capacity(tracks.len());
    for t in tracks {
        let id = mp4_track_id(t.id)?;
        if ids.contains(&id) {
            return Err(err(format!("track {}: id used twice", t.id)));
        }
        if t.timebase == 0 {
            return Err(err(format!("track {}: timebase 0", t.id)));
        }
        ids.push(id);
    }
    write_ftyp(out)?;
    let moov = open(out, b"moov");
    write_mvhd(out, ids.iter().max().copied().unwrap_or(0))?;
    for t in tracks {
        write_trak(out, t)?;
    }
    let mvex = open(out, b"mvex");
    for &id in &ids {
        let trex = open_full(out, b"trex", 0, 0);
        u32(out, id);
        u32(out, 1); // default_sample_description_index
        u32(out, 0); // default_sample_duration
        u32(out, 0); // default_sample_size
        u32(out, 0); // default_sample_flags
        close(out, trex)?;
    }
    close(out, mvex)?;
    close(out, moov)
}

fn write_ftyp(out: &mut Vec<u8>) -> Result<(), Error> {
    let b = open(out, b"ftyp");
    out.extend_from_slice(MAJOR_BRAND);
    u32(out, 0);
    for brand in COMPATIBLE_BRANDS {
        out.extend_from_slice(brand);
    }
    close(out, b)
}

fn write_mvhd(out: &mut Vec<u8>, max_id: u32) -> Result<(), Error> {
    let b = open_full(out, b"mvhd", 0, 0);
    u32(out, 0); // creation_time
    u32(out, 0); // modification_time
    u32(out, MOVIE_TIMESCALE);
    u32(out, 0); // duration: unknown (fragmented)
    u32(out, 0x0001_0000); // rate 1.0
    u16(out, 0x0100); // volume 1.0
    out.extend_from_slice(&[0; 10]);
    matrix(out);
    out.extend_from_slice(&[0; 24]); // pre_defined
    u32(out, max_id.saturating_add(1)); // next_track_ID
    close(out, b)
}

fn write_trak(out: &mut Vec<u8>, t: &Track) -> Result<(), Error> {
    let video = t.kind() == MediaKind::Video;
    let trak = open(out, b"trak");

    let tkhd = open_full(out, b"tkhd", 0, 0x3); // enabled, in movie
    u32(out, 0); // creation_time
    u32(out, 0); // modification_time
    u32(out, mp4_track_id(t.id)?);
    u32(out, 0); // reserved
    u32(out, 0); // duration
    u64(out, 0); // reserved
    u16(out, 0); // layer
    u16(out, 0); // alternate_group
    u16(out, if video { 0 } else { 0x0100 }); // volume
    u16(out, 0); // reserved
    matrix(out);
    let (w, h) = if video {
        (t.info.width.unwrap_or(0), t.info.height.unwrap_or(0))
    } else {
        (0, 0)
    };
    u32(out, w.min(0xffff) << 16); // 16.16 fixed point
    u32(out, h.min(0xffff) << 16);
    close(out, tkhd)?;

    let mdia = open(out, b"mdia");
    let mdhd = open_full(out, b"mdhd", 0, 0);
    u32(out, 0); // creation_time
    u32(out, 0); // modification_time
    u32(out, t.timebase);
    u32(out, 0); // duration
    u16(out, 0x55c4); // language "und"
    u16(out, 0); // pre_defined
    close(out, mdhd)?;

    let hdlr = open_full(out, b"hdlr", 0, 0);
    u32(out, 0); // pre_defined
    out.extend_from_slice(if video { b"vide" } else { b"soun" });
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    close(out, hdlr)?;

    let minf = open(out, b"minf");
    if video {
        let vmhd = open_full(out, b"vmhd", 0, 1);
        out.extend_from_slice(&[0; 8]); // graphicsmode, opcolor
        close(out, vmhd)?;
    } else {
        let smhd = open_full(out, b"smhd", 0, 0);
        u32(out, 0); // balance, reserved
        close(out, smhd)?;
    }
    let dinf = open(out, b"dinf");
    let dref = open_full(out, b"dref", 0, 0);
    u32(out, 1);
    let url = open_full(out, b"url ", 0, 1); // media in the same file
    close(out, url)?;
    close(out, dref)?;
    close(out, dinf)?;

    let stbl = open(out, b"stbl");
    let stsd = open_full(out, b"stsd", 0, 0);
    u32(out, 1);
    write_sample_entry(out, t)?;
    close(out, stsd)?;
    for typ in [b"stts", b"stsc", b"stco"] {
        let b = open_full(out, typ, 0, 0);
        u32(out, 0); // entry_count
        close(out, b)?;
    }
    let stsz = open_full(out, b"stsz", 0, 0);
    u32(out, 0); // sample_size
    u32(out, 0); // sample_count
    close(out, stsz)?;
    close(out, stbl)?;
    close(out, minf)?;
    close(out, mdia)?;
    close(out, trak)
}

fn config(t: &Track) -> Result<&[u8], Error> {
    t.config
        .as_deref()
        .ok_or_else(|| err(format!("track {}: {} without configuration", t.id, t.codec)))
}

fn write_sample_entry(out: &mut Vec<u8>, t: &Track) -> Result<(), Error> {
    match t.codec {
        Codec::H264 => visual(out, t, b"avc1", b"avcC", config(t)?),
        Codec::H265 => visual(out, t, b"hvc1", b"hvcC", config(t)?),
        Codec::Av1 => visual(out, t, b"av01", b"av1C", config(t)?),
        Codec::Vp9 => visual(out, t, b"vp09", b"vpcC", config(t)?),
        Codec::Aac => {
            let asc = config(t)?;
            let parsed = AudioSpecificConfig::parse(asc)?;
            let channels = parsed.channels.unwrap_or(2);
            let e = audio(out, b"mp4a", channels, parsed.sample_rate);
            esds(out, t, 0x40, Some(asc))?;
            close(out, e)
        }
        Codec::Mp3 => {
            let e = audio(
                out,
                b"mp4a",
                t.info.channels.unwrap_or(2),
                t.info.sample_rate.unwrap_or(0),
            );
            esds(out, t, 0x6b, None)?;
            close(out, e)
        }
        Codec::Opus => {
            let dops = dops(config(t)?)?;
            let channels = dops[1];
            let e = audio(out, b"Opus", channels, 48000);
            let b = open(out, b"dOps");
            out.extend_from_slice(&dops);
            close(out, b)?;
            close(out, e)
        }
        c => Err(err(format!("track {}: codec {c} not supported", t.id))),
    }
}

/// A VisualSampleEntry (ISO/IEC 14496-12 12.1.3) with one config box.
fn visual(
    out: &mut Vec<u8>,
    t: &Track,
    typ: &[u8; 4],
    config_typ: &[u8; 4],
    config: &[u8],
) -> Result<(), Error> {
    let e = open(out, typ);
    out.extend_from_slice(&[0; 6]);
    u16(out, 1); // data_reference_index
    out.extend_from_slice(&[0; 16]); // pre_defined, reserved, pre_defined[3]
    u16(out, t.info.width.unwrap_or(0).min(0xffff) as u16);
    u16(out, t.info.height.unwrap_or(0).min(0xffff) as u16);
    u32(out, 0x0048_0000); // 72 dpi
    u32(out, 0x0048_0000);
    u32(out, 0); // reserved
    u16(out, 1); // frame_count
    out.extend_from_slice(&[0; 32]); // compressorname
    u16(out, 0x0018); // depth
    u16(out, 0xffff); // pre_defined -1
    let c = open(out, config_typ);
    out.extend_from_slice(config);
    close(out, c)?;
    close(out, e)
}

/// Start an AudioSampleEntry (ISO/IEC 14496-12 12.2.3); the caller adds
/// the config box and closes it.
fn audio(out: &mut Vec<u8>, typ: &[u8; 4], channels: u8, sample_rate: u32) -> usize {
    let e = open(out, typ);
    out.extend_from_slice(&[0; 6]);
    u16(out, 1); // data_reference_index
    out.extend_from_slice(&[0; 8]); // reserved
    u16(out, u16::from(channels));
    u16(out, 16); // samplesize
    u32(out, 0); // pre_defined, reserved
    let rate = if sample_rate > 0xffff { 0 } else { sample_rate };
    u32(out, rate << 16);
    e
}

/// `esds` (ISO/IEC 14496-14 6.7.2): ES_Descriptor with a
/// DecoderConfigDescriptor (and DecoderSpecificInfo when `dsi` is given)
/// and an SLConfigDescriptor.
fn esds(out: &mut Vec<u8>, t: &Track, object_type: u8, dsi: Option<&[u8]>) -> Result<(), Error> {
    let mut dcd = vec![object_type, 0x15]; // streamType 5 (audio) << 2 | 1
    dcd.extend_from_slice(&[0, 0, 0]); // bufferSizeDB
    dcd.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate
    dcd.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate
    if let Some(dsi) = dsi {
        descriptor(&mut dcd, 0x05, dsi)?;
    }
    let mut es = Vec::with_capacity(dcd.len() + 16);
    es.extend_from_slice(&(mp4_track_id(t.id)?.min(0xffff) as u16).to_be_bytes()); // ES_ID
    es.push(0); // flags, streamPriority
    descriptor(&mut es, 0x04, &dcd)?;
    descriptor(&mut es, 0x06, &[0x02])?; // SLConfig: predefined MP4
    let b = boxes::open_full(out, b"esds", 0, 0);
    descriptor(out, 0x03, &es)?;
    close(out, b)
}

/// The `dOps` payload (Opus-in-ISOBMFF 4.3.2) for an `OpusHead` or `dOps`
/// configuration.
fn dops(config: &[u8]) -> Result<Vec<u8>, Error> {
    let h = OpusHead::parse(config)?;
    let Some(rest) = config.strip_prefix(b"OpusHead") else {
        return Ok(config.to_vec()); // already dOps
    };
    let mut d = Vec::with_capacity(config.len());
    d.push(0); // Version
    d.push(h.channels);
    d.extend_from_slice(&h.pre_skip.to_be_bytes());
    d.extend_from_slice(&h.input_sample_rate.to_be_bytes());
    d.extend_from_slice(&h.output_gain.to_be_bytes());
    d.push(h.mapping_family);
    if h.mapping_family != 0 {
        // StreamCount, CoupledCount, ChannelMapping[channels].
        let need = 11 + 2 + usize::from(h.channels);
        let table = rest
            .get(11..need)
            .ok_or_else(|| err("OpusHead: channel mapping table truncated"))?;
        d.extend_from_slice(table);
    }
    Ok(d)
}
