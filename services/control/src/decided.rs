//! Who decided the definition in force, read from the audit trail: the
//! answer an auditor asks of any payment ("on whose authority?"), which
//! `sumud explain` prints beside each household's decision.

use serde::Serialize;

/// The authority behind the definition in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// The revision in force.
    pub revision: i32,
    /// The revision whose budget and response are in force (a rescope
    /// changes neither).
    pub budget_revision: i32,
    /// Who signed the command that put that budget and response in force
    /// (the last approver, when it was approved).
    pub budget_by: String,
    /// Who proposed it, when it waited for approval.
    pub proposed_by: Option<String>,
    /// Everyone who approved it, in order.
    pub approved_by: Vec<String>,
    /// Who last rescoped the crisis (areas, severity, dates) after that.
    pub rescoped_by: Option<String>,
}

/// One audit entry of [`crate::db::audit_trail`], without its time: (kind,
/// principal, revision, outcome).
pub type Entry<'a> = (&'a str, &'a str, i32, &'a str);

/// Replays the trail (oldest first: kind, principal, revision, outcome).
pub fn decided(trail: &[Entry<'_>]) -> Option<Decided> {
    let mut in_force: Option<Decided> = None;
    let mut proposer: Option<String> = None;
    let mut approvals: Vec<String> = Vec::new();
    for &(kind, principal, revision, outcome) in trail {
        match outcome {
            "proposed" | "amendment_proposed" | "proposal_rescoped" => {
                proposer = Some(principal.to_owned());
                approvals.clear();
            }
            "approval_recorded" => approvals.push(principal.to_owned()),
            "rescoped" => {
                // Where, how severe, when: the budget's authority stands.
                if let Some(d) = in_force.as_mut() {
                    d.revision = revision;
                    d.rescoped_by = Some(principal.to_owned());
                }
                proposer = None;
                approvals.clear();
            }
            "activated" | "amended" => {
                let approved = kind == "crisis.approve";
                if approved {
                    approvals.push(principal.to_owned());
                }
                in_force = Some(Decided {
                    revision,
                    budget_revision: revision,
                    budget_by: principal.to_owned(),
                    proposed_by: if approved { proposer.take() } else { None },
                    approved_by: if approved {
                        std::mem::take(&mut approvals)
                    } else {
                        Vec::new()
                    },
                    rescoped_by: None,
                });
                // A direct change sets any pending proposal aside.
                proposer = None;
                approvals.clear();
            }
            _ => {}
        }
    }
    in_force
}

impl Decided {
    /// One sentence for people.
    pub fn sentence(&self) -> String {
        let budget = match &self.proposed_by {
            Some(p) => format!(
                "budget and response of revision {}, proposed by {p} and approved by {}",
                self.budget_revision,
                self.approved_by.join(" and ")
            ),
            None => format!(
                "budget and response of revision {}, signed by {} and applied without approval \
                 (no raise above the four-eyes threshold)",
                self.budget_revision, self.budget_by
            ),
        };
        let scope = self
            .rescoped_by
            .as_ref()
            .map(|r| format!("; areas, severity and dates rescoped by {r}"))
            .unwrap_or_default();
        format!(
            "Definition in force: revision {}: {budget}{scope}.",
            self.revision
        )
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
        assert_eq!((d.revision, d.budget_revision), (2, 2));
        assert_eq!(d.proposed_by.as_deref(), Some("alice"));
        assert_eq!(d.approved_by, ["bob", "carol"]);
        assert!(d.sentence().contains("approved by bob and carol"));
    }

    #[test]
    fn a_rescope_keeps_the_approvers_of_the_budget_it_did_not_change() {
        // The sequence: approved raise, then a CAP Update.
        let trail = [
            ("crisis.declare", "early-warning", 1, "activated"),
            ("crisis.amend", "alice", 1, "amendment_proposed"),
            ("crisis.approve", "bob", 2, "amended"),
            ("crisis.rescope", "early-warning", 3, "rescoped"),
        ];
        let d = decided(&trail).unwrap();
        assert_eq!((d.revision, d.budget_revision), (3, 2));
        assert_eq!(d.proposed_by.as_deref(), Some("alice"));
        assert_eq!(d.approved_by, ["bob"]);
        assert_eq!(d.rescoped_by.as_deref(), Some("early-warning"));
        let s = d.sentence();
        assert!(
            s.contains("approved by bob") && s.contains("rescoped by early-warning"),
            "{s}"
        );
    }

    #[test]
    fn a_direct_amendment_names_its_signer_and_drops_pending_approvals() {
        let trail = [
            ("crisis.declare", "alice", 1, "proposed"),
            ("crisis.approve", "bob", 1, "activated"),
            ("crisis.amend", "alice", 1, "amendment_proposed"),
            ("crisis.approve", "carol", 1, "approval_recorded"),
            ("crisis.amend", "dave", 2, "amended"),
            ("crisis.close", "alice", 2, "closed"),
        ];
        let d = decided(&trail).unwrap();
        assert_eq!((d.revision, d.budget_by.as_str()), (2, "dave"));
        assert_eq!((d.proposed_by, d.approved_by), (None, vec![]));
        assert_eq!(decided(&trail[..2]).unwrap().approved_by, ["bob"]);
    }
}
