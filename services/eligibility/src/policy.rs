//! The eligibility policy for one household, in Rust a reader can follow:
//! who is inside a crisis, who is a top-up (vertical) and who a new
//! enrolment (horizontal), the per-tranche amount, the priority key and the
//! reason text, and what the overlap rule leaves of it when another crisis
//! already assists the household in the same period. The expansion applies
//! the same rules set-based in SQL (`db/expand.rs`) for speed — the overlap
//! arithmetic and its reason are rendered into that SQL from here, once;
//! `explain` asks this module, so that what it tells a household is the
//! rule, never a guess, and a test holds the two to the same answers.

use serde::Serialize;
use sumud_shared::playbook::{OverlapRule, Resolved};

use crate::db::WAITLISTED;

/// What the policy reads of a household: its current registry record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// Registry record version.
    pub version: i64,
    /// Finest area code.
    pub area_code: String,
    /// Governorate code.
    pub governorate: String,
    /// District code, when registered at district level or finer.
    pub district: Option<String>,
    /// Household size.
    pub members: i32,
    /// Welfare score (lower is poorer).
    pub welfare_score: f64,
    /// Regular programmes the household is enrolled in.
    pub programmes: Vec<String>,
    /// Vulnerability flags.
    pub flags: Vec<String>,
}

/// The policy's answer for one household in one crisis revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// None of the household's area codes is one the crisis names.
    OutsideAreas,
    /// Inside the areas, but neither a top-up nor under the threshold.
    NotQualified {
        /// Why, in words.
        why: String,
    },
    /// It would qualify, but the overlap rule leaves nothing to pay: other
    /// assistance in an overlapping period already covers it.
    AlreadyAssisted {
        /// Why, in words, naming who assisted and how much.
        why: String,
    },
    /// The household qualifies.
    Qualifies {
        /// `vertical` or `horizontal`.
        kind: &'static str,
        /// Per-tranche amount in minor units.
        amount_minor: i64,
        /// Number of the crisis's priority flags the household holds.
        priority: i32,
        /// The reason an entitled decision records.
        reason: String,
    },
}

/// Whether the crisis naming `areas` covers a household registered at
/// these codes: its governorate, district or finest area is named.
pub fn inside(areas: &[String], h: &Facts) -> bool {
    areas
        .iter()
        .any(|a| *a == h.governorate || Some(a) == h.district.as_ref() || *a == h.area_code)
}

/// Assistance a household already holds for a period overlapping the
/// crisis's own, from other crises: what the overlap rule weighs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Assisted {
    /// Total over those periods, minor units (0 = none).
    pub total_minor: i64,
    /// Who gave it, as `crisis <id>` entries in id order, comma-separated.
    pub by: String,
}

/// The per-tranche amount this crisis pays a household priced at `amount`
/// over `tranches`, once the overlap rule and the household cap have
/// weighed `assisted` (the total it already holds for an overlapping
/// period). Rounds down: a reduction never pays a minor unit too many.
pub fn overlapped(r: &Resolved, amount: i64, tranches: i64, assisted: i64) -> i64 {
    let tranches = tranches.max(1);
    let after_rule = match r.overlap {
        OverlapRule::Skip if assisted > 0 => 0,
        OverlapRule::TopUpTo => (amount * tranches - assisted).max(0) / tranches,
        OverlapRule::Skip | OverlapRule::Stack => amount,
    };
    match r.household_cap_minor {
        Some(cap) => after_rule.min((cap - assisted).max(0) / tranches),
        None => after_rule,
    }
}

/// [`overlapped`] as a SQL expression over the columns or parameters named,
/// `greatest` and `least` being the dialect's two-argument maximum and
/// minimum. The rule and cap come from the playbook, never from a message,
/// and are written in as literals.
pub fn overlapped_sql(
    r: &Resolved,
    (greatest, least): (&str, &str),
    amount: &str,
    tranches: &str,
    assisted: &str,
) -> String {
    let after_rule = match r.overlap {
        OverlapRule::Skip => format!("(CASE WHEN {assisted} > 0 THEN 0 ELSE {amount} END)"),
        OverlapRule::TopUpTo => {
            format!("({greatest}({amount} * {tranches} - {assisted}, 0) / {tranches})")
        }
        OverlapRule::Stack => amount.to_owned(),
    };
    match r.household_cap_minor {
        Some(cap) => {
            format!("{least}({after_rule}, {greatest}({cap} - {assisted}, 0) / {tranches})")
        }
        None => after_rule,
    }
}

/// The words the overlap rule adds to a reduced decision's reason.
fn overlap_words(r: &Resolved) -> String {
    match r.household_cap_minor {
        Some(cap) => format!("overlap rule {}, household cap {cap}", r.overlap.as_str()),
        None => format!("overlap rule {}", r.overlap.as_str()),
    }
}

/// What a decision's reason says when the overlap rule reduced its amount
/// from `amount` to `paid` ("" when it did not).
pub fn overlap_reason(r: &Resolved, amount: i64, paid: i64, assisted: &Assisted) -> String {
    if paid == amount {
        String::new()
    } else if assisted.total_minor > 0 {
        format!(
            "; reduced to {paid} per tranche: {} already gave {} in an overlapping period ({})",
            assisted.by,
            assisted.total_minor,
            overlap_words(r)
        )
    } else {
        format!(
            "; reduced to {paid} per tranche by the household cap of {} per period",
            r.household_cap_minor.unwrap_or_default()
        )
    }
}

/// [`overlap_reason`] as a SQL expression over the columns named.
pub fn overlap_reason_sql(r: &Resolved, amount: &str, paid: &str, total: &str, by: &str) -> String {
    let words = overlap_words(r);
    // Without a cap, nothing but assistance can reduce an amount.
    let capped = match r.household_cap_minor {
        Some(cap) => format!(
            "'; reduced to ' || {paid} || ' per tranche by the household cap of {cap} per period'"
        ),
        None => "''".to_owned(),
    };
    format!(
        "(CASE WHEN {paid} = {amount} THEN '' \
               WHEN {total} > 0 THEN '; reduced to ' || {paid} || ' per tranche: ' || {by} \
                    || ' already gave ' || {total} || ' in an overlapping period ({words})' \
               ELSE {capped} END)"
    )
}

/// Judges one household under a crisis revision's resolved rules, given
/// the assistance it already holds for an overlapping period.
pub fn judge(r: &Resolved, areas: &[String], h: &Facts, assisted: &Assisted) -> Verdict {
    match judge_alone(r, areas, h) {
        Verdict::Qualifies {
            kind,
            amount_minor,
            priority,
            reason,
        } => {
            let paid = overlapped(r, amount_minor, r.tranches.into(), assisted.total_minor);
            if paid == 0 {
                return Verdict::AlreadyAssisted {
                    why: format!(
                        "it qualifies for {amount_minor} per tranche as a {kind} expansion, but {} \
                         already gave {} in an overlapping period and {} leaves nothing to pay",
                        assisted.by,
                        assisted.total_minor,
                        overlap_words(r)
                    ),
                };
            }
            Verdict::Qualifies {
                kind,
                amount_minor: paid,
                priority,
                reason: format!(
                    "{reason}{}",
                    overlap_reason(r, amount_minor, paid, assisted)
                ),
            }
        }
        other => other,
    }
}

/// [`judge`] before the overlap rule: the household on its own.
pub fn judge_alone(r: &Resolved, areas: &[String], h: &Facts) -> Verdict {
    if !inside(areas, h) {
        return Verdict::OutsideAreas;
    }
    let enrolled = r
        .programme
        .as_ref()
        .is_some_and(|p| h.programmes.contains(p));
    let priority = r
        .priority_flags
        .iter()
        .filter(|f| h.flags.iter().any(|g| g == f.as_str()))
        .count() as i32;
    let tail = |amount: i64| {
        format!(
            "; area {} is in the crisis areas; {amount} per tranche for {} members x {} tranches",
            h.area_code, h.members, r.tranches
        )
    };
    if let (true, Some(v)) = (enrolled, &r.vertical) {
        let amount = v.for_members(h.members);
        return Verdict::Qualifies {
            kind: "vertical",
            amount_minor: amount,
            priority,
            reason: format!(
                "vertical top-up: enrolled in {}{}",
                r.programme.as_deref().unwrap_or_default(),
                tail(amount)
            ),
        };
    }
    match (&r.horizontal, r.max_welfare_score) {
        (Some(hz), Some(t)) if h.welfare_score < t => {
            let amount = hz.for_members(h.members);
            Verdict::Qualifies {
                kind: "horizontal",
                amount_minor: amount,
                priority,
                reason: format!(
                    "horizontal enrolment: welfare score {} under {t}{}",
                    h.welfare_score,
                    tail(amount)
                ),
            }
        }
        (Some(_), Some(t)) => Verdict::NotQualified {
            why: format!(
                "{}; its welfare score {} is not under the threshold {t} for new enrolment",
                not_a_top_up(r, enrolled),
                h.welfare_score
            ),
        },
        _ => Verdict::NotQualified {
            why: format!(
                "{}; this crisis enrols no new households",
                not_a_top_up(r, enrolled)
            ),
        },
    }
}

/// Why a household is not topped up, in words.
fn not_a_top_up(r: &Resolved, enrolled: bool) -> String {
    match (&r.programme, &r.vertical, enrolled) {
        (Some(p), Some(_), _) => format!("it is not enrolled in {p}"),
        (Some(p), None, true) => {
            format!("it is enrolled in {p}, but this crisis tops up no current beneficiaries")
        }
        _ => "this crisis tops up no current beneficiaries".to_owned(),
    }
}

/// The reason a waitlisted decision records, from an entitled one's.
pub fn waitlisted(reason: &str) -> String {
    format!("{reason}{WAITLISTED}")
}

/// A live decision (entitled or waitlisted) as a registry change finds it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LiveDecision {
    /// `<crisis>/<household>/<kind>`.
    pub entitlement_id: String,
    /// Household.
    pub household_id: String,
    /// `vertical` or `horizontal`.
    pub kind: String,
    /// `entitled` or `waitlisted`.
    pub status: String,
    /// Per-tranche amount, minor units.
    pub amount_minor: i64,
    /// Number of tranches.
    pub tranches: i32,
    /// Registry record version it was decided on.
    pub registry_version: i64,
    /// Overlapping assistance it was decided against, minor units.
    pub assisted_minor: i64,
    /// Who gave that assistance.
    pub assisted_by: Option<String>,
    /// Partner agencies' part of `assisted_minor`.
    pub partner_minor: i64,
}

/// What a new registry record does to a live decision. Tranches already
/// instructed stand whatever the answer: only future tranches follow it.
#[derive(Debug, Clone, PartialEq)]
pub enum Redecision {
    /// Same kind, same amount: nothing to change.
    Keep,
    /// The household no longer qualifies, or now qualifies as the other
    /// kind (the expansion then decides that one): cancel, saying why.
    Cancel {
        /// The reason recorded.
        reason: String,
    },
    /// Same kind, another amount from the next tranche on (a raise of an
    /// entitled decision only if the budget reaches it).
    Reprice {
        /// The new per-tranche amount.
        amount_minor: i64,
        /// The reason recorded.
        reason: String,
    },
}

/// Re-decides a live decision on the household's new registry record,
/// `event_id` being the registry event that set it.
pub fn redecide(
    r: &Resolved,
    areas: &[String],
    live: &LiveDecision,
    h: &Facts,
    event_id: &str,
) -> Redecision {
    if h.version == live.registry_version {
        return Redecision::Keep;
    }
    let by = format!("registry version {} (event {event_id})", h.version);
    const STAND: &str = "tranches already instructed stand";
    let assisted = Assisted {
        total_minor: live.assisted_minor,
        by: live.assisted_by.clone().unwrap_or_default(),
    };
    match judge(r, areas, h, &assisted) {
        Verdict::OutsideAreas => Redecision::Cancel {
            reason: format!(
                "cancelled: {by} places the household in {}, outside the crisis areas; {STAND}",
                h.area_code
            ),
        },
        Verdict::NotQualified { why } | Verdict::AlreadyAssisted { why } => Redecision::Cancel {
            reason: format!("cancelled: {by}: {why}; {STAND}"),
        },
        Verdict::Qualifies { kind, .. } if kind != live.kind => Redecision::Cancel {
            reason: format!(
                "cancelled: {by}: the household now qualifies as a {kind} expansion instead; {STAND}"
            ),
        },
        Verdict::Qualifies { amount_minor, .. } if amount_minor == live.amount_minor => {
            Redecision::Keep
        }
        Verdict::Qualifies { amount_minor, .. } => Redecision::Reprice {
            amount_minor,
            reason: format!(
                "{by}: {} members, {amount_minor} per tranche from the next tranche on (was {}); {STAND}",
                h.members, live.amount_minor
            ),
        },
    }
}

#[cfg(test)]
mod tests {
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
}
