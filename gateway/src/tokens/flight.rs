//! Single flight: at most one fetch of a thing at a time, every caller that wants it meanwhile
//! waiting for that one's result.
//!
//! Joining is lock-free (one arc-swap load, one compare-and-swap to start a flight). The work
//! runs in a task of its own, so a caller that gives up (its client left, its deadline passed)
//! never cancels it for the others; a flight whose task is dropped unfinished (a runtime
//! shutting down) clears itself, so the next caller starts a new one instead of waiting forever.

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

/// At most one flight of `T` at a time.
pub(crate) struct SingleFlight<T> {
    current: Arc<ArcSwapOption<Flight<T>>>,
}

/// A flight in progress: where its result will appear.
struct Flight<T> {
    result: watch::Receiver<Option<T>>,
}

/// A caller's view of a flight.
pub(crate) struct Waiter<T> {
    result: watch::Receiver<Option<T>>,
}

/// Clears the flight slot when the flight's task ends, however it ends.
struct ClearOnDrop<T> {
    slot: Arc<ArcSwapOption<Flight<T>>>,
    flight: Arc<Flight<T>>,
}

// === impl SingleFlight ===

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// No flight yet.
    pub(crate) fn new() -> Self {
        Self {
            current: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// Whether a flight is in progress.
    pub(crate) fn in_flight(&self) -> bool {
        self.current.load().is_some()
    }

    /// Joins the flight in progress, or starts `work()` as a new one on the current Tokio
    /// runtime. `work` is only called when this caller starts the flight.
    pub(crate) fn join_or_start<F, Fut>(&self, work: F) -> Waiter<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        if let Some(flight) = self.current.load_full() {
            return Waiter {
                result: flight.result.clone(),
            };
        }
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight { result: rx });
        let previous = self
            .current
            .compare_and_swap(&None::<Arc<Flight<T>>>, Some(Arc::clone(&flight)));
        if let Some(existing) = previous.as_ref() {
            // Another caller started one first: wait for theirs.
            return Waiter {
                result: existing.result.clone(),
            };
        }
        let clear = ClearOnDrop {
            slot: Arc::clone(&self.current),
            flight: Arc::clone(&flight),
        };
        let fut = work();
        tokio::spawn(async move {
            let value = fut.await;
            // The result is published before the slot is cleared: a caller that joins in
            // between finds it at once.
            let _ = tx.send(Some(value));
            drop(clear);
        });
        Waiter {
            result: flight.result.clone(),
        }
    }
}

// === impl Waiter ===

impl<T: Clone> Waiter<T> {
    /// The flight's result; `None` if its task ended without one (the runtime shut down).
    pub(crate) async fn wait(mut self) -> Option<T> {
        match self.result.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        }
    }
}

// === impl ClearOnDrop ===

impl<T> Drop for ClearOnDrop<T> {
    fn drop(&mut self) {
        // Only this flight's own entry: a newer flight may already be in the slot.
        let _ = self
            .slot
            .compare_and_swap(&Some(Arc::clone(&self.flight)), None);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_flight_and_a_later_one_starts_anew() {
        let flight = Arc::new(SingleFlight::<u32>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = watch::channel(false);
        let mut waiters = Vec::new();
        for _ in 0..50 {
            let runs = Arc::clone(&runs);
            let mut gate = gate.clone();
            waiters.push(flight.join_or_start(move || async move {
                let _ = gate.wait_for(|open| *open).await;
                runs.fetch_add(1, Ordering::SeqCst) as u32 + 7
            }));
        }
        assert!(flight.in_flight());
        release.send(true).unwrap();
        for w in waiters {
            assert_eq!(w.wait().await, Some(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The slot clears once the flight is over; the next caller runs the work again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while flight.in_flight() {
            assert!(std::time::Instant::now() < deadline);
            tokio::task::yield_now().await;
        }
        let runs2 = Arc::clone(&runs);
        let again = flight
            .join_or_start(move || async move { runs2.fetch_add(1, Ordering::SeqCst) as u32 + 7 });
        assert_eq!(again.wait().await, Some(8));
    }

    #[test]
    fn a_flight_dropped_with_its_runtime_clears_itself() {
        let flight = SingleFlight::<u32>::new();
        {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _waiter = flight.join_or_start(std::future::pending::<u32>);
                assert!(flight.in_flight());
            });
        }
        assert!(!flight.in_flight(), "the dropped task clears its slot");
    }
}
