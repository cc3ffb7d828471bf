//! Codec configuration parsing against records written by real encoders
//! (x264, x265, libaom, libopus, ffmpeg's AAC encoder; see
//! `tests/fixtures/README.md`).
use bytes::Bytes;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
    };
}

fn fps(info: &TrackInfo) -> Option<f64> {
    info.frame_rate.map(|(n, d)| f64::from(n) / f64::from(d))
}

#[test]
fn avcc_x264_1080p_high() {
    let avcc = fixture!("avcC_1920x1080.bin");
    let c = AvcConfig::parse(&avcc).unwrap();
    assert_eq!((c.profile, c.level, c.nal_length_size), (100, 40, 4));
    assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
    assert_eq!(c.sps[0][0] & 0x1f, 7);
    assert_eq!(c.pps[0][0] & 0x1f, 8);
    // 1088 coded lines cropped to 1080.
    let sps = AvcSps::parse(&c.sps[0]).unwrap();
    assert_eq!((sps.width, sps.height), (1920, 1080));
    assert_eq!(sps.chroma_format, 1);
    assert_eq!(sps.bit_depth, 8);
    let info = parse_config(Codec::H264, &avcc).unwrap();
    assert_eq!(info.width, Some(1920));
    assert_eq!(info.height, Some(1080));
    assert_eq!(info.profile, Some(100));
    assert_eq!(info.level, Some(40));
    assert_eq!(fps(&info), Some(25.0));
    // Our own serialisation is the record without the high-profile tail.
    let again = Bytes::from(c.to_record());
    assert_eq!(AvcConfig::parse(&again).unwrap(), c);
    assert_eq!(&avcc[..again.len()], &again[..]);
}

#[test]
fn hvcc_x265_main_640x360() {
    let hvcc = fixture!("hvcC_640x360.bin");
    let c = HevcConfig::parse(&hvcc).unwrap();
    assert_eq!((c.profile, c.level, c.high_tier), (1, 63, false));
    assert_eq!(c.nal_length_size, 4);
    assert_eq!(c.nalus(NAL_VPS).count(), 1);
    assert_eq!(c.nalus(NAL_SPS).count(), 1);
    assert_eq!(c.nalus(NAL_PPS).count(), 1);
    let info = parse_config(Codec::H265, &hvcc).unwrap();
    assert_eq!((info.width, info.height), (Some(640), Some(360)));
    assert_eq!(info.bit_depth, Some(8));
}

#[test]
fn hvcc_x265_main10_1080p() {
    let hvcc = fixture!("hvcC_main10_1920x1080.bin");
    let info = parse_config(Codec::H265, &hvcc).unwrap();
    assert_eq!(info.profile, Some(2));
    assert_eq!(info.level, Some(120));
    assert_eq!(info.bit_depth, Some(10));
    assert_eq!((info.width, info.height), (Some(1920), Some(1080)));
}

#[test]
fn av1c_libaom() {
    let av1c = fixture!("av1C_640x360.bin");
    let c = Av1Config::parse(&av1c).unwrap();
    assert_eq!((c.profile, c.level, c.bit_depth), (0, 1, 8));
    assert_eq!(c.chroma_subsampling, (true, true));
    assert_eq!(c.max_frame_size, Some((640, 360)));
    let info = parse_config(Codec::Av1, &av1c).unwrap();
    assert_eq!((info.width, info.height), (Some(640), Some(360)));
}

#[test]
fn opus_dops_and_opushead() {
    let dops = fixture!("dOps_stereo.bin");
    let h = OpusHead::parse(&dops).unwrap();
    assert_eq!(
        (h.channels, h.pre_skip, h.input_sample_rate),
        (2, 312, 48000)
    );
    let head = fixture!("OpusHead_mono.bin");
    let h = OpusHead::parse(&head).unwrap();
    assert_eq!(
        (h.channels, h.pre_skip, h.input_sample_rate),
        (1, 312, 48000)
    );
    assert_eq!(h.to_opus_head(), &head[..]);
    let info = parse_config(Codec::Opus, &head).unwrap();
    assert_eq!(info.sample_rate, Some(48000));
    assert_eq!(info.channels, Some(1));
    assert_eq!(info.pre_skip, Some(312));
}

#[test]
fn audio_specific_config_variants() {
    // AAC-LC 44.1 kHz stereo, as ffmpeg writes it.
    let c = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
    assert_eq!(
        (c.object_type, c.sample_rate, c.channels),
        (2, 44100, Some(2))
    );
    assert_eq!(AudioSpecificConfig::encode(2, 44100, 2), [0x12, 0x10]);
    // Explicit frequency (index 15).
    let b = AudioSpecificConfig::encode(2, 44000, 1);
    assert_eq!(b.len(), 5);
    let c = AudioSpecificConfig::parse(&b).unwrap();
    assert_eq!((c.sample_rate, c.channels), (44000, Some(1)));
    // HE-AAC explicit: SBR, core 24 kHz, output 48 kHz, AAC-LC core.
    let c = AudioSpecificConfig::parse(&[0x2b, 0x11, 0x88]).unwrap();
    assert_eq!(c.object_type, 5);
    assert_eq!(c.base_object_type, 2);
    assert_eq!((c.core_sample_rate, c.sample_rate), (24000, 48000));
    // Escaped object type (>= 32).
    let b = AudioSpecificConfig::encode(42, 48000, 2);
    assert_eq!(AudioSpecificConfig::parse(&b).unwrap().object_type, 42);
    // Errors name the structure.
    assert!(matches!(
        AudioSpecificConfig::parse(&[0x12]),
        Err(Error::Truncated {
            what: "AudioSpecificConfig",
            ..
        })
    ));
    assert!(matches!(
        AudioSpecificConfig::parse(&[0x16, 0x90]),
        Err(Error::InvalidBitstream { .. })
    ));
}

#[test]
fn mpeg_audio_headers() {
    let h = MpegAudioHeader::parse(&[0xff, 0xfb, 0x90, 0x64]).unwrap();
    assert_eq!(
        (h.version, h.layer, h.sample_rate, h.channels),
        (1, 3, 44100, 2)
    );
    let h = MpegAudioHeader::parse(&[0xff, 0xf3, 0x40, 0xc4]).unwrap();
    assert_eq!(
        (h.version, h.layer, h.sample_rate, h.channels),
        (2, 3, 22050, 1)
    );
    assert!(MpegAudioHeader::parse(&[0xff, 0x00, 0, 0]).is_err());
}

#[test]
fn truncated_records_are_errors() {
    for (codec, rec) in [
        (Codec::H264, fixture!("avcC_1920x1080.bin")),
        (Codec::H265, fixture!("hvcC_640x360.bin")),
        (Codec::Av1, fixture!("av1C_640x360.bin")),
        (Codec::Opus, fixture!("dOps_stereo.bin")),
    ] {
        // Every strict prefix either errors or (for records whose tail is
        // optional) parses; none panics.
        for n in 0..rec.len() {
            let _ = parse_config(codec, &rec.slice(..n));
        }
        assert!(parse_config(codec, &rec.slice(..3)).is_err(), "{codec}");
    }
}

#[test]
fn rescale_rounds_and_saturates() {
    assert_eq!(rescale(1000, 1000, 90000), 90000);
    assert_eq!(rescale(1, 90000, 1000), 0);
    assert_eq!(rescale(45, 90000, 1000), 1); // 0.5 ms rounds up
    assert_eq!(rescale(-45, 90000, 1000), -1);
    assert_eq!(rescale(i64::MAX, 1, 90000), i64::MAX);
    assert_eq!(rescale(5, 0, 1000), 0);
}

#[test]
fn track_with_config() {
    let t = Track::with_config(1, Codec::Aac, 1000, Bytes::from_static(&[0x12, 0x10])).unwrap();
    assert_eq!(t.kind(), MediaKind::Audio);
    assert_eq!(t.info.sample_rate, Some(44100));
    assert!(Track::with_config(0, Codec::H264, 1000, Bytes::from_static(&[1, 2])).is_err());
    let mut info = TrackInfo {
        width: Some(1),
        ..TrackInfo::default()
    };
    info.fill_from(&TrackInfo {
        width: Some(2),
        height: Some(3),
        ..TrackInfo::default()
    });
    assert_eq!((info.width, info.height), (Some(1), Some(3)));
}
