//! 1 GiB up and 1 GiB down through the real agent, with the agent's peak RSS bounded.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use support::*;

const GIB: u64 = 1 << 30;
/// The agent's peak resident set size must stay under this while streaming.
const MAX_RSS_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_streams_through_the_agent_with_bounded_memory() {
    let pki = TestPki::generate();
    let gateway = TestGateway::start(tokens(), options(&pki)).await;
    let origin = MockOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}[[origins]]\nname = \"big\"\nurl = \"http://{}\"\n",
        tuning(),
        origin.addr
    );
    let config = write_agent_config(dir.path(), &[gateway.addr], &pki.ca_file, &extra);
    let agent = AgentProcess::spawn(&config, &[]);
    let session = gateway.session().await;
    let baseline = agent.vm_hwm_kib();

    // Up: 1 GiB request body generated on the fly, counted by the origin.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = GIB / chunk.len() as u64;
    let body =
        StreamBody::new(futures_util::stream::iter((0..chunks).map(move |_| {
            Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
        })));
    let req = Request::post("/upload")
        .header("host", "big")
        .header("content-length", GIB.to_string())
        .body(body)
        .unwrap();
    let stream = session
        .open_stream(portcullis_broker::StreamKind::Http)
        .await
        .unwrap();
    let resp = request_on(stream, req).await;
    assert_eq!(resp.status(), 200);
    let body = body_json(resp).await;
    assert_eq!(body["body_bytes"], GIB, "{body}");
    let after_up = agent.vm_hwm_kib();

    // Down: 1 GiB response body, counted here without keeping it.
    let resp = request(&session, get("big", &format!("/download?bytes={GIB}"))).await;
    assert_eq!(resp.status(), 200);
    let received = Arc::new(AtomicU64::new(0));
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        received.fetch_add(
            frame.data_ref().map_or(0, |d| d.len() as u64),
            Ordering::Relaxed,
        );
    }
    assert_eq!(received.load(Ordering::Relaxed), GIB);
    let peak = agent.vm_hwm_kib();
    eprintln!("agent VmHWM: start {baseline} KiB, after 1 GiB up {after_up} KiB, after 1 GiB down {peak} KiB");
    assert!(
        peak < MAX_RSS_KIB,
        "agent peak RSS {peak} KiB over {MAX_RSS_KIB} KiB"
    );

    let line = agent
        .wait_audit("the download's audit line", |l| {
            l["path"] == "/download?bytes" && l["bytes_out"] == GIB
        })
        .await;
    assert_eq!(line["status"], 200);
    let stats = session.stats();
    assert!(
        stats.bytes_to_agent > GIB && stats.bytes_from_agent > GIB,
        "{stats:?}"
    );
}
