//! Upstream targets: DNS discovery, round-robin selection with health checks, and upstream TLS
//! trust.
//!
//! Each route gets a Pingora `LoadBalancer<RoundRobin>` whose discovery resolves the route's
//! target host names. Resolution happens off the request path (when a snapshot is built and
//! then periodically), and the request path connects to exactly the address it checked
//! against the destination guard — so a DNS answer cannot smuggle in a private address between
//! the check and the connect.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::RoundRobin;
use pingora::utils::tls::WrappedX509;
use pingora::{Error, ErrorType, Result as PingoraResult};
use portcullis_config::{Route, Target};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Which of a route's targets a discovered backend belongs to (stored in `Backend::ext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetIndex(pub usize);

/// Resolves a route's targets into backends.
#[derive(Debug)]
pub struct DnsDiscovery {
    targets: Vec<Target>,
}

/// A CA bundle for verifying one route's upstream, in Pingora's form.
pub type CaBundle = Arc<[WrappedX509]>;

/// Why upstream state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The CA file could not be read or holds no valid certificate.
    #[error("ca_file '{path}': {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

// === impl DnsDiscovery ===

impl DnsDiscovery {
    /// Discovery over a route's targets.
    pub fn new(targets: Vec<Target>) -> Self {
        Self { targets }
    }
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> PingoraResult<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut backends = BTreeSet::new();
        let mut last_error = None;
        for (index, target) in self.targets.iter().enumerate() {
            let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, target.port)],
                Err(_) => {
                    match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                        Ok(addrs) => addrs.collect(),
                        Err(e) => {
                            tracing::warn!(target = %target, error = %e, "cannot resolve upstream target");
                            last_error = Some(e);
                            continue;
                        }
                    }
                }
            };
            for addr in addrs {
                let mut backend = Backend {
                    addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
                    weight: 1,
                    ext: Default::default(),
                };
                backend.ext.insert(TargetIndex(index));
                backends.insert(backend);
            }
        }
        if backends.is_empty() {
            if let Some(e) = last_error {
                return Err(Error::because(
                    ErrorType::ConnectNoRoute,
                    "no target of the route resolves",
                    e,
                ));
            }
        }
        Ok((backends, HashMap::new()))
    }
}

/// Builds a route's load balancer and resolves its targets once.
pub async fn build_load_balancer(route: &Route, ca: Option<&CaBundle>) -> LoadBalancer<RoundRobin> {
    let targets = route.upstream.targets();
    let backends = Backends::new(Box::new(DnsDiscovery::new(targets.to_vec())));
    let mut lb = LoadBalancer::from_backends(backends);
    if let Err(e) = lb.update().await {
        tracing::warn!(route = %route.name, error = %e, "route has no resolvable target yet");
    }
    // Health checks pay off only when there is another target to fail over to; with one target
    // the real connection attempt gives the caller the precise error (refused, timeout).
    if targets.len() > 1 || lb.backends().get_backend().len() > 1 {
        let first = &targets[0];
        match &route.health_check.path {
            Some(path) => {
                let mut hc = HttpHealthCheck::new(
                    first.authority.to_str().unwrap_or(&first.host),
                    first.tls,
                );
                if let Ok(uri) = path.parse::<http::Uri>() {
                    hc.req.set_uri(uri);
                }
                hc.peer_template.options.verify_cert = route.tls_verify;
                hc.peer_template.options.ca = ca.cloned();
                hc.peer_template.sni = first.host.clone();
                lb.set_health_check(Box::new(hc));
            }
            None => lb.set_health_check(TcpHealthCheck::new()),
        }
        lb.health_check_frequency = Some(route.health_check.interval);
    }
    lb
}

/// Loads a PEM CA bundle into Pingora's form, refusing files without a valid certificate.
pub fn load_ca_bundle(path: &Path) -> Result<CaBundle, UpstreamError> {
    let err = |reason: String| UpstreamError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let der = cert.map_err(|e| err(format!("not a PEM certificate: {e}")))?;
        // Validate before Pingora's parser sees it: that one panics on malformed DER.
        let mut store = pingora::tls::RootCertStore::empty();
        store
            .add(der.clone())
            .map_err(|e| err(format!("invalid certificate: {e}")))?;
        certs.push(WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}
