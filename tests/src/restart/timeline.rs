//! One clock for the bench and its clients, and the phases of a restart on it.
//!
//! Every client counts its requests per millisecond of `CLOCK_MONOTONIC` in which each began
//! (wrk through LuaJIT's FFI, Python through `time.monotonic()`, which is the same clock on
//! Linux); the bench marks the moments of the restart on the same clock, so each request falls
//! into exactly one phase: before the SIGTERM, during the restart (SIGTERM until the new daemon
//! is ready), after it.

use std::time::Duration;

/// Milliseconds of `CLOCK_MONOTONIC` now.
pub fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Requests that began in one millisecond, by what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub ms: u64,
    /// Answered 2xx (wrk) or 200 (the Python sessions).
    pub ok: u64,
    /// Answered with another status.
    pub other_status: u64,
    /// Never answered: the connection failed under the request.
    pub failed: u64,
}

/// The moments of one restart, in [`monotonic_ms`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// Counting starts (the clients are connected and warm).
    pub start: u64,
    /// SIGTERM to the old daemon.
    pub sigterm: u64,
    /// The old daemon has exited.
    pub exited: u64,
    /// The new daemon answers `/readyz` 200.
    pub ready: u64,
    /// Counting ends; requests that begin later are left out.
    pub end: u64,
}

impl Marks {
    /// The phase a request that began at `ms` belongs to (`None`: outside the counted window).
    pub fn phase(&self, ms: u64) -> Option<Phase> {
        if ms < self.start || ms >= self.end {
            None
        } else if ms < self.sigterm {
            Some(Phase::Before)
        } else if ms < self.ready {
            Some(Phase::During)
        } else {
            Some(Phase::After)
        }
    }

    /// How long the old daemon took to exit after SIGTERM.
    pub fn exit_after(&self) -> Duration {
        Duration::from_millis(self.exited.saturating_sub(self.sigterm))
    }

    /// How long the new daemon took to be ready after the old one exited.
    pub fn ready_after(&self) -> Duration {
        Duration::from_millis(self.ready.saturating_sub(self.exited))
    }
}

/// Before the SIGTERM, during the restart, after the new daemon is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    fn index(self) -> usize {
        match self {
            Phase::Before => 0,
            Phase::During => 1,
            Phase::After => 2,
        }
    }
}

/// The requests of one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    pub other_status: u64,
    pub failed: u64,
}

impl Tally {
    /// Requests that did not get a 2xx answer: failed, or answered with another status.
    pub fn not_ok(&self) -> u64 {
        self.failed + self.other_status
    }
}

/// The requests of each phase, indexed like [`Phase::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tallies([Tally; 3]);

impl Tallies {
    /// Sorts `buckets` into the phases of `marks`.
    pub fn of(buckets: &[Bucket], marks: &Marks) -> Tallies {
        let mut tallies = Tallies::default();
        for bucket in buckets {
            let Some(phase) = marks.phase(bucket.ms) else {
                continue;
            };
            let tally = &mut tallies.0[phase.index()];
            tally.requests += bucket.ok + bucket.other_status + bucket.failed;
            tally.ok += bucket.ok;
            tally.other_status += bucket.other_status;
            tally.failed += bucket.failed;
        }
        tallies
    }

    pub fn get(&self, phase: Phase) -> Tally {
        self.0[phase.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Marks {
        Marks {
            start: 1000,
            sigterm: 2000,
            exited: 2100,
            ready: 2500,
            end: 4000,
        }
    }

    #[test]
    fn each_request_falls_in_the_phase_it_began_in() {
        let marks = marks();
        assert_eq!(marks.phase(999), None, "warm-up");
        assert_eq!(marks.phase(1000), Some(Phase::Before));
        assert_eq!(marks.phase(1999), Some(Phase::Before));
        assert_eq!(
            marks.phase(2000),
            Some(Phase::During),
            "the SIGTERM's millisecond"
        );
        assert_eq!(marks.phase(2499), Some(Phase::During));
        assert_eq!(marks.phase(2500), Some(Phase::After));
        assert_eq!(marks.phase(4000), None, "after the end");
        assert_eq!(marks.exit_after(), Duration::from_millis(100));
        assert_eq!(marks.ready_after(), Duration::from_millis(400));
    }

    #[test]
    fn tallies_add_up_the_buckets_of_each_phase() {
        let bucket = |ms, ok, other_status, failed| Bucket {
            ms,
            ok,
            other_status,
            failed,
        };
        let buckets = [
            bucket(500, 9, 9, 9),
            bucket(1500, 10, 0, 0),
            bucket(1999, 5, 1, 0),
            bucket(2000, 3, 0, 2),
            bucket(3000, 7, 0, 0),
            bucket(4000, 9, 9, 9),
        ];
        let tallies = Tallies::of(&buckets, &marks());
        assert_eq!(
            tallies.get(Phase::Before),
            Tally {
                requests: 16,
                ok: 15,
                other_status: 1,
                failed: 0
            }
        );
        assert_eq!(tallies.get(Phase::During).failed, 2);
        assert_eq!(tallies.get(Phase::During).requests, 5);
        assert_eq!(tallies.get(Phase::After).requests, 7);
        assert_eq!(tallies.get(Phase::Before).not_ok(), 1);
    }
}
