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
mod tests;
