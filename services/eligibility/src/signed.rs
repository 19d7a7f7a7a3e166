//! The opening every message a partner agency signs shares — an
//! assistance record ([`crate::partner`]) or a referral answer
//! ([`crate::referral`]), on the partner keys (the opening itself is
//! `sumud_shared::signed`'s, which field commands share too): the signature
//! first (a message nobody can
//! attribute changes nothing and is not recorded), then the same message
//! read again (its recorded verdict), then replay, each judged once per
//! key. What follows (key binding, revocation, age, shape, effect) is the
//! caller's; a refusal after the signature verified is recorded with
//! [`refuse`], so the message can never take effect later.

use serde::de::DeserializeOwned;
use sumud_shared::db::Store;
use sumud_shared::deadletter::Reason;
use sumud_shared::jws;
use sumud_shared::kafka::consumer::{Incoming, Verdict};
use sumud_shared::signed;
use sumud_shared::Result;

use crate::db::{self, PartnerKey, Position};

/// The refusal, if any, of a message whose Kafka key is not the subject
/// it signed (`field` names it for the dead letter). Not recorded as
/// judged: the Kafka key is not signed, so a copy under another key must
/// not veto the original.
pub fn unbound(m: &Incoming, subject: &str, field: &str) -> Option<Verdict> {
    let keyed = String::from_utf8_lossy(m.key.as_deref().unwrap_or_default());
    (keyed != subject).then(|| {
        reject(
            Reason::KeyMismatch,
            format!("the Kafka key must be {field}, not {keyed:?}"),
        )
    })
}

/// Why a verified message may not take effect whatever it says: its key
/// was revoked, or it was signed longer than `max_age_secs` ago (`what`
/// names such messages in the detail).
pub fn out_of_standing(
    key: &PartnerKey,
    iat: i64,
    max_age_secs: i64,
    what: &str,
) -> Option<(Reason, String)> {
    if key.revoked {
        return Some((
            Reason::RevokedKey,
            format!("partner key {} was revoked", key.kid),
        ));
    }
    jws::stale(iat, chrono::Utc::now(), max_age_secs, what).map(|why| (Reason::Expired, why))
}

pub use sumud_shared::signed::reject;

/// A partner-signed message whose signature verified and that was never
/// judged.
pub type Opened<C> = sumud_shared::signed::Opened<PartnerKey, C>;

/// Opens message `m`, whose data `D` carries a compact JWS (`jws_of`)
/// over claims `C` with id `jti_of`: `Err(verdict)` when it is settled
/// already — unsigned, under an unknown key, badly signed, read again
/// (its recorded verdict) or replayed (`sumud_shared::signed::open`, on
/// the partner keys and the judgements eligibility keeps). `label` names
/// the message in errors ("the acknowledgement"), `noun` in the replay
/// detail.
pub async fn open<D, C>(
    store: &Store,
    m: &Incoming,
    jws_of: fn(&D) -> &str,
    jti_of: fn(&C) -> &str,
    label: &str,
    noun: &str,
) -> Result<std::result::Result<Opened<C>, Verdict>>
where
    D: DeserializeOwned,
    C: DeserializeOwned,
{
    let data: D = match m.envelope.typed() {
        Ok(d) => d,
        Err(rej) => return Ok(Err(Verdict::Reject(rej))),
    };
    let kind = signed::Kind {
        label,
        noun,
        keys: "partner",
        list: "sumud partners keys list",
    };
    signed::open(
        m,
        jws_of(&data),
        &kind,
        jti_of,
        |kid| async move { db::partner_key(store, &kid).await },
        |kid, jti| async move { db::judged(store, &kid, &jti).await },
    )
    .await
}

/// Records a refusal of a verified message `jti`, then dead-letters it.
pub async fn refuse(
    store: &Store,
    key: &PartnerKey,
    jti: &str,
    at: &Position,
    reason: Reason,
    detail: String,
) -> Result<Verdict> {
    let mut tx = store.begin().await?;
    db::record_judged(&mut tx, key, jti, at, Some((reason.code(), &detail))).await?;
    tx.commit().await?;
    Ok(reject(reason, detail))
}
