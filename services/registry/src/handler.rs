//! The registry's consumer-loop handler: typed decoding and area checks (on
//! two threads for large batches), then the version decision and one
//! set-based `COPY` write per batch (see [`crate::db`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::household::{
    Household, HouseholdRemoved, HOUSEHOLD_REMOVED, HOUSEHOLD_UPSERTED,
};
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::match_key::MatchKeySecret;
use sumud_shared::Result;
use tracing::debug;

use crate::changes::{Change, Upsert, Versioned};
use crate::db::{self, Path};

/// Applies registry events to `registry.households`.
pub struct RegistryHandler {
    store: Store,
    areas: &'static AreaCatalog,
    /// Whether the next batch should first try the fresh path (one `COPY`,
    /// no read of stored versions): true until a batch meets stored
    /// households, and again once a batch meets none.
    try_fresh: AtomicBool,
    /// The agencies' shared match-key secret, when the deployment has one.
    match_key: Option<MatchKeySecret>,
}

impl RegistryHandler {
    /// A handler writing to `store`, checking codes against `areas`.
    pub fn new(store: Store, areas: &'static AreaCatalog) -> Self {
        RegistryHandler {
            store,
            areas,
            try_fresh: AtomicBool::new(true),
            match_key: None,
        }
    }

    /// Also stores each written household's match key under `secret`.
    pub fn with_match_key(mut self, secret: Option<MatchKeySecret>) -> Self {
        self.match_key = secret;
        self
    }

    fn parse(&self, m: &Incoming) -> Result<Versioned, Rejection> {
        let env = &m.envelope;
        let (household_id, version, change) = if env.event_type == HOUSEHOLD_REMOVED {
            let r: HouseholdRemoved = env.typed()?;
            (r.household_id, r.version, Change::Remove)
        } else {
            let h: Household = env.typed()?;
            let Some(area) = self.areas.resolve(&h.area_code) else {
                return Err(Rejection::new(
                    Reason::UnknownArea,
                    format!("area code {:?} is not in the area hierarchy", h.area_code),
                ));
            };
            (
                h.household_id.clone(),
                h.version,
                Change::Upsert(Box::new(Upsert { household: h, area })),
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

/// Batches at least this large are parsed on two threads.
const PARALLEL_PARSE_MIN: usize = 1000;

impl RegistryHandler {
    /// Parses every message, in order; large batches on two threads (the
    /// database is idle meanwhile, so a core is usually free).
    fn parse_all(&self, batch: &[Incoming]) -> Vec<Result<Versioned, Rejection>> {
        if batch.len() < PARALLEL_PARSE_MIN {
            return batch.iter().map(|m| self.parse(m)).collect();
        }
        let (first, second) = batch.split_at(batch.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second.iter().map(|m| self.parse(m)).collect::<Vec<_>>());
            let mut out: Vec<_> = first.iter().map(|m| self.parse(m)).collect();
            match other.join() {
                Ok(rest) => out.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            out
        })
    }
}

impl Handler for RegistryHandler {
    fn event_types(&self) -> &[&str] {
        &[HOUSEHOLD_UPSERTED, HOUSEHOLD_REMOVED]
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let started = Instant::now();
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(batch.len());
        let mut parsed = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for (i, outcome) in self.parse_all(batch).into_iter().enumerate() {
            match outcome {
                Ok(v) => {
                    parsed.push(v);
                    positions.push(i);
                    verdicts.push(None);
                }
                Err(rej) => verdicts.push(Some(Verdict::Reject(rej))),
            }
        }
        let parse_ms = started.elapsed().as_secs_f64() * 1e3;
        let try_fresh = self.try_fresh.load(Ordering::Relaxed);
        // The match keys first: once a household's version is stored, its
        // key is there for whoever reads it (eligibility shares a decision
        // with partners under it as soon as it decides). A key written for
        // a version the batch then does not store is never joined.
        if let Some(secret) = &self.match_key {
            db::match_keys::write(&self.store, &db::match_keys::keys_of(secret, &parsed)).await?;
        }
        let written = db::write(&self.store, &parsed, try_fresh).await?;
        let fresh_next = match written.path {
            Path::Fresh => true,
            Path::Merge { stored } => stored == 0,
        };
        self.try_fresh.store(fresh_next, Ordering::Relaxed);
        debug!(
            batch = batch.len(),
            written = written.rows,
            path = ?written.path,
            tried_fresh = try_fresh,
            parse_ms,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "Registry batch applied."
        );
        for (pos, v) in positions.into_iter().zip(written.decision.verdicts) {
            verdicts[pos] = Some(v);
        }
        Ok(verdicts
            .into_iter()
            .map(|v| v.unwrap_or(Verdict::Done))
            .collect())
    }
}
