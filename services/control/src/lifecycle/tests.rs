//! Unit tests of `lifecycle.rs`, kept beside it so that the module reads in one sitting.

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
