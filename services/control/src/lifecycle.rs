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
mod tests;
