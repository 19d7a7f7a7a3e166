//! The opening every message signed outside Sumud shares — a field team's
//! task command, a partner agency's assistance record, a service provider's
//! referral answer: the signature first (a message nobody can attribute
//! changes nothing and is not recorded), then the same message read again
//! (its recorded verdict, so a refusal still reaches the dead-letter topic
//! after a crash), then replay, each message id judged once per key (no
//! other key, revoked or a rival's, can use up another's ids). What
//! follows (key binding, revocation, age, shape, effect) is the caller's.
//! Each service keeps its keys and judgements in its own tables and hands
//! this the two lookups.

use std::future::Future;

use serde::de::DeserializeOwned;

use crate::deadletter::Reason;
use crate::envelope::Rejection;
use crate::jws;
use crate::kafka::consumer::{Incoming, Verdict};
use crate::Result;

/// A registered signing key, as the opening needs it.
pub trait RegisteredKey {
    /// Its key id (the JWS `kid`).
    fn kid(&self) -> &str;
    /// Its Ed25519 public key, base64url.
    fn public_x(&self) -> &str;
}

/// Where a message id was judged before, (topic, partition, offset), and
/// the refusal (code, detail) recorded then, if it was refused.
pub type Judged = ((String, i32, i64), Option<(String, String)>);

/// What a kind of signed message is called, for the dead letters' details.
pub struct Kind<'a> {
    /// The message in errors: "the task command".
    pub label: &'a str,
    /// The message in the replay detail: "task command".
    pub noun: &'a str,
    /// The keys that sign it: "field", "partner".
    pub keys: &'a str,
    /// The command that lists them: "sumud tasks keys list".
    pub list: &'a str,
}

/// A message whose signature verified and whose id was never judged.
pub struct Opened<K, C> {
    /// The registered key that signed it.
    pub key: K,
    /// Its verified claims.
    pub claims: C,
    /// Where it was read: (topic, partition, offset).
    pub at: (String, i32, i64),
}

/// Opens message `m` signed as `signed` (a compact JWS over claims `C` with
/// id `jti_of`): `Err(verdict)` when it is settled already — unsigned,
/// under an unknown key, badly signed, read again (its recorded verdict) or
/// replayed. `key` finds a registered key by id; `judged` finds how
/// (key id, message id) was judged, if it was.
pub async fn open<K, C, KF, JF>(
    m: &Incoming,
    signed: &str,
    kind: &Kind<'_>,
    jti_of: fn(&C) -> &str,
    key: impl FnOnce(String) -> KF,
    judged: impl FnOnce(String, String) -> JF,
) -> Result<std::result::Result<Opened<K, C>, Verdict>>
where
    K: RegisteredKey,
    C: DeserializeOwned,
    KF: Future<Output = Result<Option<K>>>,
    JF: Future<Output = Result<Option<Judged>>>,
{
    let kid = match jws::key_id(signed, kind.label) {
        Ok(k) => k,
        Err(rej) => return Ok(Err(Verdict::Reject(rej))),
    };
    let Some(key) = key(kid.clone()).await? else {
        return Ok(Err(reject(
            Reason::UnknownKey,
            format!("no {} key {kid} is registered (`{}`)", kind.keys, kind.list),
        )));
    };
    let claims: C = match jws::verify(signed, key.public_x(), Reason::InvalidCommand) {
        Ok(c) => c,
        Err(rej) => return Ok(Err(Verdict::Reject(rej))),
    };
    let at = (m.topic.clone(), m.partition, m.offset);
    let jti = jti_of(&claims).to_owned();
    if let Some((seen, refused)) = judged(key.kid().to_owned(), jti.clone()).await? {
        if seen == at {
            // The very message judged before, read again after a crash:
            // the same verdict, so a refusal still reaches the dead-letter
            // topic (it was recorded before it was sent).
            return Ok(Err(match refused {
                None => Verdict::Done,
                Some((code, detail)) => reject(jws::recorded_refusal(&code), detail),
            }));
        }
        return Ok(Err(reject(
            Reason::Replayed,
            format!(
                "{} {jti} was judged before, from another position",
                kind.noun
            ),
        )));
    }
    Ok(Ok(Opened { key, claims, at }))
}

/// A refusal verdict.
pub fn reject(reason: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Reject(Rejection::new(reason, detail))
}
