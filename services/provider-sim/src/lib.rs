//! A payment provider simulator that behaves like a real provider: it
//! consumes the instructions for its provider names, answers with status
//! events after a latency, rejects, stays silent or delivers statuses twice
//! at configurable rates, and keeps its own ledger, so a test can check it
//! was never asked to pay the same instruction twice, and write the
//! provider's statement from it (`statement.rs`).

pub mod behaviour;
pub mod statement;

use std::time::Duration;

use chrono::Utc;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::payment::{
    Instruction, PaymentStatus, StatusReport, INSTRUCTION_ISSUED, PAYMENT_STATUS,
};
use sumud_shared::jws::Jwk;
use sumud_shared::kafka::consumer::{Handler, Incoming, Verdict};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::startup;
use sumud_shared::startup::Service;
use sumud_shared::{on_store, Result};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{Behaviour, Outcome};

/// The service name.
pub const SERVICE: &str = "provider-sim";

/// The simulator's migrations (schema `provider_sim`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The same ledger on the embedded default's SQLite file.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The ledger's migrations on both backends.
pub static MIGRATIONS: sumud_shared::db::Migrations = sumud_shared::db::Migrations {
    service: SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&SQLITE_MIGRATOR),
};

/// The providers' signing keys from a directory of private JWK files, one
/// per provider, named `<provider>.jwk` (what `sumud providers add
/// --generate` writes): the simulator signs as each of them.
pub fn load_keys(dir: &std::path::Path) -> anyhow::Result<std::collections::BTreeMap<String, Jwk>> {
    let mut keys = std::collections::BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read SUMUD_SIM_KEYS_DIR {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jwk") {
            continue;
        }
        let Some(provider) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let key: Jwk = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a JWK: {e}", path.display()))?;
        anyhow::ensure!(key.d.is_some(), "{} holds no private key", path.display());
        keys.insert(provider.to_owned(), key);
    }
    Ok(keys)
}

/// A built simulator.
pub struct App {
    settings: Settings,
    behaviour: Behaviour,
    store: Store,
    producer: EventProducer,
}

struct Sim {
    store: Store,
    behaviour: Behaviour,
    producer: EventProducer,
    status_topic: String,
}

/// A status report on `i`, carrying `traceparent` (the trace of the
/// instruction it answers); a success names the payment of attempt
/// `paid_as` (an attempt of a reference already paid is answered with that
/// payment, not paid again).
fn report(
    i: &Instruction,
    status: PaymentStatus,
    outcome: Outcome,
    paid_as: u32,
    key: Option<&Jwk>,
    traceparent: &Option<String>,
) -> Envelope<StatusReport> {
    let mut data = StatusReport {
        reference_id: i.reference_id.clone(),
        attempt: i.attempt,
        provider: i.provider.clone(),
        status,
        reason_code: match outcome {
            Outcome::Reject(r) if status == PaymentStatus::Rejected => Some(r),
            _ => None,
        },
        provider_ref: (status == PaymentStatus::Succeeded)
            .then(|| statement::provider_ref(&i.reference_id, paid_as as i32)),
        timestamp: Utc::now(),
        signature: None,
    };
    if let Some(key) = key {
        // A key this process generated or loaded signs whatever it is given.
        data.signature = sumud_shared::jws::sign(&data, key).ok();
    }
    let mut e = Envelope::new(
        &format!("urn:provider:{}", i.provider),
        PAYMENT_STATUS,
        Some(i.reference_id.clone()),
        data,
    );
    e.id = format!("{}#{}:{}", i.reference_id, i.attempt, status.as_str());
    e.traceparent = traceparent.clone();
    e
}

impl Sim {
    /// Sends reports with all of them in flight at once (one round trip per
    /// batch, not per report), in the given order: each send enqueues on
    /// its first poll, and the futures are first polled in order.
    async fn send_all(&self, reports: &[Envelope<StatusReport>]) -> Result<()> {
        futures::future::try_join_all(reports.iter().map(|e| {
            self.producer
                .send(&self.status_topic, &e.data.reference_id, e)
        }))
        .await
        .map(|_| ())
    }

    /// The attempt whose payment of this reference stands, if another
    /// attempt paid it: the reference is the unit of work, paid once.
    async fn paid_by_another(&self, i: &Instruction) -> Result<Option<u32>> {
        const PAID: &str = "SELECT attempt FROM provider_sim.ledger \
             WHERE reference_id = $1 AND paid AND attempt <> $2";
        let attempt: Option<i32> = on_store!(&self.store, pool => sqlx::query_scalar(PAID)
            .bind(&i.reference_id)
            .bind(i.attempt as i32)
            .fetch_optional(pool)
            .await?);
        Ok(attempt.map(|a| a as u32))
    }

    /// Records the attempt; returns true only the first time it is seen.
    async fn record(&self, i: &Instruction, outcome: Outcome) -> Result<bool> {
        let content = serde_json::to_string(i).expect("serialises");
        let hash = format!("{:016x}", behaviour::uniform(0, &content, 0).to_bits());
        // The same statement on both backends: a fresh row has been seen
        // once, an existing one more often after the update.
        const RECORD: &str = "INSERT INTO provider_sim.ledger AS l \
                 (reference_id, attempt, provider, amount_minor, content_hash, outcome, paid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (reference_id, attempt) DO UPDATE SET times_seen = l.times_seen + 1, \
                 content_conflict = l.content_conflict OR l.content_hash <> EXCLUDED.content_hash \
             RETURNING times_seen = 1";
        let first: bool = on_store!(&self.store, pool => sqlx::query_scalar(RECORD)
            .bind(&i.reference_id)
            .bind(i.attempt as i32)
            .bind(&i.provider)
            .bind(i.amount)
            .bind(&hash)
            .bind(outcome.as_str())
            .bind(outcome == Outcome::Pay)
            .fetch_one(pool)
            .await?);
        Ok(first)
    }
}

impl Handler for Sim {
    fn event_types(&self) -> &[&str] {
        &[INSTRUCTION_ISSUED]
    }

    async fn handle(&self, batch: &[Incoming]) -> Result<Vec<Verdict>> {
        let mut received = Vec::new();
        let mut finals = Vec::new();
        for m in batch {
            let Ok(i) = m.envelope.typed::<Instruction>() else {
                continue;
            };
            if !self.behaviour.serves(&i.provider) {
                continue;
            }
            let mut outcome = self.behaviour.outcome(&i.reference_id, i.attempt);
            // An attempt of a reference another attempt paid is answered
            // with that payment and not paid again.
            let paid_as = match self.paid_by_another(&i).await? {
                Some(paid) => {
                    outcome = Outcome::AlreadyPaid;
                    paid
                }
                None => i.attempt,
            };
            // A redelivery is never paid again, but it is answered again with
            // the same reports (same event ids), as a real provider answers a
            // repeated request with its original result: the first answer
            // may have been lost between the ledger's commit and the broker
            // (this batch failed half-way and came again).
            let first = self.record(&i, outcome).await?;
            if outcome == Outcome::Silence {
                continue;
            }
            let trace = sumud_shared::telemetry::continuing(m.traceparent.as_deref());
            let key = self.behaviour.keys.get(&i.provider);
            received.push(report(
                &i,
                PaymentStatus::Received,
                outcome,
                paid_as,
                key,
                &trace,
            ));
            finals.push((i, outcome, paid_as, trace, first));
        }
        self.send_all(&received).await?;
        if !finals.is_empty() {
            tokio::time::sleep(Duration::from_millis(self.behaviour.latency_ms)).await;
        }
        let mut answers = Vec::new();
        for (i, outcome, paid_as, trace, first) in finals {
            let status = if matches!(outcome, Outcome::Pay | Outcome::AlreadyPaid) {
                PaymentStatus::Succeeded
            } else {
                PaymentStatus::Rejected
            };
            let e = report(
                &i,
                status,
                outcome,
                paid_as,
                self.behaviour.keys.get(&i.provider),
                &trace,
            );
            if first && self.behaviour.duplicates(&i.reference_id, i.attempt) {
                // The simulated misbehaviour happens the first time only.
                answers.push(e.clone());
            }
            answers.push(e);
            if first
                && outcome == Outcome::Pay
                && self.behaviour.late_pending(&i.reference_id, i.attempt)
            {
                answers.push(report(
                    &i,
                    PaymentStatus::Pending,
                    outcome,
                    paid_as,
                    self.behaviour.keys.get(&i.provider),
                    &trace,
                ));
            }
        }
        self.send_all(&answers).await?;
        Ok(vec![Verdict::Done; batch.len()])
    }
}

impl App {
    /// Connects, migrates its ledger, ensures topics.
    pub async fn build(settings: Settings, behaviour: Behaviour) -> Result<Self> {
        let (store, producer) =
            sumud_shared::startup::prepare(&settings, 4, &[&MIGRATIONS]).await?;
        Ok(App {
            settings,
            behaviour,
            store,
            producer,
        })
    }

    /// The ledger's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers instructions until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let sim = Sim {
            store: self.store.clone(),
            behaviour: self.behaviour.clone(),
            producer: self.producer.clone(),
            status_topic: self.settings.topics.status.clone(),
        };
        let service = Service {
            name: SERVICE,
            settings: &self.settings,
            store: &self.store,
            producer: &self.producer,
            outbox: None,
        };
        let topics = vec![self.settings.topics.instructions.clone()];
        startup::run(service, topics.clone(), topics, &sim, Vec::new(), shutdown).await
    }
}

/// Ledger checks for tests and release soaks: (attempts seen, instructions
/// paid more than once, attempts that arrived with different content).
pub async fn ledger_audit(store: &Store) -> Result<(i64, i64, i64)> {
    const AUDIT: &str = "SELECT (SELECT count(*) FROM provider_sim.ledger), \
            (SELECT count(*) FROM (SELECT reference_id FROM provider_sim.ledger WHERE paid \
                                   GROUP BY reference_id HAVING count(*) > 1) d), \
            (SELECT count(*) FROM provider_sim.ledger WHERE content_conflict)";
    Ok(on_store!(store, pool => sqlx::query_as(AUDIT).fetch_one(pool).await?))
}
