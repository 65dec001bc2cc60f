//! Answer latencies for the report: a small fixed-bucket histogram per side and point (head,
//! end), since the comparison started.
//!
//! Buckets grow by 2^(1/4) (19 %) from 50 µs to ~100 s: 85 counters, and a percentile is the
//! upper bound of its bucket, so it reads at most 19 % high. Prometheus gets its own histograms
//! ([`super::metrics`]); these are what `/comparisons` and the terminal show.

use std::time::Duration;

const BUCKETS: usize = 85;
const FIRST_BOUND_MICROS: f64 = 50.0;
const STEPS_PER_DOUBLING: f64 = 4.0;

#[derive(Debug, Clone)]
pub(super) struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

/// The upper bound of bucket `index`.
fn bound(index: usize) -> Duration {
    Duration::from_secs_f64(FIRST_BOUND_MICROS * 2f64.powf(index as f64 / STEPS_PER_DOUBLING) / 1e6)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let index = if micros <= FIRST_BOUND_MICROS {
            0
        } else {
            ((micros / FIRST_BOUND_MICROS).log2() * STEPS_PER_DOUBLING).ceil() as usize
        };
        self.counts[index.min(BUCKETS - 1)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency `quantile` (0 to 1) of the answers is at most this; `None` before any.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bound(index));
            }
        }
        Some(bound(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_bucket_bounds_at_most_a_fifth_high() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        // 1 to 100 ms: p50 is 50 ms, p90 90 ms, p99 99 ms.
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        assert_eq!(histogram.count(), 100);
        for (quantile, exact) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
            let estimate = histogram.quantile(quantile).expect("some").as_secs_f64() * 1e3;
            assert!(
                estimate >= exact && estimate <= exact * 1.19,
                "p{quantile}: {estimate} ms for {exact}"
            );
        }
        histogram.record(Duration::from_secs(1000));
        assert_eq!(histogram.quantile(1.0), Some(bound(BUCKETS - 1)));
        assert!(bound(BUCKETS - 1) >= Duration::from_secs(100));
    }
}
