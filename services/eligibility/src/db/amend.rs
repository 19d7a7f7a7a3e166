//! Changes to decisions already made: cancellations (areas removed,
//! households removed, the crisis closed), repricing and waitlist promotion
//! after an amendment, and fitting a cut budget. Each statement is written
//! once; [`Dialect`] supplies the few words PostgreSQL and SQLite spell
//! differently, and every change lands in the decision trail.

use sumud_shared::db::sqlite::json_list;
use sumud_shared::db::Tx;
use sumud_shared::Result;

use super::{CrisisRow, PRIORITY_ORDER_E, WAITLISTED};
use crate::policy::overlapped_sql;
use sumud_shared::playbook::Resolved;

/// What the amendment statements spell differently per backend.
pub(super) struct Dialect {
    /// The two-argument minimum (`LEAST`, or SQLite's scalar `min`).
    pub(super) least: &'static str,
    /// The two-argument maximum (`GREATEST`, or SQLite's scalar `max`).
    pub(super) greatest: &'static str,
    /// The current time as stored.
    pub(super) now: &'static str,
    /// The change-counter bump of a changed decision (on SQLite a trigger
    /// numbers changes, so nothing).
    pub(super) bump: &'static str,
    /// The changed row's id in `RETURNING` (SQLite refuses the alias).
    pub(super) returning: &'static str,
    /// Whether a list parameter is a JSON array (SQLite) or an array.
    pub(super) json_lists: bool,
}

const POSTGRES: Dialect = Dialect {
    least: "LEAST",
    greatest: "GREATEST",
    now: "now()",
    bump: ", change_seq = nextval('eligibility.change_seq')",
    returning: "e.entitlement_id",
    json_lists: false,
};

const SQLITE: Dialect = Dialect {
    least: "min",
    greatest: "max",
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    bump: "",
    returning: "entitlement_id",
    json_lists: true,
};

impl Dialect {
    pub(super) fn of(tx: &Tx) -> &'static Dialect {
        match tx {
            Tx::Postgres(_) => &POSTGRES,
            Tx::Sqlite(_) => &SQLITE,
        }
    }

    /// `column` is one of the list bound as parameter `n`.
    pub(super) fn in_list(&self, column: &str, n: u8) -> String {
        if self.json_lists {
            format!("{column} IN (SELECT value FROM json_each(${n}))")
        } else {
            format!("{column} = ANY(${n})")
        }
    }

    /// The per-tranche price of decision `e` under the crisis's amounts
    /// (parameters 2 to 7: vertical flat, per member, cap; horizontal the
    /// same) over `$8` tranches, after the crisis's overlap rule has weighed
    /// the assistance the decision was made against.
    fn price(&self, r: &Resolved) -> String {
        overlapped_sql(
            r,
            (self.greatest, self.least),
            &self.list_price(),
            "$8",
            "e.assisted_minor",
        )
    }

    /// [`Dialect::price`] before the overlap rule.
    fn list_price(&self) -> String {
        let least = self.least;
        format!(
            "CASE WHEN e.kind = 'vertical' \
                  THEN {least}(CAST($2 AS bigint) + CAST($3 AS bigint) * e.members, CAST($4 AS bigint)) \
                  ELSE {least}(CAST($5 AS bigint) + CAST($6 AS bigint) * e.members, CAST($7 AS bigint)) END"
        )
    }
}

/// Runs `sql` returning entitlement ids, binding `$1` and then `binds`
/// (strings, integers or lists) in order on the transaction's backend.
async fn changed_ids(
    tx: &mut Tx,
    sql: &str,
    crisis_id: &str,
    binds: &[Bind<'_>],
) -> Result<Vec<String>> {
    Ok(match tx {
        Tx::Postgres(tx) => {
            let mut q = sqlx::query_scalar(sql).bind(crisis_id.to_owned());
            for b in binds {
                q = match b {
                    Bind::Int(i) => q.bind(*i),
                    Bind::Text(t) => q.bind(t.to_string()),
                    Bind::List(l) => q.bind(l.to_vec()),
                };
            }
            q.fetch_all(&mut **tx).await?
        }
        Tx::Sqlite(tx) => {
            let mut q = sqlx::query_scalar(sql).bind(crisis_id.to_owned());
            for b in binds {
                q = match b {
                    Bind::Int(i) => q.bind(*i),
                    Bind::Text(t) => q.bind(t.to_string()),
                    Bind::List(l) => q.bind(json_list(l)),
                };
            }
            q.fetch_all(&mut **tx).await?
        }
    })
}

/// A parameter of [`changed_ids`].
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
    /// PostgreSQL `text[]`; on SQLite a JSON array.
    List(&'a [String]),
}

/// Copies the current state of the changed entitlements `ids` into the
/// decision trail.
pub(super) async fn log_changes(tx: &mut Tx, crisis_id: &str, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let d = Dialect::of(tx);
    let sql = format!(
        "INSERT INTO eligibility.decision_log \
            (entitlement_id, crisis_id, household_id, status, amount_minor, crisis_revision, reason) \
         SELECT entitlement_id, crisis_id, household_id, status, amount_minor, crisis_revision, reason \
         FROM eligibility.entitlements WHERE crisis_id = $1 AND {} RETURNING entitlement_id",
        d.in_list("entitlement_id", 2)
    );
    changed_ids(tx, &sql, crisis_id, &[Bind::List(ids)]).await?;
    Ok(())
}

/// Cancels the crisis's live decisions matched by `condition` (SQL on `e`,
/// which may test the list `$3`), releasing their budget; returns how many
/// were cancelled.
async fn cancel_where(
    tx: &mut Tx,
    c: &CrisisRow,
    condition: &str,
    list: &[String],
    why: &str,
) -> Result<i64> {
    let d = Dialect::of(tx);
    let sql = format!(
        "UPDATE eligibility.entitlements AS e SET status = 'cancelled', committed_minor = 0, \
                crisis_revision = $2, reason = $4, updated_at = {now}{bump} \
         WHERE e.crisis_id = $1 AND e.status <> 'cancelled' AND ({condition}) \
         RETURNING {returning}",
        now = d.now,
        bump = d.bump,
        returning = d.returning,
    );
    let binds = [
        Bind::Int(c.revision.into()),
        Bind::List(list),
        Bind::Text(why),
    ];
    let ids = changed_ids(tx, &sql, &c.crisis_id, &binds).await?;
    recompute_committed(tx, &c.crisis_id).await?;
    log_changes(tx, &c.crisis_id, &ids).await?;
    Ok(ids.len() as i64)
}

/// Re-derives the crisis's committed total from its entitlements.
pub(super) async fn recompute_committed(tx: &mut Tx, crisis_id: &str) -> Result<()> {
    const SQL: &str = "UPDATE eligibility.crises SET committed_minor = \
            (SELECT coalesce(sum(committed_minor), 0) FROM eligibility.entitlements WHERE crisis_id = $1) \
         WHERE crisis_id = $1";
    sumud_shared::on_tx!(tx, conn => sqlx::query(SQL).bind(crisis_id).execute(conn).await.map(drop))?;
    Ok(())
}

/// Cancels decisions of households whose area is no longer in the crisis.
pub async fn cancel_outside_areas(tx: &mut Tx, c: &CrisisRow) -> Result<i64> {
    let d = Dialect::of(tx);
    // A household without a district (its area is a governorate) compares
    // NULL there: coalesce, so that NULL counts as "not in the areas".
    let inside = format!(
        "NOT coalesce({} OR {} OR {}, false)",
        d.in_list("e.governorate", 3),
        d.in_list("e.district", 3),
        d.in_list("e.area_code", 3)
    );
    cancel_where(
        tx,
        c,
        &inside,
        &c.definition.areas,
        "cancelled: the household's area was removed from the crisis",
    )
    .await
}

/// Cancels the live decisions of removed households.
pub async fn cancel_households(tx: &mut Tx, c: &CrisisRow, households: &[String]) -> Result<i64> {
    let d = Dialect::of(tx);
    let removed = d.in_list("e.household_id", 3);
    cancel_where(
        tx,
        c,
        &removed,
        households,
        "cancelled: the household was removed from the registry",
    )
    .await
}

/// Cancels waitlisted decisions (the crisis closed before the budget reached them).
pub async fn cancel_waitlist(tx: &mut Tx, c: &CrisisRow) -> Result<i64> {
    let d = Dialect::of(tx);
    // Every waitlisted household: none is excepted (an empty list).
    let waitlisted = format!(
        "e.status = 'waitlisted' AND NOT ({})",
        d.in_list("e.household_id", 3)
    );
    cancel_where(tx, c, &waitlisted, &[], "cancelled: the crisis closed").await
}

/// Applies new amounts and tranche counts to live decisions. Decreases always
/// apply; increases apply in priority order while the remaining budget
/// allows (the rest keep their amount, with the reason recorded). Then
/// waitlisted households are promoted in priority order while budget allows.
pub async fn reprice_and_promote(tx: &mut Tx, c: &CrisisRow) -> Result<(i64, i64)> {
    let r = &c.resolved;
    let d = Dialect::of(tx);
    let (now, bump, returning, greatest) = (d.now, d.bump, d.returning, d.greatest);
    let price = d.price(r);
    let (v, h) = (r.vertical.clone(), r.horizontal.clone());
    // $2..$7: the amounts; $8 tranches, $9 interval, $10 revision.
    let amounts = [
        Bind::Int(v.as_ref().map_or(0, |a| a.flat_minor)),
        Bind::Int(v.as_ref().map_or(0, |a| a.per_member_minor)),
        Bind::Int(v.as_ref().map_or(0, |a| a.cap_minor)),
        Bind::Int(h.as_ref().map_or(0, |a| a.flat_minor)),
        Bind::Int(h.as_ref().map_or(0, |a| a.per_member_minor)),
        Bind::Int(h.as_ref().map_or(0, |a| a.cap_minor)),
        Bind::Int(r.tranches.into()),
        Bind::Int(r.interval_days.into()),
        Bind::Int(c.revision.into()),
    ];
    // 1. Decreases and unchanged totals: free budget first.
    let lowered = changed_ids(
        tx,
        &format!(
            "UPDATE eligibility.entitlements AS e SET \
                 amount_minor = CASE WHEN {price} = 0 THEN e.amount_minor ELSE {price} END, tranches = $8, \
                 ledger_floor_minor = {greatest}(e.ledger_floor_minor, e.amount_minor * e.tranches), \
                 interval_days = $9, \
                 status = CASE WHEN {price} = 0 THEN 'cancelled' ELSE e.status END, \
                 committed_minor = CASE WHEN e.status = 'entitled' THEN {price} * $8 ELSE 0 END, \
                 crisis_revision = $10, \
                 reason = e.reason || '; revision ' || $10 || CASE WHEN {price} = 0 \
                     THEN ': cancelled: ' || coalesce(e.assisted_by, 'other assistance') || ' already gave ' || e.assisted_minor \
                          || ' in an overlapping period and the overlap rule leaves nothing to pay' \
                     ELSE ': amount ' || {price} || ' x ' || $8 || ' tranches' END, \
                 updated_at = {now}{bump} \
             WHERE e.crisis_id = $1 AND e.status <> 'cancelled' \
               AND (e.amount_minor <> {price} OR e.tranches <> $8 OR e.interval_days <> $9) \
               AND {price} * $8 <= e.amount_minor * e.tranches \
             RETURNING {returning}"
        ),
        &c.crisis_id,
        &amounts,
    )
    .await?;
    recompute_committed(tx, &c.crisis_id).await?;
    // 2. Increases of entitled decisions, in priority order, within budget.
    let raised = changed_ids(
        tx,
        &format!(
            "WITH room AS (SELECT budget_minor - committed_minor AS left_minor \
                           FROM eligibility.crises WHERE crisis_id = $1), \
             wanted AS ( \
                SELECT e.entitlement_id, {price} AS amount, \
                       sum({price} * $8 - e.committed_minor) \
                           OVER (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING) AS running \
                FROM eligibility.entitlements e \
                WHERE e.crisis_id = $1 AND e.status = 'entitled' \
                  AND {price} * $8 > e.amount_minor * e.tranches) \
             UPDATE eligibility.entitlements AS e SET amount_minor = w.amount, tranches = $8, \
                 interval_days = $9, committed_minor = w.amount * $8, crisis_revision = $10, \
                 reason = e.reason || '; revision ' || $10 || ': raised to ' || w.amount || ' x ' || $8 || ' tranches', \
                 updated_at = {now}{bump} \
             FROM wanted w, room \
             WHERE e.entitlement_id = w.entitlement_id AND w.running <= room.left_minor \
             RETURNING {returning}"
        ),
        &c.crisis_id,
        &amounts,
    )
    .await?;
    recompute_committed(tx, &c.crisis_id).await?;
    // 3. A waitlisted decision whose household has since been assisted by
    //    another crisis for an overlapping period (or no longer is) was
    //    priced against assistance that changed: promoted as it stands it
    //    could pay one need twice. It is cancelled here, and the expansion
    //    that follows in the same transaction decides it anew, in place,
    //    under the overlap rule and the budget.
    let starts_on = c.definition.starts_on.to_string();
    let ends_on = c.definition.ends_on.to_string();
    let stale = changed_ids(
        tx,
        &format!(
            "UPDATE eligibility.entitlements AS e SET status = 'cancelled', crisis_revision = $2, \
                 reason = e.reason || '; revision ' || $2 || ': cancelled: the assistance other crises \
                     give the household for an overlapping period changed since it was waitlisted; decided anew', \
                 updated_at = {now}{bump} \
             WHERE e.crisis_id = $1 AND e.status = 'waitlisted' \
               AND e.assisted_minor <> (SELECT coalesce(sum(o.total_minor), 0) \
                   FROM eligibility.assistance_ledger o \
                   WHERE o.household_id = e.household_id AND NOT (o.source = 'crisis' AND o.source_id = $1) AND o.currency = $3 \
                     AND o.period_from <= $5 AND $4 <= o.period_to) \
             RETURNING {returning}"
        ),
        &c.crisis_id,
        &[
            Bind::Int(c.revision.into()),
            Bind::Text(&c.definition.budget.currency),
            Bind::Text(&starts_on),
            Bind::Text(&ends_on),
        ],
    )
    .await?;
    // 4. Promote the waitlist in priority order.
    let promoted = changed_ids(
        tx,
        &format!(
            "WITH room AS (SELECT budget_minor - committed_minor AS left_minor \
                           FROM eligibility.crises WHERE crisis_id = $1), \
             queue AS ( \
                SELECT e.entitlement_id, sum(e.amount_minor * e.tranches) OVER w AS running, \
                       row_number() OVER w AS rank \
                FROM eligibility.entitlements e WHERE e.crisis_id = $1 AND e.status = 'waitlisted' \
                WINDOW w AS (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING)) \
             UPDATE eligibility.entitlements AS e SET status = 'entitled', \
                 committed_minor = e.amount_minor * e.tranches, crisis_revision = $2, \
                 budget_rank = q.rank, \
                 budget_left_minor = room.left_minor - q.running + e.amount_minor * e.tranches, \
                 reason = replace(e.reason, '{WAITLISTED}', '') \
                     || '; entitled from revision ' || $2 || ' as budget became available', \
                 updated_at = {now}{bump} \
             FROM queue q, room \
             WHERE e.entitlement_id = q.entitlement_id AND q.running <= room.left_minor \
             RETURNING {returning}"
        ),
        &c.crisis_id,
        &[Bind::Int(c.revision.into())],
    )
    .await?;
    recompute_committed(tx, &c.crisis_id).await?;
    let (raised_n, promoted_n) = (raised.len() as i64, promoted.len() as i64);
    let mut changed = lowered;
    changed.extend(raised);
    changed.extend(stale);
    changed.extend(promoted);
    log_changes(tx, &c.crisis_id, &changed).await?;
    Ok((raised_n, promoted_n))
}

/// Brings the crisis within `budget` after a cut: the lowest-priority
/// entitled decisions go back to the waitlist (in reverse priority order)
/// until what is committed fits, then the cap is lowered. Instructions
/// already issued by disbursement are its own reservation and unaffected.
pub async fn fit_budget(tx: &mut Tx, c: &CrisisRow, budget: i64) -> Result<i64> {
    let d = Dialect::of(tx);
    let (now, bump, returning) = (d.now, d.bump, d.returning);
    let demoted = changed_ids(
        tx,
        &format!(
            "WITH ranked AS ( \
                SELECT e.entitlement_id, sum(e.committed_minor) \
                           OVER (ORDER BY {PRIORITY_ORDER_E} ROWS UNBOUNDED PRECEDING) AS running \
                FROM eligibility.entitlements e WHERE e.crisis_id = $1 AND e.status = 'entitled') \
             UPDATE eligibility.entitlements AS e SET status = 'waitlisted', committed_minor = 0, \
                 crisis_revision = $3, \
                 reason = e.reason || '; revision ' || $3 || ': waitlisted again as the budget was cut', \
                 updated_at = {now}{bump} \
             FROM ranked r WHERE e.entitlement_id = r.entitlement_id AND r.running > $2 \
             RETURNING {returning}"
        ),
        &c.crisis_id,
        &[Bind::Int(budget), Bind::Int(c.revision.into())],
    )
    .await?;
    recompute_committed(tx, &c.crisis_id).await?;
    const CAP: &str = "UPDATE eligibility.crises SET budget_minor = $2 WHERE crisis_id = $1";
    sumud_shared::on_tx!(tx, conn => sqlx::query(CAP)
        .bind(&c.crisis_id)
        .bind(budget)
        .execute(conn)
        .await
        .map(drop))?;
    log_changes(tx, &c.crisis_id, &demoted).await?;
    Ok(demoted.len() as i64)
}
