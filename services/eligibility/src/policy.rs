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
}
