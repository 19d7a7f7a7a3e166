//! "What if" for scenario planning: the caseload and cost a crisis
//! definition would produce today. It runs the live path itself — the same
//! projection save, the same expansion statement — inside a transaction
//! that is always rolled back, so a simulation and the real response to the
//! same inputs cannot disagree, and nothing is published or kept.

use serde::Serialize;
use sumud_shared::db::Store;
use sumud_shared::events::crisis::{CrisisDefinition, CrisisEvent, CrisisState};
use sumud_shared::playbook::PlaybookBook;
use sumud_shared::{Error, Result};

use crate::db;

/// One line of the caseload: an area and an expansion type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseloadLine {
    /// Governorate code.
    pub governorate: String,
    /// District code.
    pub district: String,
    /// `vertical` (top-up) or `horizontal` (new enrolment).
    pub kind: String,
    /// Households the budget covers.
    pub entitled: i64,
    /// Households the budget does not reach.
    pub waitlisted: i64,
    /// Per-tranche amount for the entitled, minor units.
    pub entitled_per_tranche_minor: i64,
    /// Per-tranche amount the waitlisted would need, minor units.
    pub waitlisted_per_tranche_minor: i64,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulation {
    /// The definition simulated.
    pub definition: CrisisDefinition,
    /// Tranches of the resolved playbook.
    pub tranches: u32,
    /// Days between tranches.
    pub interval_days: u32,
    /// Caseload by district and expansion type.
    pub lines: Vec<CaseloadLine>,
    /// Households covered.
    pub entitled: i64,
    /// Households waitlisted.
    pub waitlisted: i64,
    /// Cost of one tranche for the covered, minor units.
    pub per_tranche_minor: i64,
    /// Cost of every tranche for the covered (what the budget commits), minor units.
    pub committed_minor: i64,
    /// The budget cap, minor units.
    pub budget_minor: i64,
    /// What covering the waitlist too would cost in total, minor units.
    pub waitlist_cost_minor: i64,
}

/// Simulates `def` against the registry as it is now.
pub async fn simulate(store: &Store, def: &CrisisDefinition) -> Result<Simulation> {
    let resolved = PlaybookBook::default_book()
        .resolve(def)
        .map_err(|e| Error::Config(format!("the definition cannot be resolved: {e}")))?;
    let crisis_id = format!("sim-{}", uuid::Uuid::new_v4().simple());
    let event = CrisisEvent {
        crisis_id: crisis_id.clone(),
        state: CrisisState::Active,
        revision: 1,
        definition: def.clone(),
        pending: None,
        proposal: None,
        superseded: None,
        command_id: "simulation".into(),
        signed_by: "simulation".into(),
        trigger: None,
    };
    let mut tx = store.begin().await?;
    // The live activation path: project the crisis, then expand it.
    db::save_crisis(&mut tx, &event, &resolved).await?;
    let c = db::crisis(&mut tx, &crisis_id)
        .await?
        .ok_or_else(|| Error::Other("simulated crisis vanished".into()))?;
    db::expand(&mut tx, &c, None).await?;
    let lines = db::caseload(&mut tx, &crisis_id).await?;
    tx.rollback().await?;

    let sum = |f: fn(&CaseloadLine) -> i64| lines.iter().map(f).sum::<i64>();
    let tranches = i64::from(resolved.tranches);
    Ok(Simulation {
        definition: def.clone(),
        tranches: resolved.tranches,
        interval_days: resolved.interval_days,
        entitled: sum(|l| l.entitled),
        waitlisted: sum(|l| l.waitlisted),
        per_tranche_minor: sum(|l| l.entitled_per_tranche_minor),
        committed_minor: sum(|l| l.entitled_per_tranche_minor) * tranches,
        budget_minor: def.budget.minor,
        waitlist_cost_minor: sum(|l| l.waitlisted_per_tranche_minor) * tranches,
        lines,
    })
}
