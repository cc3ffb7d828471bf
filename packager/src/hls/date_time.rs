//! Unix time to an ISO 8601 UTC date-time, by civil-from-days arithmetic
//! (H. Hinnant's algorithm for the proleptic Gregorian calendar).

const MS_PER_DAY: i64 = 86_400_000;

/// Format unix-epoch milliseconds as ISO 8601 UTC,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (`EXT-X-PROGRAM-DATE-TIME`, the MPD's
/// `availabilityStartTime`/`publishTime`). Years before 0 get a leading
/// `-` and years after 9999 more digits, as xs:dateTime writes them.
pub fn iso8601_utc_ms(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let in_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let sign = if year < 0 { "-" } else { "" };
    format!(
        "{sign}{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        year.unsigned_abs(),
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day
/// 1..=31, not checked against the month's length): the inverse of the
/// formatter's civil-from-days, for readers of `availabilityStartTime` and
/// `EXT-X-PROGRAM-DATE-TIME`.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let mp = (month + 9) % 12; // month from March
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in (-800_000..800_000)
            .step_by(997)
            .chain([-1, 0, 1, 59, 60, 10_956])
        {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(y, i64::from(m), i64::from(d)),
                days,
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
