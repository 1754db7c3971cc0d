//! Wall-clock time as the gateway reports it: Unix milliseconds in the admin API, Unix seconds
//! in metrics, RFC 3339 in the audit log. One place, so the three cannot disagree about the
//! epoch or about times before it (reported as the epoch).

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch (0 for earlier times).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// Seconds since the Unix epoch, with a fraction (0 for earlier times).
pub(crate) fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// RFC 3339 in UTC with milliseconds: `2026-11-23T19:04:05.123Z`.
///
/// Written digit by digit into a fixed-width buffer: the audit writer calls this for every line,
/// and `time`'s formatter (plus padding the fraction) cost ~1,000 instructions a call.
pub(crate) fn rfc3339_millis(at: SystemTime) -> String {
    const EPOCH: &str = "1970-01-01T00:00:00.000Z";
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = *b"0000-00-00T00:00:00.000Z";
    if !put_date_time(&mut out, since.as_secs()) {
        return EPOCH.to_owned();
    }
    put_digits(&mut out[20..23], since.subsec_millis());
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// RFC 3339 in UTC with microseconds, `2026-11-23T19:04:05.123456Z`, exactly as
/// `tracing_subscriber`'s default timer writes it; `None` before the epoch or after year 9999
/// (where that timer's text differs).
pub(crate) fn rfc3339_micros(at: SystemTime) -> Option<[u8; 27]> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    if !put_date_time(&mut out, since.as_secs()) {
        return None;
    }
    put_digits(&mut out[20..26], since.subsec_micros());
    Some(out)
}

/// Writes `YYYY-MM-DDTHH:MM:SS` of `secs` after the epoch into the first 19 bytes of `out`;
/// false when `time` cannot represent it (past year 9999).
fn put_date_time(out: &mut [u8], secs: u64) -> bool {
    let Some(t) = i64::try_from(secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
    else {
        return false;
    };
    let Ok(year) = u32::try_from(t.year()) else {
        return false;
    };
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], u32::from(u8::from(t.month())));
    put_digits(&mut out[8..10], u32::from(t.day()));
    put_digits(&mut out[11..13], u32::from(t.hour()));
    put_digits(&mut out[14..16], u32::from(t.minute()));
    put_digits(&mut out[17..19], u32::from(t.second()));
    true
}

/// Writes `value`'s last `out.len()` decimal digits into `out`, zero-padded.
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10: the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_has_millisecond_precision_in_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_460_645_123);
        assert_eq!(rfc3339_millis(at), "2026-11-23T19:04:05.123Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_795_460_645);
        assert_eq!(rfc3339_millis(whole), "2026-11-23T19:04:05.000Z");
        let tenth = UNIX_EPOCH + Duration::from_millis(1_795_460_645_100);
        assert_eq!(rfc3339_millis(tenth), "2026-11-23T19:04:05.100Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // Leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
        let late = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339_millis(late), "9999-12-31T23:59:59.999Z");
        // Beyond what `time` represents: the epoch, as before.
        let beyond = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(rfc3339_millis(beyond), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn log_times_match_tracing_subscribers_timer() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_795_460_645_123_456_789);
        let text = rfc3339_micros(at).map(|b| String::from_utf8_lossy(&b).into_owned());
        assert_eq!(text.as_deref(), Some("2026-11-23T19:04:05.123456Z"));
        let whole = UNIX_EPOCH + Duration::from_secs(951_782_400);
        let text = rfc3339_micros(whole).map(|b| String::from_utf8_lossy(&b).into_owned());
        assert_eq!(text.as_deref(), Some("2000-02-29T00:00:00.000000Z"));
        assert_eq!(rfc3339_micros(UNIX_EPOCH - Duration::from_secs(1)), None);
    }

    #[test]
    fn times_before_the_epoch_are_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(unix_ms(before), 0);
        assert_eq!(unix_seconds(before), 0.0);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }
}
