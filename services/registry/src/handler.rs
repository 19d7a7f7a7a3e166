//! The registry's consumer-loop handler: typed decoding, area checks, the
//! version decision and one set-based write per batch.

use sqlx::PgPool;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::household::{
    Household, HouseholdRemoved, HOUSEHOLD_REMOVED, HOUSEHOLD_UPSERTED,
};
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::Result;
use tracing::debug;

use crate::changes::{decide, Change, Versioned};
use crate::db;

/// Applies registry events to `registry.households`.
pub struct RegistryHandler {
    pool: PgPool,
    areas: &'static AreaCatalog,
}

impl RegistryHandler {
    /// A handler writing to `pool`, checking codes against `areas`.
    pub fn new(pool: PgPool, areas: &'static AreaCatalog) -> Self {
        RegistryHandler { pool, areas }
    }

    fn parse(&self, m: &Incoming) -> Result<Versioned, Rejection> {
        let env = &m.envelope;
        let (household_id, version, change) = if env.event_type == HOUSEHOLD_REMOVED {
            let r: HouseholdRemoved = env.typed()?;
            (r.household_id, r.version, Change::Remove)
        } else {
            let h: Household = env.typed()?;
            if self.areas.resolve(&h.area_code).is_none() {
                return Err(Rejection::new(
                    Reason::UnknownArea,
                    format!("area code {:?} is not in the area hierarchy", h.area_code),
                ));
            }
            (
                h.household_id.clone(),
                h.version,
                Change::Upsert(Box::new(h)),
            )
        };
        Ok(Versioned {
            household_id,
            version,
            event_id: env.id.clone(),
            partition: m.partition,
            offset: m.offset,
            change,
        })
    }
}

impl Handler for RegistryHandler {
    fn event_types(&self) -> &[&str] {
        &[HOUSEHOLD_UPSERTED, HOUSEHOLD_REMOVED]
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(batch.len());
        let mut parsed = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            match self.parse(m) {
                Ok(v) => {
                    parsed.push(v);
                    positions.push(i);
                    verdicts.push(None);
                }
                Err(rej) => verdicts.push(Some(Verdict::Reject(rej))),
            }
        }
        let ids: Vec<String> = parsed.iter().map(|v| v.household_id.clone()).collect();
        let stored = db::stored(&self.pool, &ids).await?;
        let (decided, winners) = decide(&parsed, &stored);
        let written = db::apply(&self.pool, &winners, self.areas).await?;
        debug!(batch = batch.len(), written, "Registry batch applied.");
        for (pos, v) in positions.into_iter().zip(decided) {
            verdicts[pos] = Some(v);
        }
        Ok(verdicts
            .into_iter()
            .map(|v| v.unwrap_or(Verdict::Done))
            .collect())
    }
}
