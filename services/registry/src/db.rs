//! All SQL of the registry service.
//!
//! A batch is written in one of two ways, both giving exactly the result of
//! "read what is stored, [`decide`], upsert the winners with a version guard":
//!
//! - **fresh**: when the batch's households are not stored yet (the usual case
//!   while a registry is first loaded), nothing stored can change the
//!   decision, so the winners are decided against an empty table and written
//!   with one `COPY` straight into `registry.households`. `COPY` is a single
//!   statement, so it is atomic: if any household turns out to exist after all
//!   (unique violation), nothing was written and the batch falls back to the
//!   merge path.
//! - **merge**: one transaction reads the stored versions, decides, `COPY`s the
//!   winners into a session-private staging table and upserts them from there
//!   with `ON CONFLICT … WHERE version < EXCLUDED.version`, so an older or equal
//!   version never overwrites a newer one, even against a racing writer.
//!
//! The `COPY` paths are PostgreSQL-specific. The decision itself is pure
//! ([`crate::changes`]), so the SQLite backend ([`sqlite`]) needs only its
//! own lookup of what is stored and an upsert with the same guard.

/// How both backends' upserts end: a stored household is replaced only by
/// a newer version, so a write is idempotent under redelivery and safe
/// against a racing writer. The target table is aliased `h`.
macro_rules! newer_version_wins {
    () => {
        " ON CONFLICT (household_id) DO UPDATE SET
            version = EXCLUDED.version, removed = EXCLUDED.removed,
            area_code = EXCLUDED.area_code, governorate = EXCLUDED.governorate,
            district = EXCLUDED.district, members = EXCLUDED.members,
            welfare_score = EXCLUDED.welfare_score, flags = EXCLUDED.flags,
            programmes = EXCLUDED.programmes, payment_channel = EXCLUDED.payment_channel,
            payment_provider = EXCLUDED.payment_provider, account_token = EXCLUDED.account_token,
            personal = EXCLUDED.personal, event_id = EXCLUDED.event_id,
            src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,
            updated_at = EXCLUDED.updated_at
        WHERE h.version < EXCLUDED.version"
    };
}

pub mod match_keys;
pub mod sqlite;

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use sumud_shared::db::copy::{
    boolean, bytes, field_end, field_start, float8, int4, int8, null, row, HEADER, TRAILER,
};
use sumud_shared::db::{Migrations, Store};
use sumud_shared::Result;

use crate::changes::{decide, Change, Decision, Stored, Versioned};

/// The registry's migrations (schema `registry`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The same schema on the embedded default's SQLite file.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-sqlite");

/// The registry's migrations on both backends.
pub static MIGRATIONS: Migrations = Migrations {
    service: crate::SERVICE,
    postgres: &MIGRATOR,
    sqlite: Some(&SQLITE_MIGRATOR),
};

/// The columns every `COPY` of this module fills, in [`encode_rows`] order.
/// `updated_at` is left to the database (`now()`, the transaction time).
const COLUMNS: &str = "household_id, version, removed, area_code, governorate, district, members, \
     welfare_score, flags, programmes, payment_channel, payment_provider, account_token, \
     personal, event_id, src_partition, src_offset";

/// PostgreSQL's `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// How a batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// No household of the batch was stored: one `COPY` into the table.
    Fresh,
    /// Stored versions were read and the winners upserted from staging.
    Merge {
        /// How many of the batch's households were already stored.
        stored: usize,
    },
}

/// The verdicts for a batch and how it was written.
#[derive(Debug)]
pub struct Written {
    /// Verdicts and winners, as [`decide`] made them against what was stored.
    pub decision: Decision,
    /// Which path wrote it.
    pub path: Path,
    /// Rows inserted or updated.
    pub rows: u64,
}

/// What is stored for the given households, in one round trip.
pub async fn stored(conn: &mut PgConnection, ids: &[&str]) -> Result<HashMap<String, Stored>> {
    let rows: Vec<(String, i64, String, i32, i64)> = sqlx::query_as(
        "SELECT household_id, version, event_id, src_partition, src_offset \
         FROM registry.households WHERE household_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, version, event_id, partition, offset)| {
            (
                id,
                Stored {
                    version,
                    event_id,
                    partition,
                    offset,
                },
            )
        })
        .collect())
}

/// Decides and writes a batch (in partition order). On PostgreSQL, with
/// `try_fresh` the fresh path is tried first; it falls back to the merge
/// path by itself. On SQLite there is one path.
pub async fn write(store: &Store, batch: &[Versioned], try_fresh: bool) -> Result<Written> {
    match store {
        Store::Postgres(pool) => write_postgres(pool, batch, try_fresh).await,
        Store::Sqlite(pool) => sqlite::write(pool, batch).await,
    }
}

async fn write_postgres(pool: &PgPool, batch: &[Versioned], try_fresh: bool) -> Result<Written> {
    if batch.is_empty() {
        return Ok(Written {
            decision: Decision {
                verdicts: Vec::new(),
                winners: Vec::new(),
            },
            path: Path::Fresh,
            rows: 0,
        });
    }
    if try_fresh {
        if let Some(written) = write_fresh(pool, batch).await? {
            return Ok(written);
        }
    }
    write_merge(pool, batch).await
}

/// The fresh path; `None` when some household was stored after all.
///
/// A large batch is split in two halves (by household, so they never touch
/// the same row) copied on two connections at once, which lets the database
/// use a second core. If one half meets a stored household and the other
/// went in, the merge path that follows finds the rows this very batch
/// wrote and treats them as redeliveries: the verdicts come out the same.
async fn write_fresh(pool: &PgPool, batch: &[Versioned]) -> Result<Option<Written>> {
    let decision = decide(batch, &HashMap::new());
    let winners = &decision.winners;
    let copied = if winners.len() >= PARALLEL_COPY_MIN {
        let (first, second) = winners.split_at(winners.len() / 2);
        let (a, b) = tokio::join!(
            copy_fresh(pool, batch, first),
            copy_fresh(pool, batch, second)
        );
        match (a, b) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            // A failure other than a stored household decides (retry or isolate).
            (Err(a), Err(b)) => Err(if is_unique_violation(&a) { b } else { a }),
        }
    } else {
        copy_fresh(pool, batch, winners).await
    };
    match copied {
        Ok(rows) => Ok(Some(Written {
            decision,
            path: Path::Fresh,
            rows,
        })),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Winners from this many on are copied on two connections.
const PARALLEL_COPY_MIN: usize = 2 * COPY_CHUNK_ROWS;

/// One `COPY` of winners straight into the table, on a connection of its own.
async fn copy_fresh(pool: &PgPool, batch: &[Versioned], winners: &[usize]) -> sqlx::Result<u64> {
    let mut conn = pool.acquire().await?;
    copy_winners(
        &mut conn,
        &format!("COPY registry.households ({COLUMNS}) FROM STDIN"),
        batch,
        winners,
    )
    .await
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(e) if e.code().as_deref() == Some(UNIQUE_VIOLATION))
}

/// Creates the session's staging table unless it exists. Temporary, so it
/// is private to the connection and never WAL-logged; its rows go at commit.
const ENSURE_STAGE: &str = "DO $$ BEGIN
    IF to_regclass('pg_temp.registry_stage') IS NULL THEN
        CREATE TEMPORARY TABLE registry_stage (
            household_id text NOT NULL, version bigint NOT NULL, removed boolean NOT NULL,
            area_code text, governorate text, district text, members integer,
            welfare_score double precision, flags text[] NOT NULL, programmes text[] NOT NULL,
            payment_channel text, payment_provider text, account_token text, personal jsonb,
            event_id text NOT NULL, src_partition integer NOT NULL, src_offset bigint NOT NULL
        ) ON COMMIT DELETE ROWS;
    END IF;
END $$";

/// Moves the staged winners into the table. The `version <` guard makes the
/// write idempotent and safe against a racing writer.
const UPSERT_STAGED: &str = concat!(
    "INSERT INTO registry.households AS h
        (household_id, version, removed, area_code, governorate, district, members,
         welfare_score, flags, programmes, payment_channel, payment_provider, account_token,
         personal, event_id, src_partition, src_offset, updated_at)
    SELECT household_id, version, removed, area_code, governorate, district, members,
           welfare_score, flags, programmes, payment_channel, payment_provider, account_token,
           personal, event_id, src_partition, src_offset, now()
    FROM pg_temp.registry_stage",
    newer_version_wins!()
);

/// The merge path, in one transaction.
async fn write_merge(pool: &PgPool, batch: &[Versioned]) -> Result<Written> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = batch.iter().map(|v| v.household_id.as_str()).collect();
    let stored = stored(&mut tx, &ids).await?;
    let decision = decide(batch, &stored);
    let mut rows = 0;
    if !decision.winners.is_empty() {
        sqlx::query(ENSURE_STAGE).execute(&mut *tx).await?;
        copy_winners(
            &mut tx,
            &format!("COPY pg_temp.registry_stage ({COLUMNS}) FROM STDIN"),
            batch,
            &decision.winners,
        )
        .await?;
        rows = sqlx::query(UPSERT_STAGED)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(Written {
        decision,
        path: Path::Merge {
            stored: stored.len(),
        },
        rows,
    })
}

/// Rows encoded and sent per `COPY` message: the database parses one chunk
/// while the next is being encoded.
const COPY_CHUNK_ROWS: usize = 1000;

/// Runs one `COPY … FROM STDIN (FORMAT binary)` of the winners. Binary
/// spares the database parsing numbers and array literals.
async fn copy_winners(
    conn: &mut PgConnection,
    statement: &str,
    batch: &[Versioned],
    winners: &[usize],
) -> sqlx::Result<u64> {
    let mut copy = conn
        .copy_in_raw(&format!("{statement} (FORMAT binary)"))
        .await?;
    let mut first = true;
    for chunk in winners.chunks(COPY_CHUNK_ROWS) {
        let mut data = Vec::with_capacity(chunk.len() * 400 + HEADER.len());
        if first {
            data.extend_from_slice(HEADER);
            first = false;
        }
        encode_rows(&mut data, batch, chunk);
        copy.send(data).await?;
    }
    if first {
        copy.send(HEADER).await?;
    }
    copy.send(TRAILER).await?;
    copy.finish().await
}

/// Fields per row, as in [`COLUMNS`].
const FIELDS: i16 = 17;
/// The `text` type, elements of `text[]`.
const TEXT_OID: i32 = 25;
/// The only `jsonb` binary format version.
const JSONB_VERSION: u8 = 1;

/// Appends the winners as binary `COPY` rows, columns as in [`COLUMNS`].
/// Flags and programmes become arrays exactly as
/// `string_to_array(<joined by ','>, ',')` would make them.
pub fn encode_rows(out: &mut Vec<u8>, batch: &[Versioned], winners: &[usize]) {
    let mut joined = String::new();
    for &i in winners {
        let v = &batch[i];
        row(out, FIELDS);
        bytes(out, v.household_id.as_bytes());
        int8(out, v.version);
        match &v.change {
            Change::Upsert(u) => {
                let h = &u.household;
                boolean(out, false);
                bytes(out, h.area_code.as_bytes());
                bytes(out, u.area.governorate.as_bytes());
                match &u.area.district {
                    Some(d) => bytes(out, d.as_bytes()),
                    None => null(out),
                }
                int4(out, h.members);
                float8(out, h.welfare_score);
                joined.clear();
                for (n, f) in h.flags.iter().enumerate() {
                    if n > 0 {
                        joined.push(',');
                    }
                    joined.push_str(f.as_str());
                }
                split_array(out, &joined);
                joined.clear();
                for (n, p) in h.programmes.iter().enumerate() {
                    if n > 0 {
                        joined.push(',');
                    }
                    joined.push_str(p);
                }
                split_array(out, &joined);
                bytes(out, h.payment.channel.as_str().as_bytes());
                bytes(out, h.payment.provider.as_bytes());
                bytes(out, h.payment.account_token.as_bytes());
                match &h.personal {
                    Some(p) => {
                        let at = field_start(out);
                        out.push(JSONB_VERSION);
                        // Writing a map of strings into memory cannot fail.
                        let _ = serde_json::to_writer(&mut *out, p);
                        field_end(out, at);
                    }
                    None => null(out),
                }
            }
            Change::Remove => {
                boolean(out, true);
                for _ in 0..5 {
                    null(out); // area_code, governorate, district, members, welfare_score
                }
                split_array(out, "");
                split_array(out, "");
                for _ in 0..4 {
                    null(out); // payment_channel, payment_provider, account_token, personal
                }
            }
        }
        bytes(out, v.event_id.as_bytes());
        int4(out, v.partition);
        int8(out, v.offset);
    }
}

/// A one-dimensional `text[]` holding what `string_to_array(joined, ',')`
/// returns: no element for an empty string, else the comma-separated parts.
fn split_array(out: &mut Vec<u8>, joined: &str) {
    let at = field_start(out);
    if joined.is_empty() {
        // No dimensions, no nulls, element type text.
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&TEXT_OID.to_be_bytes());
    } else {
        let parts = joined.split(',').count() as i32;
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&TEXT_OID.to_be_bytes());
        out.extend_from_slice(&parts.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for part in joined.split(',') {
            bytes(out, part.as_bytes());
        }
    }
    field_end(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Upsert;
    use sumud_shared::areas::AreaPath;
    use sumud_shared::events::household::{
        Channel, Household, PaymentDestination, VulnerabilityFlag,
    };

    fn upsert(programmes: &[&str], personal: Option<(&str, &str)>) -> Versioned {
        Versioned {
            household_id: "HH-1".into(),
            version: 3,
            event_id: "ev\t1".into(),
            partition: 2,
            offset: 41,
            change: Change::Upsert(Box::new(Upsert {
                household: Household {
                    household_id: "HH-1".into(),
                    version: 3,
                    area_code: "JO-AM-01".into(),
                    members: 4,
                    welfare_score: 30.2,
                    flags: vec![VulnerabilityFlag::Elderly, VulnerabilityFlag::Disability],
                    programmes: programmes.iter().map(|p| p.to_string()).collect(),
                    payment: PaymentDestination {
                        channel: Channel::EWallet,
                        provider: "wallet-a".into(),
                        account_token: "tok\\a\nb".into(),
                    },
                    personal: personal
                        .map(|(k, v)| [(k.to_string(), v.to_string())].into_iter().collect()),
                },
                area: AreaPath {
                    governorate: "JO-AM".into(),
                    district: Some("JO-AM-01".into()),
                    code: "JO-AM-01".into(),
                },
            })),
        }
    }

    /// A decoded field: `None` for NULL.
    type Field = Option<Vec<u8>>;

    /// Reads binary `COPY` rows back into their fields.
    fn fields(v: Versioned) -> Vec<Field> {
        let mut data = Vec::new();
        encode_rows(&mut data, &[v], &[0]);
        let mut rest = data.as_slice();
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head.to_vec()
        };
        let count = i16::from_be_bytes(take(2).try_into().unwrap());
        assert_eq!(count, FIELDS);
        let out = (0..count)
            .map(|_| {
                let len = i32::from_be_bytes(take(4).try_into().unwrap());
                (len >= 0).then(|| take(len as usize))
            })
            .collect();
        assert!(rest.is_empty(), "one row, nothing after it");
        out
    }

    fn text(f: &Field) -> &str {
        std::str::from_utf8(f.as_ref().unwrap()).unwrap()
    }

    /// Elements of a binary `text[]`.
    fn array(f: &Field) -> Vec<String> {
        let b = f.as_ref().unwrap();
        let word = |i: usize| i32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(1), 0, "no nulls");
        assert_eq!(word(2), TEXT_OID);
        if word(0) == 0 {
            assert_eq!(b.len(), 12);
            return Vec::new();
        }
        assert_eq!((word(0), word(4)), (1, 1));
        let mut at = 20;
        let mut out = Vec::new();
        for _ in 0..word(3) {
            let len = i32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            out.push(String::from_utf8(b[at + 4..at + 4 + len].to_vec()).unwrap());
            at += 4 + len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn an_upsert_becomes_one_binary_copy_row() {
        let f = fields(upsert(&["cash", "food"], Some(("name", "Tab\there"))));
        assert_eq!(text(&f[0]), "HH-1");
        assert_eq!(f[1].as_deref(), Some(&3i64.to_be_bytes()[..]));
        assert_eq!(f[2].as_deref(), Some(&[0u8][..]));
        assert_eq!(
            (text(&f[3]), text(&f[4]), text(&f[5])),
            ("JO-AM-01", "JO-AM", "JO-AM-01")
        );
        assert_eq!(f[6].as_deref(), Some(&4i32.to_be_bytes()[..]));
        assert_eq!(f[7].as_deref(), Some(&30.2f64.to_bits().to_be_bytes()[..]));
        assert_eq!(array(&f[8]), ["elderly", "disability"]);
        assert_eq!(array(&f[9]), ["cash", "food"]);
        assert_eq!(
            (text(&f[10]), text(&f[11]), text(&f[12])),
            ("e_wallet", "wallet-a", "tok\\a\nb")
        );
        let personal = f[13].as_ref().unwrap();
        assert_eq!(personal[0], JSONB_VERSION);
        assert_eq!(&personal[1..], br#"{"name":"Tab\there"}"#);
        assert_eq!(text(&f[14]), "ev\t1");
        assert_eq!(f[15].as_deref(), Some(&2i32.to_be_bytes()[..]));
        assert_eq!(f[16].as_deref(), Some(&41i64.to_be_bytes()[..]));
    }

    #[test]
    fn arrays_split_like_string_to_array() {
        let f = fields(upsert(&[], None));
        assert!(array(&f[9]).is_empty());
        assert_eq!(f[13], None);
        let f = fields(upsert(&["a,b", "q\"\\"], None));
        assert_eq!(array(&f[9]), ["a", "b", "q\"\\"]);
        // string_to_array('', ',') is '{}', so a lone empty programme vanishes.
        let f = fields(upsert(&[""], None));
        assert!(array(&f[9]).is_empty());
        let f = fields(upsert(&["", ""], None));
        assert_eq!(array(&f[9]), ["", ""]);
    }

    #[test]
    fn a_removal_is_a_tombstone_row() {
        let mut v = upsert(&[], None);
        v.change = Change::Remove;
        let f = fields(v);
        assert_eq!(f[2].as_deref(), Some(&[1u8][..]));
        assert!(f[3..8].iter().all(Option::is_none));
        assert!(array(&f[8]).is_empty() && array(&f[9]).is_empty());
        assert!(f[10..14].iter().all(Option::is_none));
        assert_eq!(text(&f[14]), "ev\t1");
    }
}
