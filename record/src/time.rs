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
