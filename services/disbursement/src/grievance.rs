//! Grievances, pure and IO-free: what a household may complain about, how
//! it reached us, how a grievance ends, and what the household is told. A
//! grievance is a task with the field tasks' lifecycle (`field_task.rs`:
//! open → assigned → resolved, once), and its answer cites the explanation
//! `sumud explain` gives — the decision, its reason and every payment —
//! so the household hears the real reason, not a form letter.
//! `db/grievances.rs` applies it; docs/field-teams.md describes it.

use crate::field_task::{Step, TaskState};

/// What the household says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// "We were hit and got nothing": not included in the crisis.
    NotIncluded,
    /// "We were paid the wrong amount."
    WrongAmount,
    /// "We were told we were paid, and nothing arrived."
    NotReceived,
}

/// How the complaint reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A call to the hotline.
    Hotline,
    /// A field worker who met the household.
    Field,
}

/// How a grievance ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The decision stands; the answer gives its real reason.
    Explained,
    /// The household is right; the answer says what is being corrected
    /// (a registry correction re-decides its entitlement; a payment is
    /// worked as a verification task).
    Upheld,
    /// The household could not be reached with the answer.
    Unreachable,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// Column and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }

            /// The value named `s`, if it is one.
            pub fn parse(s: &str) -> Option<Self> {
                [$(Self::$v),+].into_iter().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Kind { NotIncluded => "not_included", WrongAmount => "wrong_amount", NotReceived => "not_received" });
names!(Channel { Hotline => "hotline", Field => "field" });
names!(Outcome { Explained => "explained", Upheld => "upheld", Unreachable => "unreachable" });

impl Kind {
    /// The complaint in the household's words, for the answer.
    pub fn complaint(self) -> &'static str {
        match self {
            Kind::NotIncluded => "you were not included in this crisis's assistance",
            Kind::WrongAmount => "you were paid the wrong amount",
            Kind::NotReceived => "a payment did not reach you",
        }
    }
}

/// What answering grievance `id`, standing in `state` (with `current`
/// outcome once resolved), as `wanted` does: once; the same answer again
/// changes nothing, another is refused.
pub fn answering(id: i64, state: TaskState, current: Option<Outcome>, wanted: Outcome) -> Step {
    match (state, current) {
        (TaskState::Open | TaskState::Assigned, _) => Step::Proceed,
        (TaskState::Resolved, Some(done)) if done == wanted => Step::AlreadyDone,
        (TaskState::Resolved, done) => Step::Refused(format!(
            "grievance {id} was already answered as {}; it cannot be answered again as {wanted}",
            done.map_or("(unrecorded)", Outcome::as_str)
        )),
    }
}

/// The answer the household is given: its complaint, the outcome, the
/// explanation's own lines (what `sumud explain` says), and the note.
pub fn answer(kind: Kind, outcome: Outcome, explanation: &[String], note: &str) -> String {
    let verdict = match outcome {
        Outcome::Explained => "The decision stands, for the reasons below.",
        Outcome::Upheld => "You are right: it is being corrected.",
        Outcome::Unreachable => "We could not reach you with this answer.",
    };
    let mut out = format!("You told us {}. {verdict}", kind.complaint());
    if !note.trim().is_empty() {
        out.push_str(&format!(" {}", note.trim()));
    }
    out.push_str("\nWhat `sumud explain` shows:");
    for line in explanation {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for s in ["not_included", "wrong_amount", "not_received"] {
            assert_eq!(Kind::parse(s).unwrap().as_str(), s);
        }
        for s in ["hotline", "field"] {
            assert_eq!(Channel::parse(s).unwrap().as_str(), s);
        }
        for s in ["explained", "upheld", "unreachable"] {
            assert_eq!(Outcome::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(Kind::parse("late"), None);
        assert_eq!(Channel::parse("email"), None);
        assert_eq!(Outcome::parse("closed"), None);
    }

    #[test]
    fn a_grievance_is_answered_once() {
        assert_eq!(
            answering(3, TaskState::Open, None, Outcome::Explained),
            Step::Proceed
        );
        assert_eq!(
            answering(3, TaskState::Assigned, None, Outcome::Upheld),
            Step::Proceed
        );
        assert_eq!(
            answering(
                3,
                TaskState::Resolved,
                Some(Outcome::Upheld),
                Outcome::Upheld
            ),
            Step::AlreadyDone
        );
        assert_eq!(
            answering(3, TaskState::Resolved, Some(Outcome::Upheld), Outcome::Explained),
            Step::Refused(
                "grievance 3 was already answered as upheld; it cannot be answered again as explained".into()
            )
        );
    }

    #[test]
    fn the_answer_quotes_the_complaint_and_every_line_of_the_explanation() {
        let lines = vec![
            "Household H: not eligible.".to_string(),
            "  Why: outside the areas.".into(),
        ];
        let a = answer(
            Kind::NotIncluded,
            Outcome::Explained,
            &lines,
            " visited twice ",
        );
        assert_eq!(
            a,
            "You told us you were not included in this crisis's assistance. The decision stands, \
             for the reasons below. visited twice\nWhat `sumud explain` shows:\n  Household H: not \
             eligible.\n    Why: outside the areas."
        );
    }
}
