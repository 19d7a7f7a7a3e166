//! Playbooks: the pre-agreed response to a kind of shock, as data
//! (`shared/data/playbooks.json`, validated at load). A crisis names a
//! playbook and may override its figures; severity scales amounts and relaxes
//! the enrolment threshold, so a larger shock means a larger response without
//! code changes.
//!
//! Control validates playbook names at declaration; eligibility and
//! `sumud simulate` resolve them the same way through [`PlaybookBook::resolve`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::events::crisis::{CrisisDefinition, Hazard, Severity};
use crate::events::household::VulnerabilityFlag;

const DEFAULT_PLAYBOOKS: &str = include_str!("../data/playbooks.json");

/// The playbook file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookBook {
    /// Version of the reviewed set; recorded in every decision.
    pub version: String,
    /// The playbooks.
    pub playbooks: Vec<Playbook>,
}

/// One response template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Id a declaration refers to.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Hazards it is meant for.
    pub hazards: Vec<Hazard>,
    /// Top-up of existing beneficiaries.
    #[serde(default)]
    pub vertical: Option<Vertical>,
    /// New enrolment under a relaxed threshold.
    #[serde(default)]
    pub horizontal: Option<Horizontal>,
    /// Flags that move a household up the priority order.
    #[serde(default)]
    pub priority_flags: Vec<VulnerabilityFlag>,
    /// Number of tranches.
    pub tranches: u32,
    /// Days between tranches.
    pub interval_days: u32,
    /// Amount multiplier by severity (missing = 1.0).
    #[serde(default)]
    pub severity_amount_factor: BTreeMap<Severity, f64>,
    /// Points added to the enrolment threshold by severity (missing = 0).
    #[serde(default)]
    pub severity_threshold_bonus: BTreeMap<Severity, f64>,
    /// What this response does for a household already assisted in an
    /// overlapping period (missing = `top_up_to`, no household cap).
    #[serde(default)]
    pub overlap: Overlap,
    /// Social services a household is referred to beside cash, as data.
    #[serde(default)]
    pub referrals: Vec<ReferralRule>,
}

/// A referral beside cash: every household of the crisis areas whose
/// registry record carries all of `flags` is referred to `service`, which
/// agency `provider` gives, whether or not it is entitled to cash (a
/// social worker's need is not a welfare score).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralRule {
    /// The service, lower-case (e.g. `rehabilitation`); part of the
    /// referral id, so one per playbook.
    pub service: String,
    /// The agency that provides it: a partner agency whose registered keys
    /// alone may acknowledge (`sumud partners keys add --agency`).
    pub provider: String,
    /// The flags a household must all carry (at least one).
    pub flags: Vec<VulnerabilityFlag>,
}

/// What a response does for a household that another crisis (or a partner
/// agency) already assists in a period overlapping this crisis's: the
/// cash working group's rule, as data, so that the same need is never paid
/// twice unless a playbook says the needs differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapRule {
    /// Already assisted: this crisis pays the household nothing.
    Skip,
    /// Pay only what lifts the household's total for the period up to this
    /// crisis's entitlement (the difference, if any). The default: it never
    /// pays one need twice.
    #[default]
    TopUpTo,
    /// Both are paid in full: the needs differ (a flood and a price shock).
    Stack,
}

impl OverlapRule {
    /// The name in playbooks, overrides and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapRule::Skip => "skip",
            OverlapRule::TopUpTo => "top_up_to",
            OverlapRule::Stack => "stack",
        }
    }
}

/// A playbook's overlap rule and its per-household cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlap {
    /// The rule.
    #[serde(default)]
    pub rule: OverlapRule,
    /// The most one household may receive over a crisis's period from all
    /// overlapping assistance together, this crisis's included, minor units.
    #[serde(default)]
    pub household_cap_minor: Option<i64>,
}

/// Vertical expansion figures (per tranche, minor units).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vertical {
    /// The regular programme whose beneficiaries are topped up.
    pub programme: String,
    /// Flat amount.
    pub flat_minor: i64,
    /// Amount per member.
    pub per_member_minor: i64,
    /// Per-household cap.
    pub cap_minor: i64,
}

/// Horizontal expansion figures (per tranche, minor units).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Horizontal {
    /// Households scoring below this are enrolled.
    pub max_welfare_score: f64,
    /// Flat amount.
    pub flat_minor: i64,
    /// Amount per member.
    pub per_member_minor: i64,
    /// Per-household cap.
    pub cap_minor: i64,
}

/// Amounts of one expansion kind after severity and overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amounts {
    /// Flat amount per tranche.
    pub flat_minor: i64,
    /// Per-member amount per tranche.
    pub per_member_minor: i64,
    /// Per-household cap per tranche.
    pub cap_minor: i64,
}

impl Amounts {
    /// The per-tranche amount for a household of `members`.
    pub fn for_members(&self, members: i32) -> i64 {
        (self.flat_minor + self.per_member_minor * i64::from(members)).min(self.cap_minor)
    }
}

/// Everything eligibility needs, fully resolved for one crisis revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// `<playbook id>@<file version>`.
    pub playbook: String,
    /// Programme of existing beneficiaries, if vertical expansion applies.
    pub programme: Option<String>,
    /// Vertical amounts.
    pub vertical: Option<Amounts>,
    /// Horizontal threshold, if horizontal expansion applies.
    pub max_welfare_score: Option<f64>,
    /// Horizontal amounts.
    pub horizontal: Option<Amounts>,
    /// Priority flags in order.
    pub priority_flags: Vec<VulnerabilityFlag>,
    /// Number of tranches.
    pub tranches: u32,
    /// Days between tranches.
    pub interval_days: u32,
    /// What this crisis does for a household already assisted in an
    /// overlapping period.
    pub overlap: OverlapRule,
    /// Per-household cap over the period on all overlapping assistance
    /// together, minor units.
    pub household_cap_minor: Option<i64>,
    /// Social-service referrals beside cash.
    pub referrals: Vec<ReferralRule>,
}

static DEFAULT: LazyLock<PlaybookBook> = LazyLock::new(|| {
    PlaybookBook::from_json(DEFAULT_PLAYBOOKS).expect("shipped playbooks are valid")
});

impl PlaybookBook {
    /// The shipped playbooks.
    pub fn default_book() -> &'static PlaybookBook {
        &DEFAULT
    }

    /// Parses and validates a playbook file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let book: PlaybookBook = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for p in &book.playbooks {
            if p.vertical.is_none() && p.horizontal.is_none() {
                return Err(format!(
                    "playbook {} has neither vertical nor horizontal expansion",
                    p.id
                ));
            }
            // The bounds a crisis override has (crisis.event schema); the
            // entitlement contract carries the same.
            if !(1..=24).contains(&p.tranches) {
                return Err(format!(
                    "playbook {} has {} tranches; 1 to 24 are allowed",
                    p.id, p.tranches
                ));
            }
            if p.interval_days > 366 {
                return Err(format!(
                    "playbook {} spaces tranches {} days apart; at most 366 are allowed",
                    p.id, p.interval_days
                ));
            }
            let amounts = p
                .vertical
                .iter()
                .map(|v| (v.flat_minor, v.per_member_minor, v.cap_minor))
                .chain(
                    p.horizontal
                        .iter()
                        .map(|h| (h.flat_minor, h.per_member_minor, h.cap_minor)),
                );
            for (flat, per, cap) in amounts {
                if flat < 0 || per < 0 || cap <= 0 {
                    return Err(format!("playbook {} has a negative amount or no cap", p.id));
                }
            }
            if p.overlap.household_cap_minor.is_some_and(|c| c <= 0) {
                return Err(format!(
                    "playbook {} has a household cap that is not positive",
                    p.id
                ));
            }
            let mut services = std::collections::BTreeSet::new();
            for r in &p.referrals {
                let well_named = !r.service.is_empty()
                    && r.service.len() <= 32
                    && r.service.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !well_named || !services.insert(r.service.as_str()) {
                    return Err(format!(
                        "playbook {} names referral service {:?} twice or not as 1 to 32 \
                         lower-case letters, digits, _ or -",
                        p.id, r.service
                    ));
                }
                if r.flags.is_empty() || r.provider.trim().is_empty() {
                    return Err(format!(
                        "playbook {}'s referral to {} needs a provider and at least one flag",
                        p.id, r.service
                    ));
                }
            }
            if p.severity_amount_factor.values().any(|f| *f <= 0.0) {
                return Err(format!(
                    "playbook {} has a non-positive severity factor",
                    p.id
                ));
            }
        }
        Ok(book)
    }

    /// Finds a playbook by id.
    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.id == id)
    }

    /// Resolves the response of a crisis definition: playbook figures, scaled
    /// by severity, then the crisis's own overrides.
    pub fn resolve(&self, def: &CrisisDefinition) -> Result<Resolved, String> {
        let p = self
            .get(&def.response.playbook)
            .ok_or_else(|| format!("unknown playbook {:?}", def.response.playbook))?;
        let o = &def.response.overrides;
        let factor = p
            .severity_amount_factor
            .get(&def.severity)
            .copied()
            .unwrap_or(1.0);
        let bonus = p
            .severity_threshold_bonus
            .get(&def.severity)
            .copied()
            .unwrap_or(0.0);
        let scale = |v: i64| (v as f64 * factor).round() as i64;
        let vertical = p.vertical.as_ref().map(|v| Amounts {
            flat_minor: o.vertical_flat_minor.unwrap_or(scale(v.flat_minor)),
            per_member_minor: o
                .vertical_per_member_minor
                .unwrap_or(scale(v.per_member_minor)),
            cap_minor: scale(v.cap_minor).max(o.vertical_flat_minor.unwrap_or(0)),
        });
        let horizontal = p.horizontal.as_ref().map(|h| Amounts {
            flat_minor: o.horizontal_flat_minor.unwrap_or(scale(h.flat_minor)),
            per_member_minor: o
                .horizontal_per_member_minor
                .unwrap_or(scale(h.per_member_minor)),
            cap_minor: scale(h.cap_minor).max(o.horizontal_flat_minor.unwrap_or(0)),
        });
        // A response that pays nothing is no response: an entitlement of 0
        // can never be instructed (the instructions' CHECK refuses it on
        // every pass), so it is refused here, where control judges a
        // declaration or amendment (`invalid_command`).
        for (kind, a) in [("vertical", &vertical), ("horizontal", &horizontal)] {
            if let Some(a) = a {
                if a.cap_minor <= 0 || (a.flat_minor <= 0 && a.per_member_minor <= 0) {
                    return Err(format!(
                        "the {kind} response of playbook {} with these overrides pays nothing \
                         (flat {}, per member {}, cap {}): give it a positive amount",
                        p.id, a.flat_minor, a.per_member_minor, a.cap_minor
                    ));
                }
            }
        }
        if o.household_cap_minor.is_some_and(|c| c <= 0) {
            return Err(
                "the household cap on overlapping assistance must be positive: give it a \
                 positive amount or leave it out"
                    .to_owned(),
            );
        }
        Ok(Resolved {
            playbook: format!("{}@{}", p.id, self.version),
            programme: p.vertical.as_ref().map(|v| v.programme.clone()),
            vertical,
            max_welfare_score: p.horizontal.as_ref().map(|h| {
                o.max_welfare_score
                    .unwrap_or((h.max_welfare_score + bonus).min(100.0))
            }),
            horizontal,
            priority_flags: p.priority_flags.clone(),
            tranches: o.tranches.unwrap_or(p.tranches).max(1),
            interval_days: o.interval_days.unwrap_or(p.interval_days),
            overlap: o.overlap.unwrap_or(p.overlap.rule),
            household_cap_minor: o.household_cap_minor.or(p.overlap.household_cap_minor),
            referrals: p.referrals.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::crisis::{Response, ResponseOverrides};
    use crate::money::Money;

    fn def(severity: Severity, overrides: ResponseOverrides) -> CrisisDefinition {
        CrisisDefinition {
            title: "t".into(),
            hazard: Hazard::Flood,
            severity,
            areas: vec!["JO-MN".into()],
            response: Response {
                playbook: "flood-standard".into(),
                overrides,
            },
            budget: Money::new(1_000_000_000, "JOD").unwrap(),
            starts_on: "2026-12-01".parse().unwrap(),
            ends_on: "2027-02-28".parse().unwrap(),
        }
    }

    #[test]
    fn a_more_severe_shock_means_a_larger_response() {
        let book = PlaybookBook::default_book();
        let moderate = book
            .resolve(&def(Severity::Moderate, Default::default()))
            .unwrap();
        let extreme = book
            .resolve(&def(Severity::Extreme, Default::default()))
            .unwrap();
        assert!(extreme.vertical.unwrap().flat_minor > moderate.vertical.unwrap().flat_minor);
        assert!(extreme.max_welfare_score.unwrap() > moderate.max_welfare_score.unwrap());
    }

    #[test]
    fn crisis_overrides_win_over_the_playbook() {
        let o = ResponseOverrides {
            tranches: Some(5),
            max_welfare_score: Some(12.5),
            ..Default::default()
        };
        let r = PlaybookBook::default_book()
            .resolve(&def(Severity::Severe, o))
            .unwrap();
        assert_eq!(r.tranches, 5);
        assert_eq!(r.max_welfare_score, Some(12.5));
        assert!(r.playbook.starts_with("flood-standard@"));
    }

    #[test]
    fn a_response_that_pays_nothing_is_refused() {
        let zero = ResponseOverrides {
            vertical_flat_minor: Some(0),
            vertical_per_member_minor: Some(0),
            ..Default::default()
        };
        let err = PlaybookBook::default_book()
            .resolve(&def(Severity::Severe, zero))
            .unwrap_err();
        assert!(err.contains("pays nothing"), "{err}");
        // Zero flat but a per-member amount still pays every household.
        let per_member = ResponseOverrides {
            vertical_flat_minor: Some(0),
            vertical_per_member_minor: Some(1),
            ..Default::default()
        };
        assert!(PlaybookBook::default_book()
            .resolve(&def(Severity::Severe, per_member))
            .is_ok());
    }

    #[test]
    fn amounts_are_capped_per_household() {
        let a = Amounts {
            flat_minor: 50_000,
            per_member_minor: 10_000,
            cap_minor: 120_000,
        };
        assert_eq!(a.for_members(2), 70_000);
        assert_eq!(a.for_members(12), 120_000);
    }

    #[test]
    fn a_playbook_without_any_expansion_is_refused() {
        let text = r#"{"version":"x","playbooks":[{"id":"p","title":"t","hazards":["flood"],"tranches":1,"interval_days":0}]}"#;
        assert!(PlaybookBook::from_json(text).is_err());
    }

    #[test]
    fn a_playbook_outside_the_schedule_bounds_is_refused() {
        let book = |tranches: u32, days: u32| {
            PlaybookBook::from_json(&format!(
                r#"{{"version":"x","playbooks":[{{"id":"p","title":"t","hazards":["flood"],"tranches":{tranches},"interval_days":{days},
                    "vertical":{{"programme":"X","flat_minor":1,"per_member_minor":0,"cap_minor":1}}}}]}}"#
            ))
        };
        assert!(book(24, 366).is_ok());
        assert!(book(0, 30).is_err());
        assert!(book(25, 30).is_err());
        assert!(book(3, 367).is_err());
    }
}
