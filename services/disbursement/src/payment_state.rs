//! THE payment state machine: what one provider report does to one
//! instruction, total over every (stored status, report) pair, pure and
//! written once for both backends. docs/contracts.md has it as a table.
//!
//! The contract it enforces: `reference_id` alone is the provider's unit of
//! work (attempts are our retries of the same payment), so
//! - a `succeeded` for any attempt is the payment: it ends the instruction
//!   and cancels a pending retry (an ambiguous timeout that was paid after
//!   all is not paid again);
//! - a second success with a different provider reference is a
//!   `duplicate_payment` incident, and a success after the money was given
//!   up on is a `paid_after_failure` incident: recorded, shown by
//!   reconcile, never silently absorbed;
//! - a reversal applies to a payment, or to the open current attempt it
//!   overtook (reports may overtake each other), never to an attempt
//!   already given up on.

use sumud_shared::events::payment::{PaymentStatus, RejectionReason};

/// Where an instruction stands when a report arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing<'a> {
    /// Stored status (`instructed`, `received`, `pending`,
    /// `retry_scheduled`, `succeeded`, `failed`, `reversed`).
    pub status: &'a str,
    /// The latest attempt issued.
    pub attempt: u32,
    /// The provider's reference of the payment, once paid.
    pub provider_ref: Option<&'a str>,
}

/// A provider's report, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// Reported status.
    pub status: PaymentStatus,
    /// Why, for rejections.
    pub reason: Option<RejectionReason>,
    /// The attempt reported on; never above [`Standing::attempt`] (the
    /// handler dead-letters those as never issued).
    pub attempt: u32,
    /// The provider's own transaction reference.
    pub provider_ref: Option<&'a str>,
}

/// An incident a report reveals: money moved in a way the rules forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// The reference was paid twice (two successes, two provider references).
    DuplicatePayment,
    /// A payment given up on (failed, its money released) was paid after all.
    PaidAfterFailure,
}

impl Incident {
    /// Column and report name.
    pub fn as_str(self) -> &'static str {
        match self {
            Incident::DuplicatePayment => "duplicate_payment",
            Incident::PaidAfterFailure => "paid_after_failure",
        }
    }
}

/// What a report does to an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Move to this status.
    Advance(&'static str),
    /// Paid: move to succeeded (a pending retry is cancelled with it).
    Paid,
    /// Re-issue later as the next attempt.
    Retry,
    /// Give up: failed (budget released; field verification if permanent).
    Fail {
        /// Whether the household needs a field-verification visit.
        verify: bool,
    },
    /// Money came back: reversed (budget released).
    Reverse,
    /// Recorded as an incident; the instruction does not change.
    Incident(Incident),
    /// Late, duplicate or superseded: recorded, no change.
    Ignore(&'static str),
}

/// Whether the current attempt is out with the provider, unanswered.
fn open(status: &str) -> bool {
    matches!(status, "instructed" | "received" | "pending")
}

/// Decides the effect of `report` on an instruction standing at `now`,
/// given the most attempts a payment gets.
pub fn effect(now: Standing<'_>, report: Report<'_>, max_attempts: u32) -> Effect {
    let current = report.attempt == now.attempt;
    match report.status {
        PaymentStatus::Succeeded => match now.status {
            // Any attempt's success is the payment, also one whose rejection
            // scheduled the retry (an ambiguous timeout), or an earlier one
            // arriving after its retry went out.
            s if open(s) || s == "retry_scheduled" => Effect::Paid,
            "succeeded" => match (now.provider_ref, report.provider_ref) {
                (Some(paid), Some(again)) if paid != again => {
                    Effect::Incident(Incident::DuplicatePayment)
                }
                _ => Effect::Ignore("already paid: the same payment reported again"),
            },
            "failed" => Effect::Incident(Incident::PaidAfterFailure),
            _ => Effect::Ignore("the payment was reversed before this success arrived"),
        },
        PaymentStatus::Received if current && now.status == "instructed" => {
            Effect::Advance("received")
        }
        PaymentStatus::Pending if current && matches!(now.status, "instructed" | "received") => {
            Effect::Advance("pending")
        }
        PaymentStatus::Received | PaymentStatus::Pending => {
            Effect::Ignore("late status: the payment is already further along")
        }
        PaymentStatus::Rejected if current && open(now.status) => match report.reason {
            Some(r) if r.is_retryable() && now.attempt < max_attempts => Effect::Retry,
            Some(r) => Effect::Fail {
                verify: !r.is_retryable(),
            },
            None => Effect::Fail { verify: false },
        },
        PaymentStatus::Rejected if !current => Effect::Ignore("a rejection of an earlier attempt"),
        PaymentStatus::Rejected => Effect::Ignore("the attempt already has a final status"),
        // A provider reverses only what it paid: a reversal of the open
        // current attempt that arrives before its success is the later
        // event, so it applies, and the success that follows is ignored as
        // behind it. Ignoring it instead would leave the money counted as
        // paid and its reservation held.
        PaymentStatus::Reversed if now.status == "succeeded" => Effect::Reverse,
        PaymentStatus::Reversed if current && open(now.status) => Effect::Reverse,
        PaymentStatus::Reversed => {
            Effect::Ignore("only a payment that went through can be reversed, and only once")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use PaymentStatus::*;

    const MAX: u32 = 3;

    fn at(status: &str, attempt: u32) -> Standing<'_> {
        Standing {
            status,
            attempt,
            provider_ref: None,
        }
    }

    fn report(status: PaymentStatus, attempt: u32) -> Report<'static> {
        Report {
            status,
            reason: (status == Rejected).then_some(RejectionReason::Timeout),
            attempt,
            provider_ref: (status == Succeeded).then_some("P-1"),
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
            effect(at("retry_scheduled", 1), report(Succeeded, 1), MAX),
            Effect::Paid
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
            status: "succeeded",
            attempt: 2,
            provider_ref: Some("P-1"),
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
    fn rejections_retry_until_the_last_attempt_and_permanent_ones_ask_for_a_visit() {
        assert_eq!(
            effect(at("received", 1), report(Rejected, 1), MAX),
            Effect::Retry
        );
        assert_eq!(
            effect(at("received", 3), report(Rejected, 3), MAX),
            Effect::Fail { verify: false }
        );
        let closed = Report {
            reason: Some(RejectionReason::AccountClosed),
            ..report(Rejected, 1)
        };
        assert_eq!(
            effect(at("pending", 1), closed, MAX),
            Effect::Fail { verify: true }
        );
        assert!(matches!(
            effect(at("instructed", 2), report(Rejected, 1), MAX),
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

    fn any_report() -> impl Strategy<Value = (PaymentStatus, Option<RejectionReason>, u32, u8)> {
        (
            prop_oneof![
                Just(Received),
                Just(Pending),
                Just(Succeeded),
                Just(Rejected),
                Just(Reversed)
            ],
            prop_oneof![
                Just(None),
                Just(Some(RejectionReason::Timeout)),
                Just(Some(RejectionReason::ProviderUnavailable)),
                Just(Some(RejectionReason::AccountClosed)),
            ],
            1u32..=MAX,
            0u8..3,
        )
    }

    /// A model instruction driven by the state machine the way the handler
    /// and the scheduler drive the rows: statuses applied, retries
    /// re-issued as the next attempt, money reserved once and released on
    /// failure and reversal.
    #[derive(Debug)]
    struct Model {
        status: &'static str,
        attempt: u32,
        provider_ref: Option<String>,
        reserved: bool,
        payments: u32,
        incidents: u32,
        /// The provider has reported a success not reversed since.
        provider_paid: bool,
    }

    fn stored(e: Effect, old: &'static str) -> &'static str {
        match e {
            Effect::Advance(s) => s,
            Effect::Paid => "succeeded",
            Effect::Retry => "retry_scheduled",
            Effect::Fail { .. } => "failed",
            Effect::Reverse => "reversed",
            Effect::Incident(_) | Effect::Ignore(_) => old,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every (status, report) pair has an effect, and none moves a
        /// final instruction back to an open one.
        #[test]
        fn the_machine_is_total_and_never_reopens_a_final_instruction(
            s in 0usize..STATUSES.len(),
            (status, reason, attempt, _) in any_report(),
        ) {
            let now = Standing { status: STATUSES[s], attempt: MAX, provider_ref: Some("P-1") };
            let e = effect(now, Report { status, reason, attempt, provider_ref: Some("P-1") }, MAX);
            if matches!(now.status, "succeeded" | "failed" | "reversed") {
                prop_assert!(!matches!(e, Effect::Advance(_) | Effect::Retry | Effect::Paid), "{e:?}");
            }
        }

        /// Random interleavings of reports (redelivered, overtaking, for
        /// any issued attempt, with one of three provider references) and
        /// re-issues: a reference is paid at most once unless an incident
        /// says otherwise; money is held exactly while the instruction is
        /// not failed or reversed; the instruction ends in one status.
        #[test]
        fn a_reference_is_paid_once_or_an_incident_says_so(
            steps in proptest::collection::vec((any_report(), any::<bool>()), 1..40),
        ) {
            let mut m = Model { status: "instructed", attempt: 1, provider_ref: None, reserved: true, payments: 0, incidents: 0, provider_paid: false };
            for ((status, reason, attempt, provider), reissue) in steps {
                if reissue && m.status == "retry_scheduled" {
                    // What the old rules did after an ambiguous timeout:
                    // a re-issue of a reference the provider said it paid.
                    prop_assert!(!m.provider_paid, "re-issued a paid reference: {m:?}");
                    m.attempt += 1;
                    m.status = "instructed";
                }
                let attempt = attempt.min(m.attempt);
                let provider_ref = format!("P-{provider}");
                let now = Standing { status: m.status, attempt: m.attempt, provider_ref: m.provider_ref.as_deref() };
                let e = effect(now, Report { status, reason, attempt, provider_ref: Some(&provider_ref) }, MAX);
                match (status, m.status) {
                    (Succeeded, s) if s != "reversed" => m.provider_paid = true,
                    (Reversed, _) if e == Effect::Reverse => m.provider_paid = false,
                    _ => {}
                }
                match e {
                    Effect::Paid => {
                        m.payments += 1;
                        m.provider_ref = Some(provider_ref.clone());
                    }
                    Effect::Fail { .. } | Effect::Reverse => {
                        prop_assert!(m.reserved, "released twice: {m:?} {e:?}");
                        m.reserved = false;
                    }
                    Effect::Incident(_) => m.incidents += 1,
                    _ => {}
                }
                m.status = stored(e, m.status);
                prop_assert!(m.attempt <= MAX);
                prop_assert!(m.payments <= 1, "paid twice without an incident: {m:?}");
                prop_assert_eq!(m.reserved, !matches!(m.status, "failed" | "reversed"), "{:?}", m);
            }
        }
    }
}
