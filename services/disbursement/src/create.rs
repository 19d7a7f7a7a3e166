//! Creating the instructions now due: the one place where money is reserved
//! against a crisis budget as instructions come into being. On PostgreSQL
//! (`create/postgres.rs`) what is due is read once per pass through a
//! cursor and written by two connections in chunks, each chunk in the
//! transaction that reserves its amount and records its outbox batch; on
//! SQLite (`create/sqlite.rs`) each chunk is read and written in one
//! transaction that holds the file's write lock. Either way a committed
//! chunk's messages go to the relay in memory ([`Handoff`]).

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use sumud_shared::db::Store;
use sumud_shared::Result;

use crate::config::DisbursementConfig;
use crate::db::InstructionRow;
use crate::instruction_event::Renderer;
use crate::publisher::{Committed, Handoff};

/// Instructions created per transaction of a pass: each transaction
/// reserves what it creates, and the relay publishes one while the next
/// is written.
const CHUNK: usize = 10_000;

/// A tranche now due, read with what its instruction needs, in the column
/// order of the passes' queries (decoded by position: a pass decodes
/// hundreds of thousands of rows, and by name each field is a lookup).
struct Due {
    household_id: String,
    kind: String,
    tranche: i32,
    part: i32,
    amount_minor: i64,
    currency: String,
    crisis_revision: i32,
    scheduled_at: DateTime<Utc>,
    payment_channel: String,
    payment_provider: String,
    account_token: String,
}

/// [`Due`] from a row of either backend, by position.
macro_rules! due_from_row {
    ($row:ty) => {
        impl sqlx::FromRow<'_, $row> for Due {
            fn from_row(r: &$row) -> sqlx::Result<Self> {
                use sqlx::Row;
                Ok(Due {
                    household_id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    tranche: r.try_get(2)?,
                    part: r.try_get(3)?,
                    amount_minor: r.try_get(4)?,
                    currency: r.try_get(5)?,
                    crisis_revision: r.try_get(6)?,
                    scheduled_at: r.try_get(7)?,
                    payment_channel: r.try_get(8)?,
                    payment_provider: r.try_get(9)?,
                    account_token: r.try_get(10)?,
                })
            }
        }
    };
}
due_from_row!(sqlx::postgres::PgRow);
due_from_row!(sqlx::sqlite::SqliteRow);

/// Creates every instruction now due for one crisis, each in the
/// transaction that reserves its amount against the budget and records it
/// in the outbox, in transactions of up to [`CHUNK`]; the CHECK on the
/// crisis row is the last line of defence. What is created is a prefix of
/// the due order (earliest due first, then household, kind, tranche, part)
/// whenever the budget could run out; when the remaining budget covers
/// everything due, order cannot change what is created and the pass reads
/// in whatever order is cheapest. The schedule, the deadline and the
/// pseudonym secret come from `config`; committed chunks go to `handoff`.
/// Returns how many were created.
pub async fn create_due(
    store: &Store,
    crisis_id: &str,
    config: &DisbursementConfig,
    handoff: &Handoff,
) -> Result<u64> {
    let handoff = &handoff.for_pass();
    match store {
        Store::Postgres(pool) => postgres::create_due(pool, crisis_id, config, handoff).await,
        Store::Sqlite(pool) => sqlite::create_due(pool, crisis_id, config, handoff).await,
    }
}

/// How many of `amounts`, in due order, fit in `room`: the running total
/// in due order stops at the remaining budget.
fn fitting(amounts: impl IntoIterator<Item = i64>, room: i64) -> usize {
    let mut running = 0i64;
    amounts
        .into_iter()
        .take_while(|a| match running.checked_add(*a) {
            // An overflowing total fits no budget (saturating would let it
            // pass a room of i64::MAX).
            Some(total) if total <= room => {
                running = total;
                true
            }
            _ => false,
        })
        .count()
}

/// A new instruction: its first attempt as published, and the columns of
/// its row the message does not carry.
struct New {
    row: InstructionRow,
    household_id: String,
    kind: String,
}

/// A chunk of new instructions in due order, with their messages.
struct Chunk {
    crisis_id: String,
    news: Vec<New>,
    /// (key, payload) of each, rendered before the commit so that the
    /// relay only enqueues them.
    messages: Vec<(String, Vec<u8>)>,
}

impl Chunk {
    /// Ids and pseudonyms by the rules of `src/instruction.rs`; messages as
    /// the relay renders them.
    fn new(crisis_id: &str, secret: &str, due: Vec<Due>) -> Self {
        let pseudonyms = crate::instruction::Pseudonyms::new(secret);
        let news: Vec<New> = due
            .into_iter()
            .map(|d| New {
                row: InstructionRow {
                    instruction_id: crate::instruction::part_id(
                        crisis_id,
                        &d.household_id,
                        &d.kind,
                        d.tranche as u32,
                        d.part as u32,
                    ),
                    attempt: 1,
                    crisis_id: crisis_id.to_owned(),
                    crisis_revision: d.crisis_revision,
                    beneficiary_ref: pseudonyms.of(&d.household_id),
                    account_token: d.account_token,
                    amount_minor: d.amount_minor,
                    currency: d.currency,
                    channel: d.payment_channel,
                    provider: d.payment_provider,
                    tranche: d.tranche,
                    part: d.part,
                    scheduled_at: d.scheduled_at,
                },
                household_id: d.household_id,
                kind: d.kind,
            })
            .collect();
        let mut renderer = Renderer::new(Utc::now());
        let messages = news.iter().map(|n| renderer.render(&n.row)).collect();
        Chunk {
            crisis_id: crisis_id.to_owned(),
            news,
            messages,
        }
    }

    fn len(&self) -> usize {
        self.news.len()
    }

    fn total(&self) -> i64 {
        self.news.iter().map(|n| n.row.amount_minor).sum()
    }

    /// Keeps the first `n` instructions.
    fn truncate(&mut self, n: usize) {
        self.news.truncate(n);
        self.messages.truncate(n);
    }

    /// Keeps the instructions whose ids are in `kept`, in order.
    fn retain_ids(&mut self, kept: &std::collections::HashSet<String>) {
        let keep: Vec<bool> = self
            .news
            .iter()
            .map(|n| kept.contains(&n.row.instruction_id))
            .collect();
        let mut k = keep.iter();
        self.news.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.messages.retain(|_| *k.next().unwrap_or(&false));
    }

    /// The (id, attempt) list of its outbox batch.
    fn attempts(&self) -> Vec<(String, i32)> {
        self.news
            .iter()
            .map(|n| (n.row.instruction_id.clone(), n.row.attempt))
            .collect()
    }

    /// The relay's part, once committed as batch `batch_id`.
    fn committed(self, batch_id: i64, traceparent: Option<String>) -> Committed {
        Committed {
            batch_id,
            traceparent,
            messages: self.messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fitting;

    #[test]
    fn a_chunk_is_cut_where_the_running_total_passes_the_room() {
        assert_eq!(fitting([3, 4, 5], 7), 2);
        assert_eq!(fitting([3, 4, 5], 6), 1);
        assert_eq!(fitting([3, 4, 5], 12), 3);
        assert_eq!(fitting([3, 4, 5], 0), 0);
        // A later small amount does not slip in after a cut: a prefix only.
        assert_eq!(fitting([3, 9, 1], 5), 1);
        assert_eq!(fitting([i64::MAX, 1], i64::MAX), 1);
    }
}
