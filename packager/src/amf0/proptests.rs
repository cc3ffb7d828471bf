//! Property tests: arbitrary values encode→decode to themselves (NaN
//! compared by bit pattern through the encoding); arbitrary bytes never panic
//! and whatever decodes re-encodes stably.
use proptest::prelude::*;

use super::{Amf0Value, decode, decode_all, encode};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-zA-Z0-9_]{1,12}", ".{0,8}"]
}

fn leaf() -> impl Strategy<Value = Amf0Value> {
    prop_oneof![
        any::<f64>().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        ".{0,20}".prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        (any::<f64>(), any::<i16>()).prop_map(|(millis, tz)| Amf0Value::Date { millis, tz }),
        ".{0,20}".prop_map(Amf0Value::LongString),
    ]
}

pub(crate) fn value() -> impl Strategy<Value = Amf0Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Amf0Value::Object),
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Amf0Value::EcmaArray),
            prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
        ]
    })
}

/// Equality that treats NaN as equal to NaN with the same bits.
fn same(a: &Amf0Value, b: &Amf0Value) -> bool {
    a.to_bytes() == b.to_bytes()
}

proptest! {
    #[test]
    fn encode_decode_round_trip(v in value()) {
        let bytes = v.to_bytes();
        let mut input = &bytes[..];
        let back = decode(&mut input).unwrap();
        prop_assert!(input.is_empty());
        prop_assert!(same(&v, &back), "{v:?} != {back:?}");
        // Without NaN, structural equality too.
        if !format!("{v:?}").contains("NaN") {
            prop_assert_eq!(&v, &back);
        }
    }

    #[test]
    fn sequences_round_trip(vs in prop::collection::vec(value(), 0..5)) {
        let mut bytes = Vec::new();
        for v in &vs {
            encode(v, &mut bytes);
        }
        let back = decode_all(&bytes).unwrap();
        prop_assert_eq!(back.len(), vs.len());
        for (a, b) in vs.iter().zip(&back) {
            prop_assert!(same(a, b));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(vs) = decode_all(&bytes) {
            let mut again = Vec::new();
            super::encode_all(&vs, &mut again);
            let back = decode_all(&again).unwrap();
            let mut third = Vec::new();
            super::encode_all(&back, &mut third);
            prop_assert_eq!(again, third);
        }
    }

    #[test]
    fn truncation_is_an_error(v in value(), cut in any::<prop::sample::Index>()) {
        let bytes = v.to_bytes();
        let at = cut.index(bytes.len());
        let mut input = &bytes[..at];
        prop_assert!(decode(&mut input).is_err());
    }
}
