//! Published egress IPs: the source addresses upstream connections are bound to, and the
//! document customers allowlist them from.
//!
//! Both come from the same `egress_pools` of the same snapshot, so the published list and the
//! addresses actually used cannot drift apart.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use portcullis_config::EgressPool;
use serde::Serialize;

/// Path of the published document on the public listener.
pub(crate) const EGRESS_DOCUMENT_PATH: &str = "/.well-known/egress-ips.json";

/// Round-robin choice of a source address within one pool.
#[derive(Debug)]
pub(crate) struct EgressSelector {
    addresses: Vec<IpAddr>,
    next: AtomicUsize,
}

/// The published document, shaped like GitHub's `meta` and AWS's `ip-ranges.json`.
#[derive(Debug, Serialize)]
struct EgressDocument {
    sync_token: String,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
    upcoming: Vec<String>,
    retiring: Vec<String>,
    pools: Vec<PoolDocument>,
}

#[derive(Debug, Serialize)]
struct PoolDocument {
    name: String,
    addresses: Vec<String>,
}

// === impl EgressSelector ===

impl EgressSelector {
    /// A selector over a pool's active addresses.
    pub(crate) fn new(pool: &EgressPool) -> Self {
        Self {
            addresses: pool.addresses.clone(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next source address of the same family as `destination`, or `None` when the pool has
    /// none (the caller must fail closed rather than leave from an unpublished address).
    pub(crate) fn pick_for(&self, destination: &SocketAddr) -> Option<IpAddr> {
        let n = self.addresses.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| self.addresses[(start + i) % n])
            .find(|a| a.is_ipv4() == destination.is_ipv4())
    }
}

/// Renders the published document. `sync_token` changes whenever the published set does.
pub(crate) fn egress_document(pools: &[EgressPool]) -> Bytes {
    let mut ipv4 = Vec::new();
    let mut ipv6 = Vec::new();
    let mut upcoming = Vec::new();
    let mut retiring = Vec::new();
    let as_cidr = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    };
    for pool in pools {
        for ip in pool.addresses.iter().chain(&pool.retiring) {
            let list = if ip.is_ipv4() { &mut ipv4 } else { &mut ipv6 };
            list.push(as_cidr(ip));
        }
        upcoming.extend(pool.upcoming.iter().map(as_cidr));
        retiring.extend(pool.retiring.iter().map(as_cidr));
    }
    for list in [&mut ipv4, &mut ipv6, &mut upcoming, &mut retiring] {
        list.sort();
        list.dedup();
    }
    let mut doc = EgressDocument {
        sync_token: String::new(),
        ipv4,
        ipv6,
        upcoming,
        retiring,
        pools: pools
            .iter()
            .map(|p| PoolDocument {
                name: p.name.clone(),
                addresses: p.addresses.iter().map(as_cidr).collect(),
            })
            .collect(),
    };
    // The token is derived from the content, so it is stable across restarts and reloads that
    // do not change the published set.
    let content = serde_json::to_vec(&doc).unwrap_or_default();
    doc.sync_token = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&content);
        u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
        .to_string()
    };
    Bytes::from(serde_json::to_vec_pretty(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, addrs: &[&str], upcoming: &[&str], retiring: &[&str]) -> EgressPool {
        let ips = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect();
        EgressPool {
            name: name.into(),
            addresses: ips(addrs),
            upcoming: ips(upcoming),
            retiring: ips(retiring),
        }
    }

    #[test]
    fn document_lists_every_published_address_by_family() {
        let doc = egress_document(&[
            pool("eu", &["127.0.0.2", "::1"], &["127.0.0.9"], &[]),
            pool("us", &["127.0.0.3"], &[], &["127.0.0.4"]),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(
            v["ipv4"],
            serde_json::json!(["127.0.0.2/32", "127.0.0.3/32", "127.0.0.4/32"])
        );
        assert_eq!(v["ipv6"], serde_json::json!(["::1/128"]));
        assert_eq!(v["upcoming"], serde_json::json!(["127.0.0.9/32"]));
        assert_eq!(v["retiring"], serde_json::json!(["127.0.0.4/32"]));
        assert!(!v["sync_token"].as_str().unwrap().is_empty());
    }

    #[test]
    fn sync_token_changes_with_the_published_set() {
        let a = egress_document(&[pool("eu", &["127.0.0.2"], &[], &[])]);
        let b = egress_document(&[pool("eu", &["127.0.0.2"], &[], &[])]);
        let c = egress_document(&[pool("eu", &["127.0.0.3"], &[], &[])]);
        let token = |d: &Bytes| {
            serde_json::from_slice::<serde_json::Value>(d).unwrap()["sync_token"].clone()
        };
        assert_eq!(token(&a), token(&b));
        assert_ne!(token(&a), token(&c));
    }

    #[test]
    fn selector_round_robins_within_the_destination_family() {
        let sel = EgressSelector::new(&pool("p", &["127.0.0.2", "::1", "127.0.0.3"], &[], &[]));
        let dest: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let picks: Vec<_> = (0..4)
            .map(|_| sel.pick_for(&dest).unwrap().to_string())
            .collect();
        assert!(picks.iter().all(|p| p.starts_with("127.0.0.")));
        assert!(picks.contains(&"127.0.0.2".to_string()));
        assert!(picks.contains(&"127.0.0.3".to_string()));
        let v4_only = EgressSelector::new(&pool("p", &["127.0.0.2"], &[], &[]));
        assert_eq!(v4_only.pick_for(&"[::1]:80".parse().unwrap()), None);
    }
}
