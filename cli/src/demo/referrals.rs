//! The demo's social-services act: the flood's playbook referred some
//! households to services beside cash, published on `sumud.referrals.v1`;
//! the rehabilitation provider takes one case and serves it, answering
//! with signed acknowledgements, and the social worker sees both answers.

use chrono::Utc;
use sumud_control::signing::Jwk;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::referral::{
    AcknowledgementClaims, ReferralStatus, SignedAcknowledgement, REFERRAL_ACKNOWLEDGED,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::on_store;

use super::wait_for;

/// Shows the flood's referrals and has one answered; `None` when the
/// flood referred no one.
pub(super) async fn referrals(
    settings: &Settings,
    store: &Store,
    flood: &str,
) -> anyhow::Result<Option<String>> {
    // Referrals commit right after the decisions, in a transaction of
    // their own, long before the payments the demo waited for are done.
    let by_service: Vec<(String, String, i64)> = on_store!(store, pool => sqlx::query_as(
        "SELECT service, provider, count(*) FROM eligibility.referrals WHERE crisis_id = $1 \
         GROUP BY service, provider ORDER BY service")
        .bind(flood)
        .fetch_all(pool)
        .await)?;
    if by_service.is_empty() {
        return Ok(None);
    }
    let listed: Vec<String> = by_service
        .iter()
        .map(|(s, p, n)| format!("{n} to {s} ({p})"))
        .collect();
    println!(
        "\nReferrals beside cash: {} on sumud.referrals.v1, for the providers the playbook names.",
        listed.join(", ")
    );
    let row: Option<(String, String)> = on_store!(store, pool => sqlx::query_as(
        "SELECT referral_id, provider FROM eligibility.referrals WHERE crisis_id = $1 \
         AND status = 'referred' ORDER BY referral_id LIMIT 1")
        .bind(flood)
        .fetch_optional(pool)
        .await)?;
    let Some((referral, provider)) = row else {
        return Ok(None);
    };
    let key = Jwk::generate(&format!("{provider}-demo-{:x}", rand::random::<u32>()));
    sumud_eligibility::db::add_partner_key(store, &key.kid, &provider, &key.x).await?;
    let producer = EventProducer::new(settings)?;
    for (status, note) in [
        (ReferralStatus::Accepted, None),
        (
            ReferralStatus::Served,
            Some("home visit done; services arranged".to_owned()),
        ),
    ] {
        let claims = AcknowledgementClaims {
            jti: uuid::Uuid::new_v4().to_string(),
            iat: Utc::now().timestamp(),
            referral_id: referral.clone(),
            status,
            note,
        };
        let jws = sumud_shared::jws::sign(&claims, &key).map_err(anyhow::Error::msg)?;
        let event = Envelope::new(
            &format!("urn:partner:{provider}"),
            REFERRAL_ACKNOWLEDGED,
            Some(referral.clone()),
            SignedAcknowledgement { jws },
        );
        producer
            .send(&settings.topics.referral_answers, &referral, &event)
            .await?;
    }
    let _: (String,) = wait_for(
        store,
        "the provider's answer",
        &format!(
            "SELECT status FROM eligibility.referrals WHERE referral_id = '{referral}' AND status = 'served'"
        ),
    )
    .await?;
    let household = referral.split('/').nth(1).unwrap_or_default().to_owned();
    println!(
        "{provider} (key {} registered with `sumud partners keys add`) accepted and served {household}'s \
         referral with signed answers; `sumud explain --crisis {flood} --household {household}` shows them.",
        key.kid
    );
    Ok(Some(household))
}
