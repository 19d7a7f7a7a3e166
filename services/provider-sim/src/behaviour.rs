//! How the simulated provider behaves: latency, rejection, timeout and
//! duplicate-delivery rates, decided deterministically per (instruction,
//! attempt) from a seed so a test run is reproducible.

use sumud_shared::events::payment::RejectionReason;

/// Behaviour settings (`SUMUD_SIM_*`).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Providers this simulator answers for; empty = all.
    pub providers: Vec<String>,
    /// Delay before the final status, milliseconds.
    pub latency_ms: u64,
    /// Share of attempts rejected with a retryable reason.
    pub retryable_reject_rate: f64,
    /// Share of attempts rejected for good (account closed).
    pub permanent_reject_rate: f64,
    /// Share of attempts never answered.
    pub timeout_rate: f64,
    /// Share of final statuses delivered twice.
    pub duplicate_rate: f64,
    /// Share of paid attempts followed by a late `pending`.
    pub late_pending_rate: f64,
    /// Seed of the deterministic choices.
    pub seed: u64,
    /// Signing keys by provider id: a provider with a key signs its
    /// reports, as a real provider registered with a key must.
    pub keys: std::collections::BTreeMap<String, sumud_shared::jws::Jwk>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            providers: Vec::new(),
            latency_ms: 50,
            retryable_reject_rate: 0.03,
            permanent_reject_rate: 0.01,
            timeout_rate: 0.0,
            duplicate_rate: 0.02,
            late_pending_rate: 0.02,
            seed: 1,
            keys: std::collections::BTreeMap::new(),
        }
    }
}

/// What the simulator does with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Pay it.
    Pay,
    /// Reject it.
    Reject(RejectionReason),
    /// Never answer.
    Silence,
    /// Another attempt of the same reference was paid: answer with that
    /// payment, pay nothing.
    AlreadyPaid,
}

impl Outcome {
    /// Ledger name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pay => "paid",
            Outcome::Reject(r) if r.is_retryable() => "rejected_retryable",
            Outcome::Reject(_) => "rejected_permanent",
            Outcome::Silence => "silence",
            Outcome::AlreadyPaid => "already_paid",
        }
    }
}

/// A uniform number in [0, 1) from (seed, text, salt): FNV-1a then a
/// SplitMix64 finaliser.
pub fn uniform(seed: u64, text: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Behaviour {
    /// A provider that pays every attempt after 10 ms and never misbehaves:
    /// scenarios that check where money ends up (every instruction
    /// `succeeded`) rather than how failures are handled.
    pub fn honest() -> Self {
        Behaviour {
            latency_ms: 10,
            retryable_reject_rate: 0.0,
            permanent_reject_rate: 0.0,
            timeout_rate: 0.0,
            duplicate_rate: 0.0,
            late_pending_rate: 0.0,
            ..Behaviour::default()
        }
    }

    /// Whether this simulator answers for `provider`.
    pub fn serves(&self, provider: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| p == provider)
    }

    /// The outcome of an attempt.
    pub fn outcome(&self, reference_id: &str, attempt: u32) -> Outcome {
        let u = uniform(self.seed, reference_id, u64::from(attempt));
        let mut edge = self.timeout_rate;
        if u < edge {
            return Outcome::Silence;
        }
        edge += self.retryable_reject_rate;
        if u < edge {
            return Outcome::Reject(RejectionReason::ProviderUnavailable);
        }
        edge += self.permanent_reject_rate;
        if u < edge {
            return Outcome::Reject(RejectionReason::AccountClosed);
        }
        Outcome::Pay
    }

    /// Whether the final status of an attempt is delivered twice.
    pub fn duplicates(&self, reference_id: &str, attempt: u32) -> bool {
        uniform(self.seed, reference_id, 1000 + u64::from(attempt)) < self.duplicate_rate
    }

    /// Whether a late `pending` follows a payment.
    pub fn late_pending(&self, reference_id: &str, attempt: u32) -> bool {
        uniform(self.seed, reference_id, 2000 + u64::from(attempt)) < self.late_pending_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_configured_rates() {
        let b = Behaviour {
            retryable_reject_rate: 0.1,
            permanent_reject_rate: 0.05,
            timeout_rate: 0.05,
            ..Behaviour::default()
        };
        let n = 20_000;
        let mut counts = [0usize; 3];
        for i in 0..n {
            match b.outcome(&format!("ref-{i}"), 1) {
                Outcome::Silence => counts[0] += 1,
                Outcome::Reject(r) if r.is_retryable() => counts[1] += 1,
                Outcome::Reject(_) => counts[2] += 1,
                Outcome::Pay | Outcome::AlreadyPaid => {}
            }
        }
        let share = |c: usize| c as f64 / n as f64;
        assert!((share(counts[0]) - 0.05).abs() < 0.01);
        assert!((share(counts[1]) - 0.10).abs() < 0.01);
        assert!((share(counts[2]) - 0.05).abs() < 0.01);
    }

    #[test]
    fn the_same_attempt_always_gets_the_same_outcome_but_a_retry_may_differ() {
        let b = Behaviour {
            retryable_reject_rate: 0.5,
            ..Behaviour::default()
        };
        assert_eq!(b.outcome("r", 1), b.outcome("r", 1));
        assert!((1..50).any(|a| b.outcome("r", a) != b.outcome("r", 1)));
    }
}
