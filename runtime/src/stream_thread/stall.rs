//! Breaks of the stream thread: stretches of wall-clock time in which it did not run its
//! loop — the process was paused (SIGSTOP, a frozen VM), or a call blocked (a commit
//! held up by the broker). Records may reach the broker meanwhile without being read,
//! so a processor's wait for records to arrive, measured in wall-clock time, must not
//! count the break: after one, every running task is told it has been reading only
//! since then ([`crate::processor::ProcessorContext::running_since_ms`];
//! docs/architecture.md, "Stalls of the stream thread").

use std::time::{Duration, Instant};

/// The longest break of the stream thread, milliseconds, that is not a stall. A loop
/// iteration processes one record, punctuates or commits, and a commit takes tens of
/// milliseconds; one blocked longer than this counts as a stall, which only makes
/// reorder waits start again (a delay, never a wrong order).
pub const STREAM_THREAD_STALL_MS: u64 = 500;

/// Watches the gaps between the loop's iterations.
pub(super) struct StallWatch {
    /// When the loop last began an iteration, or the end of the sleep it planned since
    /// (a planned sleep is no break), whichever is later.
    running_at: Instant,
}

impl StallWatch {
    pub fn new() -> Self {
        StallWatch {
            running_at: Instant::now(),
        }
    }

    /// The loop is about to sleep until `until` at most: that much of a gap is planned.
    pub fn sleeping_until(&mut self, until: Instant) {
        self.running_at = self.running_at.max(until);
    }

    /// The loop begins an iteration: the break since the last one, when it was longer
    /// than [`STREAM_THREAD_STALL_MS`] (a planned sleep not counted).
    pub fn iteration(&mut self) -> Option<Duration> {
        self.iteration_at(Instant::now())
    }

    fn iteration_at(&mut self, now: Instant) -> Option<Duration> {
        let gap = now.saturating_duration_since(self.running_at);
        self.running_at = self.running_at.max(now);
        (gap > Duration::from_millis(STREAM_THREAD_STALL_MS)).then_some(gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_sleep_is_no_stall_and_a_longer_break_is() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut watch = StallWatch { running_at: start };
        assert_eq!(
            watch.iteration_at(start + ms(100)),
            None,
            "a short iteration"
        );

        // A sleep planned for 2 s, over 150 ms late: no stall.
        watch.sleeping_until(start + ms(2_100));
        assert_eq!(watch.iteration_at(start + ms(2_250)), None);
        // Woken early by a record: no stall.
        watch.sleeping_until(start + ms(3_000));
        assert_eq!(watch.iteration_at(start + ms(2_300)), None);

        // Paused 6 s during the sleep: a stall of the time past its planned end.
        watch.sleeping_until(start + ms(3_100));
        assert_eq!(watch.iteration_at(start + ms(9_000)), Some(ms(5_900)));
        // An iteration that blocked 600 ms.
        assert_eq!(watch.iteration_at(start + ms(9_600)), Some(ms(600)));
        assert_eq!(watch.iteration_at(start + ms(9_700)), None, "reported once");
    }
}
