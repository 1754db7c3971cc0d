//! The demo upstream: answers with a JSON echo of what it received — method, path, headers,
//! source address — so the rewritten path, the injected header and the egress binding are
//! visible from a plain curl. Under `/slow` it takes a few hundred milliseconds and under
//! `/flaky` it fails now and then, like the SaaS APIs a real gateway talks to, so the console
//! has latency and errors to show.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// The demo upstream service.
#[derive(Debug, Default)]
pub(crate) struct EchoUpstream;

// === impl EchoUpstream ===

#[async_trait]
impl ServeHttp for EchoUpstream {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
        }
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let path = req.uri.path();
        if path.starts_with("/slow") {
            let delay = 150 + rand::random::<u64>() % 650;
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if path.starts_with("/flaky") && rand::random::<u8>().is_multiple_of(4) {
            let status = if rand::random::<bool>() { 503 } else { 500 };
            let body = br#"{"error":"the demo upstream is having a bad moment"}"#.to_vec();
            return Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("content-length", body.len())
                .body(body)
                .unwrap_or_default();
        }
        let echo = serde_json::json!({
            "upstream": "portcullis demo echo",
            "method": req.method.as_str(),
            "path": req.uri.to_string(),
            "source_address": session.client_addr().map(|a| a.to_string()),
            "headers": headers,
            "body_bytes": body_len,
        });
        let body = serde_json::to_vec_pretty(&echo).unwrap_or_default();
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
