//! Rate limiting the log line of each mismatch: at most [`LINES_PER_SECOND`] per (rule, target)
//! in each second, and the next line that is written says how many were left out.

use std::time::{Duration, Instant};

pub const LINES_PER_SECOND: u32 = 10;

#[derive(Debug, Default)]
pub(super) struct Limiter {
    second: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Limiter {
    /// Whether a line may be written at `now`, and if so how many were left out before it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let in_this_second = self
            .second
            .is_some_and(|start| now.duration_since(start) < Duration::from_secs(1));
        if !in_this_second {
            self.second = Some(now);
            self.written = 0;
        }
        if self.written == LINES_PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_lines_a_second_then_the_count_of_the_suppressed() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(limiter.admit(start), Some(0));
        }
        for i in 0..25 {
            assert_eq!(limiter.admit(start + Duration::from_millis(10 * i)), None);
        }
        assert_eq!(limiter.admit(start + Duration::from_millis(1000)), Some(25));
        assert_eq!(limiter.admit(start + Duration::from_millis(1001)), Some(0));
    }
}
