//! Property tests: configuration parsers never panic on arbitrary bytes;
//! AudioSpecificConfig encode→parse round-trips; rescale is monotonic.
use bytes::Bytes;
use proptest::prelude::*;

use super::*;

proptest! {
    #[test]
    fn config_parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..128)) {
        let b = Bytes::from(data.clone());
        for codec in [Codec::H264, Codec::H265, Codec::Av1, Codec::Aac, Codec::Opus, Codec::Mp3] {
            let _ = parse_config(codec, &b);
        }
        let _ = AvcSps::parse(&data);
        let _ = HevcSps::parse(&data);
        let _ = MpegAudioHeader::parse(&data);
        // SPS bodies behind a valid NAL header reach deeper.
        let mut sps = vec![0x67];
        sps.extend_from_slice(&data);
        let _ = AvcSps::parse(&sps);
        let mut sps = vec![0x42, 0x01];
        sps.extend_from_slice(&data);
        let _ = HevcSps::parse(&sps);
    }

    #[test]
    fn audio_specific_config_round_trips(
        object_type in prop_oneof![1u8..5, 6u8..29, 30u8..31, 32u8..96],
        rate in prop_oneof![
            prop::sample::select(AAC_SAMPLE_RATES.to_vec()),
            1u32..(1 << 24),
        ],
        channels in 0u8..16,
    ) {
        let b = AudioSpecificConfig::encode(object_type, rate, channels);
        let c = AudioSpecificConfig::parse(&b).unwrap();
        prop_assert_eq!(c.object_type, object_type);
        prop_assert_eq!(c.sample_rate, rate);
        prop_assert_eq!(c.channel_config, channels);
    }

    #[test]
    fn rescale_is_monotonic(a: i64, b: i64, from in 1u32.., to in 1u32..) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(rescale(lo, from, to) <= rescale(hi, from, to));
    }
}
