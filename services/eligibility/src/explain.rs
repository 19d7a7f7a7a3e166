//! `sumud explain`: a household's decision trail in plain language.

use sumud_shared::db::Store;
use sumud_shared::money::Money;
use sumud_shared::Result;

use crate::db;

/// The explanation as lines of text.
pub async fn explain(store: &Store, crisis_id: &str, household_id: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Some(c) = db::crisis_now(store, crisis_id).await? else {
        out.push(format!(
            "Crisis {crisis_id} is not known to the eligibility service."
        ));
        return Ok(out);
    };
    out.push(format!(
        "Crisis {} ({}, {}), revision {}, playbook {}, areas {}.",
        c.crisis_id,
        c.definition.title,
        c.state.as_str(),
        c.revision,
        c.resolved.playbook,
        c.definition.areas.join(", ")
    ));
    let (rows, log) = db::decisions_of(store, crisis_id, household_id).await?;
    if rows.is_empty() {
        match db::household_facts(store, household_id).await? {
            None => out.push(format!(
                "Household {household_id} is not in the registry (or was removed): no decision."
            )),
            Some((area, score, programmes)) => {
                let catalog = sumud_shared::areas::AreaCatalog::default_catalog();
                let inside = c
                    .definition
                    .areas
                    .iter()
                    .any(|a| catalog.contains(a, &area));
                let enrolled = c
                    .resolved
                    .programme
                    .as_ref()
                    .is_some_and(|p| programmes.contains(p));
                if !inside {
                    out.push(format!("Household {household_id} lives in {area}, outside the crisis areas: not eligible."));
                } else if !enrolled {
                    out.push(format!(
                        "Household {household_id} is not enrolled in {} and its welfare score {score} is not under the threshold {}: not eligible.",
                        c.resolved.programme.as_deref().unwrap_or("a regular programme"),
                        c.resolved.max_welfare_score.map_or("(none)".to_owned(), |t| t.to_string())
                    ));
                } else {
                    out.push(format!("Household {household_id} looks eligible but has no decision yet (the registry change may still be in flight)."));
                }
            }
        }
        return Ok(out);
    }
    for r in rows {
        let amount = Money {
            minor: r.amount_minor,
            currency: r.currency.clone(),
        };
        out.push(format!(
            "Household {household_id}: {} ({} expansion), {} per tranche x {} tranches every {} days, decided under crisis revision {} on registry record version {} with {}.",
            r.status, r.kind, amount.display(), r.tranches, r.interval_days, r.crisis_revision, r.registry_version, r.playbook
        ));
        out.push(format!("  Why: {}.", r.reason));
    }
    for (at, status, amount, revision, reason) in log {
        out.push(format!(
            "  {} revision {revision}: {status}, {amount} minor units — {reason}",
            at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    Ok(out)
}
