//! Jittered exponential backoff for loops that retry a dependency (the
//! outbox relays): many instances waking at the same moment after an outage
//! would hit the database or the broker together, so each wait is drawn
//! between half and one and a half times the current delay.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `min` up to `max`, each jittered; `reset` after a
/// success starts again from `min`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, never waits more than one and a half times `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; the one after is twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(rand::rng().random_range(0.5..1.5));
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait()).collect();
        let bounds = [100, 200, 400, 800, 1000, 1000];
        for (w, base) in waits.iter().zip(bounds) {
            assert!(
                *w >= Duration::from_millis(base / 2),
                "{w:?} under {base}/2"
            );
            assert!(
                *w <= Duration::from_millis(base * 3 / 2),
                "{w:?} over {base}*1.5"
            );
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(150));
    }
}
