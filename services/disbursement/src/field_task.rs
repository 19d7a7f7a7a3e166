//! The field-verification task's lifecycle, pure and IO-free: which
//! states and outcomes there are, what an assignment or a resolution does
//! to a task standing in a given state, and the shape a corrected payment
//! destination must have. `db/tasks.rs` applies the decisions (and the
//! database enforces the same states with CHECKs and a trigger);
//! docs/field-teams.md describes them for people.
//!
//! open → assigned (to a named field worker or team; may be re-assigned)
//! → resolved with an outcome, once:
//! - `details_corrected`: the payment goes out again to the corrected
//!   destination as the next attempt of the same reference;
//! - `ineligible`: the household's later tranches in the crisis stop;
//! - `unreachable`: closed.
//!
//! Resolving a resolved task again with the same outcome changes nothing
//! (a field app may send its answer twice); with another outcome it is
//! refused.

use std::fmt;

use sumud_shared::events::household::Channel;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskState {
    /// Raised, nobody on it yet.
    Open,
    /// A named field worker or team is on it.
    Assigned,
    /// Closed with an outcome; final.
    Resolved,
}

impl TaskState {
    /// Column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Assigned => "assigned",
            TaskState::Resolved => "resolved",
        }
    }

    /// The state named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        [TaskState::Open, TaskState::Assigned, TaskState::Resolved]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// What the field visit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The household gave corrected payment details: pay it again there.
    DetailsCorrected,
    /// The household is not eligible: its later tranches stop.
    Ineligible,
    /// The household could not be found: closed, nothing re-issued.
    Unreachable,
}

impl Outcome {
    /// Column and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::DetailsCorrected => "details_corrected",
            Outcome::Ineligible => "ineligible",
            Outcome::Unreachable => "unreachable",
        }
    }

    /// The outcome named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Outcome::DetailsCorrected,
            Outcome::Ineligible,
            Outcome::Unreachable,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an assignment or a resolution does to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply it.
    Proceed,
    /// Already done exactly so: nothing to change, report success.
    AlreadyDone,
    /// Not allowed; the message says why and what to do.
    Refused(String),
}

/// What assigning task `id`, standing in `state`, to `to` does.
pub fn assignment(id: i64, state: TaskState, current: Option<&str>, to: &str) -> Step {
    if to.trim().is_empty() {
        return Step::Refused("name the field worker or team to assign the task to".into());
    }
    match state {
        TaskState::Open => Step::Proceed,
        TaskState::Assigned if current == Some(to) => Step::AlreadyDone,
        // Re-assigning moves the visit to another worker.
        TaskState::Assigned => Step::Proceed,
        TaskState::Resolved => Step::Refused(format!(
            "task {id} is already resolved; a resolved task is not assigned again"
        )),
    }
}

/// What resolving task `id`, standing in `state` (with `current` outcome
/// once resolved), as `wanted` does.
pub fn resolution(id: i64, state: TaskState, current: Option<Outcome>, wanted: Outcome) -> Step {
    match (state, current) {
        (TaskState::Open | TaskState::Assigned, _) => Step::Proceed,
        (TaskState::Resolved, Some(done)) if done == wanted => Step::AlreadyDone,
        (TaskState::Resolved, done) => Step::Refused(format!(
            "task {id} was already resolved as {}; it cannot be resolved again as {wanted}",
            done.map_or("(unrecorded)", Outcome::as_str)
        )),
    }
}

/// A corrected payment destination, as a field worker supplies it: the
/// channel, the provider and the provider's account token. Tokens only:
/// an account number, a phone number or a name typed into the field is
/// refused, so none of them ever reaches an instruction or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Delivery channel.
    pub channel: Channel,
    /// Provider id, as instructions name it.
    pub provider: String,
    /// The provider's opaque account token (`tok_…`).
    pub account_token: String,
}

/// The prefix of a provider account token.
pub const TOKEN_PREFIX: &str = "tok_";

impl Destination {
    /// Validates a destination typed by a field worker.
    pub fn parse(channel: &str, provider: &str, token: &str) -> Result<Self, String> {
        let channel = Channel::parse(channel).ok_or_else(|| {
            format!("unknown channel {channel:?}: one of e_wallet, bank, cash_pickup")
        })?;
        let provider_ok = (1..=32).contains(&provider.len())
            && provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && !provider.starts_with(['_', '-']);
        if !provider_ok {
            return Err(format!(
                "provider {provider:?} is not a provider id (lower-case letters, digits, _ and -, at most 32)"
            ));
        }
        let body = token.strip_prefix(TOKEN_PREFIX).unwrap_or("");
        let token_ok = (8..=120).contains(&body.len())
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !token_ok {
            // The value itself is not echoed: it may be an account number.
            return Err(format!(
                "the account token must be the provider's token ({TOKEN_PREFIX} then 8 to 120 letters, \
                 digits, _ or -); never an account number, a phone number or a name"
            ));
        }
        Ok(Destination {
            channel,
            provider: provider.to_owned(),
            account_token: token.to_owned(),
        })
    }
}

/// How a resolution is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Re-issue to this destination.
    DetailsCorrected(Destination),
    /// Stop the household's later tranches.
    Ineligible,
    /// Close.
    Unreachable,
}

impl Resolution {
    /// Its outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            Resolution::DetailsCorrected(_) => Outcome::DetailsCorrected,
            Resolution::Ineligible => Outcome::Ineligible,
            Resolution::Unreachable => Outcome::Unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ["open", "assigned", "resolved"] {
            assert_eq!(TaskState::parse(s).unwrap().as_str(), s);
        }
        for s in ["details_corrected", "ineligible", "unreachable"] {
            assert_eq!(Outcome::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(TaskState::parse("closed"), None);
        assert_eq!(Outcome::parse("paid"), None);
    }

    #[test]
    fn an_open_or_assigned_task_is_assigned_and_a_resolved_one_is_not() {
        assert_eq!(
            assignment(1, TaskState::Open, None, "team-north"),
            Step::Proceed
        );
        assert_eq!(
            assignment(1, TaskState::Assigned, Some("team-north"), "team-south"),
            Step::Proceed
        );
        assert_eq!(
            assignment(1, TaskState::Assigned, Some("team-north"), "team-north"),
            Step::AlreadyDone
        );
        assert!(matches!(
            assignment(1, TaskState::Resolved, Some("team-north"), "team-south"),
            Step::Refused(m) if m.contains("already resolved")
        ));
        assert!(matches!(
            assignment(1, TaskState::Open, None, "  "),
            Step::Refused(_)
        ));
    }

    #[test]
    fn a_task_is_resolved_once_again_the_same_changes_nothing_and_another_outcome_is_refused() {
        for state in [TaskState::Open, TaskState::Assigned] {
            assert_eq!(
                resolution(7, state, None, Outcome::Unreachable),
                Step::Proceed
            );
        }
        assert_eq!(
            resolution(
                7,
                TaskState::Resolved,
                Some(Outcome::Unreachable),
                Outcome::Unreachable
            ),
            Step::AlreadyDone
        );
        assert_eq!(
            resolution(
                7,
                TaskState::Resolved,
                Some(Outcome::Unreachable),
                Outcome::Ineligible
            ),
            Step::Refused(
                "task 7 was already resolved as unreachable; it cannot be resolved again as ineligible"
                    .into()
            )
        );
    }

    #[test]
    fn a_destination_takes_tokens_only() {
        let d = Destination::parse("e_wallet", "zain-cash", "tok_00ab12cd34ef5678").unwrap();
        assert_eq!(d.channel, Channel::EWallet);
        assert_eq!(d.provider, "zain-cash");
        // An account number, an IBAN, a phone number, a name: refused,
        // and the refusal does not repeat them.
        for bad in [
            "0123456789012",
            "JO94CBJO0010000000000131000302",
            "+962791234567",
            "Fatima Ahmad",
            "tok_short",
            "tok_with space 123",
        ] {
            let e = Destination::parse("bank", "zain-cash", bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
        assert!(Destination::parse("carrier_pigeon", "p", "tok_00ab12cd34ef5678").is_err());
        assert!(Destination::parse("bank", "Zain Cash", "tok_00ab12cd34ef5678").is_err());
        assert!(Destination::parse("bank", "", "tok_00ab12cd34ef5678").is_err());
    }
}
