//! Unit tests of `payment_state.rs`, kept beside it so that the module reads in one sitting.

use super::*;
use proptest::prelude::*;
use PaymentStatus::*;
use RejectionReason::*;

const MAX: u32 = 3;

fn at(status: &str, attempt: u32) -> Standing<'_> {
    Standing {
        status,
        attempt,
        provider_ref: None,
        outcome_unknown: false,
    }
}

fn report(status: PaymentStatus, attempt: u32) -> Report<'static> {
    Report {
        status,
        reason: (status == Rejected).then_some(ProviderUnavailable),
        attempt,
        provider_ref: (status == Succeeded).then_some("P-1"),
    }
}

fn rejected(reason: RejectionReason, attempt: u32) -> Report<'static> {
    Report {
        reason: Some(reason),
        ..report(Rejected, attempt)
    }
}

/// Where a timed-out attempt stands: its retry (or hold) recorded.
fn timed_out(attempt: u32) -> Standing<'static> {
    Standing {
        outcome_unknown: true,
        ..at("retry_scheduled", attempt)
    }
}

#[test]
fn a_late_pending_never_overwrites_succeeded() {
    assert!(matches!(
        effect(at("succeeded", 1), report(Pending, 1), MAX),
        Effect::Ignore(_)
    ));
    assert_eq!(
        effect(at("pending", 1), report(Succeeded, 1), MAX),
        Effect::Paid
    );
    assert_eq!(
        effect(at("instructed", 1), report(Pending, 1), MAX),
        Effect::Advance("pending")
    );
}

#[test]
fn a_reversal_that_overtakes_its_success_applies_and_the_success_is_then_late() {
    for open in ["instructed", "received", "pending"] {
        assert_eq!(
            effect(at(open, 1), report(Reversed, 1), MAX),
            Effect::Reverse
        );
    }
    assert!(matches!(
        effect(at("reversed", 1), report(Succeeded, 1), MAX),
        Effect::Ignore(_)
    ));
}

#[test]
fn a_success_after_a_timeout_scheduled_the_retry_is_the_payment() {
    assert_eq!(
        effect(timed_out(1), report(Succeeded, 1), MAX),
        Effect::Paid
    );
    assert_eq!(
        effect(timed_out(MAX), report(Succeeded, MAX), MAX),
        Effect::Paid,
        "a held payment too"
    );
}

#[test]
fn an_earlier_attempts_success_after_the_retry_went_out_is_the_payment() {
    assert_eq!(
        effect(at("instructed", 2), report(Succeeded, 1), MAX),
        Effect::Paid
    );
    assert_eq!(
        effect(at("received", 2), report(Succeeded, 1), MAX),
        Effect::Paid
    );
}

#[test]
fn a_second_payment_with_another_provider_reference_is_an_incident() {
    let paid = Standing {
        provider_ref: Some("P-1"),
        ..at("succeeded", 2)
    };
    let again = Report {
        provider_ref: Some("P-2"),
        ..report(Succeeded, 2)
    };
    assert_eq!(
        effect(paid, again, MAX),
        Effect::Incident(Incident::DuplicatePayment)
    );
    // The same payment answered again for the retry is no incident.
    assert!(matches!(
        effect(paid, report(Succeeded, 2), MAX),
        Effect::Ignore(_)
    ));
}

#[test]
fn a_success_after_the_money_was_released_is_an_incident_not_a_payment() {
    assert_eq!(
        effect(at("failed", 3), report(Succeeded, 3), MAX),
        Effect::Incident(Incident::PaidAfterFailure)
    );
}

#[test]
fn certain_rejections_retry_until_the_last_attempt_and_then_or_when_permanent_ask_for_a_visit() {
    assert_eq!(
        effect(at("received", 1), rejected(ProviderUnavailable, 1), MAX),
        Effect::Retry
    );
    assert_eq!(
        effect(at("received", 3), rejected(InsufficientFunds, 3), MAX),
        Effect::Fail { verify: true },
        "retries exhausted: a field visit too"
    );
    assert_eq!(
        effect(at("pending", 1), rejected(AccountClosed, 1), MAX),
        Effect::Fail { verify: true }
    );
    assert!(matches!(
        effect(at("instructed", 2), rejected(ProviderUnavailable, 1), MAX),
        Effect::Ignore(_)
    ));
}

#[test]
fn a_timeout_is_asked_again_after_the_inquiry_window_and_never_releases_money() {
    assert_eq!(
        effect(at("received", 1), rejected(Timeout, 1), MAX),
        Effect::Inquire
    );
    assert_eq!(
        effect(at("pending", MAX), rejected(Timeout, MAX), MAX),
        Effect::Hold,
        "the last attempt's timeout holds the money"
    );
    assert!(matches!(
        effect(timed_out(MAX), rejected(Timeout, MAX), MAX),
        Effect::Ignore(_)
    ));
}

#[test]
fn a_certain_answer_to_a_timeout_resolves_it() {
    assert_eq!(
        effect(timed_out(MAX), rejected(ProviderUnavailable, MAX), MAX),
        Effect::Fail { verify: true }
    );
    assert_eq!(
        effect(timed_out(1), rejected(ProviderUnavailable, 1), MAX),
        Effect::Retry
    );
    assert_eq!(
        effect(timed_out(1), report(Reversed, 1), MAX),
        Effect::Reverse
    );
    // A retry scheduled on a certain rejection has its answer already.
    assert!(matches!(
        effect(at("retry_scheduled", 1), rejected(AccountClosed, 1), MAX),
        Effect::Ignore(_)
    ));
}

#[test]
fn a_reversal_applies_to_a_payment_or_the_open_attempt_it_overtook_only() {
    assert_eq!(
        effect(at("succeeded", 2), report(Reversed, 1), MAX),
        Effect::Reverse
    );
    assert_eq!(
        effect(at("received", 1), report(Reversed, 1), MAX),
        Effect::Reverse
    );
    for status in ["retry_scheduled", "failed", "reversed"] {
        assert!(matches!(
            effect(at(status, 1), report(Reversed, 1), MAX),
            Effect::Ignore(_)
        ));
    }
    assert!(matches!(
        effect(at("instructed", 2), report(Reversed, 1), MAX),
        Effect::Ignore(_)
    ));
}

/// The statuses a stored instruction can have.
const STATUSES: [&str; 7] = [
    "instructed",
    "received",
    "pending",
    "retry_scheduled",
    "succeeded",
    "failed",
    "reversed",
];

const REASONS: [Option<RejectionReason>; 5] = [
    None,
    Some(Timeout),
    Some(ProviderUnavailable),
    Some(InsufficientFunds),
    Some(AccountClosed),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Every (status, report) pair has an effect, and none moves a
    /// final instruction back to an open one.
    #[test]
    fn the_machine_is_total_and_never_reopens_a_final_instruction(
        s in 0usize..STATUSES.len(),
        unknown in any::<bool>(),
        status in prop_oneof![Just(Received), Just(Pending), Just(Succeeded), Just(Rejected), Just(Reversed)],
        r in 0usize..REASONS.len(),
        attempt in 1u32..=MAX,
    ) {
        let now = Standing { status: STATUSES[s], attempt: MAX, provider_ref: Some("P-1"), outcome_unknown: unknown };
        let e = effect(now, Report { status, reason: REASONS[r], attempt, provider_ref: Some("P-1") }, MAX);
        if matches!(now.status, "succeeded" | "failed" | "reversed") {
            prop_assert!(!matches!(e, Effect::Advance(_) | Effect::Retry | Effect::Inquire | Effect::Hold | Effect::Paid), "{e:?}");
        }
    }

    /// A provider that honours the contract (one payment per
    /// reference; a timeout may or may not have paid; a certain
    /// rejection only of what it did not pay; a reversal only of what
    /// it paid), its reports delivered out of order and again, our
    /// re-issues and a crisis close at random, then every report
    /// answered: a reference is paid at most once, money is released
    /// only when the provider certainly has not paid, it is held
    /// exactly while the instruction is not failed or reversed, no
    /// attempt past the last is issued, and the instruction ends in one
    /// final status.
    #[test]
    fn money_moves_once_and_is_released_only_when_certainly_unpaid(
        steps in proptest::collection::vec((0u8..6, any::<u16>(), 0u8..6), 1..60),
    ) {
        let mut w = World::new();
        for (action, pick, outcome) in steps {
            w.step(action, pick, outcome)?;
        }
        w.drain()?;
        prop_assert!(matches!(w.status, "succeeded" | "failed" | "reversed"), "{w:?}");
    }
}

/// An instruction, the provider that holds it, the reports in flight
/// between them and the scheduler, driven the way the handler and the
/// scheduler drive the rows.
#[derive(Debug)]
struct World {
    status: &'static str,
    attempt: u32,
    provider_ref: Option<String>,
    outcome_unknown: bool,
    /// A re-issue is scheduled (Retry or Inquire; not Hold, not after
    /// a close stopped it).
    due: bool,
    closed: bool,
    reserved: bool,
    payments: u32,
    /// The provider's ledger: it paid this reference, not reversed.
    provider_paid: bool,
    /// The provider took its payment back; it never pays the
    /// reference again.
    provider_reversed: bool,
    /// The attempts the provider has been sent and not yet answered.
    unanswered: Vec<u32>,
    in_flight: Vec<(PaymentStatus, Option<RejectionReason>, u32)>,
}

impl World {
    fn new() -> Self {
        World {
            status: "instructed",
            attempt: 1,
            provider_ref: None,
            outcome_unknown: false,
            due: false,
            closed: false,
            reserved: true,
            payments: 0,
            provider_paid: false,
            provider_reversed: false,
            unanswered: vec![1],
            in_flight: Vec::new(),
        }
    }

    /// The provider answers an attempt it was sent.
    fn provider_answers(&mut self, attempt: u32, outcome: u8) {
        let report = if self.provider_reversed {
            (Reversed, None, attempt)
        } else if self.provider_paid {
            // Paid already: the reference's payment, as the contract asks.
            match outcome {
                0 => (Rejected, Some(Timeout), attempt),
                _ => (Succeeded, None, attempt),
            }
        } else {
            match outcome {
                0 | 1 => {
                    self.provider_paid = true;
                    if outcome == 0 {
                        (Rejected, Some(Timeout), attempt) // paid, said timeout
                    } else {
                        (Succeeded, None, attempt)
                    }
                }
                2 => (Rejected, Some(Timeout), attempt), // not paid, said timeout
                3 => (Rejected, Some(ProviderUnavailable), attempt),
                4 => (Rejected, Some(AccountClosed), attempt),
                _ => {
                    // Still working on it: it answers again later.
                    self.unanswered.push(attempt);
                    (Pending, None, attempt)
                }
            }
        };
        self.in_flight.push(report);
    }

    fn deliver(&mut self, i: usize, again: bool) -> Result<(), TestCaseError> {
        let (status, reason, attempt) = if again {
            self.in_flight[i]
        } else {
            self.in_flight.remove(i)
        };
        let paid_ref = "P-1".to_owned();
        let now = Standing {
            status: self.status,
            attempt: self.attempt,
            provider_ref: self.provider_ref.as_deref(),
            outcome_unknown: self.outcome_unknown,
        };
        let e = effect(
            now,
            Report {
                status,
                reason,
                attempt,
                provider_ref: Some(&paid_ref),
            },
            MAX,
        );
        match e {
            Effect::Advance(s) => self.status = s,
            Effect::Paid => {
                self.payments += 1;
                self.provider_ref = Some(paid_ref);
                self.status = "succeeded";
                self.due = false;
            }
            Effect::Retry | Effect::Inquire | Effect::Hold => {
                self.status = "retry_scheduled";
                self.outcome_unknown = reason.is_some_and(RejectionReason::outcome_unknown);
                self.due = !matches!(e, Effect::Hold);
            }
            Effect::Fail { .. } | Effect::Reverse => {
                self.release(&e)?;
                self.status = if matches!(e, Effect::Reverse) {
                    "reversed"
                } else {
                    "failed"
                };
            }
            Effect::Incident(_) | Effect::Ignore(_) => {}
        }
        self.check()
    }

    fn release(&mut self, why: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
        prop_assert!(self.reserved, "released twice: {self:?} {why:?}");
        prop_assert!(
            !self.provider_paid,
            "released money the provider paid out: {self:?} {why:?}"
        );
        self.reserved = false;
        self.due = false;
        Ok(())
    }

    /// The scheduler's round: a closed crisis stops its retries
    /// (`stop_retries`): certainly unpaid ones fail, unknown ones are
    /// held; due retries go out as the next attempt.
    fn schedule(&mut self) -> Result<(), TestCaseError> {
        if self.status != "retry_scheduled" || !self.due {
            return Ok(());
        }
        if self.closed {
            self.due = false;
            if !self.outcome_unknown {
                self.release(&"crisis_closed")?;
                self.status = "failed";
            }
        } else {
            self.attempt += 1;
            self.status = "instructed";
            self.outcome_unknown = false;
            self.due = false;
            self.unanswered.push(self.attempt);
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert!(self.attempt <= MAX, "{self:?}");
        prop_assert!(self.payments <= 1, "paid twice: {self:?}");
        prop_assert_eq!(
            self.reserved,
            !matches!(self.status, "failed" | "reversed"),
            "{:?}",
            self
        );
        Ok(())
    }

    fn step(&mut self, action: u8, pick: u16, outcome: u8) -> Result<(), TestCaseError> {
        let pick = pick as usize;
        match action {
            0 if !self.unanswered.is_empty() => {
                let attempt = self.unanswered.remove(pick % self.unanswered.len());
                self.provider_answers(attempt, outcome);
            }
            1 | 2 if !self.in_flight.is_empty() => {
                self.deliver(pick % self.in_flight.len(), action == 2)?;
            }
            3 => self.schedule()?,
            4 => self.closed = true,
            5 if self.provider_paid && outcome == 0 => {
                // The provider takes a payment back.
                self.provider_paid = false;
                self.provider_reversed = true;
                let attempt = self.attempt;
                self.in_flight.push((Reversed, None, attempt));
            }
            _ => {}
        }
        Ok(())
    }

    /// Everything answered and delivered, the scheduler run, until
    /// nothing changes; a held payment is answered by the provider's
    /// inquiry reply (its truth for that attempt).
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..(4 * MAX as usize + 8) {
            while let Some(attempt) = self.unanswered.pop() {
                self.provider_answers(attempt, 1 + (attempt as u8 % 2) * 2);
            }
            while !self.in_flight.is_empty() {
                self.deliver(0, false)?;
            }
            self.schedule()?;
            if self.status == "retry_scheduled" && !self.due {
                // Held: the inquiry's answer, the truth of the attempt.
                let answer = if self.provider_paid {
                    (Succeeded, None, self.attempt)
                } else {
                    (Rejected, Some(ProviderUnavailable), self.attempt)
                };
                self.in_flight.push(answer);
            }
        }
        Ok(())
    }
}
