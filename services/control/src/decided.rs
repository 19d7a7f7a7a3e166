//! Who decided the definition in force, read from the audit trail: the
//! answer an auditor asks of any payment ("on whose authority?"), which
//! `sumud explain` prints beside each household's decision.

use serde::Serialize;

/// The authority behind the definition in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// The revision in force.
    pub revision: i32,
    /// Who signed the command that put it in force (the last approver,
    /// when it was approved).
    pub applied_by: String,
    /// Who proposed it, when it waited for approval.
    pub proposed_by: Option<String>,
    /// Everyone who approved it, in order.
    pub approved_by: Vec<String>,
}

/// One audit entry of [`crate::db::audit_trail`], without its time: (kind,
/// principal, revision, outcome).
pub type Entry<'a> = (&'a str, &'a str, i32, &'a str);

/// Replays the trail (oldest first: kind, principal, revision, outcome).
pub fn decided(trail: &[Entry<'_>]) -> Option<Decided> {
    let mut in_force = None;
    let mut proposer: Option<String> = None;
    let mut approvals: Vec<String> = Vec::new();
    for &(kind, principal, revision, outcome) in trail {
        match outcome {
            "proposed" | "amendment_proposed" => {
                proposer = Some(principal.to_owned());
                approvals.clear();
            }
            "approval_recorded" => approvals.push(principal.to_owned()),
            "activated" | "amended" | "rescoped" => {
                let approved = kind == "crisis.approve";
                if approved {
                    approvals.push(principal.to_owned());
                }
                in_force = Some(Decided {
                    revision,
                    applied_by: principal.to_owned(),
                    proposed_by: if approved { proposer.take() } else { None },
                    approved_by: if approved {
                        std::mem::take(&mut approvals)
                    } else {
                        Vec::new()
                    },
                });
                if !approved {
                    // A direct change sets any pending proposal aside.
                    proposer = None;
                    approvals.clear();
                }
            }
            _ => {}
        }
    }
    in_force
}

impl Decided {
    /// One sentence for people.
    pub fn sentence(&self) -> String {
        match &self.proposed_by {
            Some(p) => format!(
                "Definition in force: revision {}, proposed by {p}, approved by {}.",
                self.revision,
                self.approved_by.join(" and ")
            ),
            None => format!(
                "Definition in force: revision {}, signed by {} (within the four-eyes threshold, no approval needed).",
                self.revision, self.applied_by
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_approvers_of_the_revision_in_force_are_named() {
        // The demo's trail: a rule declares, an operator proposes a raise,
        // two approve it.
        let trail = [
            ("crisis.declare", "early-warning", 1, "activated"),
            ("crisis.amend", "alice", 1, "amendment_proposed"),
            ("crisis.approve", "bob", 1, "approval_recorded"),
            ("crisis.approve", "carol", 2, "amended"),
        ];
        let d = decided(&trail).unwrap();
        assert_eq!(d.revision, 2);
        assert_eq!(d.proposed_by.as_deref(), Some("alice"));
        assert_eq!(d.approved_by, ["bob", "carol"]);
        assert!(d.sentence().contains("approved by bob and carol"));
    }

    #[test]
    fn a_direct_change_after_an_approval_needs_no_approvers_and_drops_the_pending_ones() {
        let trail = [
            ("crisis.declare", "alice", 1, "proposed"),
            ("crisis.approve", "bob", 1, "activated"),
            ("crisis.amend", "alice", 1, "amendment_proposed"),
            ("crisis.approve", "bob", 1, "approval_recorded"),
            ("crisis.rescope", "early-warning", 2, "rescoped"),
            ("crisis.close", "alice", 2, "closed"),
        ];
        let d = decided(&trail).unwrap();
        assert_eq!((d.revision, d.applied_by.as_str()), (2, "early-warning"));
        assert_eq!((d.proposed_by, d.approved_by), (None, vec![]));
        assert_eq!(decided(&trail[..2]).unwrap().approved_by, ["bob"]);
    }
}
