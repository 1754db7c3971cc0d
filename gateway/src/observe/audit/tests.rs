use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_api::AuditStatus as AuditStats;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::file::rotated_path;
use super::format::{line_hash, redact_path, GENESIS};
use super::verify::{VerifyErrorKind, VerifyReport};
use super::*;
use crate::clock::rfc3339_millis;
use crate::observe::record::Upstream;

fn request(i: u64) -> RequestRecord {
    RequestRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_795_460_645_123 + i),
        request_id: format!("req-{i}"),
        tenant: Some(Arc::from("acme")),
        route: Some(Arc::from("acme-pd")),
        method: http::Method::GET,
        path: "/acme/pd/incidents".to_owned(),
        status: 200,
        denial: None,
        duration: Duration::from_micros(3_200),
        client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        egress: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        upstream: Some(Upstream::Address(SocketAddr::from(([127, 0, 0, 1], 9000)))),
        bytes_in: 0,
        bytes_out: 512,
    }
}

fn file_config(path: &Path, max_bytes: u64, keep: usize) -> AuditConfig {
    AuditConfig {
        sink: AuditSink::File {
            path: path.to_owned(),
            max_bytes,
            keep,
        },
        queue_capacity: 1024,
        policy: AuditPolicy::Drop,
    }
}

/// Opens the log, records `n` requests numbered from `from`, and runs the writer to completion.
async fn write_requests(config: AuditConfig, from: u64, n: u64) -> AuditStats {
    let (log, writer) = AuditLog::open(config).unwrap();
    for i in from..from + n {
        let slot = log.reserve().unwrap();
        log.record(slot, AuditEvent::Request(Arc::new(request(i))));
    }
    // Already shut down: the writer drains what is queued and returns.
    let (_tx, rx) = watch::channel(true);
    writer.run(rx).await;
    log.stats()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn field(line: &str, name: &str) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    value[name].clone()
}

async fn five_lines() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_requests(file_config(&path, u64::MAX, 3), 1, 5).await;
    (dir, path)
}

#[tokio::test]
async fn lines_are_written_in_order_with_a_valid_chain() {
    let (_dir, path) = five_lines().await;
    let lines = lines(&path);
    assert_eq!(lines.len(), 5);
    let mut prev = GENESIS.to_owned();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(field(line, "seq"), i as u64 + 1);
        assert_eq!(field(line, "request_id"), format!("req-{}", i + 1));
        assert_eq!(field(line, "prev"), prev.as_str());
        prev = field(line, "hash").as_str().unwrap().to_owned();
    }
    let report = verify(&[path]).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            lines: 5,
            first_seq: 1,
            last_seq: 5,
            head_hash: prev,
            anchor: GENESIS.to_owned(),
        }
    );
}

#[tokio::test]
async fn the_line_format_is_fixed() {
    let (_dir, path) = five_lines().await;
    let first = &lines(&path)[0];
    let hash = field(first, "hash");
    let hash = hash.as_str().unwrap();
    let body = format!(
        concat!(
            r#"{{"seq":1,"time":"2026-11-23T19:04:05.124Z","kind":"request","request_id":"req-1","#,
            r#""tenant":"acme","route":"acme-pd","method":"GET","path":"/acme/pd/incidents","#,
            r#""status":200,"denial":null,"duration_ms":3.2,"client_ip":"127.0.0.1","#,
            r#""egress":"127.0.0.2","upstream":"127.0.0.1:9000","bytes_in":0,"bytes_out":512,"#,
            r#""prev":"{}""#
        ),
        GENESIS
    );
    assert_eq!(*first, format!(r#"{body},"hash":"{hash}"}}"#));
    // The documented hash: sha256(prev + "\n" + body).
    let expected = hex::encode(Sha256::digest(format!("{GENESIS}\n{body}")));
    assert_eq!(hash, expected);
}

#[tokio::test]
async fn stats_report_the_head_of_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let stats = write_requests(file_config(&path, u64::MAX, 3), 1, 4).await;
    let last = lines(&path).pop().unwrap();
    assert_eq!(stats.written, 4);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.head_seq, 4);
    assert_eq!(stats.head_hash, field(&last, "hash"));
    assert!(stats.enabled);
}

#[tokio::test]
async fn editing_a_middle_line_is_altered_at_that_line() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    lines[2] = lines[2].replace(r#""status":200"#, r#""status":201"#);
    write_lines(&path, &lines);
    let err = verify(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Altered, 3));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: ", path.display())),
        "{err}"
    );
}

#[tokio::test]
async fn deleting_a_line_is_broken_at_the_line_after() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    lines.remove(2);
    write_lines(&path, &lines);
    let err = verify(&[path]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Broken, 3));
}

#[tokio::test]
async fn swapping_two_lines_is_broken() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    lines.swap(1, 2);
    write_lines(&path, &lines);
    let err = verify(&[path]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Broken, 2));
}

#[tokio::test]
async fn editing_the_last_line_is_altered() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    lines[4] = lines[4].replace("req-5", "req-6");
    write_lines(&path, &lines);
    let err = verify(&[path]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Altered, 5));
}

#[tokio::test]
async fn editing_a_line_and_its_hash_is_broken_at_the_next_line() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    // Recompute the edited line's hash as a forger would; the next line still points at the old one.
    let edited = lines[1].replace(r#""status":200"#, r#""status":201"#);
    let body = &edited[..edited.find(r#","hash":""#).unwrap()];
    let prev = field(&edited, "prev");
    let hash = line_hash(prev.as_str().unwrap(), body.as_bytes());
    lines[1] = format!(r#"{body},"hash":"{hash}"}}"#);
    write_lines(&path, &lines);
    let err = verify(&[path]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Broken, 3));
}

#[tokio::test]
async fn a_line_that_is_not_a_record_is_malformed() {
    let (_dir, path) = five_lines().await;
    let mut lines = lines(&path);
    lines[3] = "hello".to_owned();
    write_lines(&path, &lines);
    let err = verify(&[path]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Malformed, 4));
}

#[tokio::test]
async fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let line_len = {
        let (_dir, one) = five_lines().await;
        lines(&one)[0].len() as u64 + 1
    };
    // Two lines per file; 9 lines make five files, of which the live one and two rotated stay.
    let stats = write_requests(file_config(&path, 2 * line_len + 1, 2), 1, 9).await;
    assert_eq!(stats.written, 9);
    let (p1, p2, p3) = (
        rotated_path(&path, 1),
        rotated_path(&path, 2),
        rotated_path(&path, 3),
    );
    assert!(!p3.exists(), "only `keep` rotated files stay");
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(lines(&p1).len(), 2);
    assert_eq!(lines(&p2).len(), 2);

    let report = verify(&[p2.clone(), p1.clone(), path.clone()]).unwrap();
    assert_eq!((report.lines, report.first_seq, report.last_seq), (5, 5, 9));
    assert_eq!(report.head_hash, stats.head_hash);
    let oldest_kept = &lines(&p2)[0];
    assert_eq!(report.anchor, field(oldest_kept, "prev"));
    // The first line of the live file continues from the last line of path.1.
    let live_first = &lines(&path)[0];
    assert_eq!(
        field(live_first, "prev"),
        field(lines(&p1).last().unwrap(), "hash")
    );

    // A later file on its own is accepted from its anchor.
    let alone = verify(std::slice::from_ref(&path)).unwrap();
    assert_eq!((alone.lines, alone.first_seq, alone.last_seq), (1, 9, 9));
    assert_eq!(alone.anchor, field(live_first, "prev"));

    // Files out of order are not.
    let err = verify(&[p1, p2.clone(), path]).unwrap_err();
    assert_eq!(
        (err.kind, err.line, err.file),
        (VerifyErrorKind::Broken, 1, p2)
    );
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let first = write_requests(file_config(&path, u64::MAX, 3), 1, 3).await;

    let (log, writer) = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap();
    let reopened = log.stats();
    assert_eq!(reopened.head_seq, 3);
    assert_eq!(reopened.head_hash, first.head_hash);
    drop((log, writer));

    write_requests(file_config(&path, u64::MAX, 3), 4, 2).await;
    let report = verify(&[path]).unwrap();
    assert_eq!((report.lines, report.first_seq, report.last_seq), (5, 1, 5));
}

#[tokio::test]
async fn reopening_cuts_off_an_incomplete_last_line() {
    let (_dir, path) = five_lines().await;
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"seq":6,"time":"#);
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err().kind,
        VerifyErrorKind::Malformed
    );

    write_requests(file_config(&path, u64::MAX, 3), 6, 1).await;
    let report = verify(&[path]).unwrap();
    assert_eq!((report.lines, report.last_seq), (6, 6));
}

#[tokio::test]
async fn reopening_a_file_that_is_not_a_log_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "not an audit line\n").unwrap();
    let err = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_fresh_file_after_rotation_continues_from_the_rotated_one() {
    let (_dir, path) = five_lines().await;
    let last = lines(&path).pop().unwrap();
    std::fs::rename(&path, rotated_path(&path, 1)).unwrap();

    let (log, _writer) = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap();
    let stats = log.stats();
    assert_eq!(stats.head_seq, 5);
    assert_eq!(stats.head_hash, field(&last, "hash"));
}

#[tokio::test]
async fn drop_policy_counts_drops_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let config = AuditConfig {
        queue_capacity: 1,
        ..file_config(&path, u64::MAX, 3)
    };
    let (log, _writer) = AuditLog::open(config).unwrap();
    for i in 0..3 {
        let slot = log.reserve().unwrap();
        log.record(slot, AuditEvent::Request(Arc::new(request(i))));
    }
    log.record_admin(AdminRecord::new("reload", "ok", serde_json::Value::Null));
    let stats = log.stats();
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.policy, AuditPolicy::Drop);
}

#[tokio::test]
async fn fail_closed_policy_refuses_when_the_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let config = AuditConfig {
        queue_capacity: 1,
        policy: AuditPolicy::FailClosed,
        ..file_config(&path, u64::MAX, 3)
    };
    let (log, writer) = AuditLog::open(config).unwrap();
    let slot = log.reserve().unwrap();
    assert_eq!(log.reserve().unwrap_err(), AuditUnavailable::Full);
    log.record(slot, AuditEvent::Request(Arc::new(request(1))));
    assert_eq!(log.reserve().unwrap_err(), AuditUnavailable::Full);

    let (_tx, rx) = watch::channel(true);
    writer.run(rx).await;
    let stats = log.stats();
    assert_eq!((stats.written, stats.dropped, stats.refused), (1, 0, 2));
    // With the writer gone, nothing can be audited any more.
    assert_eq!(log.reserve().unwrap_err(), AuditUnavailable::Stopped);
    assert!(!log.stats().healthy);
}

#[tokio::test]
async fn admin_records_have_kind_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (log, writer) = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap();
    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(1))),
    );
    log.record_admin(AdminRecord {
        time: UNIX_EPOCH,
        action: "secret_change".to_owned(),
        result: "ok".to_owned(),
        detail: serde_json::json!({"tenant": "acme", "name": "pd-token"}),
    });
    let (_tx, rx) = watch::channel(true);
    writer.run(rx).await;

    let lines = lines(&path);
    assert_eq!(field(&lines[0], "kind"), "request");
    let admin = &lines[1];
    assert!(
        admin.starts_with(
            r#"{"seq":2,"time":"1970-01-01T00:00:00.000Z","kind":"admin","action":"secret_change","result":"ok","detail":{"name":"pd-token","tenant":"acme"},"prev":""#
        ),
        "{admin}"
    );
    assert_eq!(verify(&[path]).unwrap().lines, 2);
}

#[tokio::test]
async fn a_running_writer_writes_promptly_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (log, writer) = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(writer.run(rx));

    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(1))),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.stats().written < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the line was not written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines(&path).len(), 1, "written lines are on disk");

    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(2))),
    );
    tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(verify(&[path]).unwrap().lines, 2);
}

#[tokio::test]
async fn a_failing_sink_is_unhealthy_until_it_can_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("audit.log");
    // Every line rotates, so every write reopens the path.
    let config = AuditConfig {
        policy: AuditPolicy::FailClosed,
        ..file_config(&path, 1, 3)
    };
    let (log, writer) = AuditLog::open(config).unwrap();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(writer.run(rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(1))),
    );
    while log.stats().written < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the line was not written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    std::fs::remove_dir_all(&logs).unwrap();
    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(2))),
    );
    while log.stats().healthy {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failure was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = log.stats();
    assert!(stats.write_errors >= 1, "{stats:?}");
    assert_eq!(stats.dropped, 1);
    assert_eq!(log.reserve().unwrap_err(), AuditUnavailable::Unhealthy);

    std::fs::create_dir(&logs).unwrap();
    while !log.stats().healthy {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink was not reopened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(request(3))),
    );
    tx.send(true).unwrap();
    task.await.unwrap();
    // The new file starts a fresh segment anchored in memory at the last line written (seq 1).
    let report = verify(&[path]).unwrap();
    assert_eq!((report.first_seq, report.last_seq), (2, 2));
}

#[test]
fn disabled_log_is_a_no_op() {
    let log = AuditLog::disabled();
    let slot = log.reserve().unwrap();
    log.record(slot, AuditEvent::Request(Arc::new(request(1))));
    log.record_admin(AdminRecord::new("reload", "ok", serde_json::Value::Null));
    let stats = log.stats();
    assert!(!stats.enabled && stats.healthy);
    assert_eq!(stats.dropped, 0);

    let config = AuditConfig {
        sink: AuditSink::Off,
        queue_capacity: 1,
        policy: AuditPolicy::FailClosed,
    };
    let (log, _writer) = AuditLog::open(config).unwrap();
    assert!(!log.stats().enabled);
    assert!(log.reserve().is_ok());
    assert!(!log.confirms_forwards());
}

fn forward(i: u64) -> ForwardRecord {
    ForwardRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_795_460_645_000 + i),
        request_id: format!("req-{i}"),
        tenant: Arc::from("acme"),
        route: Arc::from("acme-pd"),
        method: http::Method::POST,
        path: "/acme/pd/incidents?token=hunter2".to_owned(),
        client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

#[tokio::test]
async fn a_forward_line_is_on_disk_before_confirm_forward_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let config = AuditConfig {
        policy: AuditPolicy::FailClosed,
        ..file_config(&path, u64::MAX, 3)
    };
    let (log, writer) = AuditLog::open(config).unwrap();
    assert!(log.confirms_forwards());
    let (stop, rx) = watch::channel(false);
    let writer = tokio::spawn(writer.run(rx));
    let slot = log.reserve().unwrap();
    log.confirm_forward(forward(1)).await.unwrap();
    // Confirmed means written: the line is in the file now, while the writer is still running.
    let written = lines(&path);
    assert_eq!(written.len(), 1);
    assert_eq!(field(&written[0], "kind"), "forward");
    assert_eq!(field(&written[0], "path"), "/acme/pd/incidents?token");
    assert!(!written[0].contains("hunter2"));
    log.record(slot, AuditEvent::Request(Arc::new(request(1))));
    stop.send(true).unwrap();
    writer.await.unwrap();
    let all = lines(&path);
    assert_eq!(field(&all[1], "kind"), "request");
    let report = verify(&[path]).unwrap();
    assert_eq!(report.lines, 2);
}

#[tokio::test]
async fn a_sink_that_cannot_write_refuses_the_forward() {
    // /dev/full fails every write with ENOSPC, like a full disk.
    let config = AuditConfig {
        policy: AuditPolicy::FailClosed,
        ..file_config(Path::new("/dev/full"), u64::MAX, 0)
    };
    let (log, writer) = AuditLog::open(config).unwrap();
    let (stop, rx) = watch::channel(false);
    let writer = tokio::spawn(writer.run(rx));
    assert_eq!(
        log.confirm_forward(forward(1)).await,
        Err(AuditUnavailable::Unhealthy)
    );
    assert_eq!(log.reserve().unwrap_err(), AuditUnavailable::Unhealthy);
    assert!(log.stats().refused >= 2);
    stop.send(true).unwrap();
    writer.await.unwrap();
}

#[test]
fn zero_capacity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        queue_capacity: 0,
        ..file_config(&dir.path().join("audit.log"), 1, 1)
    };
    let err = AuditLog::open(config).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    let at = |secs: u64, millis: u64| {
        rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(94_694_399, 999), "1972-12-31T23:59:59.999Z");
    assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    assert_eq!(at(1_709_164_800, 7), "2024-02-29T00:00:00.007Z");
    assert_eq!(at(1_795_460_645, 123), "2026-11-23T19:04:05.123Z");
    assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    assert_eq!(
        rfc3339_millis(UNIX_EPOCH - Duration::from_secs(1)),
        "1970-01-01T00:00:00.000Z"
    );
}

#[test]
fn query_values_are_redacted() {
    assert_eq!(redact_path("/a/b"), "/a/b");
    assert_eq!(redact_path("/a?x=1&y&z=s%20t"), "/a?x&y&z");
    assert_eq!(redact_path("/a?"), "/a?");
}

#[tokio::test]
async fn query_values_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (log, writer) = AuditLog::open(file_config(&path, u64::MAX, 3)).unwrap();
    let mut record = request(1);
    record.path = "/acme/pd?api_key=hunter2".to_owned();
    log.record(
        log.reserve().unwrap(),
        AuditEvent::Request(Arc::new(record)),
    );
    let (_tx, rx) = watch::channel(true);
    writer.run(rx).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(field(&lines(&path)[0], "path"), "/acme/pd?api_key");
}

#[test]
fn an_empty_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.log");
    std::fs::write(&path, "").unwrap();
    let report = verify(&[path]).unwrap();
    assert_eq!((report.lines, report.head_hash.as_str()), (0, GENESIS));
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err = verify(&[PathBuf::from("/nonexistent/audit.log")]).unwrap_err();
    assert_eq!((err.kind, err.line), (VerifyErrorKind::Io, 0));
}

#[test]
fn now_formats_to_the_documented_shape() {
    // SystemTime::now() formats to the documented shape.
    let now = rfc3339_millis(SystemTime::now());
    assert_eq!(now.len(), "2026-11-23T19:04:05.123Z".len());
    assert!(now.ends_with('Z'));
}
