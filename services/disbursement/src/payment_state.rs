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
//!   already given up on;
//! - money is released only when the payment certainly did not go
//!   through: a rejection whose outcome is unknown (a timeout) is asked
//!   again with the same reference only after the status-inquiry window,
//!   and on the last attempt the money stays reserved until the provider
//!   answers (`Hold`).

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
    /// The current attempt's outcome is unknown (its last report was a
    /// timeout): a later answer on it resolves it.
    pub outcome_unknown: bool,
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
    /// Certainly unpaid: re-issue after the backoff as the next attempt.
    Retry,
    /// Outcome unknown: ask again (the next attempt, same reference) only
    /// after the status-inquiry window; the money stays reserved.
    Inquire,
    /// Outcome unknown on the last attempt: nothing more goes out, and the
    /// money stays reserved until the provider answers.
    Hold,
    /// Give up: failed (budget released; a field-verification task when
    /// the provider said why: a permanent code, or retries exhausted).
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

/// Whether the current attempt timed out and nothing has answered it yet.
fn unresolved(now: Standing<'_>) -> bool {
    now.status == "retry_scheduled" && now.outcome_unknown
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
            Some(r) if r.outcome_unknown() && now.attempt < max_attempts => Effect::Inquire,
            Some(r) if r.outcome_unknown() => Effect::Hold,
            Some(r) if r.is_retryable() && now.attempt < max_attempts => Effect::Retry,
            // Permanent, or retryable with no attempt left: either way
            // only a field visit can get the money to the household.
            Some(_) => Effect::Fail { verify: true },
            None => Effect::Fail { verify: false },
        },
        // The answer to an unknown outcome: a certain rejection of the
        // timed-out attempt says it did not go through after all.
        PaymentStatus::Rejected if current && unresolved(now) => match report.reason {
            Some(r) if r.outcome_unknown() => {
                Effect::Ignore("still unknown: the inquiry already waits")
            }
            Some(r) if r.is_retryable() && now.attempt < max_attempts => Effect::Retry,
            Some(_) => Effect::Fail { verify: true },
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
        PaymentStatus::Reversed if current && (open(now.status) || unresolved(now)) => {
            Effect::Reverse
        }
        PaymentStatus::Reversed => {
            Effect::Ignore("only a payment that went through can be reversed, and only once")
        }
    }
}

#[cfg(test)]
mod tests;
