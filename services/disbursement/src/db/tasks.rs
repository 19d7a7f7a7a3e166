//! The SQL of field-verification tasks (`disbursement.verification_tasks`):
//! raising one when a payment fails for good, listing them for field teams,
//! assigning and resolving them. The decisions are `field_task.rs`'s; the
//! database enforces the same states (CHECKs, a trigger that keeps a
//! resolved task final), and every transition's UPDATE is guarded by the
//! state it leaves.
//!
//! Resolving `details_corrected` re-issues the failed payment as the next
//! attempt of the same reference — as a scheduled retry is re-issued
//! (`db/batches.rs`), with an outbox batch the relay publishes — after
//! reserving its amount again inside the crisis budget: the failure
//! released it.

use chrono::{DateTime, Utc};
use sumud_shared::db::sqlite::timestamp;
use sumud_shared::db::{Store, Tx};
use sumud_shared::envelope::Envelope;
use sumud_shared::events::task::{TaskEvent, TASK_ASSIGNED, TASK_OPENED, TASK_RESOLVED};
use sumud_shared::outbox::{self, Pending};
use sumud_shared::{on_store, on_tx, Result};

use super::now;
use crate::field_task::{self, Outcome, Resolution, Step, TaskState};

/// A task as a field team sees it: where to go and why, nothing personal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct TaskRow {
    /// Task id (`sumud tasks assign|resolve --id`).
    pub task_id: i64,
    /// Crisis.
    pub crisis_id: String,
    /// Household (registry id).
    pub household_id: String,
    /// The payment reference that failed.
    pub instruction_id: String,
    /// The attempt whose failure raised the task.
    pub attempt: i32,
    /// Why it failed: a permanent code (`account_closed`, …) or a retryable
    /// one whose retries ran out (`provider_unavailable`, …).
    pub reason_code: String,
    /// `open`, `assigned` or `resolved`.
    pub state: String,
    /// Field worker or team on it.
    pub assigned_to: Option<String>,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// The household's area as the registry has it now (none if the
    /// household was removed since).
    pub area_code: Option<String>,
    /// Its governorate.
    pub governorate: Option<String>,
    /// Its district.
    pub district: Option<String>,
    /// Outcome, once resolved.
    pub outcome: Option<String>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// One crisis only.
    pub crisis: Option<String>,
    /// One state only.
    pub state: Option<TaskState>,
}

/// Tasks by area code, then id (the order a field team plans visits in).
pub async fn tasks(store: &Store, filter: &TaskFilter) -> Result<Vec<TaskRow>> {
    const SQL: &str =
        "SELECT t.task_id, i.crisis_id, t.household_id, t.instruction_id, t.attempt, \
            t.reason_code, t.state, t.assigned_to, t.created_at, h.area_code, h.governorate, \
            h.district, t.outcome \
         FROM disbursement.verification_tasks t \
         JOIN disbursement.instructions i ON i.instruction_id = t.instruction_id \
         LEFT JOIN registry.households_v h ON h.household_id = t.household_id \
         WHERE (CAST($1 AS text) IS NULL OR i.crisis_id = $1) \
           AND (CAST($2 AS text) IS NULL OR t.state = $2) \
         ORDER BY h.area_code, t.task_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL)
        .bind(filter.crisis.as_deref())
        .bind(filter.state.map(TaskState::as_str))
        .fetch_all(pool)
        .await)?)
}

/// Raises a field-verification task for the failed `attempt` of an
/// instruction (once per attempt), announcing it on `topic` (the tasks
/// topic) through the outbox, in the same transaction.
pub async fn raise_task(
    tx: &mut Tx,
    topic: &str,
    household: &str,
    instruction: &str,
    attempt: i32,
    reason: &str,
) -> Result<()> {
    const SQL: &str = "INSERT INTO disbursement.verification_tasks \
             (household_id, instruction_id, attempt, reason_code) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING task_id";
    let raised: Option<i64> = on_tx!(tx, conn => sqlx::query_scalar(SQL)
        .bind(household)
        .bind(instruction)
        .bind(attempt)
        .bind(reason)
        .fetch_optional(conn)
        .await)?;
    if let Some(id) = raised {
        announce(tx, topic, id, TASK_OPENED).await?;
    }
    Ok(())
}

/// Writes the task as it now stands into the outbox as an `event_type`
/// event for `topic`, inside the transaction that changed it: a field
/// app following the topic sees every change that committed, in order
/// (one key per task), and none that did not.
async fn announce(tx: &mut Tx, topic: &str, id: i64, event_type: &str) -> Result<()> {
    const SQL: &str =
        "SELECT t.task_id, i.crisis_id, t.household_id, t.instruction_id, t.attempt, \
            t.reason_code, t.state, t.assigned_to, t.outcome, t.resolved_by, t.reissued_attempt \
         FROM disbursement.verification_tasks t \
         JOIN disbursement.instructions i ON i.instruction_id = t.instruction_id \
         WHERE t.task_id = $1";
    type Row = (
        i64,
        String,
        String,
        String,
        i32,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i32>,
    );
    let r: Row = on_tx!(tx, conn => sqlx::query_as(SQL).bind(id).fetch_one(conn).await)?;
    let event = TaskEvent {
        task_id: r.0,
        crisis_id: r.1,
        household_id: r.2,
        instruction_id: r.3,
        attempt: r.4,
        reason_code: r.5,
        state: r.6,
        assigned_to: r.7,
        outcome: r.8,
        resolved_by: r.9,
        reissued_attempt: r.10,
        changed_at: Utc::now(),
    };
    let key = id.to_string();
    let envelope = Envelope::new(TASK_SOURCE, event_type, Some(key.clone()), event);
    outbox::enqueue_tx(
        tx,
        "disbursement",
        vec![Pending::event(topic, &key, &envelope)],
    )
    .await
}

/// The CloudEvents `source` of task events.
const TASK_SOURCE: &str = "urn:sumud:disbursement";

/// What an assignment or a resolution did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Applied; for `details_corrected`, the attempt re-issued.
    Changed {
        /// The attempt now out with the provider, if the payment was re-issued.
        reissued: Option<i32>,
    },
    /// Already so: nothing changed.
    Unchanged,
    /// Not allowed; the message says why and what to do.
    Refused(String),
}

/// A task as a transition reads it.
#[derive(Debug, sqlx::FromRow)]
struct Held {
    household_id: String,
    instruction_id: String,
    attempt: i32,
    state: String,
    assigned_to: Option<String>,
    outcome: Option<String>,
    /// The corrected destination recorded with `details_corrected`:
    /// (channel, provider, token).
    corrected_channel: Option<String>,
    corrected_provider: Option<String>,
    corrected_token: Option<String>,
}

async fn held(tx: &mut Tx, id: i64) -> Result<Option<Held>> {
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    };
    let sql = format!(
        "SELECT household_id, instruction_id, attempt, state, assigned_to, outcome, \
                corrected_channel, corrected_provider, corrected_token \
         FROM disbursement.verification_tasks WHERE task_id = $1{lock}"
    );
    Ok(on_tx!(tx, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)?)
}

fn unknown(id: i64) -> Answer {
    Answer::Refused(format!(
        "no verification task {id}: `sumud tasks list` shows the tasks with their ids"
    ))
}

fn state_of(h: &Held) -> Result<TaskState> {
    TaskState::parse(&h.state).ok_or_else(|| {
        sumud_shared::Error::unreadable("task state", format!("{:?} is no state", h.state))
    })
}

/// Assigns task `id` to a field worker or team `to`, announcing it on
/// `topic`.
pub async fn assign(store: &Store, topic: &str, id: i64, to: &str) -> Result<Answer> {
    let mut tx = store.begin().await?;
    let answer = assign_in(&mut tx, topic, id, to).await?;
    settle(tx, answer).await
}

/// [`assign`] inside the caller's transaction, which the caller commits
/// when the answer is not [`Answer::Refused`] (a field command commits its
/// own record with it).
pub async fn assign_in(tx: &mut Tx, topic: &str, id: i64, to: &str) -> Result<Answer> {
    let Some(h) = held(tx, id).await? else {
        return Ok(unknown(id));
    };
    match field_task::assignment(id, state_of(&h)?, h.assigned_to.as_deref(), to) {
        Step::AlreadyDone => return Ok(Answer::Unchanged),
        Step::Refused(why) => return Ok(Answer::Refused(why)),
        Step::Proceed => {}
    }
    let sql = format!(
        "UPDATE disbursement.verification_tasks SET state = 'assigned', assigned_to = $2, \
             assigned_at = {} \
         WHERE task_id = $1 AND state IN ('open', 'assigned')",
        now(tx)
    );
    let n = on_tx!(tx, conn => sqlx::query(&sql)
        .bind(id)
        .bind(to)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    if n == 1 {
        announce(tx, topic, id, TASK_ASSIGNED).await?;
    }
    Ok(guarded("task", id, n, None))
}

/// Resolves task `id` as `resolution`, by `by`, with a `note` (no personal
/// data: it is kept outside the registry). A re-issued attempt gets a
/// deadline `deadline_secs` from now, as scheduled retries do. The change
/// is announced on `topic`.
pub async fn resolve(
    store: &Store,
    topic: &str,
    id: i64,
    by: &str,
    note: &str,
    resolution: &Resolution,
    deadline_secs: i64,
) -> Result<Answer> {
    let mut tx = store.begin().await?;
    let answer = resolve_in(&mut tx, topic, id, by, note, resolution, deadline_secs).await?;
    settle(tx, answer).await
}

/// [`resolve`] inside the caller's transaction, which the caller commits
/// when the answer is not [`Answer::Refused`].
pub async fn resolve_in(
    tx: &mut Tx,
    topic: &str,
    id: i64,
    by: &str,
    note: &str,
    resolution: &Resolution,
    deadline_secs: i64,
) -> Result<Answer> {
    if by.trim().is_empty() {
        return Ok(Answer::Refused(
            "say who resolved the task (--by)".to_owned(),
        ));
    }
    let outcome = resolution.outcome();
    // The instruction first, as a status report locks it, then the task.
    let instruction: Option<String> = on_tx!(tx, conn => sqlx::query_scalar(
        "SELECT instruction_id FROM disbursement.verification_tasks WHERE task_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    let Some(instruction) = instruction else {
        return Ok(unknown(id));
    };
    let Some(payment) = super::instruction_for_update(tx, &instruction).await? else {
        return Ok(unknown(id));
    };
    let Some(h) = held(tx, id).await? else {
        return Ok(unknown(id));
    };
    let done = h.outcome.as_deref().and_then(Outcome::parse);
    match field_task::resolution(id, state_of(&h)?, done, outcome) {
        Step::AlreadyDone => {
            // The same outcome again; a correction must also name the same
            // destination, or it would be acknowledged and silently dropped.
            if let Resolution::DetailsCorrected(d) = resolution {
                let kept = (
                    h.corrected_channel.as_deref(),
                    h.corrected_provider.as_deref(),
                    h.corrected_token.as_deref(),
                );
                let asked = (
                    Some(d.channel.as_str()),
                    Some(d.provider.as_str()),
                    Some(d.account_token.as_str()),
                );
                if kept != asked {
                    return Ok(Answer::Refused(format!(
                        "task {id} was already resolved as details_corrected to another destination; \
                         a resolved task is final: correct the household's record in the registry"
                    )));
                }
            }
            return Ok(Answer::Unchanged);
        }
        Step::Refused(why) => return Ok(Answer::Refused(why)),
        Step::Proceed => {}
    }
    let crisis = payment.crisis_id.as_str();
    let mut reissued = None;
    match resolution {
        Resolution::DetailsCorrected(to) => {
            if let Some(why) = reissue_refused(tx, id, &h, &payment, &to.provider).await? {
                return Ok(Answer::Refused(why));
            }
            // The failure released the money: reserve it again, inside the cap.
            let reserved = on_tx!(tx, conn => sqlx::query(
                "UPDATE disbursement.crises SET reserved_minor = reserved_minor + $2 \
                 WHERE crisis_id = $1 AND state = 'active' AND reserved_minor + $2 <= budget_minor")
                .bind(crisis)
                .bind(payment.amount_minor)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?;
            if reserved != 1 {
                let (budget, held_minor): (i64, i64) = on_tx!(tx, conn => sqlx::query_as(
                    "SELECT budget_minor, reserved_minor FROM disbursement.crises WHERE crisis_id = $1")
                    .bind(crisis)
                    .fetch_one(conn)
                    .await)?;
                return Ok(Answer::Refused(format!(
                    "crisis {crisis}'s budget has {} (minor units) left and paying {} again needs {}: \
                     raise the budget by an amendment, then resolve again, or resolve the task as unreachable",
                    budget - held_minor,
                    instruction,
                    payment.amount_minor
                )));
            }
            let attempt = reissue(tx, &instruction, h.attempt, crisis, to, deadline_secs).await?;
            reissued = Some(attempt);
        }
        Resolution::Ineligible => {
            on_tx!(tx, conn => sqlx::query(
                "INSERT INTO disbursement.entitlement_stops (crisis_id, household_id, task_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(crisis)
                .bind(&h.household_id)
                .bind(id)
                .execute(conn)
                .await
                .map(drop))?;
        }
        Resolution::Unreachable => {}
    }
    let (channel, provider, token) = match resolution {
        Resolution::DetailsCorrected(d) => (
            Some(d.channel.as_str()),
            Some(d.provider.as_str()),
            Some(d.account_token.as_str()),
        ),
        _ => (None, None, None),
    };
    let sql = format!(
        "UPDATE disbursement.verification_tasks SET state = 'resolved', outcome = $2, \
             resolved_by = $3, note = $4, resolved_at = {now}, corrected_channel = $5, \
             corrected_provider = $6, corrected_token = $7, reissued_attempt = $8 \
         WHERE task_id = $1 AND state IN ('open', 'assigned')",
        now = now(tx)
    );
    let n = on_tx!(tx, conn => sqlx::query(&sql)
        .bind(id)
        .bind(outcome.as_str())
        .bind(by)
        .bind(note)
        .bind(channel)
        .bind(provider)
        .bind(token)
        .bind(reissued)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    if n == 1 {
        announce(tx, topic, id, TASK_RESOLVED).await?;
    }
    Ok(guarded("task", id, n, reissued))
}

/// The answer of a transition of `what` (`task`, `grievance`) `id` whose
/// guarded UPDATE touched `n` rows: applied when it touched the row,
/// refused when another writer moved it out of the state the UPDATE
/// required.
pub(super) fn guarded(what: &str, id: i64, n: u64, reissued: Option<i32>) -> Answer {
    if n != 1 {
        return Answer::Refused(format!(
            "{what} {id} changed meanwhile; list it again (`sumud {what}s list`)"
        ));
    }
    Answer::Changed { reissued }
}

/// Ends a transition: committed when it changed the task, rolled back
/// otherwise (a refusal leaves nothing behind; an unchanged task has
/// nothing to keep).
pub(super) async fn settle(tx: Tx, answer: Answer) -> Result<Answer> {
    if matches!(answer, Answer::Changed { .. }) {
        tx.commit().await?;
    }
    Ok(answer)
}

/// Why the payment of task `id` cannot be re-issued, if it cannot: it
/// must still stand failed at the attempt the task was raised for, never
/// paid (a success after the failure is an incident, and paying again
/// would pay twice), its crisis active, its household still entitled and
/// not found ineligible, and the provider registered.
async fn reissue_refused(
    tx: &mut Tx,
    id: i64,
    h: &Held,
    payment: &super::Held,
    provider: &str,
) -> Result<Option<String>> {
    if payment.status != "failed" || payment.attempt != h.attempt || payment.provider_ref.is_some()
    {
        return Ok(Some(format!(
            "payment {} of task {id} is no longer the failed attempt {} (it is {} at attempt {}); \
             resolve the task as unreachable",
            h.instruction_id, h.attempt, payment.status, payment.attempt
        )));
    }
    const OWED: &str = "SELECT \
            EXISTS (SELECT 1 FROM disbursement.incidents WHERE instruction_id = $1), \
            EXISTS (SELECT 1 FROM disbursement.crises WHERE crisis_id = $2 AND state = 'active'), \
            EXISTS (SELECT 1 FROM disbursement.instructions i JOIN disbursement.entitlements e \
                      ON e.crisis_id = i.crisis_id AND e.household_id = i.household_id AND e.kind = i.kind \
                    WHERE i.instruction_id = $1 AND e.status = 'entitled'), \
            EXISTS (SELECT 1 FROM disbursement.entitlement_stops s \
                    WHERE s.crisis_id = $2 AND s.household_id = $3), \
            EXISTS (SELECT 1 FROM disbursement.providers p \
                    WHERE p.provider_id = $4 AND p.revoked_at IS NULL)";
    let (incident, active, entitled, stopped, registered): (bool, bool, bool, bool, bool) = on_tx!(tx, conn => sqlx::query_as(OWED)
            .bind(&h.instruction_id)
            .bind(&payment.crisis_id)
            .bind(&h.household_id)
            .bind(provider)
            .fetch_one(conn)
            .await)?;
    let why = if incident {
        Some(format!(
            "payment {} has an incident (the provider reported it paid after it failed): \
             settle it with the provider (`sumud reconcile`) before paying again",
            h.instruction_id
        ))
    } else if !active {
        Some(format!(
            "crisis {} is not active: nothing is paid any more; resolve the task as unreachable",
            payment.crisis_id
        ))
    } else if !entitled || stopped {
        Some(format!(
            "household {} is no longer entitled in crisis {}: nothing is re-issued",
            h.household_id, payment.crisis_id
        ))
    } else if !registered {
        Some(format!(
            "provider {provider:?} is not registered or was revoked (`sumud providers list`)"
        ))
    } else {
        None
    };
    Ok(why)
}

/// Re-issues a failed instruction standing at `attempt` as `attempt + 1`
/// to the corrected destination, with a fresh deadline, recording it as
/// an outbox batch of its own (as `reissue_due` does for retries).
/// Returns the new attempt.
async fn reissue(
    tx: &mut Tx,
    instruction: &str,
    attempt: i32,
    crisis: &str,
    to: &field_task::Destination,
    deadline_secs: i64,
) -> Result<i32> {
    let deadline = Utc::now() + chrono::Duration::seconds(deadline_secs);
    let sql = format!(
        "UPDATE disbursement.instructions SET attempt = attempt + 1, status = 'instructed', \
             reason_code = NULL, next_attempt_at = NULL, deadline_at = $3, overdue = false, \
             channel = $4, provider = $5, account_token = $6, updated_at = {} \
         WHERE instruction_id = $1 AND attempt = $2 AND status = 'failed' \
         RETURNING attempt",
        now(tx)
    );
    macro_rules! update {
        ($conn:expr, $deadline:expr) => {
            sqlx::query_scalar(&sql)
                .bind(instruction)
                .bind(attempt)
                .bind($deadline)
                .bind(to.channel.as_str())
                .bind(&to.provider)
                .bind(&to.account_token)
                .fetch_one($conn)
                .await?
        };
    }
    let next: i32 = match tx {
        Tx::Postgres(c) => {
            let next: i32 = update!(&mut **c, deadline);
            sqlx::query(
                "INSERT INTO disbursement.instruction_batches (crisis_id, ids, attempts, traceparent, deadline_at) \
                 VALUES ($1, ARRAY[$2::text], ARRAY[$3::int4], \
                         (SELECT traceparent FROM disbursement.crises WHERE crisis_id = $1), $4)",
            )
            .bind(crisis)
            .bind(instruction)
            .bind(next)
            .bind(deadline)
            .execute(&mut **c)
            .await?;
            next
        }
        Tx::Sqlite(c) => {
            let next: i32 = update!(&mut **c, timestamp(deadline));
            let trace: Option<String> = sqlx::query_scalar(
                "SELECT traceparent FROM disbursement.crises WHERE crisis_id = ?1",
            )
            .bind(crisis)
            .fetch_optional(&mut **c)
            .await?
            .flatten();
            super::insert_batch_sqlite(
                c,
                crisis,
                &[(instruction.to_owned(), next)],
                trace.as_deref(),
                deadline,
            )
            .await?;
            next
        }
    };
    Ok(next)
}
