//! Number and time formatting for narrow table cells. Pure: "now" is always an argument, so
//! snapshots are stable.

/// `1.23s`, `45ms`, `812µs`, or `—`.
pub(crate) fn seconds(value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(s) => millis(s * 1000.0),
    }
}

/// A duration given in milliseconds: `1.23s`, `45ms`, `4.5ms`, `812µs`.
pub(crate) fn millis(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        "—".to_owned()
    } else if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else if ms >= 1.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.0}µs", ms * 1000.0)
    }
}

/// Requests per second: `1234`, `12.3`, `0.05`.
pub(crate) fn rate(rps: f64) -> String {
    if rps >= 100.0 {
        format!("{rps:.0}")
    } else if rps >= 1.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.2}")
    }
}

/// A share as a percentage: `0.0%`, `12.5%`.
pub(crate) fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A byte count: `512B`, `1.5KiB`, `3.2MiB`, `1.1GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A span of time, coarsest sensible unit: `45s`, `12m`, `3h`, `5d`.
pub(crate) fn span(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// `at` relative to `now`: `12s ago`, `in 3d`, `now`.
pub(crate) fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms + 1000 > now_ms && at_ms < now_ms + 1000 {
        "now".to_owned()
    } else if at_ms <= now_ms {
        format!("{} ago", span(now_ms - at_ms))
    } else {
        format!("in {}", span(at_ms - now_ms))
    }
}

/// `relative` of an optional time, `—` when absent.
pub(crate) fn relative_opt(at_ms: Option<u64>, now_ms: u64) -> String {
    at_ms.map_or_else(|| "—".to_owned(), |at| relative(at, now_ms))
}

/// Wall-clock time of day in UTC with milliseconds: `14:03:07.123`.
pub(crate) fn clock_ms(at_ms: u64) -> String {
    let (h, m, s) = hms(at_ms);
    format!("{h:02}:{m:02}:{s:02}.{:03}", at_ms % 1000)
}

/// UTC date and time: `2026-03-21 14:03:07Z`.
pub(crate) fn datetime(at_ms: u64) -> String {
    let (y, mo, d) = civil_from_days((at_ms / 86_400_000) as i64);
    let (h, m, s) = hms(at_ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}Z")
}

/// Truncates `text` to `width` characters, ending with `…` when cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn hms(at_ms: u64) -> (u64, u64, u64) {
    let secs = (at_ms / 1000) % 86_400;
    (secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds(None), "—");
        assert_eq!(seconds(Some(1.5)), "1.50s");
        assert_eq!(seconds(Some(0.045)), "45ms");
        assert_eq!(seconds(Some(0.0045)), "4.5ms");
        assert_eq!(seconds(Some(0.000_812)), "812µs");
        assert_eq!(millis(f64::NAN), "—");
    }

    #[test]
    fn rates_bytes_percent() {
        assert_eq!(rate(1234.4), "1234");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(0.05), "0.05");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 200_000), "3.2MiB");
    }

    #[test]
    fn times() {
        let now = 1_700_000_000_000;
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(now - 45_000, now), "45s ago");
        assert_eq!(relative(now - 3 * 3_600_000, now), "3h ago");
        assert_eq!(relative(now + 5 * 86_400_000, now), "in 5d");
        assert_eq!(relative_opt(None, now), "—");
        assert_eq!(datetime(now), "2023-11-14 22:13:20Z");
        assert_eq!(clock_ms(now + 7), "22:13:20.007");
        assert_eq!(datetime(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(truncate("abc", 0), "");
    }
}
