//! Which registry household a partner's record is about, through the
//! agencies' match key, and keeping that answer true as the registry
//! changes: a record that arrived before its household was registered
//! counts once it is, and a key that two current households share (a
//! national id entered twice) is pinned on neither of them until the
//! registry is corrected. Guessing one of the two would cut the wrong
//! family's assistance on another agency's word.

use sumud_shared::db::Tx;
use sumud_shared::{on_tx, Result};

use super::amend::Dialect;

/// What a match key names among the registry's current households.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// No current household carries it (not registered yet, removed, or
    /// registered without a national id).
    Unknown,
    /// Exactly one household.
    One(String),
    /// Two or more households: matched to none.
    Ambiguous,
}

impl Match {
    /// The household a record is attached to under this answer.
    pub fn household(&self) -> Option<String> {
        match self {
            Match::One(h) => Some(h.clone()),
            Match::Unknown | Match::Ambiguous => None,
        }
    }

    /// Whether the key names more than one household.
    pub fn is_ambiguous(&self) -> bool {
        *self == Match::Ambiguous
    }
}

/// What `match_key` names among the current households.
pub async fn household_of(tx: &mut Tx, match_key: &str) -> Result<Match> {
    const SQL: &str = "SELECT m.household_id FROM registry.match_keys m \
                       JOIN registry.households_v h \
                         ON h.household_id = m.household_id AND h.version = m.version \
                       WHERE m.match_key = $1 ORDER BY m.household_id LIMIT 2";
    let found: Vec<String> =
        on_tx!(tx, conn => sqlx::query_scalar(SQL).bind(match_key).fetch_all(conn).await)?;
    Ok(match <[String; 1]>::try_from(found) {
        Ok([one]) => Match::One(one),
        Err(found) if found.is_empty() => Match::Unknown,
        Err(_) => Match::Ambiguous,
    })
}

/// Which partner records [`rematch_records`] looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Those a change of these households may concern: attached to one of
    /// them, under a key one of them now carries, or marked ambiguous (the
    /// key a correction took away is no longer in the registry to search
    /// by).
    Households(&'a [String]),
    /// Every record still given: at start, for records matched before
    /// matching followed the registry.
    Stale,
}

const COLUMNS: &str = "agency, record_id, match_key, household_id, ambiguous";

/// The candidates of a change of the households bound as parameter 1:
/// three selects, each on an index, rather than one `OR` no index serves.
fn of_households(d: &Dialect) -> String {
    const GIVEN: &str = "FROM eligibility.partner_records WHERE status = 'given'";
    format!(
        "SELECT {COLUMNS} {GIVEN} AND {held} \
         UNION SELECT {COLUMNS} {GIVEN} AND ambiguous \
         UNION SELECT {COLUMNS} {GIVEN} AND match_key IN \
             (SELECT match_key FROM registry.match_keys WHERE {carried})",
        held = d.in_list("household_id", 1),
        carried = d.in_list("household_id", 1),
    )
}

/// Of the records `candidates` selects, those whose attachment or mark
/// differs from what their key names among the current households, in
/// record order, with what it names: one set-based read, the same rule as
/// [`household_of`] (exactly one household matches, more are ambiguous).
fn moved_sql(candidates: &str) -> String {
    format!(
        "WITH cand AS ({candidates}), \
         named AS ( \
            SELECT m.match_key, count(*) AS n, min(m.household_id) AS one \
            FROM registry.match_keys m JOIN registry.households_v h \
              ON h.household_id = m.household_id AND h.version = m.version \
            WHERE m.match_key IN (SELECT match_key FROM cand) \
            GROUP BY m.match_key), \
         now AS ( \
            SELECT c.agency, c.record_id, c.household_id AS was, c.ambiguous AS was_ambiguous, \
                   CASE WHEN named.n = 1 THEN named.one END AS household_id, \
                   coalesce(named.n > 1, false) AS ambiguous \
            FROM cand c LEFT JOIN named ON named.match_key = c.match_key) \
         SELECT agency, record_id, was, household_id, ambiguous FROM now \
         WHERE coalesce(was, '') <> coalesce(household_id, '') OR was_ambiguous <> ambiguous \
         ORDER BY agency, record_id"
    )
}

/// A partner record whose household changed with the registry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Moved {
    /// The agency.
    pub agency: String,
    /// Its record id.
    pub record_id: String,
    /// The household it was attached to.
    #[sqlx(rename = "was")]
    pub from: Option<String>,
    /// The household it is attached to now.
    #[sqlx(rename = "household_id")]
    pub to: Option<String>,
    /// Whether its key now names several households.
    pub ambiguous: bool,
}

/// Re-matches the partner records of `scope` to what their key names
/// now. Records still `given` only: a reversed one weighs nothing.
/// Returns the records whose household or mark changed, updated in `tx`.
pub async fn rematch_records(tx: &mut Tx, scope: Scope<'_>) -> Result<Vec<Moved>> {
    let d = Dialect::of(tx);
    let moved: Vec<Moved> = match (scope, &mut *tx) {
        (Scope::Stale, tx) => {
            let sql = moved_sql(&format!(
                "SELECT {COLUMNS} FROM eligibility.partner_records WHERE status = 'given'"
            ));
            on_tx!(tx, conn => sqlx::query_as(&sql).fetch_all(conn).await)?
        }
        (Scope::Households(households), Tx::Postgres(tx)) => {
            sqlx::query_as(&moved_sql(&of_households(d)))
                .bind(households)
                .fetch_all(&mut **tx)
                .await?
        }
        (Scope::Households(households), Tx::Sqlite(tx)) => {
            sqlx::query_as(&moved_sql(&of_households(d)))
                .bind(sumud_shared::db::sqlite::json_list(households))
                .fetch_all(&mut **tx)
                .await?
        }
    };
    let update = format!(
        "UPDATE eligibility.partner_records SET household_id = $3, ambiguous = $4, \
             updated_at = {now} \
         WHERE agency = $1 AND record_id = $2",
        now = d.now
    );
    for m in &moved {
        on_tx!(tx, conn => sqlx::query(&update)
            .bind(&m.agency)
            .bind(&m.record_id)
            .bind(&m.to)
            .bind(m.ambiguous)
            .execute(conn)
            .await
            .map(drop))?;
    }
    Ok(moved)
}
