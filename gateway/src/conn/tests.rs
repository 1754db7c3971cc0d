//! The head deadline and the counts a stop waits for, on an in-memory stream. The same
//! behaviour over real sockets (slowloris, keep-alive, limits) is in `tests/hardening.rs`.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::observe::metrics::ConnectionMetrics;

const HEAD_TIMEOUT: Duration = Duration::from_millis(300);

fn metrics() -> ConnectionMetrics {
    ConnectionMetrics {
        active: IntGauge::new("a", "a").unwrap(),
        rejected_total: IntCounter::new("r", "r").unwrap(),
        rejected_per_ip: IntCounter::new("p", "p").unwrap(),
        header_timeouts: IntCounter::new("t", "t").unwrap(),
        malformed_requests: IntCounter::new("m", "m").unwrap(),
    }
}

/// A guarded stream, the client's end, and the head-timeout counter.
fn guarded(stats: &Arc<ConnStats>) -> (GuardedStream, DuplexStream, IntCounter) {
    let (stream, client, metrics) = guarded_with(stats);
    (stream, client, metrics.header_timeouts)
}

fn guarded_with(stats: &Arc<ConnStats>) -> (GuardedStream, DuplexStream, ConnectionMetrics) {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let metrics = metrics();
    let stream = GuardedStream::new(
        Box::new(server) as Stream,
        HEAD_TIMEOUT,
        Arc::clone(stats),
        &metrics,
        None,
    );
    (stream, client, metrics)
}

/// Pingora's answer to a head it cannot parse (`respond_error(400)`), as it writes it.
const PINGORA_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: Wed, 25 Nov 2026 01:10:29 GMT\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";

/// Reads until `n` bytes arrived, the stream ends or fails.
async fn read_n(stream: &mut GuardedStream, n: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while out.len() < n {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        out.extend_from_slice(&buf[..read]);
    }
    Ok(out)
}

#[tokio::test]
async fn a_head_in_time_passes_and_the_body_is_not_bounded_by_the_head_deadline() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, timeouts) = guarded(&stats);
    assert_eq!(
        (stats.unsettled(), stats.wrapped.load(Ordering::Relaxed)),
        (1, 1)
    );
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_n(&mut stream, 18).await.unwrap().len(), 18);
    stream.head_received();
    assert_eq!(stats.unsettled(), 0);
    // Body bytes long after the head deadline are still read.
    tokio::time::sleep(HEAD_TIMEOUT * 2).await;
    client.write_all(b"body").await.unwrap();
    assert_eq!(read_n(&mut stream, 4).await.unwrap(), b"body");
    assert_eq!(timeouts.get(), 0);
    drop(stream);
    assert_eq!(stats.wrapped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_trickled_head_is_cut_at_the_deadline_with_a_408() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, timeouts) = guarded(&stats);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        // One byte every 50 ms: every read gets data, the head never ends.
        for b in b"GET /slow HTTP/1.1\r\nX-A: b\r\n".iter().cycle().take(200) {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
    });
    let err = read_n(&mut stream, usize::MAX).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(
        elapsed >= HEAD_TIMEOUT && elapsed < HEAD_TIMEOUT + Duration::from_millis(250),
        "cut after {elapsed:?}"
    );
    assert_eq!(timeouts.get(), 1);
    assert_eq!(stats.unsettled(), 0, "a timed-out connection is settled");
    drop(stream);
    let mut client = writer.await.unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request_timeout","request_id":""#),
        "{answer}"
    );
}

#[tokio::test]
async fn a_silent_connection_ends_at_the_deadline_without_an_answer() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, timeouts) = guarded(&stats);
    let started = Instant::now();
    assert!(read_n(&mut stream, 1).await.unwrap().is_empty());
    assert!(started.elapsed() >= HEAD_TIMEOUT);
    assert_eq!(timeouts.get(), 1);
    drop(stream);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty(), "{answer:?}");
}

#[tokio::test]
async fn on_keep_alive_the_next_deadline_starts_at_the_next_first_byte() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, timeouts) = guarded(&stats);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read_n(&mut stream, 18).await.unwrap();
    stream.head_received();
    stream.request_done();
    // Idle for longer than a head may take: not a head timeout (keep-alive is Pingora's).
    let idle = tokio::spawn(async move {
        tokio::time::sleep(HEAD_TIMEOUT * 2).await;
        client.write_all(b"GET /next HTTP/1.1\r\n").await.unwrap();
        client
    });
    let started = Instant::now();
    let first = read_n(&mut stream, 20).await.unwrap();
    assert_eq!(first, b"GET /next HTTP/1.1\r\n");
    let _client = idle.await.unwrap();
    // The rest of that head never comes: cut one deadline after its first byte.
    let err = read_n(&mut stream, 1).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HEAD_TIMEOUT * 2 + HEAD_TIMEOUT - Duration::from_millis(50),
        "cut after {elapsed:?}: the deadline started before the head did"
    );
    assert_eq!(timeouts.get(), 1);
}

#[tokio::test]
async fn pingoras_bare_400_for_an_unparseable_head_becomes_our_json_error() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, metrics) = guarded_with(&stats);
    client
        .write_all(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        .await
        .unwrap();
    read_n(&mut stream, 10).await.unwrap();
    // Pingora refuses the head and writes its 400 in two parts, then closes.
    stream.write_all(&PINGORA_400[..30]).await.unwrap();
    stream.write_all(&PINGORA_400[30..]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("Pingora"), "{answer}");
    assert!(
        answer.contains("content-type: application/json\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"], "bad_request", "{answer}");
    let request_id = body["request_id"].as_str().unwrap();
    assert!(
        head.contains(&format!("x-request-id: {request_id}")),
        "{head}"
    );
    assert_eq!(metrics.malformed_requests.get(), 1);
    assert_eq!(stats.unsettled(), 0, "a refused connection is settled");
}

#[tokio::test]
async fn a_400_written_for_a_parsed_request_passes_through_untouched() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, metrics) = guarded_with(&stats);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read_n(&mut stream, 18).await.unwrap();
    stream.head_received();
    // An upstream's (or our own) 400, even one that looks like Pingora's.
    stream.write_all(PINGORA_400).await.unwrap();
    drop(stream);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, PINGORA_400);
    assert_eq!(metrics.malformed_requests.get(), 0);
}

#[tokio::test]
async fn on_keep_alive_a_malformed_second_head_gets_the_json_error_too() {
    let stats = Arc::new(ConnStats::default());
    let (mut stream, mut client, metrics) = guarded_with(&stats);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    read_n(&mut stream, 18).await.unwrap();
    stream.head_received();
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    stream.request_done();
    // An answer written while idle (the admin API's order) is left alone.
    stream.write_all(PINGORA_400).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .await
        .unwrap();
    read_n(&mut stream, 10).await.unwrap();
    stream.write_all(PINGORA_400).await.unwrap();
    drop(stream);
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    let answers: Vec<&str> = answer.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{answer}");
    assert!(answers[1].contains("Server: Pingora"), "{answer}");
    assert!(answers[2].contains(r#"{"error":"bad_request""#), "{answer}");
    assert_eq!(metrics.malformed_requests.get(), 1);
}
