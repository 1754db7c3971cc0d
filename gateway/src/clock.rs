//! Wall-clock time as the gateway reports it: Unix milliseconds in the admin API, Unix seconds
//! in metrics, RFC 3339 in the audit log. One place, so the three cannot disagree about the
//! epoch or about times before it (reported as the epoch).

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
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
pub(crate) fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Whole milliseconds, so the text always has exactly three fraction digits.
    let millis = i128::try_from(since.as_millis()).unwrap_or(0);
    OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map(|text| with_millis(&text))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// `time` drops a zero fraction and trailing zeros (`…:05Z`, `…:05.1Z`); audit lines keep a
/// fixed width of three digits.
fn with_millis(text: &str) -> String {
    let Some(body) = text.strip_suffix('Z') else {
        return text.to_owned();
    };
    match body.split_once('.') {
        Some((seconds, fraction)) => format!("{seconds}.{fraction:0<3}Z"),
        None => format!("{body}.000Z"),
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
    }

    #[test]
    fn times_before_the_epoch_are_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(unix_ms(before), 0);
        assert_eq!(unix_seconds(before), 0.0);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }
}
