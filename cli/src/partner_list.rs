//! `sumud partners publish`: a partner agency's beneficiary list, as CSV,
//! turned into signed assistance records on `sumud.assistance.v1` — run on
//! the agency's side, with its own private key, so that national ids are
//! turned into match keys on its machine and never leave it.
//!
//! Columns (a header row; docs/contracts.md, "Importing a partner's
//! beneficiary list"): `record_id`, `national_id` or `match_key` (one of
//! the two per row), `action` (`given` when empty), `amount_minor`,
//! `currency`, `period_from`, `period_to`, `programme`. Every row is
//! checked before anything is sent: a list with one bad row sends nothing
//! and names the row.

use std::path::Path;

use anyhow::{bail, Context};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use sumud_control::signing::Jwk;
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::assistance::{
    AssistanceAction, AssistanceClaims, SignedAssistance, PARTNER_ASSISTANCE,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::match_key::{self, MatchKeySecret};
use sumud_shared::money::Money;

/// One row of the list, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    record_id: String,
    #[serde(default)]
    national_id: Option<String>,
    #[serde(default)]
    match_key: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    amount_minor: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    period_from: Option<NaiveDate>,
    #[serde(default)]
    period_to: Option<NaiveDate>,
    #[serde(default)]
    programme: Option<String>,
}

/// Reads and checks the whole list: the claims of every row, or the first
/// row that is wrong and why. `secret` turns national ids into match keys.
pub fn read_list(
    text: &str,
    secret: Option<&MatchKeySecret>,
) -> anyhow::Result<Vec<AssistanceClaims>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let line = i + 2; // after the header, counted from 1
        let row = row.with_context(|| format!("row {line} cannot be read"))?;
        let claims = claims_of(row, secret).with_context(|| format!("row {line}"))?;
        out.push(claims);
    }
    Ok(out)
}

fn claims_of(row: Row, secret: Option<&MatchKeySecret>) -> anyhow::Result<AssistanceClaims> {
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    let key = match (empty(&row.national_id), empty(&row.match_key)) {
        (false, true) => {
            let Some(secret) = secret else {
                bail!(
                    "a national id needs the agencies' shared secret in {} to become a match key",
                    match_key::ENV
                );
            };
            secret.key(row.national_id.as_deref().unwrap_or_default())
        }
        (true, false) => row.match_key.unwrap_or_default(),
        _ => bail!("give exactly one of national_id and match_key"),
    };
    let action = match row.action.as_deref().unwrap_or("") {
        "" | "given" => AssistanceAction::Given,
        "corrected" => AssistanceAction::Corrected,
        "reversed" => AssistanceAction::Reversed,
        other => bail!("action {other:?} is not given, corrected or reversed"),
    };
    let amount = match (row.amount_minor, row.currency.as_deref()) {
        (Some(minor), Some(c)) if !c.is_empty() => {
            Some(Money::new(minor, c).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let claims = AssistanceClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        record_id: row.record_id,
        action,
        match_key: key,
        amount,
        period_from: row.period_from,
        period_to: row.period_to,
        programme: row.programme.filter(|p| !p.is_empty()),
    };
    // The same judgement eligibility makes, before anything is sent.
    if let Some(why) = sumud_eligibility::partner::malformed(&claims) {
        bail!("{why}");
    }
    Ok(claims)
}

/// Signs every record of the list at `path` with `key` and publishes it;
/// with `dry_run`, prints the claims instead (no national id is in them).
/// `secret` (the agencies' shared one, `SUMUD_MATCH_KEY`) turns national
/// ids into match keys. Returns how many records were published.
pub async fn publish(
    settings: &Settings,
    path: &Path,
    key: &Jwk,
    secret: Option<&MatchKeySecret>,
    dry_run: bool,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        key.d.is_some(),
        "key {} has no private part: the agency signs with its own private JWK",
        key.kid
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let list = read_list(&text, secret)?;
    if dry_run {
        for c in &list {
            println!("{}", serde_json::to_string(c)?);
        }
        return Ok(0);
    }
    let producer = EventProducer::new(settings)?;
    let bar = indicatif::ProgressBar::new(list.len() as u64);
    for c in &list {
        let jws = sumud_shared::jws::sign(c, key).map_err(anyhow::Error::msg)?;
        let event = Envelope::new(
            &format!("urn:partner:{}", key.kid),
            PARTNER_ASSISTANCE,
            Some(c.match_key.clone()),
            SignedAssistance { jws },
        );
        producer
            .send(&settings.topics.assistance, &c.match_key, &event)
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} records signed by {} published on {}; refusals, if any, are on the dead-letter topic \
         (`sumud deadletter list`)",
        list.len(),
        key.kid,
        settings.topics.assistance
    );
    Ok(list.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c3VtdWQtZGVtby1tYXRjaC1rZXktc2VjcmV0LTMyYnl0ZXM";

    #[test]
    fn a_list_becomes_records_under_match_keys_and_no_national_id() {
        let secret = MatchKeySecret::parse(SECRET).unwrap();
        let text = "record_id,national_id,match_key,action,amount_minor,currency,period_from,period_to,programme\n\
                    WFP-1, 987-123 4567 ,,,150000,JOD,2026-12-01,2027-02-28,food vouchers\n\
                    WFP-2,,zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino,reversed,,,,,\n";
        let list = read_list(text, Some(&secret)).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].match_key, secret.key("9871234567"));
        assert_eq!(list[0].amount, Some(Money::new(150_000, "JOD").unwrap()));
        assert_eq!(list[1].action, AssistanceAction::Reversed);
        assert!(!serde_json::to_string(&list).unwrap().contains("4567"));
    }

    #[test]
    fn a_bad_row_names_itself_and_nothing_is_sent() {
        let text = "record_id,national_id,amount_minor,currency,period_from,period_to\n\
                    WFP-1,9871234567,150000,JOD,2026-12-01,2027-02-28\n\
                    WFP-2,9871234568,150000,JOD,2027-02-28,2026-12-01\n";
        let secret = MatchKeySecret::parse(SECRET).unwrap();
        let err = format!("{:#}", read_list(text, Some(&secret)).unwrap_err());
        assert!(err.starts_with("row 3"), "{err}");
        assert!(err.contains("after"), "{err}");
        // Without the secret a national id cannot become a key.
        let err = format!("{:#}", read_list(text, None).unwrap_err());
        assert!(err.contains("SUMUD_MATCH_KEY"), "{err}");
    }
}
