//! The crisis state machine, pure: given the stored crisis (if any), a
//! verified command and its signer, what happens — or why nothing may.
//!
//! ```text
//! declare ──(budget ≤ threshold)──▶ active ──amend──▶ active (revision + 1)
//!    └──(budget > threshold)──▶ proposed ──approve (another principal)──▶ active
//! active ──amend raising the budget above the threshold──▶ active + pending amendment
//!                                        └──approve──▶ active (revision + 1)
//! active ──amend applying directly, or rescope──▶ active (revision + 1; a pending amendment is superseded)
//! proposed | active ──close──▶ closed
//! ```
//!
//! An approval names the proposal it approves (its revision and digest);
//! anything else is `stale_approval`, so an approval in flight can never land
//! on a proposal replaced after its signer reviewed it.

use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::control::{CommandClaims, CommandKind};
use sumud_shared::events::crisis::{
    definition_digest, CrisisDefinition, CrisisState, Proposal, CRISIS_ACTIVATED, CRISIS_AMENDED,
    CRISIS_AMENDMENT_PROPOSED, CRISIS_CLOSED, CRISIS_PROPOSED,
};
use sumud_shared::playbook::PlaybookBook;

/// Operator roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May declare and amend.
    Declare,
    /// May approve others' proposals.
    Approve,
    /// May close.
    Close,
    /// May do everything.
    Admin,
}

impl Role {
    /// Every role's name, as stored and typed (`sumud operators add --roles`).
    pub const NAMES: [&'static str; 4] = ["declare", "approve", "close", "admin"];

    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "declare" => Some(Role::Declare),
            "approve" => Some(Role::Approve),
            "close" => Some(Role::Close),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The four-eyes policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Budgets above this (minor units) need approval.
    pub threshold_minor: i64,
    /// Distinct approvers needed, none of them the proposer.
    pub approvals_required: usize,
}

/// A crisis as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Crisis {
    /// Id.
    pub id: String,
    /// State.
    pub state: CrisisState,
    /// Revision in force.
    pub revision: i32,
    /// Definition in force (for a proposed crisis: the proposal).
    pub definition: CrisisDefinition,
    /// Pending declaration or amendment.
    pub pending: Option<CrisisDefinition>,
    /// Who proposed what is pending.
    pub pending_by: Option<String>,
    /// Approvals so far of what is pending.
    pub approvals: Vec<String>,
    /// Who declared it.
    pub declared_by: String,
}

impl Crisis {
    /// What is pending, as an approval must name it.
    pub fn proposal(&self) -> Option<Proposal> {
        let (pending, by) = (self.pending.as_ref()?, self.pending_by.as_ref()?);
        Some(Proposal {
            // A proposed crisis's pending declaration becomes revision 1;
            // a pending amendment the revision after the one in force.
            revision: if self.state == CrisisState::Proposed {
                self.revision
            } else {
                self.revision + 1
            },
            digest: definition_digest(pending),
            proposed_by: by.clone(),
            approvals: self.approvals.clone(),
        })
    }

    /// Drops what is pending, returning it as a superseded proposal.
    fn set_aside(&mut self) -> Option<Proposal> {
        let gone = self.proposal();
        self.pending = None;
        self.pending_by = None;
        self.approvals.clear();
        gone
    }
}

/// The result of a command that may proceed.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The crisis afterwards.
    pub crisis: Crisis,
    /// State before (None for a declaration).
    pub from: Option<CrisisState>,
    /// The lifecycle event to publish, if the transition is visible.
    pub event_type: Option<&'static str>,
    /// Short outcome for the audit trail.
    pub outcome: &'static str,
    /// A pending proposal this transition set aside unapproved.
    pub superseded: Option<Proposal>,
}

fn refuse(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

fn require(roles: &[Role], needed: Role, kind: CommandKind) -> Result<(), Rejection> {
    if roles.contains(&needed) || roles.contains(&Role::Admin) {
        Ok(())
    } else {
        Err(refuse(
            Reason::WrongRole,
            format!("{} needs the {needed:?} role", kind.as_str()),
        ))
    }
}

/// Checks a declared or amended definition for content errors.
pub fn validate(
    def: &CrisisDefinition,
    areas: &AreaCatalog,
    book: &PlaybookBook,
) -> Result<(), Rejection> {
    if def.areas.is_empty() {
        return Err(refuse(
            Reason::InvalidCommand,
            "a crisis needs at least one area",
        ));
    }
    if let Some(a) = def.areas.iter().find(|a| areas.resolve(a).is_none()) {
        return Err(refuse(
            Reason::UnknownArea,
            format!("area code {a:?} is not in the area hierarchy"),
        ));
    }
    if def.budget.minor <= 0 {
        return Err(refuse(
            Reason::InvalidCommand,
            "the budget must be positive",
        ));
    }
    sumud_shared::money::check_currency(&def.budget.currency)
        .map_err(|e| refuse(Reason::InvalidCommand, e))?;
    if def.ends_on < def.starts_on {
        return Err(refuse(
            Reason::InvalidCommand,
            "the end date is before the start date",
        ));
    }
    book.resolve(def)
        .map_err(|e| refuse(Reason::InvalidCommand, e))?;
    Ok(())
}

/// Applies a verified command.
pub fn apply(
    current: Option<&Crisis>,
    claims: &CommandClaims,
    signer: &str,
    roles: &[Role],
    policy: Policy,
) -> Result<Transition, Rejection> {
    let needs_approval = |d: &CrisisDefinition| d.budget.minor > policy.threshold_minor;
    match claims.cmd {
        CommandKind::Declare => {
            require(roles, Role::Declare, claims.cmd)?;
            if current.is_some() {
                return Err(refuse(
                    Reason::InvalidTransition,
                    format!("crisis {} already exists", claims.crisis_id),
                ));
            }
            let def = claims
                .body
                .clone()
                .ok_or_else(|| refuse(Reason::InvalidCommand, "crisis.declare needs a body"))?;
            let proposed = claims.propose || needs_approval(&def);
            Ok(Transition {
                crisis: Crisis {
                    id: claims.crisis_id.clone(),
                    state: if proposed {
                        CrisisState::Proposed
                    } else {
                        CrisisState::Active
                    },
                    revision: 1,
                    pending: proposed.then(|| def.clone()),
                    pending_by: proposed.then(|| signer.to_owned()),
                    definition: def,
                    approvals: Vec::new(),
                    declared_by: signer.to_owned(),
                },
                from: None,
                event_type: Some(if proposed {
                    CRISIS_PROPOSED
                } else {
                    CRISIS_ACTIVATED
                }),
                outcome: if proposed { "proposed" } else { "activated" },
                superseded: None,
            })
        }
        CommandKind::Amend => {
            require(roles, Role::Declare, claims.cmd)?;
            let c = existing(current, claims)?;
            if c.state != CrisisState::Active {
                return Err(refuse(
                    Reason::InvalidTransition,
                    format!(
                        "only an active crisis can be amended; it is {}",
                        c.state.as_str()
                    ),
                ));
            }
            let def = claims
                .body
                .clone()
                .ok_or_else(|| refuse(Reason::InvalidCommand, "crisis.amend needs a body"))?;
            if def.budget.currency != c.definition.budget.currency {
                return Err(refuse(
                    Reason::InvalidCommand,
                    "an amendment cannot change the currency",
                ));
            }
            let mut next = c.clone();
            // Whatever happens, an older pending proposal goes: approving it
            // later would install an older definition over this one.
            let superseded = next.set_aside();
            if needs_approval(&def) && def.budget.minor > c.definition.budget.minor {
                next.pending = Some(def);
                next.pending_by = Some(signer.to_owned());
                Ok(Transition {
                    crisis: next,
                    from: Some(c.state),
                    event_type: Some(CRISIS_AMENDMENT_PROPOSED),
                    outcome: "amendment_proposed",
                    superseded,
                })
            } else {
                next.definition = def;
                next.revision += 1;
                Ok(Transition {
                    crisis: next,
                    from: Some(c.state),
                    event_type: Some(CRISIS_AMENDED),
                    outcome: "amended",
                    superseded,
                })
            }
        }
        CommandKind::Rescope => {
            require(roles, Role::Declare, claims.cmd)?;
            let c = existing(current, claims)?;
            if c.state == CrisisState::Closed {
                return Err(refuse(
                    Reason::InvalidTransition,
                    "a closed crisis cannot be rescoped",
                ));
            }
            let scope = claims
                .scope
                .clone()
                .ok_or_else(|| refuse(Reason::InvalidCommand, "crisis.rescope needs a scope"))?;
            let rescope = |mut d: CrisisDefinition| {
                d.areas = scope.areas.clone();
                d.severity = scope.severity;
                d.starts_on = scope.starts_on;
                d.ends_on = scope.ends_on;
                d
            };
            let mut next = c.clone();
            let superseded = next.set_aside();
            if c.state == CrisisState::Proposed {
                // The declaration still awaits approval: what is proposed
                // changes, so it is proposed anew (approvals so far lapse;
                // approvers must see what they approve).
                let def = rescope(c.pending.clone().unwrap_or_else(|| c.definition.clone()));
                next.definition = def.clone();
                next.pending = Some(def);
                next.pending_by = Some(signer.to_owned());
                return Ok(Transition {
                    crisis: next,
                    from: Some(c.state),
                    event_type: Some(CRISIS_PROPOSED),
                    outcome: "proposal_rescoped",
                    superseded,
                });
            }
            next.definition = rescope(next.definition);
            next.revision += 1;
            Ok(Transition {
                crisis: next,
                from: Some(c.state),
                event_type: Some(CRISIS_AMENDED),
                outcome: "rescoped",
                superseded,
            })
        }
        CommandKind::Approve => {
            require(roles, Role::Approve, claims.cmd)?;
            let c = existing(current, claims)?;
            let (Some(pending), Some(by)) = (&c.pending, &c.pending_by) else {
                return Err(refuse(
                    Reason::InvalidTransition,
                    "nothing is awaiting approval",
                ));
            };
            if c.state == CrisisState::Closed {
                return Err(refuse(Reason::InvalidTransition, "the crisis is closed"));
            }
            let Some(target) = &claims.approves else {
                return Err(refuse(
                    Reason::InvalidCommand,
                    "crisis.approve must name the proposal it approves (approves: revision and digest)",
                ));
            };
            let proposal = c.proposal().expect("pending and pending_by are both set");
            if target.revision != proposal.revision || target.digest != proposal.digest {
                return Err(refuse(
                    Reason::StaleApproval,
                    format!(
                        "this approval is of revision {} {}; what awaits approval is revision {} {} proposed by {}",
                        target.revision, target.digest, proposal.revision, proposal.digest, proposal.proposed_by
                    ),
                ));
            }
            if by == signer {
                return Err(refuse(
                    Reason::FourEyesViolation,
                    "a principal cannot approve their own proposal",
                ));
            }
            if c.approvals.iter().any(|a| a == signer) {
                return Err(refuse(
                    Reason::FourEyesViolation,
                    "this principal has already approved",
                ));
            }
            let mut next = c.clone();
            next.approvals.push(signer.to_owned());
            if next.approvals.len() < policy.approvals_required {
                return Ok(Transition {
                    crisis: next,
                    from: Some(c.state),
                    event_type: None,
                    outcome: "approval_recorded",
                    superseded: None,
                });
            }
            let activating = c.state == CrisisState::Proposed;
            next.definition = pending.clone();
            next.pending = None;
            next.pending_by = None;
            next.approvals.clear();
            if activating {
                next.state = CrisisState::Active;
            } else {
                next.revision += 1;
            }
            Ok(Transition {
                crisis: next,
                from: Some(c.state),
                event_type: Some(if activating {
                    CRISIS_ACTIVATED
                } else {
                    CRISIS_AMENDED
                }),
                outcome: if activating { "activated" } else { "amended" },
                superseded: None,
            })
        }
        CommandKind::OperatorAdd | CommandKind::OperatorRevoke => Err(refuse(
            Reason::InvalidCommand,
            "an operator command is not a crisis command",
        )),
        CommandKind::Close => {
            require(roles, Role::Close, claims.cmd)?;
            let c = existing(current, claims)?;
            if c.state == CrisisState::Closed {
                return Err(refuse(
                    Reason::InvalidTransition,
                    "the crisis is already closed",
                ));
            }
            let mut next = c.clone();
            next.state = CrisisState::Closed;
            // A proposed crisis's pending declaration is what is being
            // called off, not a proposal set aside for another.
            let superseded = next.set_aside().filter(|_| c.state == CrisisState::Active);
            Ok(Transition {
                superseded,
                crisis: next,
                from: Some(c.state),
                event_type: Some(CRISIS_CLOSED),
                // Closing a crisis that never became active calls it off
                // before any money moved.
                outcome: if c.state == CrisisState::Proposed {
                    "cancelled"
                } else {
                    "closed"
                },
            })
        }
    }
}

fn existing<'a>(
    current: Option<&'a Crisis>,
    claims: &CommandClaims,
) -> Result<&'a Crisis, Rejection> {
    current.ok_or_else(|| {
        refuse(
            Reason::UnknownCrisis,
            format!("crisis {} does not exist", claims.crisis_id),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::events::control::{ApprovalTarget, CrisisScope};
    use sumud_shared::events::crisis::{Hazard, Response, Severity};
    use sumud_shared::money::Money;

    const POLICY: Policy = Policy {
        threshold_minor: 1_000_000,
        approvals_required: 1,
    };
    const ALL: &[Role] = &[Role::Admin];

    fn def(budget: i64) -> CrisisDefinition {
        CrisisDefinition {
            title: "Flood".into(),
            hazard: Hazard::Flood,
            severity: Severity::Severe,
            areas: vec!["JO-MN".into()],
            response: Response {
                playbook: "flood-standard".into(),
                overrides: Default::default(),
            },
            budget: Money::new(budget, "JOD").unwrap(),
            starts_on: "2026-12-01".parse().unwrap(),
            ends_on: "2027-01-31".parse().unwrap(),
        }
    }

    fn cmd(cmd: CommandKind, body: Option<CrisisDefinition>) -> CommandClaims {
        CommandClaims {
            approves: None,
            operator: None,
            scope: None,
            propose: false,
            jti: "j".into(),
            iat: 0,
            cmd,
            crisis_id: "C1".into(),
            body,
            note: None,
            trigger: None,
        }
    }

    /// An approval of what `c` has pending, as its signer would have seen it.
    fn approve(c: &Crisis) -> CommandClaims {
        let p = c.proposal().expect("something is pending");
        let mut a = cmd(CommandKind::Approve, None);
        a.approves = Some(ApprovalTarget {
            revision: p.revision,
            digest: p.digest,
        });
        a
    }

    #[test]
    fn an_approval_in_flight_never_lands_on_a_replaced_proposal() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(500_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let small = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Amend, Some(def(2_000_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let bobs = approve(&small.crisis);
        let large = apply(
            Some(&small.crisis),
            &cmd(CommandKind::Amend, Some(def(9_000_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(
            large.superseded.as_ref().map(|p| p.revision),
            Some(2),
            "the replaced proposal is named as superseded"
        );
        let r = apply(Some(&large.crisis), &bobs, "bob", ALL, POLICY);
        assert_eq!(r.unwrap_err().reason, Reason::StaleApproval);
        let unnamed = apply(
            Some(&large.crisis),
            &cmd(CommandKind::Approve, None),
            "bob",
            ALL,
            POLICY,
        );
        assert_eq!(unnamed.unwrap_err().reason, Reason::InvalidCommand);
    }

    #[test]
    fn an_amendment_that_applies_directly_supersedes_what_was_pending() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(500_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let raise = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Amend, Some(def(2_000_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let old = approve(&raise.crisis);
        let cut = apply(
            Some(&raise.crisis),
            &cmd(CommandKind::Amend, Some(def(300_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(cut.outcome, "amended");
        assert_eq!(cut.crisis.pending, None);
        assert!(cut.superseded.is_some());
        let r = apply(Some(&cut.crisis), &old, "bob", ALL, POLICY);
        assert_eq!(r.unwrap_err().reason, Reason::InvalidTransition);
        assert_eq!(cut.crisis.definition.budget.minor, 300_000);
    }

    #[test]
    fn a_rescope_changes_where_how_severe_and_when_but_never_the_money() {
        let mut d = def(800_000);
        d.response.overrides.tranches = Some(3);
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(d)),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let mut r = cmd(CommandKind::Rescope, None);
        r.scope = Some(CrisisScope {
            areas: vec!["JO-IR".into(), "JO-AJ".into()],
            severity: Severity::Extreme,
            starts_on: "2026-12-05".parse().unwrap(),
            ends_on: "2027-02-28".parse().unwrap(),
        });
        let n = apply(Some(&t.crisis), &r, "early-warning", ALL, POLICY).unwrap();
        assert_eq!(n.crisis.revision, 2);
        assert_eq!(n.crisis.definition.areas, ["JO-IR", "JO-AJ"]);
        assert_eq!(n.crisis.definition.severity, Severity::Extreme);
        assert_eq!(n.crisis.definition.budget.minor, 800_000);
        assert_eq!(n.crisis.definition.response.overrides.tranches, Some(3));
        assert_eq!(n.crisis.definition.ends_on.to_string(), "2027-02-28");
    }

    #[test]
    fn a_rescope_of_a_proposed_crisis_is_proposed_anew_and_old_approvals_lapse() {
        let mut declare = cmd(CommandKind::Declare, Some(def(500_000)));
        declare.propose = true;
        let t = apply(None, &declare, "early-warning", ALL, POLICY).unwrap();
        let early = approve(&t.crisis);
        let mut r = cmd(CommandKind::Rescope, None);
        r.scope = Some(CrisisScope {
            areas: vec!["JO-IR".into()],
            severity: Severity::Extreme,
            starts_on: "2026-12-05".parse().unwrap(),
            ends_on: "2027-02-28".parse().unwrap(),
        });
        let n = apply(Some(&t.crisis), &r, "early-warning", ALL, POLICY).unwrap();
        assert_eq!(n.crisis.state, CrisisState::Proposed);
        assert_eq!(n.event_type, Some(CRISIS_PROPOSED));
        assert_eq!(n.crisis.pending.as_ref().unwrap().areas, ["JO-IR"]);
        assert!(n.superseded.is_some());
        let stale = apply(Some(&n.crisis), &early, "bob", ALL, POLICY);
        assert_eq!(stale.unwrap_err().reason, Reason::StaleApproval);
        let ok = apply(Some(&n.crisis), &approve(&n.crisis), "bob", ALL, POLICY).unwrap();
        assert_eq!(ok.crisis.state, CrisisState::Active);
        assert_eq!(ok.crisis.definition.areas, ["JO-IR"]);
    }

    #[test]
    fn a_small_declaration_is_active_at_once() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(500_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(t.crisis.state, CrisisState::Active);
        assert_eq!(t.event_type, Some(CRISIS_ACTIVATED));
    }

    #[test]
    fn a_declaration_asking_to_be_proposed_waits_whatever_its_budget() {
        let mut c = cmd(CommandKind::Declare, Some(def(500_000)));
        c.propose = true;
        let t = apply(None, &c, "early-warning", ALL, POLICY).unwrap();
        assert_eq!(t.crisis.state, CrisisState::Proposed);
        assert_eq!(t.event_type, Some(CRISIS_PROPOSED));
        let closed = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Close, None),
            "early-warning",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(closed.outcome, "cancelled", "called off before it started");
    }

    #[test]
    fn a_large_declaration_needs_another_principal_to_approve() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(5_000_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(t.crisis.state, CrisisState::Proposed);
        let own = apply(Some(&t.crisis), &approve(&t.crisis), "alice", ALL, POLICY);
        assert_eq!(own.unwrap_err().reason, Reason::FourEyesViolation);
        let ok = apply(Some(&t.crisis), &approve(&t.crisis), "bob", ALL, POLICY).unwrap();
        assert_eq!(ok.crisis.state, CrisisState::Active);
        assert_eq!(ok.event_type, Some(CRISIS_ACTIVATED));
    }

    #[test]
    fn the_same_approver_twice_never_counts_twice() {
        let policy = Policy {
            approvals_required: 2,
            ..POLICY
        };
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(5_000_000))),
            "alice",
            ALL,
            policy,
        )
        .unwrap();
        let once = apply(Some(&t.crisis), &approve(&t.crisis), "bob", ALL, policy).unwrap();
        assert_eq!(once.crisis.state, CrisisState::Proposed);
        assert_eq!(once.event_type, None);
        let twice = apply(Some(&once.crisis), &approve(&t.crisis), "bob", ALL, policy);
        assert_eq!(twice.unwrap_err().reason, Reason::FourEyesViolation);
        let carol = apply(
            Some(&once.crisis),
            &approve(&t.crisis),
            "carol",
            ALL,
            policy,
        )
        .unwrap();
        assert_eq!(carol.crisis.state, CrisisState::Active);
    }

    #[test]
    fn an_amendment_raising_the_budget_above_the_threshold_waits_for_approval() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(500_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        let a = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Amend, Some(def(2_000_000))),
            "alice",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(a.event_type, Some(CRISIS_AMENDMENT_PROPOSED));
        assert_eq!(a.crisis.revision, 1);
        assert_eq!(a.crisis.definition.budget.minor, 500_000);
        let ok = apply(Some(&a.crisis), &approve(&a.crisis), "bob", ALL, POLICY).unwrap();
        assert_eq!(ok.crisis.revision, 2);
        assert_eq!(ok.crisis.definition.budget.minor, 2_000_000);
        assert_eq!(ok.event_type, Some(CRISIS_AMENDED));
    }

    #[test]
    fn roles_are_enforced() {
        let r = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(1))),
            "alice",
            &[Role::Approve],
            POLICY,
        );
        assert_eq!(r.unwrap_err().reason, Reason::WrongRole);
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(1))),
            "alice",
            &[Role::Declare],
            POLICY,
        )
        .unwrap();
        let r = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Close, None),
            "alice",
            &[Role::Declare],
            POLICY,
        );
        assert_eq!(r.unwrap_err().reason, Reason::WrongRole);
    }

    #[test]
    fn closed_is_final() {
        let t = apply(
            None,
            &cmd(CommandKind::Declare, Some(def(1))),
            "a",
            ALL,
            POLICY,
        )
        .unwrap();
        let c = apply(
            Some(&t.crisis),
            &cmd(CommandKind::Close, None),
            "a",
            ALL,
            POLICY,
        )
        .unwrap();
        assert_eq!(c.crisis.state, CrisisState::Closed);
        for k in [CommandKind::Close, CommandKind::Amend] {
            let r = apply(Some(&c.crisis), &cmd(k, Some(def(1))), "a", ALL, POLICY);
            assert_eq!(r.unwrap_err().reason, Reason::InvalidTransition);
        }
    }

    #[test]
    fn declarations_with_unknown_areas_or_playbooks_are_invalid() {
        let areas = AreaCatalog::default_catalog();
        let book = PlaybookBook::default_book();
        let mut d = def(1);
        d.areas = vec!["JO-QQ".into()];
        assert_eq!(
            validate(&d, areas, book).unwrap_err().reason,
            Reason::UnknownArea
        );
        let mut d = def(1);
        d.response.playbook = "nope".into();
        assert_eq!(
            validate(&d, areas, book).unwrap_err().reason,
            Reason::InvalidCommand
        );
        assert!(validate(&def(1), areas, book).is_ok());
    }
}
