//! The smallest useful Pingora reverse proxy, measured beside Portcullis in `load-tests/bench.sh`
//! so that the cost of the framework itself is known: one fixed upstream peer reached over
//! plain HTTP with Pingora's default keep-alive pool, one injected request header, no routing,
//! no authentication, no metrics, no logging. It is not part of the product.
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:20001 --upstream 127.0.0.1:20000 --threads 1
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::{HttpPeer, Opt};
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

/// Command line of the bare proxy.
#[derive(Debug, Parser)]
#[command(
    name = "bare-pingora",
    about = "Bare Pingora proxy: one peer, one injected header"
)]
struct Args {
    /// Address to listen on (plain HTTP/1.1).
    #[arg(long)]
    listen: SocketAddr,
    /// The one upstream peer (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Name of the injected request header.
    #[arg(long, default_value = "authorization")]
    header_name: HeaderName,
    /// Value of the injected request header.
    #[arg(long, default_value = "Bearer bench-secret")]
    header_value: HeaderValue,
}

/// The proxy: everything it needs is fixed at start.
struct BareProxy {
    upstream: SocketAddr,
    header_name: HeaderName,
    header_value: HeaderValue,
}

// === impl BareProxy ===

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        upstream_request.insert_header(self.header_name.clone(), self.header_value.clone())?;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads.max(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        BareProxy {
            upstream: args.upstream,
            header_name: args.header_name,
            header_value: args.header_value,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
