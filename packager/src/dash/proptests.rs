//! Property tests: for arbitrary representations (any strings in the
//! attributes, arbitrary timelines) the MPD is well-formed XML whose
//! attribute values read back as given, and expanding each
//! SegmentTimeline's `S`/`t`/`d`/`r` gives back the input (t, d) list.
use proptest::prelude::*;

use super::*;
use crate::media::MediaKind;

/// One XML element start (or empty-element) tag: name and attributes.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
}

impl Element {
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape(v: &str) -> Result<String, TestCaseError> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| TestCaseError::fail("unterminated entity"))?;
        out.push(match &rest[i + 1..i + end] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e => return Err(TestCaseError::fail(format!("unknown entity {e}"))),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A small XML reader: checks nesting and quoting, and returns the start
/// tags in document order.
fn elements(xml: &str) -> Result<Vec<Element>, TestCaseError> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or_else(|| TestCaseError::fail("no XML declaration"))?;
    let mut out = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = body;
    loop {
        let text_end = rest.find('<').unwrap_or(rest.len());
        prop_assert!(
            rest[..text_end].trim().is_empty(),
            "text content {:?}",
            &rest[..text_end]
        );
        rest = &rest[text_end..];
        if rest.is_empty() {
            break;
        }
        prop_assert!(!rest[1..].starts_with('?'));
        if let Some(close) = rest.strip_prefix("</") {
            let end = close
                .find('>')
                .ok_or_else(|| TestCaseError::fail("unterminated end tag"))?;
            let popped = open.pop();
            prop_assert_eq!(popped.as_deref(), Some(&close[..end]));
            rest = &close[end + 1..];
            continue;
        }
        let mut tag = &rest[1..];
        let name_end = tag
            .find([' ', '>', '/'])
            .ok_or_else(|| TestCaseError::fail("bad tag"))?;
        let name = tag[..name_end].to_string();
        tag = &tag[name_end..];
        let mut attributes = Vec::new();
        loop {
            tag = tag.trim_start_matches(' ');
            if let Some(r) = tag.strip_prefix("/>") {
                tag = r;
                break;
            }
            if let Some(r) = tag.strip_prefix('>') {
                open.push(name.clone());
                tag = r;
                break;
            }
            let eq = tag
                .find("=\"")
                .ok_or_else(|| TestCaseError::fail("bad attribute"))?;
            let attr = tag[..eq].to_string();
            prop_assert!(
                !attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == ':')
            );
            let value_start = &tag[eq + 2..];
            let value_end = value_start
                .find('"')
                .ok_or_else(|| TestCaseError::fail("unterminated value"))?;
            let raw = &value_start[..value_end];
            prop_assert!(
                !raw.contains(['<', '>']) && !raw.chars().any(char::is_control),
                "raw {:?}",
                raw
            );
            attributes.push((attr, unescape(raw)?));
            tag = &value_start[value_end + 1..];
        }
        out.push(Element { name, attributes });
        rest = tag;
    }
    prop_assert!(open.is_empty(), "unclosed {:?}", open);
    Ok(out)
}

fn timeline() -> impl Strategy<Value = Vec<(i64, i64)>> {
    (
        -1_000_000_000_000i64..1_000_000_000_000,
        prop::collection::vec(
            (
                prop_oneof![8 => Just(0i64), 1 => -1000i64..1_000_000],
                prop_oneof![4 => Just(180_000i64), 2 => Just(90_000i64), 1 => 1i64..1_000_000],
            ),
            1..60,
        ),
    )
        .prop_map(|(mut t, steps)| {
            steps
                .into_iter()
                .map(|(gap, d)| {
                    t += gap;
                    let s = (t, d);
                    t += d;
                    s
                })
                .collect()
        })
}

fn representation() -> impl Strategy<Value = DashRepresentation> {
    (
        any::<String>(),
        any::<bool>(),
        any::<String>(),
        any::<u64>(),
        prop::option::of(1u32..10_000),
        1u32..1_000_000,
        any::<u64>(),
        timeline(),
        prop::option::of(any::<String>()),
    )
        .prop_map(
            |(id, video, codecs, bandwidth, size, timescale, start_number, timeline, lang)| {
                DashRepresentation {
                    id,
                    content_type: if video {
                        MediaKind::Video
                    } else {
                        MediaKind::Audio
                    },
                    mime_type: if video { "video/mp4" } else { "audio/mp4" }.into(),
                    codecs,
                    bandwidth,
                    width: size.filter(|_| video),
                    height: size.filter(|_| video),
                    frame_rate: video.then_some(25.0),
                    sample_rate: (!video).then_some(48000),
                    channels: size.filter(|_| !video),
                    timescale,
                    start_number,
                    timeline,
                    lang,
                    adaptation_set: None,
                }
            },
        )
}

fn without_controls(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

proptest! {
    #[test]
    fn mpd_is_well_formed_and_timelines_expand_to_the_input(
        representations in prop::collection::vec(representation(), 0..4),
        url in any::<String>(),
        times in prop::array::uniform7(-1_000_000_000_000i64..100_000_000_000_000),
        ended: bool,
    ) {
        let mpd = LiveMpd {
            availability_start_ms: times[0],
            publish_time_ms: times[1],
            minimum_update_period_ms: times[2],
            min_buffer_time_ms: times[3],
            time_shift_buffer_depth_ms: times[4],
            suggested_presentation_delay_ms: times[5],
            max_segment_duration_ms: times[6],
            utc_timing_url: url.clone(),
            initialization: "$RepresentationID$/init.mp4".into(),
            media: "$RepresentationID$/$Number$.m4s".into(),
            representations: representations.clone(),
            ended,
        };
        let xml = write_mpd(&mpd);
        let elements = elements(&xml)?;
        prop_assert_eq!(elements[0].name.as_str(), "MPD");
        prop_assert_eq!(elements[0].get("type"), Some("dynamic"));
        prop_assert_eq!(elements[0].get("minimumUpdatePeriod").is_some(), !ended);
        // Walk the Representations in order, expanding their timelines.
        let mut reps = representations.iter();
        let mut current: Option<(&DashRepresentation, Vec<(i64, i64)>)> = None;
        let finish = |current: Option<(&DashRepresentation, Vec<(i64, i64)>)>| -> Result<(), TestCaseError> {
            if let Some((rep, expanded)) = current {
                prop_assert_eq!(&expanded, &rep.timeline);
            }
            Ok(())
        };
        for e in &elements {
            match e.name.as_str() {
                "Representation" => {
                    finish(current.take())?;
                    let rep = reps.next();
                    prop_assert!(rep.is_some(), "more Representations than given");
                    let rep = rep.unwrap_or(&representations[0]);
                    prop_assert_eq!(e.get("id").map(String::from), Some(without_controls(&rep.id)));
                    prop_assert_eq!(e.get("codecs").map(String::from), Some(without_controls(&rep.codecs)));
                    current = Some((rep, Vec::new()));
                }
                "SegmentTemplate" => {
                    let rep = current.as_ref().map(|c| c.0);
                    prop_assert_eq!(e.get("startNumber").map(String::from), rep.map(|r| r.start_number.to_string()));
                    prop_assert_eq!(e.get("timescale").map(String::from), rep.map(|r| r.timescale.to_string()));
                }
                "S" => {
                    let Some((_, expanded)) = current.as_mut() else {
                        return Err(TestCaseError::fail("S outside a Representation"));
                    };
                    let num = |name: &str| e.get(name).map(|v| v.parse::<i64>()).transpose()
                        .map_err(|err| TestCaseError::fail(format!("{name}: {err}")));
                    let mut t = match (num("t")?, expanded.last()) {
                        (Some(t), _) => t,
                        (None, Some(&(t, d))) => t + d,
                        (None, None) => return Err(TestCaseError::fail("first S without t")),
                    };
                    let d = num("d")?.ok_or_else(|| TestCaseError::fail("S without d"))?;
                    let r = num("r")?.unwrap_or(0);
                    prop_assert!(r >= 0);
                    for _ in 0..=r {
                        expanded.push((t, d));
                        t += d;
                    }
                }
                "UTCTiming" => prop_assert_eq!(e.get("value").map(String::from), Some(without_controls(&url))),
                "AdaptationSet" => {
                    let rep = &representations[elements.iter().filter(|x| x.name == "AdaptationSet").position(|x| std::ptr::eq(x, e)).unwrap_or(0)];
                    prop_assert_eq!(e.get("lang").map(String::from), rep.lang.as_deref().map(without_controls));
                }
                _ => {}
            }
        }
        finish(current.take())?;
        prop_assert!(reps.next().is_none(), "fewer Representations than given");
        prop_assert_eq!(xml.contains("<UTCTiming"), !url.is_empty());
    }
}
