//! Times as the record writes them (RFC 3339 in UTC, to the second) and run ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current UTC time as RFC 3339 (`2026-11-26T07:15:30Z`).
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// The UTC time `ago` before now, as RFC 3339: the bound for stale heartbeats.
pub fn rfc3339_seconds_ago(ago: Duration) -> String {
    rfc3339(SystemTime::now() - ago)
}

/// A time as RFC 3339 in UTC, to the second. Strings in this form sort as the times do.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Seconds since the Unix epoch of an RFC 3339 time (`2026-11-26T07:15:30Z`, with optional
/// fractions and a `Z` or numeric offset); `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction = 0.0;
    if let Some(after_point) = rest.strip_prefix('.') {
        let digits = after_point.bytes().take_while(u8::is_ascii_digit).count();
        fraction = format!("0.{}", after_point.get(..digits).filter(|d| !d.is_empty())?).parse().ok()?;
        rest = &after_point[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
            let minutes = rest.get(1..3)?.parse::<i64>().ok()? * 60 + rest.get(4..6)?.parse::<i64>().ok()?;
            if rest.starts_with('-') { -minutes } else { minutes }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm, the inverse of the one
    // in `rfc3339`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    Some(seconds as f64 + fraction)
}

/// A new run id, `YYYYMMDD-HHMMSS-xxxxxx`: UTC time plus 24 random bits, sortable by start and
/// unique across machines.
pub fn new_run_id() -> String {
    run_id_at(SystemTime::now(), rand::random::<u32>())
}

fn run_id_at(time: SystemTime, random: u32) -> String {
    let stamp = rfc3339(time);
    let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("{}-{}-{:06x}", &digits[..8], &digits[8..14], random & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_back_to_the_instant_they_were_written_from() {
        for seconds in [0u64, 951_782_400, 1_795_677_330, 4_102_444_799] {
            let text = rfc3339(UNIX_EPOCH + Duration::from_secs(seconds));
            assert_eq!(parse_rfc3339(&text), Some(seconds as f64), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-11-26T07:15:30.25Z"), Some(1_795_677_330.25));
        assert_eq!(parse_rfc3339("2026-11-26T08:15:30+01:00"), Some(1_795_677_330.0));
        assert_eq!(parse_rfc3339("2026-11-26T07:15:30"), None, "no offset");
        assert_eq!(parse_rfc3339("2026-13-26T07:15:30Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-11-26T07:15:30ééé"), None, "no panic on other characters");
        assert_eq!(parse_rfc3339("2026-11-26T07:15:30+0é:0"), None);
    }

    #[test]
    fn times_and_run_ids_have_their_exact_formats() {
        // 2026-11-26T07:15:30Z, a known instant, and a leap day.
        let instant = UNIX_EPOCH + Duration::from_secs(1_795_677_330);
        assert_eq!(rfc3339(instant), "2026-11-26T07:15:30Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(run_id_at(instant, 0x125d_782b), "20261126-071530-5d782b");
        let id = new_run_id();
        let (date, rest) = id.split_at(8);
        assert!(date.bytes().all(|b| b.is_ascii_digit()) && rest.len() == 14, "{id}");
        assert!(rest[1..7].bytes().all(|b| b.is_ascii_digit()) && rest[8..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_run_id(), new_run_id());
    }
}
