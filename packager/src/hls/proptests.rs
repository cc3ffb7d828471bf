//! Property tests: arbitrary segment sequences always render a well-formed
//! live playlist whose numbers agree with RFC 8216 (every line a tag or a
//! URI, one EXTINF per listed segment, MEDIA-SEQUENCE = first seq, every
//! EXTINF within the target duration, each segment's discontinuity
//! sequence number stable across reloads), and `iso8601_utc_ms` agrees
//! with an independent days-from-civil inverse.
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Push {
        duration_us: i64,
        discontinuity: bool,
        program_date_time_ms: Option<i64>,
    },
    SetMap(Option<u8>),
    Render(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => (
            prop_oneof![9 => 0i64..4_000_000, 1 => -1_000i64..30_000_000],
            prop::bool::weighted(0.1),
            prop::option::of(0i64..4_000_000_000_000),
        )
            .prop_map(|(duration_us, discontinuity, program_date_time_ms)| Step::Push {
                duration_us,
                discontinuity,
                program_date_time_ms,
            }),
        1 => prop::option::of(0u8..4).prop_map(Step::SetMap),
        3 => any::<bool>().prop_map(Step::Render),
    ]
}

/// What a parsed playlist said.
#[derive(Debug, Default)]
struct Parsed {
    version: u32,
    target: u64,
    media_sequence: u64,
    discontinuity_sequence: u64,
    /// (uri, EXTINF milliseconds, discontinuity sequence number, map uri)
    segments: Vec<(String, u64, u64, Option<String>)>,
    ended: bool,
}

fn parse(text: &str) -> Result<Parsed, TestCaseError> {
    prop_assert!(text.ends_with('\n'));
    let mut lines = text.lines();
    prop_assert_eq!(lines.next(), Some("#EXTM3U"));
    let mut p = Parsed::default();
    let mut extinf: Option<u64> = None;
    let mut disc_tags = 0;
    let mut map: Option<String> = None;
    let mut seen_segment_tag = false;
    for line in lines {
        prop_assert!(!line.is_empty(), "empty line");
        prop_assert!(!p.ended, "a line after ENDLIST");
        if let Some(tag) = line.strip_prefix("#EXT") {
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|e| TestCaseError::fail(format!("{line}: {e}")))
            };
            match name {
                "-X-VERSION" => p.version = number()? as u32,
                "-X-TARGETDURATION" => p.target = number()?,
                "-X-MEDIA-SEQUENCE" | "-X-DISCONTINUITY-SEQUENCE" => {
                    prop_assert!(!seen_segment_tag, "{} after a segment", line);
                    if name == "-X-MEDIA-SEQUENCE" {
                        p.media_sequence = number()?;
                    } else {
                        p.discontinuity_sequence = number()?;
                    }
                }
                "-X-INDEPENDENT-SEGMENTS" => {}
                "-X-DISCONTINUITY" => {
                    seen_segment_tag = true;
                    disc_tags += 1;
                }
                "-X-MAP" => {
                    seen_segment_tag = true;
                    let uri = value
                        .strip_prefix("URI=\"")
                        .and_then(|v| v.strip_suffix('"'));
                    prop_assert!(uri.is_some(), "{}", line);
                    map = uri.map(String::from);
                }
                "-X-PROGRAM-DATE-TIME" => {
                    seen_segment_tag = true;
                    prop_assert_eq!(value.len(), 24, "{}", line);
                }
                "INF" => {
                    seen_segment_tag = true;
                    prop_assert!(extinf.is_none(), "two EXTINF");
                    let v = value.strip_suffix(',');
                    prop_assert!(v.is_some(), "{}", line);
                    let (s, ms) = v.unwrap_or_default().split_once('.').unwrap_or_default();
                    prop_assert_eq!(ms.len(), 3, "{}", line);
                    let s: u64 = s
                        .parse()
                        .map_err(|_| TestCaseError::fail(line.to_string()))?;
                    let ms: u64 = ms
                        .parse()
                        .map_err(|_| TestCaseError::fail(line.to_string()))?;
                    extinf = Some(s * 1000 + ms);
                }
                "-X-ENDLIST" => p.ended = true,
                _ => prop_assert!(false, "unknown tag {}", line),
            }
        } else {
            prop_assert!(!line.starts_with('#'), "comment {}", line);
            let ms = extinf.take();
            prop_assert!(ms.is_some(), "URI without EXTINF: {}", line);
            p.segments.push((
                line.to_string(),
                ms.unwrap_or_default(),
                p.discontinuity_sequence + disc_tags,
                map.clone(),
            ));
        }
    }
    prop_assert!(extinf.is_none(), "EXTINF without URI");
    Ok(p)
}

proptest! {
    #[test]
    fn live_playlists_are_well_formed(
        window in 1usize..8,
        fmp4: bool,
        hint_us in 0i64..10_000_000,
        first_seq in 0u64..1_000_000,
        steps in prop::collection::vec(step(), 0..80),
    ) {
        let map_name = |n: u8| format!("init-{n}.mp4");
        let mut map = fmp4.then(|| map_name(0));
        let mut p = LivePlaylist::new(window, map.clone(), hint_us);
        // Model: every pushed segment with its discontinuity sequence
        // number and map.
        let mut pushed: Vec<(HlsSegment, u64, Option<String>)> = Vec::new();
        let mut discontinuities = 0u64;
        let mut last_target = 0;
        let mut max_ms = 0u64;
        for step in steps {
            match step {
                Step::Push { duration_us, discontinuity, program_date_time_ms } => {
                    let seq = first_seq + pushed.len() as u64;
                    let seg = HlsSegment {
                        seq,
                        duration_us,
                        uri: format!("seg/{seq}.m4s"),
                        discontinuity,
                        program_date_time_ms,
                    };
                    discontinuities += u64::from(discontinuity);
                    max_ms = max_ms.max((duration_us.max(0) as u64 + 500) / 1000);
                    pushed.push((seg.clone(), discontinuities, map.clone()));
                    p.push(seg);
                }
                Step::SetMap(m) => {
                    // Once fMP4, always fMP4 (None cannot follow a map).
                    if map.is_some() || m.is_some() {
                        map = Some(map_name(m.unwrap_or(0)));
                    }
                    p.set_map(map.clone());
                }
                Step::Render(ended) => {
                    let text = p.render(ended);
                    let parsed = parse(&text)?;
                    prop_assert_eq!(parsed.ended, ended);
                    let listed = &pushed[pushed.len().saturating_sub(window)..];
                    prop_assert_eq!(parsed.segments.len(), listed.len());
                    prop_assert_eq!(p.segments().count(), listed.len());
                    let uses_map = map.is_some() || listed.iter().any(|l| l.2.is_some());
                    prop_assert_eq!(parsed.version, if uses_map { 6 } else { 3 });
                    if let Some(first) = listed.first() {
                        prop_assert_eq!(parsed.media_sequence, first.0.seq);
                        prop_assert_eq!(p.media_sequence(), first.0.seq);
                    }
                    prop_assert!(parsed.target >= last_target, "target went down");
                    last_target = parsed.target;
                    prop_assert!(parsed.target >= 1);
                    prop_assert!(parsed.target >= (max_ms + 500) / 1000);
                    for ((uri, ms, dsn, seg_map), (seg, model_dsn, model_map)) in
                        parsed.segments.iter().zip(listed)
                    {
                        prop_assert_eq!(uri, &seg.uri);
                        prop_assert_eq!(*ms, (seg.duration_us.max(0) as u64 + 500) / 1000);
                        // RFC 8216 4.3.3.1: EXTINF rounded to the nearest
                        // integer <= target duration.
                        prop_assert!((*ms + 500) / 1000 <= parsed.target);
                        prop_assert_eq!(dsn, model_dsn);
                        prop_assert_eq!(seg_map, model_map);
                    }
                }
            }
        }
    }

    #[test]
    fn iso8601_inverts_to_the_same_instant(ms in -400_000_000_000_000i64..400_000_000_000_000) {
        let text = iso8601_utc_ms(ms);
        let (date, time) = text.rsplit_once('T').unwrap_or_default();
        let (negative, date) = match date.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, date),
        };
        let parts: Vec<i64> = date.split('-').map(|p| p.parse().unwrap_or(-1)).collect();
        prop_assert_eq!(parts.len(), 3);
        let year = if negative { -parts[0] } else { parts[0] };
        let (month, day) = (parts[1], parts[2]);
        prop_assert!((1..=12).contains(&month));
        let leap = year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0);
        let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        prop_assert!(day >= 1 && day <= month_days[month as usize - 1]);
        prop_assert_eq!(time.len(), 13);
        prop_assert!(time.ends_with('Z'));
        let h: i64 = time[0..2].parse().unwrap_or(99);
        let mi: i64 = time[3..5].parse().unwrap_or(99);
        let s: i64 = time[6..8].parse().unwrap_or(99);
        let milli: i64 = time[9..12].parse().unwrap_or(9999);
        prop_assert!(h < 24 && mi < 60 && s < 60 && milli < 1000);
        // days_from_civil (H. Hinnant), the inverse of what the code uses.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        prop_assert_eq!(days * 86_400_000 + ((h * 60 + mi) * 60 + s) * 1000 + milli, ms);
    }
}
