//! Unit tests of `policy.rs`, kept beside it so that the module reads in one sitting.

use super::*;
use sumud_shared::events::household::VulnerabilityFlag;
use sumud_shared::playbook::Amounts;

fn rules() -> Resolved {
    Resolved {
        playbook: "flood@1".into(),
        programme: Some("NAF-CASH".into()),
        vertical: Some(Amounts {
            flat_minor: 50_000,
            per_member_minor: 0,
            cap_minor: 50_000,
        }),
        max_welfare_score: Some(35.0),
        horizontal: Some(Amounts {
            flat_minor: 20_000,
            per_member_minor: 5_000,
            cap_minor: 60_000,
        }),
        priority_flags: vec![VulnerabilityFlag::Disability],
        tranches: 3,
        interval_days: 30,
        overlap: OverlapRule::TopUpTo,
        household_cap_minor: None,
        referrals: vec![],
    }
}

fn household(score: f64, programmes: &[&str]) -> Facts {
    Facts {
        version: 1,
        area_code: "JO-MN-01-003".into(),
        governorate: "JO-MN".into(),
        district: Some("JO-MN-01".into()),
        members: 5,
        welfare_score: score,
        programmes: programmes.iter().map(|p| p.to_string()).collect(),
        flags: vec!["disability".into()],
    }
}

#[test]
fn a_score_exactly_at_the_threshold_is_not_under_it() {
    let v = judge(
        &rules(),
        &["JO-MN".into()],
        &household(35.0, &[]),
        &Assisted::default(),
    );
    assert_eq!(
        v,
        Verdict::NotQualified {
            why: "it is not enrolled in NAF-CASH; its welfare score 35 is not under the threshold 35 for new enrolment".into()
        }
    );
}

#[test]
fn a_score_just_under_the_threshold_is_enrolled_at_the_capped_amount() {
    // 20,000 + 5 × 5,000 = 45,000 (under the 60,000 cap).
    let v = judge(
        &rules(),
        &["JO-MN-01".into()],
        &household(34.5, &[]),
        &Assisted::default(),
    );
    assert_eq!(
        v,
        Verdict::Qualifies {
            kind: "horizontal",
            amount_minor: 45_000,
            priority: 1,
            reason: "horizontal enrolment: welfare score 34.5 under 35; area JO-MN-01-003 is in the crisis areas; 45000 per tranche for 5 members x 3 tranches".into()
        }
    );
}

#[test]
fn an_enrolled_household_is_topped_up_whatever_its_score() {
    let v = judge(
        &rules(),
        &["JO-MN".into()],
        &household(80.0, &["NAF-CASH"]),
        &Assisted::default(),
    );
    assert!(matches!(
        v,
        Verdict::Qualifies {
            kind: "vertical",
            amount_minor: 50_000,
            ..
        }
    ));
}

#[test]
fn an_area_is_covered_only_by_its_own_codes_not_by_a_prefix_lookalike() {
    let mut h = household(10.0, &[]);
    assert_eq!(
        judge(&rules(), &["JO-AM".into()], &h, &Assisted::default()),
        Verdict::OutsideAreas
    );
    // Registered at governorate level: a crisis naming one district of it
    // does not reach it.
    h.district = None;
    h.area_code = "JO-MN".into();
    assert_eq!(
        judge(&rules(), &["JO-MN-01".into()], &h, &Assisted::default()),
        Verdict::OutsideAreas
    );
}

#[test]
fn without_vertical_expansion_an_enrolled_household_is_told_so() {
    let mut r = rules();
    r.vertical = None;
    r.horizontal = None;
    let v = judge(
        &r,
        &["JO-MN".into()],
        &household(10.0, &["NAF-CASH"]),
        &Assisted::default(),
    );
    assert_eq!(
        v,
        Verdict::NotQualified {
            why: "it is enrolled in NAF-CASH, but this crisis tops up no current beneficiaries; this crisis enrols no new households".into()
        }
    );
}

fn live(kind: &str, amount: i64) -> LiveDecision {
    LiveDecision {
        entitlement_id: format!("C/HH-1/{kind}"),
        household_id: "HH-1".into(),
        kind: kind.into(),
        status: "entitled".into(),
        amount_minor: amount,
        tranches: 3,
        registry_version: 1,
        assisted_minor: 0,
        assisted_by: None,
        partner_minor: 0,
    }
}

#[test]
fn a_redelivered_version_changes_nothing() {
    let mut h = household(10.0, &[]);
    h.area_code = "JO-AM-01-001".into();
    let d = redecide(
        &rules(),
        &["JO-MN".into()],
        &live("horizontal", 45_000),
        &h,
        "e1",
    );
    assert_eq!(d, Redecision::Keep);
}

#[test]
fn a_move_out_of_the_areas_cancels_and_names_the_version() {
    let mut h = household(10.0, &[]);
    h.version = 2;
    h.area_code = "JO-AM-01-001".into();
    h.governorate = "JO-AM".into();
    h.district = Some("JO-AM-01".into());
    let d = redecide(
        &rules(),
        &["JO-MN".into()],
        &live("horizontal", 45_000),
        &h,
        "e2",
    );
    assert_eq!(
        d,
        Redecision::Cancel {
            reason: "cancelled: registry version 2 (event e2) places the household in JO-AM-01-001, outside the crisis areas; tranches already instructed stand".into()
        }
    );
}

#[test]
fn a_bigger_household_is_repriced_from_the_next_tranche() {
    let mut h = household(10.0, &[]);
    h.version = 3;
    h.members = 7; // 20,000 + 7 × 5,000 = 55,000, under the 60,000 cap
    let d = redecide(
        &rules(),
        &["JO-MN".into()],
        &live("horizontal", 45_000),
        &h,
        "e3",
    );
    assert_eq!(
        d,
        Redecision::Reprice {
            amount_minor: 55_000,
            reason: "registry version 3 (event e3): 7 members, 55000 per tranche from the next tranche on (was 45000); tranches already instructed stand".into()
        }
    );
}

#[test]
fn leaving_the_programme_under_the_threshold_switches_the_kind() {
    let mut h = household(10.0, &[]);
    h.version = 2;
    let d = redecide(
        &rules(),
        &["JO-MN".into()],
        &live("vertical", 50_000),
        &h,
        "e4",
    );
    assert!(
        matches!(&d, Redecision::Cancel { reason } if reason.contains("now qualifies as a horizontal expansion instead")),
        "{d:?}"
    );
}

#[test]
fn a_richer_household_is_cancelled_with_the_rule_it_no_longer_meets() {
    let mut h = household(50.0, &[]);
    h.version = 2;
    let d = redecide(
        &rules(),
        &["JO-MN".into()],
        &live("horizontal", 45_000),
        &h,
        "e5",
    );
    assert_eq!(
        d,
        Redecision::Cancel {
            reason: "cancelled: registry version 2 (event e5): it is not enrolled in NAF-CASH; its welfare score 50 is not under the threshold 35 for new enrolment; tranches already instructed stand".into()
        }
    );
}

fn assisted(total: i64) -> Assisted {
    Assisted {
        total_minor: total,
        by: "crisis FL-1".into(),
    }
}

fn with(rule: OverlapRule, cap: Option<i64>) -> Resolved {
    Resolved {
        overlap: rule,
        household_cap_minor: cap,
        ..rules()
    }
}

#[test]
fn top_up_to_pays_only_the_difference_rounded_down() {
    // 3 tranches of 45,000 = 135,000; 100,001 already given leaves
    // 34,999, which is 11,666.33 a tranche: 11,666.
    let r = with(OverlapRule::TopUpTo, None);
    assert_eq!(overlapped(&r, 45_000, 3, 100_001), 11_666);
    assert_eq!(overlapped(&r, 45_000, 3, 0), 45_000);
    assert_eq!(overlapped(&r, 45_000, 3, 135_000), 0);
    let v = judge(
        &r,
        &["JO-MN".into()],
        &household(34.5, &[]),
        &assisted(100_001),
    );
    assert_eq!(
        v,
        Verdict::Qualifies {
            kind: "horizontal",
            amount_minor: 11_666,
            priority: 1,
            reason: "horizontal enrolment: welfare score 34.5 under 35; area JO-MN-01-003 is in the crisis areas; 45000 per tranche for 5 members x 3 tranches; reduced to 11666 per tranche: crisis FL-1 already gave 100001 in an overlapping period (overlap rule top_up_to)".into()
        }
    );
}

#[test]
fn skip_pays_nothing_to_a_household_already_assisted_and_says_by_whom() {
    let r = with(OverlapRule::Skip, None);
    assert_eq!(overlapped(&r, 45_000, 3, 0), 45_000);
    let v = judge(&r, &["JO-MN".into()], &household(34.5, &[]), &assisted(1));
    assert_eq!(
        v,
        Verdict::AlreadyAssisted {
            why: "it qualifies for 45000 per tranche as a horizontal expansion, but crisis FL-1 already gave 1 in an overlapping period and overlap rule skip leaves nothing to pay".into()
        }
    );
}

#[test]
fn stack_pays_both_up_to_the_household_cap() {
    // Cap 200,000 over the period, 110,000 already given: 90,000 left,
    // 30,000 a tranche, under the 45,000 priced.
    let r = with(OverlapRule::Stack, Some(200_000));
    assert_eq!(overlapped(&r, 45_000, 3, 110_000), 30_000);
    assert_eq!(overlapped(&r, 45_000, 3, 0), 45_000);
    assert_eq!(overlapped(&r, 45_000, 3, 250_000), 0);
    assert_eq!(
        overlapped(&with(OverlapRule::Stack, None), 45_000, 3, 1 << 40),
        45_000
    );
}

#[test]
fn a_redecision_keeps_the_overlap_it_was_decided_against() {
    // Decided as a top-up of 15,000 against 90,000 given elsewhere; the
    // household grows to 7 members (55,000 priced): 3 × 55,000 −
    // 90,000 = 75,000, 25,000 a tranche.
    let r = with(OverlapRule::TopUpTo, None);
    let mut h = household(10.0, &[]);
    h.version = 2;
    h.members = 7;
    let mut l = live("horizontal", 15_000);
    l.assisted_minor = 90_000;
    l.assisted_by = Some("crisis FL-1".into());
    let d = redecide(&r, &["JO-MN".into()], &l, &h, "e6");
    assert!(
        matches!(
            &d,
            Redecision::Reprice {
                amount_minor: 25_000,
                ..
            }
        ),
        "{d:?}"
    );
}
