//! The eligibility policy for one household, in Rust a reader can follow:
//! who is inside a crisis, who is a top-up (vertical) and who a new
//! enrolment (horizontal), the per-tranche amount, the priority key and the
//! reason text. The expansion applies the same rules set-based in SQL
//! (`db/expand.rs`) for speed; `explain` asks this module, so that what it
//! tells a household is the rule, never a guess, and a test holds the two
//! to the same answers.

use serde::Serialize;
use sumud_shared::playbook::Resolved;

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

/// Judges one household under a crisis revision's resolved rules.
pub fn judge(r: &Resolved, areas: &[String], h: &Facts) -> Verdict {
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
    match judge(r, areas, h) {
        Verdict::OutsideAreas => Redecision::Cancel {
            reason: format!(
                "cancelled: {by} places the household in {}, outside the crisis areas; {STAND}",
                h.area_code
            ),
        },
        Verdict::NotQualified { why } => Redecision::Cancel {
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
        let v = judge(&rules(), &["JO-MN".into()], &household(35.0, &[]));
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
        let v = judge(&rules(), &["JO-MN-01".into()], &household(34.5, &[]));
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
        let v = judge(&rules(), &["JO-MN".into()], &household(80.0, &["NAF-CASH"]));
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
            judge(&rules(), &["JO-AM".into()], &h),
            Verdict::OutsideAreas
        );
        // Registered at governorate level: a crisis naming one district of it
        // does not reach it.
        h.district = None;
        h.area_code = "JO-MN".into();
        assert_eq!(
            judge(&rules(), &["JO-MN-01".into()], &h),
            Verdict::OutsideAreas
        );
    }

    #[test]
    fn without_vertical_expansion_an_enrolled_household_is_told_so() {
        let mut r = rules();
        r.vertical = None;
        r.horizontal = None;
        let v = judge(&r, &["JO-MN".into()], &household(10.0, &["NAF-CASH"]));
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
}
