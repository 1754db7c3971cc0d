//! The demo upstream: answers with a JSON echo of what it received — method, path, headers,
//! source address — so the rewritten path, the injected header and the egress binding are
//! visible from a plain curl.

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
