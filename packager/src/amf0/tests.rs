//! Unit tests for AMF0 with hand-assembled wire bytes.
use super::{Amf0Value, MAX_DEPTH, decode, decode_all, encode};
use crate::Error;

/// An RTMP `connect` command as ffmpeg sends it (trimmed to three properties).
const CONNECT: &[u8] = &[
    0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', // "connect"
    0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0,    // 1.0
    0x03, // object
    0x00, 0x03, b'a', b'p', b'p', 0x02, 0x00, 0x04, b'l', b'i', b'v', b'e', //
    0x00, 0x04, b't', b'y', b'p', b'e', 0x02, 0x00, 0x0a, b'n', b'o', b'n', b'p', b'r', b'i', b'v',
    b'a', b't', b'e', //
    0x00, 0x0e, b'o', b'b', b'j', b'e', b'c', b't', b'E', b'n', b'c', b'o', b'd', b'i', b'n', b'g',
    0x00, 0, 0, 0, 0, 0, 0, 0, 0, // 0.0
    0x00, 0x00, 0x09, // object end
];

#[test]
fn decodes_connect_command() {
    let values = decode_all(CONNECT).unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0].as_str(), Some("connect"));
    assert_eq!(values[1].as_f64(), Some(1.0));
    let obj = &values[2];
    assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
    assert_eq!(
        obj.get("type").and_then(Amf0Value::as_str),
        Some("nonprivate")
    );
    assert_eq!(
        obj.get("objectEncoding").and_then(Amf0Value::as_f64),
        Some(0.0)
    );
    assert_eq!(obj.get("missing"), None);
    // And it encodes back to the same bytes.
    let mut out = Vec::new();
    super::encode_all(&values, &mut out);
    assert_eq!(out, CONNECT);
}

#[test]
fn decode_advances_the_slice() {
    let mut input = CONNECT;
    assert_eq!(decode(&mut input).unwrap().as_str(), Some("connect"));
    assert_eq!(input.len(), CONNECT.len() - 10);
    assert_eq!(decode(&mut input).unwrap().as_f64(), Some(1.0));
    assert!(matches!(decode(&mut input).unwrap(), Amf0Value::Object(_)));
    assert!(input.is_empty());
}

#[test]
fn error_leaves_the_slice_alone() {
    let bytes = [0x02, 0x00, 0x05, b'a', b'b'];
    let mut input = &bytes[..];
    let err = decode(&mut input).unwrap_err();
    assert_eq!(
        err,
        Error::Truncated {
            what: "AMF0 string",
            needed: 5,
            had: 2
        }
    );
    assert_eq!(input.len(), 5);
}

#[test]
fn every_type_round_trips() {
    let v = Amf0Value::Object(vec![
        ("n".into(), Amf0Value::Number(-2.5)),
        ("b".into(), Amf0Value::Boolean(true)),
        ("s".into(), "héllo".into()),
        ("null".into(), Amf0Value::Null),
        ("undef".into(), Amf0Value::Undefined),
        (
            "ecma".into(),
            Amf0Value::EcmaArray(vec![("x".into(), Amf0Value::Number(1.0))]),
        ),
        (
            "strict".into(),
            Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Boolean(false)]),
        ),
        (
            "date".into(),
            Amf0Value::Date {
                millis: 1.7e12,
                tz: -60,
            },
        ),
        ("long".into(), Amf0Value::LongString("x".into())),
        ("".into(), Amf0Value::Number(0.0)), // empty key, not an object end
    ]);
    let bytes = v.to_bytes();
    let mut input = &bytes[..];
    assert_eq!(decode(&mut input).unwrap(), v);
    assert!(input.is_empty());
}

#[test]
fn ecma_array_count_is_advisory() {
    // Declares 5 properties, has 1, ended by the object-end marker.
    let bytes = [0x08, 0, 0, 0, 5, 0, 1, b'a', 0x01, 1, 0, 0, 0x09];
    assert_eq!(
        decode_all(&bytes).unwrap(),
        vec![Amf0Value::EcmaArray(vec![(
            "a".into(),
            Amf0Value::Boolean(true)
        )])]
    );
}

#[test]
fn long_strings_are_written_as_long_strings() {
    let s = "a".repeat(70_000);
    let bytes = Amf0Value::String(s.clone()).to_bytes();
    assert_eq!(bytes[0], 0x0c);
    assert_eq!(&bytes[1..5], &70_000u32.to_be_bytes());
    assert_eq!(decode_all(&bytes).unwrap(), vec![Amf0Value::LongString(s)]);
}

#[test]
fn nan_encodes_and_decodes() {
    let bytes = Amf0Value::Number(f64::NAN).to_bytes();
    let v = decode_all(&bytes).unwrap();
    assert!(v[0].as_f64().unwrap().is_nan());
}

#[test]
fn rejects_unknown_and_unsupported_markers() {
    assert_eq!(
        decode_all(&[0x20]),
        Err(Error::Amf0UnknownMarker { marker: 0x20 })
    );
    assert_eq!(
        decode_all(&[0x07, 0, 1]),
        Err(Error::Amf0UnsupportedType {
            marker: 0x07,
            name: "reference"
        })
    );
    assert_eq!(decode_all(&[0x09]), Err(Error::Amf0UnexpectedObjectEnd));
}

#[test]
fn rejects_absurd_counts_without_allocating() {
    let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05];
    assert_eq!(
        decode_all(&bytes),
        Err(Error::Amf0CountTooLarge {
            what: "AMF0 strict array",
            count: u32::MAX as usize,
            remaining: 1
        })
    );
    let bytes = [0x0c, 0xff, 0xff, 0xff, 0xff, b'a'];
    assert!(matches!(
        decode_all(&bytes),
        Err(Error::Truncated {
            what: "AMF0 long string",
            ..
        })
    ));
}

#[test]
fn nesting_is_limited() {
    // MAX_DEPTH nested strict arrays of one element each, innermost null.
    let nested = |depth: usize| {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        b.push(0x05);
        b
    };
    assert!(decode_all(&nested(MAX_DEPTH)).is_ok());
    assert_eq!(
        decode_all(&nested(MAX_DEPTH + 1)),
        Err(Error::Amf0TooDeep { limit: MAX_DEPTH })
    );
    // Objects count the same way.
    let mut b = Vec::new();
    for _ in 0..=MAX_DEPTH {
        b.extend_from_slice(&[0x03, 0, 1, b'k']);
    }
    assert_eq!(decode_all(&b), Err(Error::Amf0TooDeep { limit: MAX_DEPTH }));
}

#[test]
fn rejects_invalid_utf8() {
    assert_eq!(
        decode_all(&[0x02, 0, 2, b'a', 0xff]),
        Err(Error::Amf0InvalidUtf8 {
            what: "AMF0 string",
            offset: 1
        })
    );
}

#[test]
fn object_without_end_is_truncated() {
    let bytes = [0x03, 0, 1, b'a', 0x05];
    assert!(matches!(decode_all(&bytes), Err(Error::Truncated { .. })));
    let bytes = [0x03, 0, 0];
    assert!(matches!(decode_all(&bytes), Err(Error::Truncated { .. })));
}

#[test]
fn encode_appends() {
    let mut out = vec![0xaa];
    encode(&Amf0Value::Null, &mut out);
    encode(&Amf0Value::Boolean(false), &mut out);
    assert_eq!(out, [0xaa, 0x05, 0x01, 0x00]);
}
