//! HTTP CONNECT proxies: `HTTPS_PROXY` / `https_proxy`, `NO_PROXY` / `no_proxy`, and the
//! CONNECT exchange itself.
//!
//! Customers' networks often let traffic out only through a proxy; the agent asks it for a
//! TCP tunnel to the gateway (`CONNECT host:port`) and runs TLS through that, so the proxy sees
//! only the gateway's name and encrypted bytes. Only `http://` proxies are supported (the
//! common case; the proxy hop itself is then unencrypted, the tunnel inside it is not).

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cfg(test)]
mod tests;

/// The most we read of a proxy's answer to CONNECT before giving up on it.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// An HTTP proxy to CONNECT through.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The proxy's host.
    pub host: String,
    /// The proxy's port (80 when the URL has none).
    pub port: u16,
    /// `user:password` from the URL, sent as `Proxy-Authorization: Basic`.
    pub basic_auth: Option<SecretString>,
}

/// Why a proxy setting or CONNECT failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL does not parse or is not `http://`.
    #[error("invalid proxy URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL, with any password removed.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The proxy could not be reached.
    #[error("cannot connect to proxy {proxy}: {source}")]
    Connect {
        /// `host:port` of the proxy.
        proxy: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The proxy answered CONNECT with something other than 2xx.
    #[error("proxy {proxy} refused CONNECT {target}: {status_line}")]
    Refused {
        /// `host:port` of the proxy.
        proxy: String,
        /// What we asked for.
        target: String,
        /// The proxy's status line.
        status_line: String,
    },
    /// The proxy's answer was not HTTP or too long.
    #[error("proxy {proxy} sent an invalid answer to CONNECT: {reason}")]
    BadResponse {
        /// `host:port` of the proxy.
        proxy: String,
        /// What is wrong.
        reason: String,
    },
}

/// The `NO_PROXY` list: hosts, domain suffixes, IPs and CIDRs that are reached directly.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    domains: Vec<String>,
    nets: Vec<IpNet>,
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// Parses `http://[user:password@]host[:port][/]`.
    ///
    /// # Errors
    ///
    /// [`ProxyError::InvalidUrl`] for other schemes or a malformed URL; the error never contains
    /// the password.
    pub fn parse(url: &str) -> Result<ProxyConfig, ProxyError> {
        let invalid = |reason| ProxyError::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// proxies are supported"))?;
        let authority = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| invalid("bad host or port"))?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let basic_auth = userinfo.map(|u| {
            let decoded = percent_encoding::percent_decode_str(u).decode_utf8_lossy();
            SecretString::from(decoded.into_owned())
        });
        Ok(ProxyConfig {
            host: host.to_owned(),
            port: port.unwrap_or(80),
            basic_auth,
        })
    }

    /// The proxy for reaching `host` according to the environment: `HTTPS_PROXY` (or
    /// `https_proxy`) unless `NO_PROXY` (or `no_proxy`) matches `host`.
    ///
    /// # Errors
    ///
    /// [`ProxyError::InvalidUrl`] when the variable is set but invalid.
    pub fn from_env(host: &str) -> Result<Option<ProxyConfig>, ProxyError> {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let Some(url) = var(["HTTPS_PROXY", "https_proxy"]) else {
            return Ok(None);
        };
        let no_proxy = NoProxy::parse(&var(["NO_PROXY", "no_proxy"]).unwrap_or_default());
        if no_proxy.matches(host) {
            return Ok(None);
        }
        ProxyConfig::parse(url.trim()).map(Some)
    }

    fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// `http://user:pw@host` → `http://[redacted]@host`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}[redacted]{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => Some((s, None)), // a bare IPv6 address
        None => Some((s, None)),
    }
}

/// Opens a TCP connection to `host:port` through the proxy.
///
/// # Errors
///
/// [`ProxyError`] when the proxy cannot be reached or does not answer 2xx.
pub async fn connect(proxy: &ProxyConfig, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let proxy_addr = proxy.addr();
    let mut tcp = TcpStream::connect(&proxy_addr)
        .await
        .map_err(|source| ProxyError::Connect {
            proxy: proxy_addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let target = host_port(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.basic_auth {
        let encoded = base64::engine::general_purpose::STANDARD.encode(auth.expose_secret());
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    let io_err = |e: std::io::Error| ProxyError::Connect {
        proxy: proxy_addr.clone(),
        source: e,
    };
    tcp.write_all(request.as_bytes()).await.map_err(io_err)?;
    // Read byte by byte up to the blank line: anything after it belongs to the tunnel (TLS).
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(ProxyError::BadResponse {
                proxy: proxy_addr,
                reason: format!("no end of headers in {MAX_RESPONSE_HEAD} bytes"),
            });
        }
        let n = tcp.read(&mut byte).await.map_err(io_err)?;
        if n == 0 {
            return Err(ProxyError::BadResponse {
                proxy: proxy_addr,
                reason: "connection closed before the end of headers".into(),
            });
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or("").trim().to_owned();
    let mut parts = status_line.split_whitespace();
    let version_ok = parts.next().is_some_and(|v| v.starts_with("HTTP/1."));
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    match (version_ok, status) {
        (true, Some(200..=299)) => Ok(tcp),
        (true, Some(_)) => Err(ProxyError::Refused {
            proxy: proxy_addr,
            target,
            status_line,
        }),
        _ => Err(ProxyError::BadResponse {
            proxy: proxy_addr,
            reason: format!("not an HTTP status line: {status_line:?}"),
        }),
    }
}

// === impl NoProxy ===

impl NoProxy {
    /// Parses a comma-separated `NO_PROXY` value: `*`, host names (matching themselves and
    /// their subdomains, with or without a leading `.`), IP addresses and CIDRs. Ports are
    /// ignored.
    pub fn parse(value: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.all = true;
            } else if let Ok(net) = entry.parse::<IpNet>() {
                out.nets.push(net);
            } else if let Ok(ip) = entry
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
            {
                out.nets.push(IpNet::from(ip));
            } else {
                let host = split_host_port(entry).map_or(entry, |(h, _)| h);
                out.domains
                    .push(host.trim_start_matches('.').to_ascii_lowercase());
            }
        }
        out
    }

    /// True when `host` (a name or an IP literal) is to be reached without the proxy.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_matches(|c| c == '[' || c == ']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.nets.iter().any(|n| n.contains(&ip))
                || self.domains.iter().any(|d| d == host);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        })
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
