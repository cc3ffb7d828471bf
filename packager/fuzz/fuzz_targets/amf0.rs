//! Arbitrary bytes into the AMF0 decoder.
//!
//! `decode_all` must return (never panic, never allocate beyond what the
//! input can hold); whatever decodes must re-encode to bytes that decode to
//! the same encoding again (decode→encode→decode stability, with NaN
//! compared bit for bit through the encoding), and `decode` must consume
//! exactly one value's encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_packager::amf0;

fuzz_target!(|data: &[u8]| {
    // One value at a time, as the RTMP command parser reads them.
    let mut input = data;
    while !input.is_empty() {
        let before = input.len();
        match amf0::decode(&mut input) {
            Ok(v) => {
                assert!(input.len() < before, "decode consumed nothing");
                let enc = v.to_bytes();
                let mut again = &enc[..];
                let v2 = amf0::decode(&mut again).expect("re-decode of an encoding");
                assert!(again.is_empty(), "encoding has trailing bytes");
                assert_eq!(v2.to_bytes(), enc, "encode is not stable");
            }
            Err(_) => {
                assert_eq!(input.len(), before, "error moved the input");
                break;
            }
        }
    }
    // And the whole input at once.
    if let Ok(values) = amf0::decode_all(data) {
        let mut enc = Vec::new();
        amf0::encode_all(&values, &mut enc);
        let back = amf0::decode_all(&enc).expect("re-decode of an encoding");
        let mut enc2 = Vec::new();
        amf0::encode_all(&back, &mut enc2);
        assert_eq!(enc, enc2);
    }
});
