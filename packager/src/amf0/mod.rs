//! AMF0 (Action Message Format 0), the value encoding of RTMP commands and
//! of FLV script-data tags (`onMetaData`).
//!
//! [`decode`] reads one value and advances the slice past it; [`decode_all`]
//! reads values until the input ends; [`encode`] appends one value.
//!
//! Supported types: number, boolean, string, object, null, undefined, ECMA
//! array, strict array, date and long string. Movie clip, reference,
//! "unsupported", record set, XML document, typed object and the AVM+
//! switch are rejected with [`Error::Amf0UnsupportedType`]; RTMP peers and
//! FLV writers in the wild do not send them.
//!
//! Limits: containers nest at most [`MAX_DEPTH`] deep, and every declared
//! count or length is checked against the bytes that remain before anything
//! is allocated, so a forged length is an error, never a huge allocation.
//!
//! Encoding notes: a `String` longer than 65,535 bytes is written as a long
//! string (marker 0x0C), as the spec requires, so it decodes back as
//! [`Amf0Value::LongString`]. Object and ECMA-array keys are at most 65,535
//! bytes; longer keys are cut at a character boundary. An ECMA array's
//! declared count is its number of properties.

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::Error;

/// Deepest nesting of objects/arrays [`decode`] accepts (the top-level value
/// is depth 1).
pub const MAX_DEPTH: usize = 32;

mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const RECORDSET: u8 = 0x0E;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// One AMF0 value.
///
/// `PartialEq` compares numbers as `f64`, so a value holding `NaN` is not
/// equal to itself; compare encodings when that matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE 754 double (marker 0x00).
    Number(f64),
    /// Boolean (marker 0x01).
    Boolean(bool),
    /// UTF-8 string of at most 65,535 bytes (marker 0x02).
    String(String),
    /// Anonymous object: properties in wire order (marker 0x03).
    Object(Vec<(String, Amf0Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06).
    Undefined,
    /// Associative array: properties in wire order (marker 0x08).
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Dense array (marker 0x0A).
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch and a time-zone field that
    /// the spec says should be 0 (marker 0x0B).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Time-zone offset in minutes (reserved, normally 0).
        tz: i16,
    },
    /// UTF-8 string with a 32-bit length (marker 0x0C).
    LongString(String),
}

impl Amf0Value {
    /// The text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an `Object` or `EcmaArray`.
    pub fn as_properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The elements of a `StrictArray`.
    pub fn as_array(&self) -> Option<&[Amf0Value]> {
        match self {
            Amf0Value::StrictArray(a) => Some(a),
            _ => None,
        }
    }

    /// The first property named `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.as_properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True for `Null` and `Undefined`.
    pub fn is_null(&self) -> bool {
        matches!(self, Amf0Value::Null | Amf0Value::Undefined)
    }

    /// The encoded form of this value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode(self, &mut out);
        out
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

/// Decode one value from the front of `input` and advance `input` past it.
///
/// On error `input` is left where it was.
pub fn decode(input: &mut &[u8]) -> Result<Amf0Value, Error> {
    let mut cur = *input;
    let v = decode_value(&mut cur, 1)?;
    *input = cur;
    Ok(v)
}

/// Decode values until `input` is used up (an RTMP command message body, an
/// FLV script-data tag).
pub fn decode_all(mut input: &[u8]) -> Result<Vec<Amf0Value>, Error> {
    let mut out = Vec::new();
    while !input.is_empty() {
        out.push(decode(&mut input)?);
    }
    Ok(out)
}

/// Append the encoding of `v` to `out`.
pub fn encode(v: &Amf0Value, out: &mut Vec<u8>) {
    match v {
        Amf0Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Amf0Value::Object(props) => {
            out.push(marker::OBJECT);
            encode_properties(props, out);
        }
        Amf0Value::Null => out.push(marker::NULL),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            let count = u32::try_from(props.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            encode_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, tz } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&tz.to_be_bytes());
        }
        Amf0Value::LongString(s) => encode_long_string(s, out),
    }
}

/// Append the encodings of all `values` (an RTMP command, a script tag).
pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    for v in values {
        encode(v, out);
    }
}

fn encode_long_string(s: &str, out: &mut Vec<u8>) {
    // Strings over 4 GiB cannot be represented; cut them (at a char boundary).
    let s = truncate_at_char_boundary(s, u32::MAX as usize);
    out.push(marker::LONG_STRING);
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn encode_key(k: &str, out: &mut Vec<u8>) {
    let k = truncate_at_char_boundary(k, u16::MAX as usize);
    out.extend_from_slice(&(k.len() as u16).to_be_bytes());
    out.extend_from_slice(k.as_bytes());
}

fn encode_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        encode_key(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], Error> {
    if input.len() < n {
        return Err(Error::Truncated {
            what,
            needed: n,
            had: input.len(),
        });
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn read_u16(input: &mut &[u8], what: &'static str) -> Result<u16, Error> {
    let b = take(input, 2, what)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn read_u32(input: &mut &[u8], what: &'static str) -> Result<u32, Error> {
    let b = take(input, 4, what)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_f64(input: &mut &[u8], what: &'static str) -> Result<f64, Error> {
    let b = take(input, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(f64::from_be_bytes(a))
}

fn read_utf8(input: &mut &[u8], len: usize, what: &'static str) -> Result<String, Error> {
    let b = take(input, len, what)?;
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(Error::Amf0InvalidUtf8 {
            what,
            offset: e.valid_up_to(),
        }),
    }
}

fn decode_value(input: &mut &[u8], depth: usize) -> Result<Amf0Value, Error> {
    let m = take(input, 1, "AMF0 type marker")?[0];
    Ok(match m {
        marker::NUMBER => Amf0Value::Number(read_f64(input, "AMF0 number")?),
        marker::BOOLEAN => Amf0Value::Boolean(take(input, 1, "AMF0 boolean")?[0] != 0),
        marker::STRING => {
            let len = read_u16(input, "AMF0 string length")?;
            Amf0Value::String(read_utf8(input, len.into(), "AMF0 string")?)
        }
        marker::OBJECT => {
            check_depth(depth)?;
            Amf0Value::Object(decode_properties(input, depth, "AMF0 object")?)
        }
        marker::NULL => Amf0Value::Null,
        marker::UNDEFINED => Amf0Value::Undefined,
        marker::ECMA_ARRAY => {
            check_depth(depth)?;
            // The declared count is advisory (writers get it wrong); the
            // object-end marker ends the array.
            let _count = read_u32(input, "AMF0 ECMA array count")?;
            Amf0Value::EcmaArray(decode_properties(input, depth, "AMF0 ECMA array")?)
        }
        marker::STRICT_ARRAY => {
            check_depth(depth)?;
            let count = read_u32(input, "AMF0 strict array count")? as usize;
            // Every element takes at least its one marker byte.
            if count > input.len() {
                return Err(Error::Amf0CountTooLarge {
                    what: "AMF0 strict array",
                    count,
                    remaining: input.len(),
                });
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_value(input, depth + 1)?);
            }
            Amf0Value::StrictArray(items)
        }
        marker::DATE => {
            let millis = read_f64(input, "AMF0 date")?;
            let tz = read_u16(input, "AMF0 date time zone")? as i16;
            Amf0Value::Date { millis, tz }
        }
        marker::LONG_STRING => {
            let len = read_u32(input, "AMF0 long string length")? as usize;
            Amf0Value::LongString(read_utf8(input, len, "AMF0 long string")?)
        }
        marker::OBJECT_END => return Err(Error::Amf0UnexpectedObjectEnd),
        marker::MOVIECLIP
        | marker::REFERENCE
        | marker::UNSUPPORTED
        | marker::RECORDSET
        | marker::XML_DOCUMENT
        | marker::TYPED_OBJECT
        | marker::AVMPLUS => {
            return Err(Error::Amf0UnsupportedType {
                marker: m,
                name: match m {
                    marker::MOVIECLIP => "movie clip",
                    marker::REFERENCE => "reference",
                    marker::UNSUPPORTED => "unsupported",
                    marker::RECORDSET => "record set",
                    marker::XML_DOCUMENT => "XML document",
                    marker::TYPED_OBJECT => "typed object",
                    _ => "AVM+ switch",
                },
            });
        }
        other => return Err(Error::Amf0UnknownMarker { marker: other }),
    })
}

fn check_depth(depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        Err(Error::Amf0TooDeep { limit: MAX_DEPTH })
    } else {
        Ok(())
    }
}

fn decode_properties(
    input: &mut &[u8],
    depth: usize,
    what: &'static str,
) -> Result<Vec<(String, Amf0Value)>, Error> {
    let mut props = Vec::new();
    loop {
        let key_len = read_u16(input, "AMF0 property name length")?;
        if key_len == 0 && input.first() == Some(&marker::OBJECT_END) {
            *input = &input[1..];
            return Ok(props);
        }
        if input.is_empty() && key_len == 0 {
            return Err(Error::Truncated {
                what,
                needed: 1,
                had: 0,
            });
        }
        let key = read_utf8(input, key_len.into(), "AMF0 property name")?;
        let value = decode_value(input, depth + 1)?;
        props.push((key, value));
    }
}
