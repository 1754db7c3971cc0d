use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;

use super::route::*;
use super::*;
use crate::outcome::ErrorCode;
use portcullis_api::WindowStats;

/// Metrics whose live window starts at the returned instant.
fn metrics_at() -> (Metrics, Instant) {
    let base = Instant::now();
    (Metrics::with_base("1.2.3", base), base)
}

/// The metrics of one (tenant, route), as a runtime build resolves them.
fn route(metrics: &Metrics, tenant: &str, name: &str) -> Arc<RouteMetrics> {
    metrics.resolve_routes([(tenant, name)]).remove(0)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The output's lines that start with `prefix`.
fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// Checks the exposition format line by line: every sample is `name{labels} value` or
/// `name value` with a float value, every family has `# HELP` and `# TYPE` before its samples.
fn assert_parses(text: &str) {
    let mut helped = HashSet::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and text");
            assert!(!help.is_empty(), "{line}");
            assert!(helped.insert(name.to_owned()), "second HELP: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            typed.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels close");
                for pair in split_labels(labels) {
                    let (key, value) = pair.split_once('=').expect("label is key=value");
                    assert!(is_name(key), "bad label name in {line}");
                    assert!(
                        value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
                        "unquoted label value in {line}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(is_name(name), "bad metric name in {line}");
        let (family, kind) = typed.last().expect("sample before any TYPE");
        let base = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name),
            _ => name,
        };
        assert_eq!(base, family, "sample outside its family: {line}");
    }
    assert!(!typed.is_empty());
}

/// Splits `a="x",b="y"` at the commas between pairs (values here contain no quotes or commas).
fn split_labels(labels: &str) -> Vec<&str> {
    labels.split(',').collect()
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn requests_are_exported_with_exact_labels_and_values() {
    let (metrics, _) = metrics_at();
    let pd = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&pd)]);
    for _ in 0..3 {
        pd.observe(&Method::GET, Answer::Status(200), ms(20));
    }
    pd.observe(&Method::POST, Answer::Status(502), ms(3));
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_requests_total{"),
        [
            r#"portcullis_requests_total{tenant="acme",route="pd",method="GET",code="200"} 3"#,
            r#"portcullis_requests_total{tenant="acme",route="pd",method="POST",code="502"} 1"#,
        ]
    );
    assert!(text.contains("# TYPE portcullis_requests_total counter\n"));
    assert!(text.contains("# TYPE portcullis_request_duration_seconds histogram\n"));
    assert!(text.contains("portcullis_build_info{version=\"1.2.3\"} 1\n"));
    assert!(text.contains("portcullis_active_requests 0\n"));
    assert_parses(&text);
}

#[test]
fn histogram_buckets_are_cumulative_with_count_and_sum() {
    let (metrics, _) = metrics_at();
    let pd = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&pd)]);
    // 1 ms sits on the first bound (`le` is inclusive), 90 s is past the last.
    for d in [ms(1), ms(4), ms(4), ms(700), secs(90)] {
        pd.observe(&Method::GET, Answer::Status(200), d);
    }
    let text = metrics.encode();
    let labels = r#"tenant="acme",route="pd",method="GET",code="200""#;
    let bucket =
        |le: &str| format!("portcullis_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}");
    let expected = [
        ("0.001", 1),
        ("0.0025", 1),
        ("0.005", 3),
        ("0.01", 3),
        ("0.5", 3),
        ("1", 4),
        ("60", 4),
        ("+Inf", 5),
    ];
    for (le, count) in expected {
        let line = format!("{} {count}\n", bucket(le));
        assert!(text.contains(&line), "missing {line}in\n{text}");
    }
    assert_eq!(
        lines_with(&text, "portcullis_request_duration_seconds_bucket{").len(),
        16,
        "15 bounds and +Inf"
    );
    assert!(text.contains(&format!(
        "portcullis_request_duration_seconds_count{{{labels}}} 5\n"
    )));
    let sum_prefix = format!("portcullis_request_duration_seconds_sum{{{labels}}} ");
    let sum: f64 = lines_with(&text, &sum_prefix)[0][sum_prefix.len()..]
        .parse()
        .unwrap();
    assert!((sum - 90.709).abs() < 1e-9, "{sum}");
    // Counts never decrease along the bounds.
    let counts: Vec<f64> = lines_with(&text, "portcullis_request_duration_seconds_bucket{")
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
}

#[test]
fn codes_and_methods_fold_into_bounded_labels() {
    let (metrics, _) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&r)]);
    r.observe(&Method::GET, Answer::Status(418), ms(1));
    r.observe(&Method::GET, Answer::Status(451), ms(1));
    r.observe(&Method::GET, Answer::Status(103), ms(1));
    r.observe(&Method::GET, Answer::Status(299), ms(1));
    r.observe(&Method::GET, Answer::Status(599), ms(1));
    r.observe(&Method::GET, Answer::Status(999), ms(1));
    r.observe(&Method::GET, Answer::Status(404), ms(1));
    r.observe(
        &Method::from_bytes(b"PROPFIND").unwrap(),
        Answer::Status(200),
        ms(1),
    );
    r.observe(
        &Method::from_bytes(b"BREW").unwrap(),
        Answer::Status(200),
        ms(1),
    );
    let text = metrics.encode();
    let prefix = r#"portcullis_requests_total{tenant="acme",route="pd","#;
    let mut got = lines_with(&text, prefix)
        .iter()
        .map(|l| l[prefix.len()..].to_owned())
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(
        got,
        [
            r#"method="GET",code="1xx"} 1"#,
            r#"method="GET",code="2xx"} 1"#,
            r#"method="GET",code="404"} 1"#,
            r#"method="GET",code="4xx"} 2"#,
            r#"method="GET",code="5xx"} 1"#,
            r#"method="GET",code="other"} 1"#,
            r#"method="OTHER",code="200"} 2"#,
        ]
    );
}

#[test]
fn label_tables_are_consistent() {
    for (code, label) in EXACT_CODES.iter().zip(CODE_LABELS) {
        assert_eq!(code.to_string(), label);
        assert_eq!(CODE_LABELS[code_index(*code)], label);
    }
    assert!(EXACT_CODES.windows(2).all(|w| w[0] < w[1]), "sorted");
    for (nanos, seconds) in DURATION_BOUNDS_NANOS.iter().zip(DURATION_BOUNDS_SECONDS) {
        assert_eq!(*nanos, Duration::from_secs_f64(seconds).as_nanos() as u64);
    }
    for method in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ] {
        assert_eq!(METHODS[method_index(&method)], method.as_str());
    }
    // The counters are indexed by discriminant: `ALL` must list the variants in order.
    for (i, code) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(*code as usize, i);
    }
    for (i, kind) in UpstreamErrorKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i);
    }
}

#[test]
fn denials_and_upstream_errors_export_only_nonzero_series() {
    let (metrics, _) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&r)]);
    r.denied(ErrorCode::PathDenied);
    r.denied(ErrorCode::PathDenied);
    r.upstream_error(UpstreamErrorKind::ConnectTimeout);
    metrics.unrouted().denied(ErrorCode::NoRoute);
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_denied_total{"),
        [
            r#"portcullis_denied_total{tenant="",route="",reason="no_route"} 1"#,
            r#"portcullis_denied_total{tenant="acme",route="pd",reason="path_denied"} 2"#,
        ]
    );
    assert_eq!(
        lines_with(&text, "portcullis_upstream_errors_total{"),
        [r#"portcullis_upstream_errors_total{tenant="acme",route="pd",kind="connect_timeout"} 1"#]
    );
    assert_parses(&text);
}

#[test]
fn upstream_error_kinds_are_snake_case() {
    let names: Vec<&str> = UpstreamErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect_refused",
            "connect_timeout",
            "tls",
            "read_timeout",
            "write_timeout",
            "connection_reset",
            "no_healthy_target",
            "destination_denied",
            "other",
        ]
    );
}

#[test]
fn route_metrics_survive_being_resolved_again() {
    let (metrics, _) = metrics_at();
    let first = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&first)]);
    first.observe(&Method::GET, Answer::Status(200), ms(5));
    // The next reload resolves the same pair again.
    let again = route(&metrics, "acme", "pd");
    assert!(Arc::ptr_eq(&first, &again));
    // Resolving changes nothing until the next publish: a build that is never published
    // (an invalid reload, `portcullis check`) leaves no trace.
    let unpublished = route(&metrics, "acme", "new");
    assert!(!Arc::ptr_eq(&unpublished, &route(&metrics, "acme", "new")));
    assert_ne!(
        Arc::as_ptr(&route(&metrics, "acme", "other")),
        Arc::as_ptr(&first)
    );
    assert!(Arc::ptr_eq(&route(&metrics, "", ""), metrics.unrouted()));
    metrics.publish_routes(vec![Arc::clone(&again)]);
    again.observe(&Method::GET, Answer::Status(200), ms(5));
    assert!(metrics.encode().contains(
        "portcullis_requests_total{tenant=\"acme\",route=\"pd\",method=\"GET\",code=\"200\"} 2\n"
    ));
    assert_eq!(first.tenant(), "acme");
    assert_eq!(first.route(), "pd");
}

#[test]
fn publish_routes_removes_unconfigured_routes() {
    let (metrics, _) = metrics_at();
    let pd = route(&metrics, "acme", "pd");
    let jira = route(&metrics, "acme", "jira");
    metrics.publish_routes(vec![Arc::clone(&pd), Arc::clone(&jira), Arc::clone(&pd)]);
    pd.observe(&Method::GET, Answer::Status(200), ms(1));
    jira.observe(&Method::GET, Answer::Status(200), ms(1));
    jira.denied(ErrorCode::Unauthenticated);
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_requests_total{").len(),
        2,
        "{text}"
    );
    assert_parses(&text);

    metrics.publish_routes(vec![Arc::clone(&pd)]);
    let text = metrics.encode();
    assert!(!text.contains("route=\"jira\""), "{text}");
    assert_eq!(lines_with(&text, "portcullis_requests_total{").len(), 1);
    // Forgotten: configured again later, it starts from zero.
    let back = route(&metrics, "acme", "jira");
    assert!(!Arc::ptr_eq(&back, &jira));
    assert_parses(&text);
}

#[test]
fn unused_routes_export_no_request_series() {
    let (metrics, _) = metrics_at();
    metrics.publish_routes(vec![route(&metrics, "acme", "pd")]);
    let text = metrics.encode();
    assert!(!text.contains("portcullis_requests_total"), "{text}");
    assert!(
        !text.contains("portcullis_request_duration_seconds"),
        "{text}"
    );
    assert_parses(&text);
}

#[test]
fn reloads_are_counted_and_only_the_current_hash_is_exported() {
    let (metrics, _) = metrics_at();
    let text = metrics.encode();
    assert!(text.contains("portcullis_config_reloads_total{result=\"error\"} 0\n"));
    assert!(text.contains("portcullis_config_reloads_total{result=\"success\"} 0\n"));
    assert!(!text.contains("portcullis_config_info{"));

    let t1 = UNIX_EPOCH + secs(1_700_000_000);
    metrics.record_reload(true, "aaa111", t1);
    metrics.record_reload(false, "bbb222", t1 + secs(5));
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_config_info{"),
        [r#"portcullis_config_info{hash="aaa111"} 1"#]
    );
    metrics.record_reload(true, "ccc333", t1 + secs(10));
    metrics.record_reload(true, "ccc333", t1 + secs(10));
    let text = metrics.encode();
    assert!(text.contains("portcullis_config_reloads_total{result=\"success\"} 3\n"));
    assert!(text.contains("portcullis_config_reloads_total{result=\"error\"} 1\n"));
    assert_eq!(
        lines_with(&text, "portcullis_config_info{"),
        [r#"portcullis_config_info{hash="ccc333"} 1"#]
    );
    assert!(text.contains("portcullis_config_last_reload_success_timestamp_seconds 1700000010\n"));
    assert_parses(&text);
}

#[test]
fn secrets_are_exported_and_retained() {
    let (metrics, _) = metrics_at();
    let expiry = UNIX_EPOCH + secs(1_800_000_000);
    metrics.set_secret("acme", "pd-token", true, Some(expiry));
    metrics.set_secret("acme", "jira-token", false, None);
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_secret_present{"),
        [
            r#"portcullis_secret_present{secret="jira-token",tenant="acme"} 0"#,
            r#"portcullis_secret_present{secret="pd-token",tenant="acme"} 1"#,
        ]
    );
    assert_eq!(
        lines_with(&text, "portcullis_secret_expiry_timestamp_seconds{"),
        [
            r#"portcullis_secret_expiry_timestamp_seconds{secret="pd-token",tenant="acme"} 1800000000"#
        ]
    );
    // Expiry no longer known: the series goes.
    metrics.set_secret("acme", "pd-token", true, None);
    assert!(!metrics
        .encode()
        .contains("portcullis_secret_expiry_timestamp_seconds{"));

    metrics.set_secret("acme", "pd-token", true, Some(expiry));
    metrics.retain_secrets(&[("acme".to_owned(), "jira-token".to_owned())]);
    let text = metrics.encode();
    assert_eq!(
        lines_with(&text, "portcullis_secret_present{"),
        [r#"portcullis_secret_present{secret="jira-token",tenant="acme"} 0"#]
    );
    assert!(!text.contains("pd-token"), "{text}");
    assert_parses(&text);
}

#[test]
fn process_metrics_are_exported() {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let metrics = Metrics::new("9.9.9");
    metrics.active_requests().inc();
    metrics.active_requests().inc();
    metrics.active_requests().dec();
    metrics.audit_written().inc_by(7);
    metrics.audit_dropped().inc();
    let text = metrics.encode();
    assert!(text.contains("portcullis_build_info{version=\"9.9.9\"} 1\n"));
    assert!(text.contains("portcullis_active_requests 1\n"));
    assert!(text.contains("portcullis_audit_lines_total 7\n"));
    assert!(text.contains("portcullis_audit_dropped_total 1\n"));
    let start = lines_with(&text, "portcullis_process_start_time_seconds ")[0];
    let start: f64 = start.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!(start >= before.floor() && start < before + 60.0, "{start}");
    assert_parses(&text);
}

#[test]
fn window_reports_rate_error_rate_and_percentiles() {
    let (metrics, base) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    // 100 requests in the first two slots: 90 at 10 ms, 10 at 2 s of which 5 failed.
    for i in 0..90 {
        r.observe_at(
            &Method::GET,
            Answer::Status(200),
            ms(10),
            base + secs(i % 20),
        );
    }
    for i in 0..10 {
        let status = if i < 5 { 503 } else { 200 };
        r.observe_at(
            &Method::GET,
            Answer::Status(status),
            secs(2),
            base + secs(12),
        );
    }
    let stats = r.window(base + secs(20));
    assert_eq!(stats.requests, 100);
    assert!((stats.requests_per_second - 5.0).abs() < 1e-9, "{stats:?}");
    assert!((stats.error_rate - 0.05).abs() < 1e-9, "{stats:?}");
    // 10 ms falls in (6.4 ms, 12.8 ms], 2 s in (1.6384 s, 3.2768 s].
    let p50 = stats.p50_seconds.unwrap();
    assert!((0.0064..=0.0128).contains(&p50), "{p50}");
    let p99 = stats.p99_seconds.unwrap();
    assert!((1.6384..=3.2768).contains(&p99), "{p99}");
}

#[test]
fn window_rate_uses_uptime_right_after_start() {
    let (metrics, base) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    for _ in 0..8 {
        r.observe_at(&Method::GET, Answer::Status(200), ms(1), base + ms(500));
    }
    let stats = r.window(base + secs(4));
    assert_eq!(stats.requests, 8);
    assert!((stats.requests_per_second - 2.0).abs() < 1e-9, "{stats:?}");
    // Less than a second in: the rate divides by one second, not by a sliver.
    assert!((r.window(base + ms(500)).requests_per_second - 8.0).abs() < 1e-9);
}

#[test]
fn window_slots_expire_after_a_minute() {
    let (metrics, base) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    for _ in 0..30 {
        r.observe_at(&Method::GET, Answer::Status(500), ms(1), base + secs(5));
    }
    for _ in 0..20 {
        r.observe_at(&Method::GET, Answer::Status(200), ms(1), base + secs(15));
    }
    assert_eq!(r.window(base + secs(59)).requests, 50);
    // At 65 s the window is periods 1..=6 (10 s..65 s): the first slot has expired.
    let stats = r.window(base + secs(65));
    assert_eq!(stats.requests, 20);
    assert!((stats.requests_per_second - 20.0 / 55.0).abs() < 1e-9);
    assert_eq!(stats.error_rate, 0.0);
    // The slot of period 0 is reused for period 6 and starts from zero.
    r.observe_at(&Method::GET, Answer::Status(200), ms(1), base + secs(66));
    assert_eq!(r.window(base + secs(66)).requests, 21);
    // A late observation for a period whose slot was reused is left out of the window.
    r.observe_at(&Method::GET, Answer::Status(200), ms(1), base + secs(6));
    assert_eq!(r.window(base + secs(66)).requests, 21);
    let empty = r.window(base + secs(200));
    assert_eq!(
        empty,
        WindowStats {
            requests: 0,
            requests_per_second: 0.0,
            error_rate: 0.0,
            p50_seconds: None,
            p99_seconds: None,
        }
    );
    // The exported counters are not windowed.
    assert_eq!(
        r.cells[method_index(&Method::GET)][code_index(200)]
            .get()
            .unwrap()
            .snapshot()
            .0,
        22
    );
}

#[test]
fn latency_buckets_double_from_100_microseconds() {
    assert_eq!(latency_index(0), 0);
    assert_eq!(latency_index(100_000), 0);
    assert_eq!(latency_index(100_001), 1);
    assert_eq!(latency_index(200_000), 1);
    assert_eq!(latency_index(200_001), 2);
    assert_eq!(latency_index(100_000_000_000), 20, "100 s");
    assert_eq!(latency_index(u64::MAX), LATENCY_BUCKETS - 1);
    let mut one = [0; LATENCY_BUCKETS];
    one[3] = 1;
    // A single sample: the middle of its bucket (400 µs, 800 µs].
    let p50 = quantile(&one, 0.5).unwrap();
    assert!((p50 - 0.0006).abs() < 1e-12, "{p50}");
    assert_eq!(quantile(&[0; LATENCY_BUCKETS], 0.5), None);
}

#[test]
fn concurrent_observations_sum_exactly() {
    let (metrics, base) = metrics_at();
    let metrics = Arc::new(metrics);
    let r = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&r)]);
    // Claim the window slot first, so no thread races with its reset (see `record_window`).
    r.observe_at(&Method::GET, Answer::Status(200), ms(1), base + secs(1));
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 10_000;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let r = Arc::clone(&r);
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let status = if i % 10 == 0 { 500 } else { 200 };
                    r.observe_at(
                        &Method::GET,
                        Answer::Status(status),
                        ms(t + 1),
                        base + secs(1),
                    );
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let text = metrics.encode();
    let total = THREADS * PER_THREAD;
    assert!(text.contains(&format!(
        "portcullis_requests_total{{tenant=\"acme\",route=\"pd\",method=\"GET\",code=\"200\"}} {}\n",
        total * 9 / 10 + 1
    )));
    assert!(text.contains(&format!(
        "portcullis_requests_total{{tenant=\"acme\",route=\"pd\",method=\"GET\",code=\"500\"}} {}\n",
        total / 10
    )));
    let stats = r.window(base + secs(2));
    assert_eq!(stats.requests, total + 1);
    assert!((stats.error_rate - (total / 10) as f64 / (total + 1) as f64).abs() < 1e-9);
}

#[test]
#[should_panic(expected = "TYPE before HELP")]
fn the_format_check_rejects_a_family_without_help() {
    assert_parses("# TYPE portcullis_x counter\nportcullis_x 1\n");
}

#[test]
#[should_panic(expected = "bad value")]
fn the_format_check_rejects_a_malformed_sample() {
    assert_parses(
        "# HELP portcullis_x X.\n# TYPE portcullis_x counter\nportcullis_x{a=\"b\"} one\n",
    );
}

#[test]
fn responses_cut_by_the_upstream_count_as_aborted_errors() {
    let (metrics, base) = metrics_at();
    let r = route(&metrics, "acme", "pd");
    metrics.publish_routes(vec![Arc::clone(&r)]);
    for _ in 0..3 {
        r.observe_at(&Method::GET, Answer::Aborted, ms(5), base + secs(1));
    }
    r.observe_at(&Method::GET, Answer::Status(200), ms(5), base + secs(1));
    let text = metrics.encode();
    assert!(
        text.contains(
            "portcullis_requests_total{tenant=\"acme\",route=\"pd\",method=\"GET\",code=\"aborted\"} 3\n"
        ),
        "{text}"
    );
    assert_parses(&text);
    let window = r.window(base + secs(2));
    assert_eq!(window.requests, 4);
    assert!((window.error_rate - 0.75).abs() < 1e-9, "{window:?}");
}

#[test]
fn resolving_ten_thousand_routes_reads_the_published_map_once() {
    let (metrics, _) = metrics_at();
    let names: Vec<String> = (0..10_000).map(|i| format!("r{i}")).collect();
    let first = metrics.resolve_routes(names.iter().map(|n| ("acme", n.as_str())));
    metrics.publish_routes(first.clone());
    let again = metrics.resolve_routes(names.iter().map(|n| ("acme", n.as_str())));
    assert_eq!(again.len(), 10_000);
    assert!(first.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a, b)));
}
