//! The pure rules of instruction identity: deterministic ids, pseudonymous
//! beneficiary references (a keyed MAC), and the backoff of retries. What a provider's
//! report does is the payment state machine's (`payment_state.rs`).

use chrono::Duration;
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x5d1f_6c2b_91e4_4f0a_8a35_2c7e_b0d4_91aa);

/// The deterministic id of (crisis, household, kind, tranche): the
/// idempotency key and end-to-end id of every attempt at that payment.
pub fn instruction_id(crisis: &str, household: &str, kind: &str, tranche: u32) -> String {
    let mut tranche_text = itoa::Buffer::new();
    let name = [
        crisis.as_bytes(),
        household.as_bytes(),
        kind.as_bytes(),
        tranche_text.format(tranche).as_bytes(),
    ];
    hyphenated(v5(&NAMESPACE, &name))
}

/// The id of a top-up part (`part` ≥ 1) of a tranche: as stable as the
/// tranche's own id, and different for every part.
pub fn part_id(crisis: &str, household: &str, kind: &str, tranche: u32, part: u32) -> String {
    if part == 0 {
        return instruction_id(crisis, household, kind, tranche);
    }
    let (mut tranche_text, mut part_text) = (itoa::Buffer::new(), itoa::Buffer::new());
    let name = [
        crisis.as_bytes(),
        household.as_bytes(),
        kind.as_bytes(),
        tranche_text.format(tranche).as_bytes(),
        b"top-up",
        part_text.format(part).as_bytes(),
    ];
    hyphenated(v5(&NAMESPACE, &name))
}

/// The UUIDv5 in `namespace` of the name made of `parts` joined by U+001F:
/// the same id as `Uuid::new_v5` of the joined name, hashed part by part
/// (a pass makes hundreds of thousands of ids and pseudonyms, so the name is
/// never built) by `sha1`, which uses the CPU's SHA instructions where it
/// has them.
fn v5(namespace: &Uuid, parts: &[&[u8]]) -> Uuid {
    use sha1::{Digest, Sha1};
    let mut hash = Sha1::new();
    hash.update(namespace.as_bytes());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update([0x1f]);
        }
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The id's text, encoded directly rather than through `Display` (the same
/// text, without the formatting machinery).
fn hyphenated(id: Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// A stable pseudonym for a household, keyed by a deployment secret, so
/// providers can group payments to one beneficiary without learning who it is.
pub fn beneficiary_ref(secret: &str, household: &str) -> String {
    Pseudonyms::new(secret).of(household)
}

/// [`beneficiary_ref`] for many households under one secret: `ben-` and the
/// first 128 bits of HMAC-SHA-256(secret, household id), in hex. A keyed
/// MAC, not a hash of a name: without the secret nobody can tell which
/// household a pseudonym stands for, even by trying every household id
/// (a UUIDv5 namespace, what this replaced, is only as secret as the
/// namespace it is derived from). The MAC's keyed state is made once and
/// cloned per household.
pub struct Pseudonyms(hmac::Hmac<sha2::Sha256>);

impl Pseudonyms {
    /// The pseudonyms keyed by `secret`.
    pub fn new(secret: &str) -> Self {
        use hmac::Mac;
        Pseudonyms(
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length"),
        )
    }

    /// The pseudonym of `household`.
    pub fn of(&self, household: &str) -> String {
        use hmac::Mac;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.0.clone();
        mac.update(household.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut text = String::with_capacity(4 + 32);
        text.push_str("ben-");
        for b in &tag[..16] {
            text.push(HEX[(b >> 4) as usize] as char);
            text.push(HEX[(b & 15) as usize] as char);
        }
        text
    }
}

/// Backoff before attempt `next` (2, 3, …): base × 2^(next-2), capped.
pub fn retry_delay(base: Duration, next: u32) -> Duration {
    let factor = 1i32 << next.saturating_sub(2).min(10);
    (base * factor).min(Duration::hours(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_ids_are_deterministic_and_distinct_per_tranche() {
        let a = instruction_id("C", "H", "vertical", 1);
        assert_eq!(a, instruction_id("C", "H", "vertical", 1));
        assert_ne!(a, instruction_id("C", "H", "vertical", 2));
        assert_ne!(a, instruction_id("C", "H", "horizontal", 1));
    }

    #[test]
    fn ids_and_pseudonyms_keep_their_text_form() {
        // Computed independently (Python's uuid.uuid5, and
        // hmac.new(b"secret", b"HH-7", hashlib.sha256).hexdigest()[:32]):
        // an id or pseudonym that changed its text would no longer match
        // the rows, the provider's ledger or the outbox written before.
        assert_eq!(
            instruction_id("FL-1", "HH-7", "vertical", 2),
            "b002d21e-af6e-5865-99d5-60a47de78ea8"
        );
        assert_eq!(
            beneficiary_ref("secret", "HH-7"),
            "ben-75fa83826c793ceb62c1cdab489b5a4a"
        );
    }

    #[test]
    fn pseudonyms_are_the_hmac_of_the_household_under_the_secret() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for
        // nothing?"; its HMAC-SHA-256 begins 5bdcc146bf60754e6a042426089575c7.
        assert_eq!(
            beneficiary_ref("Jefe", "what do ya want for nothing?"),
            "ben-5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn ids_are_uuid_v5_of_the_joined_name() {
        // The rule as first written: uuid's own v5 of the joined name.
        let joined = |ns: &Uuid, name: String| Uuid::new_v5(ns, name.as_bytes());
        for (crisis, household, kind, tranche, part) in [
            ("FL-1", "HH-7", "vertical", 1, 0),
            ("", "", "", 0, 0),
            ("قطاع-٣", "HH-\u{1f}x", "horizontal", u32::MAX, 1),
            ("FL-2026-12", "HH-0000001", "top", 12, 987_654_321),
        ] {
            let name = if part == 0 {
                format!("{crisis}\u{1f}{household}\u{1f}{kind}\u{1f}{tranche}")
            } else {
                format!(
                    "{crisis}\u{1f}{household}\u{1f}{kind}\u{1f}{tranche}\u{1f}top-up\u{1f}{part}"
                )
            };
            assert_eq!(
                part_id(crisis, household, kind, tranche, part),
                joined(&NAMESPACE, name).to_string()
            );
        }
    }

    #[test]
    fn beneficiary_refs_hide_the_household_id() {
        let r = beneficiary_ref("s", "HH-123");
        assert!(!r.contains("123"));
        assert_eq!(r, beneficiary_ref("s", "HH-123"));
        assert_ne!(r, beneficiary_ref("other", "HH-123"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::seconds(10);
        assert_eq!(retry_delay(b, 2), Duration::seconds(10));
        assert_eq!(retry_delay(b, 3), Duration::seconds(20));
        assert_eq!(retry_delay(Duration::minutes(1), 40), Duration::hours(6));
    }
}
