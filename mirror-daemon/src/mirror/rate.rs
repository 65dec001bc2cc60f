//! Copy rate limits: `max_copies_per_second` with a `burst`, per target, on this node.
//!
//! A token bucket in its GCRA form (the generic cell rate algorithm): one atomic "theoretical
//! arrival time" that every worker advances with a compare-and-swap, so the limit holds across
//! workers without a lock and costs one atomic operation per copy. A copy is allowed when the
//! bucket, refilling at the rate, has a token; each allowed copy takes one. The bucket starts
//! full; a reload starts a new one.
//!
//! The limit is applied after sampling: consistent sampling still picks the same traces on every
//! node, and the limit then drops some of them (counted `rate_limited`). A shadow fed by N nodes
//! receives at most N times the limit.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    /// Nanoseconds between two tokens.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run: `burst` tokens' worth.
    tolerance: u64,
    /// Nanoseconds since `start` at which the bucket would be full again.
    tat: AtomicU64,
}

impl RateLimit {
    /// `per_second` copies per second, `burst` at once (default: one second's worth, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Self {
        let interval = (1e9 / per_second).max(1.0) as u64;
        let burst = burst.map_or_else(|| per_second.ceil().max(1.0) as u64, u64::from);
        Self {
            start: Instant::now(),
            interval,
            tolerance: interval.saturating_mul(burst),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        self.allow_at(self.start.elapsed().as_nanos() as u64)
    }

    fn allow_at(&self, now: u64) -> bool {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            if next - now > self.tolerance {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn allowed(limit: &RateLimit, at: u64, tries: usize) -> usize {
        (0..tries).filter(|_| limit.allow_at(at)).count()
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_refills_at_the_rate() {
        let limit = RateLimit::new(10.0, Some(5));
        assert_eq!(allowed(&limit, 0, 100), 5, "the burst");
        assert_eq!(allowed(&limit, SECOND / 10, 100), 1, "one token per 100 ms");
        assert_eq!(allowed(&limit, SECOND / 10 + SECOND / 20, 100), 0);
        assert_eq!(
            allowed(&limit, 10 * SECOND, 100),
            5,
            "never more than the burst"
        );
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let limit = RateLimit::new(50.0, None);
        // 1000 attempts per second for 10 seconds.
        let mut total = 0;
        for ms in 0..10_000u64 {
            total += allowed(&limit, ms * 1_000_000, 1);
        }
        // 50 per second plus the initial burst of 50.
        assert!((540..=551).contains(&total), "{total}");
    }

    #[test]
    fn workers_share_one_bucket() {
        let limit = std::sync::Arc::new(RateLimit::new(1.0, Some(100)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || allowed(&limit, 0, 1000))
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(total, 100);
    }
}
