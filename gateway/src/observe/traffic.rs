//! Recent requests for the admin API and the console: a bounded ring buffer with sequence
//! numbers, so a client can tail it with `?after=SEQ`.
//!
//! Writers never lock: each request takes a sequence number with one atomic add and publishes
//! its entry into slot `seq % capacity` with an `ArcSwapOption` store. Readers copy what they
//! find; an entry overwritten while being read is simply the newer one. Entries hold no header
//! values and no query values, so nothing here can carry a credential.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use portcullis_api::TrafficPage;

use crate::clock::unix_ms;
use crate::observe::record::RequestRecord;

/// Default number of requests kept.
pub(crate) const DEFAULT_TRAFFIC_CAPACITY: usize = 4096;

/// One finished request with its sequence number. The record is the same allocation the audit
/// log receives: one copy per request, shared.
#[derive(Debug, Clone)]
struct TrafficEntry {
    seq: u64,
    record: Arc<RequestRecord>,
}

/// The ring buffer.
#[derive(Debug)]
pub(crate) struct TrafficRing {
    slots: Box<[ArcSwapOption<TrafficEntry>]>,
    last_seq: AtomicU64,
}

// === impl TrafficRing ===

impl TrafficRing {
    /// A ring keeping the last `capacity` requests.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
            last_seq: AtomicU64::new(0),
        }
    }

    /// Publishes a finished request under the next sequence number.
    pub(crate) fn push(&self, record: Arc<RequestRecord>) {
        let seq = self.last_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = (seq % self.slots.len() as u64) as usize;
        self.slots[slot].store(Some(Arc::new(TrafficEntry { seq, record })));
    }

    /// The highest sequence number handed out so far.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Up to `limit` entries with `seq > after`, oldest first.
    pub(crate) fn after(&self, after: u64, limit: usize) -> TrafficPage {
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
                    entries.push(entry.to_api());
                    next = seq;
                    continue;
                }
            }
            next = seq;
        }
        TrafficPage { entries, next, gap }
    }
}

// === impl TrafficEntry ===

impl TrafficEntry {
    /// The admin API's view: times in Unix milliseconds, no header or query values.
    fn to_api(&self) -> portcullis_api::TrafficEntry {
        let r = &self.record;
        portcullis_api::TrafficEntry {
            seq: self.seq,
            time_ms: unix_ms(r.time),
            tenant: r.tenant.as_deref().map(str::to_owned),
            route: r.route.as_deref().map(str::to_owned),
            method: r.method.as_str().to_owned(),
            path: r.path.clone(),
            status: r.status,
            denial: r.denial.map(str::to_owned),
            duration_ms: r.duration.as_secs_f64() * 1000.0,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            egress: r.egress,
            upstream: r.upstream.as_ref().map(ToString::to_string),
            request_id: r.request_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::UNIX_EPOCH;

    fn entry(path: &str) -> Arc<RequestRecord> {
        Arc::new(RequestRecord {
            time: UNIX_EPOCH,
            request_id: "r".into(),
            tenant: None,
            route: None,
            method: http::Method::GET,
            path: path.into(),
            status: 200,
            denial: None,
            duration: std::time::Duration::from_millis(1),
            client_ip: None,
            egress: None,
            upstream: None,
            bytes_in: 0,
            bytes_out: 0,
        })
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
    fn entries_serialise_for_the_admin_api() {
        let ring = TrafficRing::new(2);
        ring.push(entry("/a?x"));
        let v = serde_json::to_value(&ring.after(0, 1).entries[0]).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["path"], "/a?x");
        assert_eq!(v["duration_ms"], 1.0);
        assert_eq!(v["time_ms"], 0);
    }
}
