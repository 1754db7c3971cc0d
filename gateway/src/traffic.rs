//! Recent requests for the admin API and the console: a bounded ring buffer with sequence
//! numbers, so a client can tail it with `?after=SEQ`.
//!
//! Writers never lock: each request takes a sequence number with one atomic add and publishes
//! its entry into slot `seq % capacity` with an `ArcSwapOption` store. Readers copy what they
//! find; an entry overwritten while being read is simply the newer one. Entries hold no header
//! values and no query values, so nothing here can carry a credential.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde::Serialize;

/// Default number of requests kept.
pub const DEFAULT_TRAFFIC_CAPACITY: usize = 4096;

/// One finished request, as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrafficEntry {
    /// Sequence number (1-based, increasing).
    pub seq: u64,
    /// Unix time in milliseconds when the request finished.
    pub time_ms: u64,
    /// Tenant, if a route matched.
    pub tenant: Option<String>,
    /// Route, if one matched.
    pub route: Option<String>,
    /// Request method.
    pub method: String,
    /// Path with query parameter names but no values (`/x?limit&cursor`).
    pub path: String,
    /// Status sent to the caller (0 if the connection died first).
    pub status: u16,
    /// Gateway error code, when the gateway answered.
    pub denial: Option<&'static str>,
    /// Total time in milliseconds.
    pub duration_ms: f64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Source address the upstream connection left from.
    pub egress: Option<IpAddr>,
    /// Upstream address.
    pub upstream: Option<SocketAddr>,
    /// The request id.
    pub request_id: String,
}

/// A page of entries.
#[derive(Debug, Serialize)]
pub struct TrafficPage {
    /// Entries with `seq > after`, oldest first.
    pub entries: Vec<TrafficEntry>,
    /// Pass as `after` to get what comes next.
    pub next: u64,
    /// True when entries after `after` were already overwritten (the client fell behind).
    pub gap: bool,
}

/// The ring buffer.
#[derive(Debug)]
pub struct TrafficRing {
    slots: Box<[ArcSwapOption<TrafficEntry>]>,
    last_seq: AtomicU64,
}

// === impl TrafficRing ===

impl TrafficRing {
    /// A ring keeping the last `capacity` requests.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
            last_seq: AtomicU64::new(0),
        }
    }

    /// Publishes an entry; its `seq` is assigned here.
    pub fn push(&self, mut entry: TrafficEntry) {
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        entry.seq = seq;
        let slot = (seq % self.slots.len() as u64) as usize;
        self.slots[slot].store(Some(Arc::new(entry)));
    }

    /// The highest sequence number handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Up to `limit` entries with `seq > after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> TrafficPage {
        let last = self.last_seq();
        let capacity = self.slots.len() as u64;
        let oldest_kept = last.saturating_sub(capacity - 1).max(1);
        let start = (after + 1).max(oldest_kept);
        let gap = after + 1 < oldest_kept && last > 0;
        let mut entries = Vec::new();
        let mut next = after.max(start.saturating_sub(1));
        for seq in start..=last {
            if entries.len() >= limit {
                break;
            }
            let slot = (seq % capacity) as usize;
            if let Some(entry) = self.slots[slot].load_full() {
                // A slot may already hold a newer entry (overwritten) or not yet the one we
                // want (published a moment later): only exact matches are returned.
                if entry.seq == seq {
                    entries.push((*entry).clone());
                    next = seq;
                    continue;
                }
            }
            next = seq;
        }
        TrafficPage { entries, next, gap }
    }
}

/// `/x?limit=5&cursor=abc` → `/x?limit&cursor`: parameter names help debugging, values may be
/// secrets (tokens in query strings) and are never kept.
pub fn redact_query(path: &str, query: Option<&str>) -> String {
    match query {
        None | Some("") => path.to_owned(),
        Some(q) => {
            let mut out = String::with_capacity(path.len() + q.len());
            out.push_str(path);
            out.push('?');
            for (i, pair) in q.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                out.push_str(pair.split('=').next().unwrap_or(""));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> TrafficEntry {
        TrafficEntry {
            seq: 0,
            time_ms: 0,
            tenant: None,
            route: None,
            method: "GET".into(),
            path: path.into(),
            status: 200,
            denial: None,
            duration_ms: 1.0,
            bytes_in: 0,
            bytes_out: 0,
            egress: None,
            upstream: None,
            request_id: "r".into(),
        }
    }

    #[test]
    fn tails_in_order_with_limits() {
        let ring = TrafficRing::new(8);
        for i in 0..5 {
            ring.push(entry(&format!("/{i}")));
        }
        let page = ring.after(0, 3);
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(page.next, 3);
        assert!(!page.gap);
        let page = ring.after(page.next, 100);
        assert_eq!(
            page.entries
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            ["/3", "/4"]
        );
        assert_eq!(ring.after(5, 10).entries.len(), 0);
        assert_eq!(ring.after(5, 10).next, 5);
    }

    #[test]
    fn reports_a_gap_when_the_reader_fell_behind() {
        let ring = TrafficRing::new(4);
        for i in 0..10 {
            ring.push(entry(&format!("/{i}")));
        }
        let page = ring.after(2, 100);
        assert!(page.gap);
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        assert_eq!(page.next, 10);
    }

    #[test]
    fn concurrent_writers_never_lose_sequence_numbers() {
        let ring = Arc::new(TrafficRing::new(10_000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        ring.push(entry("/x"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let page = ring.after(0, 10_000);
        assert_eq!(page.entries.len(), 4000);
        assert!(page.entries.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn query_values_are_removed() {
        assert_eq!(
            redact_query("/x", Some("token=abc&limit=5&flag")),
            "/x?token&limit&flag"
        );
        assert_eq!(redact_query("/x", None), "/x");
        assert_eq!(redact_query("/x", Some("")), "/x");
    }
}
