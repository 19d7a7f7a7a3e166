//! The demo's coordination act: a partner agency's assistance counted
//! (WFP signs a record naming a household only by the agencies' match key),
//! then a second crisis over the flood's areas paying only what the overlap
//! rule and the household cap leave.

use anyhow::Context;
use chrono::Utc;
use sumud_control::signing::Jwk;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::events::control::CommandKind;
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::money::Money;
use sumud_shared::on_store;

use super::{count, money, wait_for, wait_stable};
use crate::crisis_cmd;

/// A partner agency counted: WFP (its key registered with `sumud partners
/// keys add`) records food assistance it gave one of the flood's
/// households for the coming month, naming it only by the agencies' match
/// key, which it computes from the national id it holds. Returns the
/// household.
pub(super) async fn partner_assistance(
    settings: &Settings,
    store: &Store,
    flood: &str,
    seed: u64,
    secret: &sumud_shared::match_key::MatchKeySecret,
) -> anyhow::Result<Option<String>> {
    use sumud_shared::events::assistance::{
        AssistanceAction, AssistanceClaims, SignedAssistance, PARTNER_ASSISTANCE,
    };
    // The flood household with the smallest top-up: the price shock's
    // household cap leaves it the most room, so WFP's share shows.
    let row: Option<(String, i64)> = on_store!(store, pool => sqlx::query_as(&format!(
        "SELECT household_id, amount_minor * tranches FROM eligibility.entitlements \
         WHERE crisis_id = '{flood}' AND status = 'entitled' ORDER BY amount_minor, household_id LIMIT 1"))
        .fetch_optional(pool)
        .await)?;
    let Some((household, flood_total)) = row else {
        return Ok(None);
    };
    // What WFP holds of the household: its national id, from the
    // synthetic registry this run published.
    let index: u64 = household.rsplit('-').next().unwrap_or_default().parse()?;
    let record = sumud_shared::synthetic::household(
        sumud_shared::areas::AreaCatalog::default_catalog(),
        seed,
        index,
    );
    let national_id = record
        .personal
        .as_ref()
        .and_then(|p| p.get("national_id"))
        .context("synthetic households carry a national id")?;
    let match_key = secret.key(national_id);
    let wfp = Jwk::generate(&format!("wfp-demo-{:x}", rand::random::<u32>()));
    sumud_eligibility::db::add_partner_key(store, &wfp.kid, "WFP", &wfp.x).await?;
    let today = Utc::now().date_naive();
    let amount = ((300_000 - flood_total).max(2) / 2).max(1);
    let claims = AssistanceClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        record_id: format!("WFP-JO-{:x}", rand::random::<u32>()),
        action: AssistanceAction::Given,
        match_key: match_key.clone(),
        amount: Some(Money::new(amount, "JOD").map_err(anyhow::Error::msg)?),
        period_from: Some(today),
        period_to: Some(today + chrono::Days::new(30)),
        programme: Some("WFP food voucher".into()),
    };
    let jws = sumud_shared::jws::sign(&claims, &wfp).map_err(anyhow::Error::msg)?;
    let event = sumud_shared::envelope::Envelope::new(
        "urn:partner:wfp-jordan",
        PARTNER_ASSISTANCE,
        Some(match_key.clone()),
        SignedAssistance { jws },
    );
    sumud_shared::kafka::producer::EventProducer::new(settings)?
        .send(&settings.topics.assistance, &match_key, &event)
        .await?;
    wait_for::<(i64,)>(
        store,
        "WFP's record",
        &format!(
            "SELECT CAST(1 AS bigint) FROM eligibility.partner_records WHERE record_id = '{}' AND household_id = '{household}'",
            claims.record_id
        ),
    )
    .await?;
    println!(
        "\nPartner: WFP (key {} registered with `sumud partners keys add`) signed a record of {} in food \
         vouchers for {household} over the coming month, naming it only by the agencies' match key \
         ({}…, never the national id).",
        wfp.kid,
        money(amount),
        &match_key[..8]
    );
    Ok(Some(household))
}

/// The demo's sixth step, a second, overlapping crisis: prices jump while
/// the flood's period runs, over the same areas. The price-shock playbook stacks on the flood
/// (the needs differ) up to a household cap per period, so a flood
/// household is paid only what the cap leaves, and the reason says so.
pub(super) async fn overlapping_price_shock(
    settings: &Settings,
    store: &Store,
    operator: &Jwk,
    flood: &str,
    areas: Vec<String>,
) -> anyhow::Result<()> {
    let shock_id = format!("PS-DEMO-{:x}", rand::random::<u32>());
    let today = Utc::now().date_naive();
    let shock = CrisisDefinition {
        title: "Food prices jump after the flood".into(),
        hazard: Hazard::PriceShock,
        severity: Severity::Severe,
        areas,
        response: Response {
            playbook: "price-shock-topup".into(),
            overrides: ResponseOverrides::default(),
        },
        // Under the four-eyes threshold: declared at once.
        budget: Money::parse_major("90000", "JOD").map_err(anyhow::Error::msg)?,
        starts_on: today,
        ends_on: today + chrono::Days::new(30),
    };
    crisis_cmd::publish(
        settings,
        operator,
        CommandKind::Declare,
        &shock_id,
        Some(shock),
        Some("prices rose after the flood".into()),
    )
    .await?;
    wait_for::<(i64,)>(
        store,
        "the price shock",
        &format!("SELECT CAST(1 AS bigint) FROM eligibility.crises WHERE crisis_id = '{shock_id}' AND state = 'active'"),
    )
    .await?;
    // On a small registry the shock may reach nobody: zero decisions is an
    // answer too, not something to wait five minutes for.
    let decided = wait_stable(
        store,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{shock_id}'"),
        0,
    )
    .await?;
    let weighed = count(
        store,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{shock_id}' AND assisted_minor > 0"),
    )
    .await?;
    let reduced = count(
        store,
        &format!("SELECT count(*) FROM eligibility.entitlements WHERE crisis_id = '{shock_id}' AND reason LIKE '%; reduced to %'"),
    )
    .await?;
    let skipped = count(
        store,
        &format!(
            "SELECT count(*) FROM eligibility.entitlements f WHERE f.crisis_id = '{flood}' AND f.status = 'entitled' \
             AND NOT EXISTS (SELECT 1 FROM eligibility.entitlements s WHERE s.crisis_id = '{shock_id}' \
                             AND s.household_id = f.household_id)"
        ),
    )
    .await?;
    println!(
        "\nOverlap: {shock_id}, a price shock over the same areas while {flood}'s period runs \
         (playbook price-shock-topup: stack on the flood, household cap 300.000 JOD per period): \
         {decided} decisions, {weighed} of them for flood households, {reduced} of those paid only \
         what the cap leaves; {skipped} flood households get nothing more (the flood already gives \
         them the cap, or the price shock's rules do not reach them)."
    );
    // An example, a reduced decision if there is one.
    let example: Option<(String, String)> = sumud_shared::on_store!(store, pool => sqlx::query_as(
        &format!("SELECT household_id, reason FROM eligibility.entitlements \
                  WHERE crisis_id = '{shock_id}' AND assisted_minor > 0 \
                  ORDER BY CASE WHEN reason LIKE '%; reduced to %' THEN 0 ELSE 1 END, household_id LIMIT 1"))
        .fetch_optional(pool)
        .await)?;
    if let Some((household, reason)) = example {
        println!("  {household}: {reason}.\n  Its ledger: sumud ledger --household {household}");
    }
    Ok(())
}
