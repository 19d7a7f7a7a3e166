//! `sumud export caseload`: a crisis's caseload and its payments in an open
//! form a partner agency, an auditor or a spreadsheet reads — CSV or JSON,
//! one row per decision, described by `schemas/caseload.row.schema.json`
//! (the CSV header is the schema's field names, in order). No name,
//! national id or phone is ever in it: households are named by the social
//! registry's own id. docs/contracts.md maps it to DCI and G2P Connect.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use sumud_shared::db::Store;

/// The export's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// One JSON array of rows.
    Json,
}

/// One row: a decision and its payments so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CaseloadRow {
    /// Crisis id.
    pub crisis_id: String,
    /// The registry's household id.
    pub household_id: String,
    /// `vertical` or `horizontal`.
    pub kind: String,
    /// `entitled`, `waitlisted` or `cancelled`.
    pub status: String,
    /// Per tranche, minor units.
    pub amount_per_tranche_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Number of tranches.
    pub tranches: i32,
    /// Days between tranches.
    pub interval_days: i32,
    /// Governorate code.
    pub governorate: String,
    /// District code, if registered at district level or finer.
    pub district: Option<String>,
    /// Finest area code.
    pub area_code: String,
    /// Household size decided on.
    pub members: i32,
    /// Priority flags held.
    pub priority: i32,
    /// `<playbook>@<version>`.
    pub playbook: String,
    /// Crisis revision decided under.
    pub crisis_revision: i32,
    /// Registry record version decided on.
    pub registry_version: i64,
    /// Overlapping assistance the overlap rule weighed, minor units.
    pub assisted_minor: i64,
    /// Why, in words.
    pub reason: String,
    /// Instructions issued so far.
    #[sqlx(default)]
    pub instructed: i64,
    /// Sum of succeeded instructions.
    #[sqlx(default)]
    pub paid_minor: i64,
    /// Instructions failed for good.
    #[sqlx(default)]
    pub failed: i64,
    /// Sum of instructions reversed after payment.
    #[sqlx(default)]
    pub reversed_minor: i64,
}

/// (status, count, sum) of instructions by (household, kind).
type PaymentsByDecision = BTreeMap<(String, String), Vec<(String, i64, i64)>>;

/// The caseload of `crisis_id`, by household and kind.
pub async fn caseload(store: &Store, crisis_id: &str) -> anyhow::Result<Vec<CaseloadRow>> {
    anyhow::ensure!(
        store.has_table("eligibility", "entitlements").await?,
        "eligibility's records are not in this database: point DATABASE_URL at the pipeline's \
         database (sqlite://.sumud/sumud.db for the embedded default of `sumud up`)"
    );
    const DECISIONS: &str = "SELECT crisis_id, household_id, kind, status, \
            amount_minor AS amount_per_tranche_minor, currency, tranches, interval_days, governorate, \
            district, area_code, members, priority, playbook, crisis_revision, registry_version, \
            assisted_minor, reason \
         FROM eligibility.entitlements WHERE crisis_id = $1 ORDER BY household_id, kind";
    let mut rows: Vec<CaseloadRow> = sumud_shared::on_store!(store, pool => sqlx::query_as(DECISIONS)
        .bind(crisis_id)
        .fetch_all(pool)
        .await)?;
    anyhow::ensure!(
        !rows.is_empty() || sumud_eligibility::db::crisis_now(store, crisis_id).await?.is_some(),
        "crisis {crisis_id} is not known to eligibility: check the id (`sumud payments status` lists crises)"
    );
    if store.has_table("disbursement", "instructions").await? {
        const PAYMENTS: &str = "SELECT household_id, kind, status, count(*), \
                CAST(coalesce(sum(amount_minor), 0) AS bigint) \
             FROM disbursement.instructions WHERE crisis_id = $1 GROUP BY 1, 2, 3";
        let payments: Vec<(String, String, String, i64, i64)> = sumud_shared::on_store!(store, pool => sqlx::query_as(PAYMENTS)
                .bind(crisis_id)
                .fetch_all(pool)
                .await)?;
        let mut by: PaymentsByDecision = BTreeMap::new();
        for (h, k, s, n, a) in payments {
            by.entry((h, k)).or_default().push((s, n, a));
        }
        for r in &mut rows {
            for (status, n, amount) in by
                .get(&(r.household_id.clone(), r.kind.clone()))
                .into_iter()
                .flatten()
            {
                r.instructed += n;
                match status.as_str() {
                    "succeeded" => r.paid_minor += amount,
                    "failed" => r.failed += n,
                    "reversed" => r.reversed_minor += amount,
                    _ => {}
                }
            }
        }
    }
    Ok(rows)
}

/// Writes `rows` to `out` in `format`.
pub fn write(rows: &[CaseloadRow], format: Format, out: impl Write) -> anyhow::Result<()> {
    match format {
        Format::Json => serde_json::to_writer_pretty(out, rows)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            if rows.is_empty() {
                // The header alone, from the schema's field order.
                w.write_record(HEADER)?;
            }
            for r in rows {
                w.serialize(r)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// The CSV header: the schema's fields in order.
pub const HEADER: [&str; 22] = [
    "crisis_id",
    "household_id",
    "kind",
    "status",
    "amount_per_tranche_minor",
    "currency",
    "tranches",
    "interval_days",
    "governorate",
    "district",
    "area_code",
    "members",
    "priority",
    "playbook",
    "crisis_revision",
    "registry_version",
    "assisted_minor",
    "reason",
    "instructed",
    "paid_minor",
    "failed",
    "reversed_minor",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> CaseloadRow {
        CaseloadRow {
            crisis_id: "FL-1".into(),
            household_id: "HH-1".into(),
            kind: "vertical".into(),
            status: "entitled".into(),
            amount_per_tranche_minor: 112_500,
            currency: "JOD".into(),
            tranches: 3,
            interval_days: 30,
            governorate: "JO-MN".into(),
            district: None,
            area_code: "JO-MN".into(),
            members: 4,
            priority: 1,
            playbook: "flood-standard@2026.1".into(),
            crisis_revision: 1,
            registry_version: 3,
            assisted_minor: 0,
            reason: "vertical top-up, \"quoted\", with commas".into(),
            instructed: 2,
            paid_minor: 225_000,
            failed: 0,
            reversed_minor: 0,
        }
    }

    #[test]
    fn the_csv_header_is_the_schemas_field_order_and_fields_are_quoted() {
        let mut out = Vec::new();
        write(&[row()], Format::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), HEADER.join(","));
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/caseload.row.schema.json")).unwrap();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, HEADER);
        // Read back by a CSV reader: the quoted reason survives whole.
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[17], "vertical top-up, \"quoted\", with commas");
        assert_eq!(&rec[9], "");
    }

    #[test]
    fn an_empty_caseload_still_has_its_header() {
        let mut out = Vec::new();
        write(&[], Format::Csv, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim_end(), HEADER.join(","));
    }
}
