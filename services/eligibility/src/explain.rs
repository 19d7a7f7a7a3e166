//! `sumud explain`, the eligibility part: a household's decisions in a
//! crisis, their trail, and — when there is no decision — what the rules in
//! force say of its current registry record ([`crate::policy`]), so that a
//! household is never told a reason that is not the real one.

use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::money::Money;
use sumud_shared::Result;

use crate::db;
use crate::policy::{self, Assisted, Facts, Verdict};

/// The crisis revision eligibility decides under.
#[derive(Debug, Clone, Serialize)]
pub struct CrisisInForce {
    /// Crisis id.
    pub crisis_id: String,
    /// Title.
    pub title: String,
    /// `proposed`, `active` or `closed`.
    pub state: String,
    /// Revision in force.
    pub revision: i32,
    /// `<playbook id>@<playbook file version>`.
    pub playbook: String,
    /// The areas the crisis names.
    pub areas: Vec<String>,
}

/// One decision (one kind of expansion) as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// `<crisis>/<household>/<kind>`.
    pub entitlement_id: String,
    /// `vertical` or `horizontal`.
    pub kind: String,
    /// `entitled`, `waitlisted` or `cancelled`.
    pub status: String,
    /// Per-tranche amount.
    pub amount_per_tranche: Money,
    /// Number of tranches.
    pub tranches: i32,
    /// Days between tranches.
    pub interval_days: i32,
    /// Crisis revision decided under.
    pub crisis_revision: i32,
    /// Registry record version decided on.
    pub registry_version: i64,
    /// `<playbook id>@<version>`.
    pub playbook: String,
    /// Why, as recorded with the decision.
    pub reason: String,
    /// Its rank in the priority order of the expansion (or promotion) that
    /// decided it.
    pub budget_rank: Option<i32>,
    /// The budget left when its turn came (it needed amount × tranches).
    pub budget_left: Option<Money>,
}

/// One change to a decision, from the append-only trail.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Status after the change.
    pub status: String,
    /// Per-tranche amount after the change, minor units.
    pub amount_minor: i64,
    /// Crisis revision that caused it.
    pub crisis_revision: i32,
    /// Why.
    pub reason: String,
}

/// The household's current registry record, as the policy reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryRecord {
    /// The record.
    #[serde(flatten)]
    pub facts: Facts,
    /// Id of the registry event that set it.
    pub event_id: String,
}

/// Everything eligibility knows of one household in one crisis.
#[derive(Debug, Clone, Serialize)]
pub struct Eligibility {
    /// Crisis id asked about.
    pub crisis_id: String,
    /// Household id.
    pub household_id: String,
    /// The crisis, if eligibility knows it.
    pub crisis: Option<CrisisInForce>,
    /// The current registry record; `None` if absent or removed.
    pub registry: Option<RegistryRecord>,
    /// Decisions, one per kind of expansion.
    pub decisions: Vec<Decision>,
    /// Every later change to them, oldest first.
    pub trail: Vec<Change>,
    /// Assistance the household holds from other crises for periods
    /// overlapping this one's, which the overlap rule weighs.
    pub assisted: Assisted,
    /// What the rules in force say of the current record (absent when the
    /// crisis or the record is unknown).
    pub rules_now: Option<Verdict>,
    /// Social-service referrals this crisis made for the household, each
    /// with the provider's answers in order.
    pub referrals: Vec<ReferralView>,
}

/// A referral and what its provider answered.
#[derive(Debug, Clone, Serialize)]
pub struct ReferralView {
    /// `<crisis>/<household>/<service>`.
    pub referral_id: String,
    /// The service.
    pub service: String,
    /// The agency that provides it.
    pub provider: String,
    /// Where it stands.
    pub status: String,
    /// The rule it met.
    pub reason: String,
    /// The provider's answers, oldest first.
    pub answers: Vec<db::ReferralAnswer>,
}

/// Reads what eligibility knows of `household_id` in `crisis_id`.
pub async fn eligibility(
    store: &Store,
    crisis_id: &str,
    household_id: &str,
) -> Result<Eligibility> {
    let crisis = db::crisis_now(store, crisis_id).await?;
    let registry = db::household_facts(store, household_id)
        .await?
        .map(|(facts, event_id)| RegistryRecord { facts, event_id });
    let (rows, log) = db::decisions_of(store, crisis_id, household_id).await?;
    let positions: std::collections::HashMap<String, (Option<i32>, Option<i64>)> =
        db::budget_positions(store, crisis_id, household_id)
            .await?
            .into_iter()
            .map(|(id, rank, left)| (id, (rank, left)))
            .collect();
    let entries = db::ledger(store, household_id).await?;
    let assisted = crisis
        .as_ref()
        .map(|c| db::assisted_against(c, &entries))
        .unwrap_or_default();
    let rules_now = match (&crisis, &registry) {
        (Some(c), Some(r)) => Some(policy::judge(
            &c.resolved,
            &c.definition.areas,
            &r.facts,
            &assisted,
        )),
        _ => None,
    };
    Ok(Eligibility {
        crisis_id: crisis_id.to_owned(),
        household_id: household_id.to_owned(),
        crisis: crisis.map(|c| CrisisInForce {
            crisis_id: c.crisis_id,
            title: c.definition.title,
            state: c.state.as_str().to_owned(),
            revision: c.revision,
            playbook: c.resolved.playbook,
            areas: c.definition.areas,
        }),
        registry,
        decisions: rows
            .into_iter()
            .map(|r| {
                let (budget_rank, left) = positions
                    .get(&r.entitlement_id)
                    .copied()
                    .unwrap_or_default();
                Decision {
                    budget_rank,
                    budget_left: left.map(|minor| Money {
                        minor,
                        currency: r.currency.clone(),
                    }),
                    entitlement_id: r.entitlement_id,
                    kind: r.kind,
                    status: r.status,
                    amount_per_tranche: Money {
                        minor: r.amount_minor,
                        currency: r.currency,
                    },
                    tranches: r.tranches,
                    interval_days: r.interval_days,
                    crisis_revision: r.crisis_revision,
                    registry_version: r.registry_version,
                    playbook: r.playbook,
                    reason: r.reason,
                }
            })
            .collect(),
        trail: log
            .into_iter()
            .map(
                |(at, status, amount_minor, crisis_revision, reason)| Change {
                    at,
                    status,
                    amount_minor,
                    crisis_revision,
                    reason,
                },
            )
            .collect(),
        assisted,
        rules_now,
        referrals: db::referrals_of(store, household_id)
            .await?
            .into_iter()
            .filter(|(r, _)| r.crisis_id == crisis_id)
            .map(|(r, answers)| ReferralView {
                referral_id: r.referral_id,
                service: r.service,
                provider: r.provider,
                status: r.status,
                reason: r.reason,
                answers,
            })
            .collect(),
    })
}

impl Eligibility {
    /// The explanation in plain language, one sentence a line.
    pub fn lines(&self) -> Vec<String> {
        let h = &self.household_id;
        let mut out = Vec::new();
        let Some(c) = &self.crisis else {
            out.push(format!(
                "Crisis {} is not known to the eligibility service: no decision about household {h}.",
                self.crisis_id
            ));
            return out;
        };
        out.push(format!(
            "Crisis {} ({}, {}), revision {}, playbook {}, areas {}.",
            c.crisis_id,
            c.title,
            c.state,
            c.revision,
            c.playbook,
            c.areas.join(", ")
        ));
        for d in &self.decisions {
            out.push(format!(
                "Household {h}: {} ({} expansion), {} per tranche x {} tranches every {} days, decided under crisis revision {} on registry record version {} with {}.",
                d.status, d.kind, d.amount_per_tranche.display(), d.tranches, d.interval_days,
                d.crisis_revision, d.registry_version, d.playbook
            ));
            out.push(format!("  Why: {}.", d.reason));
            if let (Some(rank), Some(left)) = (d.budget_rank, &d.budget_left) {
                let needed = Money {
                    minor: d.amount_per_tranche.minor * i64::from(d.tranches),
                    currency: left.currency.clone(),
                };
                let stood = if left.minor >= 0 {
                    format!(
                        "{} of the budget was left when its turn came",
                        left.display()
                    )
                } else {
                    let over = Money {
                        minor: -left.minor,
                        currency: left.currency.clone(),
                    };
                    format!(
                        "the households ranked before it had already claimed {} more than the budget held",
                        over.display()
                    )
                };
                out.push(format!(
                    "  Budget when decided: rank {rank} in priority order; {stood}, and it needed {}.",
                    needed.display()
                ));
            }
        }
        for t in &self.trail {
            out.push(format!(
                "  {} revision {}: {}, {} minor units — {}",
                t.at.format("%Y-%m-%d %H:%M:%S"),
                t.crisis_revision,
                t.status,
                t.amount_minor,
                t.reason
            ));
        }
        match &self.registry {
            None if self.decisions.is_empty() => out.push(format!(
                "Household {h} is not in the registry (or was removed): no decision."
            )),
            None => out.push(format!(
                "Household {h} is no longer in the registry (removed after the decision)."
            )),
            Some(r) => {
                let decided_on = self.decisions.iter().map(|d| d.registry_version).max();
                if decided_on != Some(r.facts.version) {
                    out.push(format!(
                        "Registry record now: version {} (event {}), area {}, welfare score {}, {} members.",
                        r.facts.version, r.event_id, r.facts.area_code, r.facts.welfare_score, r.facts.members
                    ));
                } else {
                    out.push(format!(
                        "Registry record version {} was set by event {}.",
                        r.facts.version, r.event_id
                    ));
                }
            }
        }
        if self.decisions.is_empty() {
            if let Some(line) = self.undecided(c) {
                out.push(line);
            }
        }
        for r in &self.referrals {
            out.push(format!(
                "Household {h}: referred to {} ({}), now {}. Why: {}.",
                r.service, r.provider, r.status, r.reason
            ));
            for a in &r.answers {
                out.push(format!(
                    "  {} {} by {}{}",
                    a.answered_at,
                    a.status,
                    a.agency,
                    a.note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ));
            }
        }
        out
    }

    /// Why a household in the registry has no decision: the rule itself,
    /// or — when it qualifies — the true reason there is none yet.
    fn undecided(&self, c: &CrisisInForce) -> Option<String> {
        let h = &self.household_id;
        let r = self.registry.as_ref()?;
        Some(match self.rules_now.as_ref()? {
            Verdict::OutsideAreas => format!(
                "Household {h} is registered in {} (governorate {}{}), which none of the crisis areas ({}) names: not eligible.",
                r.facts.area_code,
                r.facts.governorate,
                r.facts.district.as_deref().map(|d| format!(", district {d}")).unwrap_or_default(),
                c.areas.join(", ")
            ),
            Verdict::NotQualified { why } => {
                format!("Household {h} is in the crisis areas, but {why}: not eligible.")
            }
            Verdict::AlreadyAssisted { why } => {
                format!("Household {h} is in the crisis areas and {why}: no payment from this crisis.")
            }
            Verdict::Qualifies { kind, reason, .. } => {
                let pending = match c.state.as_str() {
                    "proposed" => "the crisis is proposed and awaits approval: nothing is decided before it is active".to_owned(),
                    "closed" => "the crisis closed before this record reached eligibility: a closed crisis decides no one".to_owned(),
                    _ => format!(
                        "no decision is recorded yet: eligibility decides on each registry change while the crisis is active, and the change to version {} is still in flight",
                        r.facts.version
                    ),
                };
                format!("Household {h} qualifies under revision {} as a {kind} expansion ({reason}), but {pending}.", c.revision)
            }
        })
    }
}

/// The explanation as lines of text (see [`Eligibility::lines`]).
pub async fn explain(store: &Store, crisis_id: &str, household_id: &str) -> Result<Vec<String>> {
    Ok(eligibility(store, crisis_id, household_id).await?.lines())
}
