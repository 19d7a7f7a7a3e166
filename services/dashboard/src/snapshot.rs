//! Gathering the figures: [`Monitor`] asks the database (through `db.rs`)
//! and the Kafka readers (dead letters, lag) and assembles them
//! (`assemble.rs`); [`publish`] computes one snapshot per refresh interval
//! for every open page at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::db::Store;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::assemble::{self, Parts};
use crate::db;
use crate::deadletters::DeadLetterBoard;
use crate::error::{Error, Result};
use crate::lag::LagBoard;
use crate::model::{
    AreaRow, ConsumerLag, CrisisDetail, CrisisSummary, DeadLetters, GrievanceArea, ProviderHealth,
    ReferralArea, Snapshot, Sources,
};

/// How long registered-household counts are reused: the registry changes
/// slowly, and counting it is the heaviest read of a snapshot.
const HOUSEHOLDS_TTL: Duration = Duration::from_secs(15);

/// Audit entries shown with a crisis.
const AUDIT_ENTRIES: i64 = 50;

/// Live registered households per area code.
type HouseholdCounts = Arc<Vec<(String, i64)>>;

/// The dashboard's read side.
pub struct Monitor {
    store: Store,
    catalog: &'static AreaCatalog,
    dead_letters: Arc<DeadLetterBoard>,
    lag: Arc<LagBoard>,
    households: Mutex<Option<(Instant, HouseholdCounts)>>,
}

impl Monitor {
    /// A monitor over `store` and the two Kafka readers' boards.
    pub fn new(store: Store, dead_letters: Arc<DeadLetterBoard>, lag: Arc<LagBoard>) -> Self {
        Monitor {
            store,
            catalog: AreaCatalog::default_catalog(),
            dead_letters,
            lag,
            households: Mutex::new(None),
        }
    }

    /// The database it reads (readiness probe).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Everything at once.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let sources = db::sources(&self.store).await?;
        let generated_at = Utc::now();
        Ok(Snapshot {
            generated_at,
            crises: self.crises_with(&sources, None).await?,
            areas: self.areas_with(&sources, None).await?,
            grievances: self.grievances_with(&sources, generated_at).await?,
            referrals: self.referrals_with(&sources).await?,
            providers: self.providers_with(&sources).await?,
            dead_letters: self.dead_letters(),
            consumer_lag: self.consumer_lag(),
            sources,
        })
    }

    /// Every crisis.
    pub async fn crises(&self) -> Result<Vec<CrisisSummary>> {
        let sources = db::sources(&self.store).await?;
        if !sources.control {
            return Err(Error::NotYet("control"));
        }
        self.crises_with(&sources, None).await
    }

    /// One crisis with its areas and audit trail.
    pub async fn crisis(&self, crisis_id: &str) -> Result<CrisisDetail> {
        let sources = db::sources(&self.store).await?;
        if !sources.control {
            return Err(Error::UnknownCrisis(crisis_id.to_owned()));
        }
        let crisis = self
            .crises_with(&sources, Some(crisis_id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnknownCrisis(crisis_id.to_owned()))?;
        Ok(CrisisDetail {
            generated_at: Utc::now(),
            areas: self.areas_with(&sources, Some(crisis_id)).await?,
            audit: db::audit(&self.store, crisis_id, AUDIT_ENTRIES).await?,
            crisis,
        })
    }

    /// The area table, of one crisis or all.
    pub async fn areas(&self, crisis_id: Option<&str>) -> Result<Vec<AreaRow>> {
        let sources = db::sources(&self.store).await?;
        self.areas_with(&sources, crisis_id).await
    }

    /// Provider health.
    pub async fn providers(&self) -> Result<Vec<ProviderHealth>> {
        let sources = db::sources(&self.store).await?;
        self.providers_with(&sources).await
    }

    /// Grievances by governorate at `now` (none before disbursement has
    /// created its grievance table).
    async fn grievances_with(
        &self,
        s: &Sources,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<GrievanceArea>> {
        // A disbursement schema older than its grievance table has none
        // (a database that cannot answer fails the snapshot's other reads).
        let table = self.store.has_table("disbursement", "grievances").await;
        if !s.disbursement || !table.unwrap_or(false) {
            return Ok(Vec::new());
        }
        let rows = db::grievances(&self.store, now).await?;
        Ok(crate::grievances::grievance_areas(self.catalog, &rows))
    }

    /// Referrals by governorate and service (none before eligibility has
    /// created its referral table).
    async fn referrals_with(&self, s: &Sources) -> Result<Vec<ReferralArea>> {
        let table = self.store.has_table("eligibility", "referrals").await;
        if !s.eligibility || !table.unwrap_or(false) {
            return Ok(Vec::new());
        }
        let rows = db::referrals(&self.store).await?;
        Ok(crate::referrals::referral_areas(self.catalog, &rows))
    }

    /// Dead-letter counts.
    pub fn dead_letters(&self) -> DeadLetters {
        self.dead_letters.view()
    }

    /// Consumer lag.
    pub fn consumer_lag(&self) -> ConsumerLag {
        self.lag.view()
    }

    async fn crises_with(&self, s: &Sources, only: Option<&str>) -> Result<Vec<CrisisSummary>> {
        if !s.control {
            return Ok(Vec::new());
        }
        let crises = db::crises(&self.store, only).await?;
        if crises.is_empty() {
            return Ok(Vec::new());
        }
        let eligibility = if s.eligibility {
            keyed(db::eligibility(&self.store, only).await?, |r| &r.crisis_id)
        } else {
            HashMap::new()
        };
        let disbursement = if s.disbursement {
            keyed(db::disbursement(&self.store, only).await?, |r| &r.crisis_id)
        } else {
            HashMap::new()
        };
        let triggers = if s.alerts {
            keyed(db::triggers(&self.store).await?, |r| &r.crisis_id)
        } else {
            HashMap::new()
        };
        let households = if s.registry {
            self.households().await?
        } else {
            Arc::new(Vec::new())
        };
        let now = Utc::now();
        Ok(crises
            .iter()
            .map(|c| {
                let parts = Parts {
                    eligibility: eligibility.get(&c.crisis_id),
                    disbursement: disbursement.get(&c.crisis_id),
                    trigger: triggers.get(&c.crisis_id),
                    affected: assemble::affected(self.catalog, &c.areas, &households),
                };
                assemble::summary(c, parts, now)
            })
            .collect())
    }

    async fn areas_with(&self, s: &Sources, only: Option<&str>) -> Result<Vec<AreaRow>> {
        if !s.eligibility {
            return Ok(Vec::new());
        }
        let entitled = db::entitled_by_area(&self.store, only).await?;
        let payments = if s.disbursement {
            db::payments_by_area(&self.store, only).await?
        } else {
            Vec::new()
        };
        Ok(assemble::area_rows(self.catalog, &entitled, &payments))
    }

    async fn providers_with(&self, s: &Sources) -> Result<Vec<ProviderHealth>> {
        if !s.disbursement {
            return Ok(Vec::new());
        }
        let counts = db::provider_counts(&self.store).await?;
        let latency = db::provider_latency(&self.store).await?;
        let reports = db::provider_reports(&self.store).await?;
        Ok(assemble::providers(&counts, &latency, &reports))
    }

    async fn households(&self) -> Result<HouseholdCounts> {
        let mut cached = self.households.lock().await;
        if let Some((at, counts)) = cached.as_ref() {
            if at.elapsed() < HOUSEHOLDS_TTL {
                return Ok(counts.clone());
            }
        }
        let counts = Arc::new(db::households_by_area(&self.store).await?);
        *cached = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

fn keyed<T>(rows: Vec<T>, key: impl Fn(&T) -> &String) -> HashMap<String, T> {
    rows.into_iter().map(|r| (key(&r).clone(), r)).collect()
}

/// One snapshot as sent on the event stream: serialised once, shared by
/// every connected page.
#[derive(Debug)]
pub struct Frame {
    /// Increases by one per snapshot (the SSE event id).
    pub seq: u64,
    /// The snapshot as JSON.
    pub json: String,
}

/// Computes a snapshot every `every` while at least one page listens, and
/// hands it to them through `tx`. A failed computation is logged and
/// skipped: the pages keep the last figures and show their age.
pub async fn publish(
    monitor: Arc<Monitor>,
    tx: watch::Sender<Option<Arc<Frame>>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if tx.receiver_count() == 0 {
            continue;
        }
        match monitor.snapshot().await {
            Ok(s) => {
                seq += 1;
                let json = serde_json::to_string(&s).expect("a snapshot serialises");
                tx.send_replace(Some(Arc::new(Frame { seq, json })));
            }
            Err(e) => tracing::warn!(error = %e, "Snapshot failed; pages keep the last one."),
        }
    }
}
