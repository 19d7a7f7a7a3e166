//! The SQL of grievances (`disbursement.grievances`): filing one (the
//! crisis, the household and any payment it names must be known), listing
//! them, assigning and answering them. The decisions are `grievance.rs`'s
//! and `field_task.rs`'s; the database enforces the same states (CHECKs,
//! one unresolved grievance of a kind per household and crisis, a trigger
//! that keeps an answered grievance final), and every transition's UPDATE
//! is guarded by the state it leaves.

use chrono::{DateTime, Utc};
use sumud_shared::db::{Store, Tx};
use sumud_shared::{on_store, on_tx, Result};

use super::now;
use super::tasks::{guarded, settle, Answer};
use crate::field_task::{self, Step, TaskState};
use crate::grievance::{self, Channel, Kind, Outcome};

/// A complaint as the hotline or the field worker takes it down.
#[derive(Debug, Clone)]
pub struct Complaint<'a> {
    /// Crisis.
    pub crisis: &'a str,
    /// Household (registry id).
    pub household: &'a str,
    /// What went wrong.
    pub kind: Kind,
    /// How it reached us.
    pub channel: Channel,
    /// The hotline agent or field worker who took it.
    pub filed_by: &'a str,
    /// The payment the household names, if any.
    pub instruction: Option<&'a str>,
    /// What was said (no personal data).
    pub note: &'a str,
}

/// What filing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    /// A new grievance, with its id.
    New(i64),
    /// The household already has this complaint open: this id.
    AlreadyOpen(i64),
    /// Not filed; the message says why and what to do.
    Refused(String),
}

/// A grievance as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct GrievanceRow {
    /// Grievance id.
    pub grievance_id: i64,
    /// Crisis.
    pub crisis_id: String,
    /// Household.
    pub household_id: String,
    /// `not_included`, `wrong_amount` or `not_received`.
    pub kind: String,
    /// `hotline` or `field`.
    pub channel: String,
    /// Who took it.
    pub filed_by: String,
    /// The payment named, if any.
    pub instruction_id: Option<String>,
    /// The household's area when it complained.
    pub area_code: Option<String>,
    /// `open`, `assigned` or `resolved`.
    pub state: String,
    /// Who is on it.
    pub assigned_to: Option<String>,
    /// How it ended.
    pub outcome: Option<String>,
    /// Who answered it.
    pub resolved_by: Option<String>,
    /// The answer given (citing the explanation).
    pub answer: Option<String>,
    /// When it was filed.
    pub created_at: DateTime<Utc>,
}

/// Files a complaint: refused unless disbursement knows the crisis, the
/// registry the household, and any payment named is the household's in
/// that crisis. A second complaint of the same kind while one is open
/// joins it.
pub async fn file_grievance(store: &Store, c: &Complaint<'_>) -> Result<Filed> {
    let mut tx = store.begin().await?;
    let filed = file_grievance_in(&mut tx, c).await?;
    if matches!(filed, Filed::New(_)) {
        tx.commit().await?;
    }
    Ok(filed)
}

/// [`file_grievance`] inside the caller's transaction, which the caller
/// commits (a field command commits its own record with it).
pub async fn file_grievance_in(tx: &mut Tx, c: &Complaint<'_>) -> Result<Filed> {
    if c.filed_by.trim().is_empty() {
        return Ok(Filed::Refused("say who took the complaint (--by)".into()));
    }
    let crisis: bool = on_tx!(tx, conn => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM disbursement.crises WHERE crisis_id = $1)")
        .bind(c.crisis)
        .fetch_one(conn)
        .await)?;
    if !crisis {
        return Ok(Filed::Refused(format!(
            "no crisis {} is known to disbursement: check the id (`sumud crisis list`)",
            c.crisis
        )));
    }
    let area: Option<Option<String>> = on_tx!(tx, conn => sqlx::query_scalar(
        "SELECT area_code FROM registry.households_v WHERE household_id = $1")
        .bind(c.household)
        .fetch_optional(conn)
        .await)?;
    let Some(area) = area else {
        return Ok(Filed::Refused(format!(
            "household {} is not in the registry: a household must be registered first \
             (its record is how eligibility decides)",
            c.household
        )));
    };
    if let Some(reference) = c.instruction {
        let theirs: bool = on_tx!(tx, conn => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM disbursement.instructions \
             WHERE instruction_id = $1 AND crisis_id = $2 AND household_id = $3)")
            .bind(reference)
            .bind(c.crisis)
            .bind(c.household)
            .fetch_one(conn)
            .await)?;
        if !theirs {
            return Ok(Filed::Refused(format!(
                "payment {reference} is not household {}'s in crisis {}: file without --instruction, \
                 or check the reference on the household's message",
                c.household, c.crisis
            )));
        }
    }
    const INSERT: &str = "INSERT INTO disbursement.grievances \
             (crisis_id, household_id, kind, channel, filed_by, instruction_id, area_code, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING grievance_id";
    let id: Option<i64> = on_tx!(tx, conn => sqlx::query_scalar(INSERT)
        .bind(c.crisis)
        .bind(c.household)
        .bind(c.kind.as_str())
        .bind(c.channel.as_str())
        .bind(c.filed_by.trim())
        .bind(c.instruction)
        .bind(area)
        .bind(c.note)
        .fetch_optional(conn)
        .await)?;
    if let Some(id) = id {
        return Ok(Filed::New(id));
    }
    let open: i64 = on_tx!(tx, conn => sqlx::query_scalar(
        "SELECT grievance_id FROM disbursement.grievances \
         WHERE crisis_id = $1 AND household_id = $2 AND kind = $3 AND state <> 'resolved'")
        .bind(c.crisis)
        .bind(c.household)
        .bind(c.kind.as_str())
        .fetch_one(conn)
        .await)?;
    Ok(Filed::AlreadyOpen(open))
}

/// Which grievances to list.
#[derive(Debug, Clone, Default)]
pub struct GrievanceFilter {
    /// One crisis only.
    pub crisis: Option<String>,
    /// One state only.
    pub state: Option<TaskState>,
}

/// Grievances by area, then id.
pub async fn grievances(store: &Store, f: &GrievanceFilter) -> Result<Vec<GrievanceRow>> {
    const SQL: &str = "SELECT grievance_id, crisis_id, household_id, kind, channel, filed_by, \
            instruction_id, area_code, state, assigned_to, outcome, resolved_by, answer, created_at \
         FROM disbursement.grievances \
         WHERE (CAST($1 AS text) IS NULL OR crisis_id = $1) \
           AND (CAST($2 AS text) IS NULL OR state = $2) \
         ORDER BY area_code, grievance_id";
    Ok(on_store!(store, pool => sqlx::query_as(SQL)
        .bind(f.crisis.as_deref())
        .bind(f.state.map(TaskState::as_str))
        .fetch_all(pool)
        .await)?)
}

/// The grievance `id`, if there is one.
pub async fn grievance(store: &Store, id: i64) -> Result<Option<GrievanceRow>> {
    const SQL: &str = "SELECT grievance_id, crisis_id, household_id, kind, channel, filed_by, \
            instruction_id, area_code, state, assigned_to, outcome, resolved_by, answer, created_at \
         FROM disbursement.grievances WHERE grievance_id = $1";
    Ok(on_store!(store, pool => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await)?)
}

/// A grievance as a transition reads it: (state, assigned_to, outcome).
async fn held(tx: &mut Tx, id: i64) -> Result<Option<(String, Option<String>, Option<String>)>> {
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    };
    let sql = format!(
        "SELECT state, assigned_to, outcome FROM disbursement.grievances WHERE grievance_id = $1{lock}"
    );
    Ok(on_tx!(tx, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)?)
}

fn unknown(id: i64) -> Answer {
    Answer::Refused(format!(
        "no grievance {id}: `sumud grievances list` shows them with their ids"
    ))
}

fn state_of(s: &str) -> Result<TaskState> {
    TaskState::parse(s).ok_or_else(|| {
        sumud_shared::Error::unreadable("grievance state", format!("{s:?} is no state"))
    })
}

/// Assigns grievance `id` to a case worker or field team `to`.
pub async fn assign_grievance(store: &Store, id: i64, to: &str) -> Result<Answer> {
    let mut tx = store.begin().await?;
    let Some((state, current, _)) = held(&mut tx, id).await? else {
        return Ok(unknown(id));
    };
    match field_task::assignment(id, state_of(&state)?, current.as_deref(), to) {
        Step::AlreadyDone => return Ok(Answer::Unchanged),
        Step::Refused(why) => return Ok(Answer::Refused(why.replace("task", "grievance"))),
        Step::Proceed => {}
    }
    let sql = format!(
        "UPDATE disbursement.grievances SET state = 'assigned', assigned_to = $2, assigned_at = {} \
         WHERE grievance_id = $1 AND state IN ('open', 'assigned')",
        now(&tx)
    );
    let n = on_tx!(&mut tx, conn => sqlx::query(&sql)
        .bind(id)
        .bind(to.trim())
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    settle(tx, guarded("grievance", id, n, None)).await
}

/// Answers grievance `id` as `outcome`, by `by`, with the answer given and
/// the explanation (`sumud explain --json`) it cites.
pub async fn answer_grievance(
    store: &Store,
    id: i64,
    by: &str,
    outcome: Outcome,
    answer: &str,
    explanation: &str,
) -> Result<Answer> {
    if by.trim().is_empty() {
        return Ok(Answer::Refused(
            "say who answered the grievance (--by)".into(),
        ));
    }
    let mut tx = store.begin().await?;
    let Some((state, _, current)) = held(&mut tx, id).await? else {
        return Ok(unknown(id));
    };
    let done = current.as_deref().and_then(Outcome::parse);
    match grievance::answering(id, state_of(&state)?, done, outcome) {
        Step::AlreadyDone => return Ok(Answer::Unchanged),
        Step::Refused(why) => return Ok(Answer::Refused(why)),
        Step::Proceed => {}
    }
    let sql = format!(
        "UPDATE disbursement.grievances SET state = 'resolved', outcome = $2, resolved_by = $3, \
             resolved_at = {}, answer = $4, explanation = $5 \
         WHERE grievance_id = $1 AND state IN ('open', 'assigned')",
        now(&tx)
    );
    let n = on_tx!(&mut tx, conn => sqlx::query(&sql)
        .bind(id)
        .bind(outcome.as_str())
        .bind(by.trim())
        .bind(answer)
        .bind(explanation)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    settle(tx, guarded("grievance", id, n, None)).await
}

/// The explanation an answered grievance cites, as stored.
pub async fn grievance_explanation(store: &Store, id: i64) -> Result<Option<String>> {
    Ok(on_store!(store, pool => sqlx::query_scalar(
        "SELECT explanation FROM disbursement.grievances WHERE grievance_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await)?
    .flatten())
}
