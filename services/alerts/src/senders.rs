//! Trusted senders: who may speak on `sumud.alerts.v1`, as versioned,
//! reviewed data beside the trigger rules. For each sender (a CAP `sender`,
//! or an indicator reading's `source`): the areas and rules it may trigger,
//! and optionally the key its alerts must be signed with. Pure: the handler
//! asks, this module answers.
//!
//! CAP feeds from national services rarely carry signatures, so the list
//! is the floor (an alert from anyone else is recorded and dead-lettered as
//! `untrusted_sender`, and never acts); a sender with a `key` is held to a
//! signature as well. The signature profile is a JWS, not CAP's enveloped
//! XML-DSig: the CloudEvent carries the extension attribute `capsignature`,
//! a compact JWS (`alg` `EdDSA`, `kid` the sender's key id) whose payload is
//! `{"sha256": "<hex>"}`, the SHA-256 of the document exactly as carried
//! (the UTF-8 bytes of `data` for `application/cap+xml`; the RFC 8785
//! canonical JSON of `data` for the JSON form).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;

use crate::rules::RuleBook;

const DEFAULT_SENDERS: &str = include_str!("../data/trusted_senders.json");

/// A reviewed list of senders; its `version` is logged at start.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SenderBook {
    /// Version of the whole list.
    pub version: String,
    /// Who reviewed it.
    pub reviewed_by: Vec<String>,
    /// When it was approved.
    pub approved_on: chrono::NaiveDate,
    /// The senders.
    pub senders: Vec<TrustedSender>,
}

/// One sender and what it may trigger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedSender {
    /// The CAP `sender` (or reading `source`) exactly.
    pub sender: String,
    /// Who it is, for people.
    pub name: String,
    /// Area codes it speaks for (each covers its descendants; a country
    /// code such as `JO` covers the country); others in its alerts are ignored.
    pub areas: Vec<String>,
    /// Ids of the rules its alerts or readings may trigger.
    pub rules: Vec<String>,
    /// The key its alerts must be signed with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SenderKey>,
}

/// A sender's public Ed25519 key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SenderKey {
    /// Key id; the `kid` of its signatures.
    pub kid: String,
    /// Public key, base64url (the JWK `x`).
    pub x: String,
}

/// What a `capsignature` JWS signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentDigest {
    /// Lowercase hex SHA-256 of the document as carried.
    pub sha256: String,
}

impl SenderBook {
    /// The shipped list.
    pub fn default_book() -> SenderBook {
        SenderBook::from_json(DEFAULT_SENDERS, &RuleBook::default_book())
            .expect("the shipped trusted senders are valid")
    }

    /// Loads and checks a list against the rules it names: unique senders,
    /// known rules, known areas.
    pub fn from_json(text: &str, rules: &RuleBook) -> Result<SenderBook, String> {
        let book: SenderBook = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let catalog = AreaCatalog::default_catalog();
        let mut seen = std::collections::HashSet::new();
        for s in &book.senders {
            if !seen.insert(s.sender.as_str()) {
                return Err(format!("sender {} appears twice", s.sender));
            }
            if let Some(r) = s.rules.iter().find(|r| rules.get(r).is_none()) {
                return Err(format!(
                    "sender {} may trigger rule {r}, which is not in rule book {}",
                    s.sender, rules.version
                ));
            }
            let known = |a: &str| catalog.resolve(a).is_some() || is_country(a);
            if let Some(a) = s.areas.iter().find(|a| !known(a)) {
                return Err(format!(
                    "sender {} speaks for area {a:?}, which is not in the area hierarchy",
                    s.sender
                ));
            }
        }
        Ok(book)
    }

    /// The sender, if trusted.
    pub fn get(&self, sender: &str) -> Option<&TrustedSender> {
        self.senders.iter().find(|s| s.sender == sender)
    }
}

fn is_country(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

impl TrustedSender {
    /// Whether the sender speaks for `area` (one of its areas or below one).
    pub fn covers(&self, area: &str) -> bool {
        self.areas.iter().any(|a| {
            area == a
                || area
                    .strip_prefix(a.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
        })
    }

    /// Whether the sender may trigger `rule`.
    pub fn may_trigger(&self, rule: &str) -> bool {
        self.rules.iter().any(|r| r == rule)
    }

    /// Checks the signature a keyed sender's alert must carry: `raw` is the
    /// whole CloudEvent (for its `capsignature` attribute), `data` its
    /// payload. A sender without a key passes.
    pub fn check_signature(&self, raw: &[u8], data: &Value) -> Result<(), Rejection> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        #[derive(Deserialize)]
        struct Extension {
            capsignature: Option<String>,
        }
        let jws = serde_json::from_slice::<Extension>(raw)
            .ok()
            .and_then(|e| e.capsignature)
            .unwrap_or_default();
        let what = format!("an alert from {}", self.sender);
        let kid = sumud_shared::jws::key_id(&jws, &what)?;
        if kid != key.kid {
            return Err(Rejection::new(
                Reason::UnknownKey,
                format!("{} signs with key {}, not {kid:?}", self.sender, key.kid),
            ));
        }
        let signed: DocumentDigest = sumud_shared::jws::verify(&jws, &key.x, Reason::BadSignature)?;
        if signed.sha256 != document_sha256(data) {
            return Err(Rejection::new(
                Reason::BadSignature,
                "the signature is over another document",
            ));
        }
        Ok(())
    }
}

/// Signs a CAP event (as JSON) for a keyed sender: sets its `capsignature`
/// attribute to the JWS of its `data`'s digest. What `sumud alerts send
/// --key` does; any JOSE library can do the same.
pub fn sign_event(event: &mut Value, key: &sumud_shared::jws::Jwk) -> Result<(), String> {
    let digest = DocumentDigest {
        sha256: document_sha256(&event["data"]),
    };
    event["capsignature"] = Value::String(sumud_shared::jws::sign(&digest, key)?);
    Ok(())
}

/// Lowercase hex SHA-256 of an alert's `data` as the signature profile
/// defines it: the XML string's UTF-8 bytes, or the JSON form's RFC 8785
/// canonical bytes.
pub fn document_sha256(data: &Value) -> String {
    let digest = match data {
        Value::String(xml) => Sha256::digest(xml.as_bytes()),
        other => Sha256::digest(serde_jcs::to_vec(other).expect("a JSON value serialises")),
    };
    format!("{digest:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::jws::{self, Jwk};

    fn sender(key: Option<&Jwk>) -> TrustedSender {
        TrustedSender {
            sender: "jmd.gov.jo".into(),
            name: "Met".into(),
            areas: vec!["JO-AJ".into(), "JO-MA-01".into()],
            rules: vec!["cold-wave-proposal".into()],
            key: key.map(|k| SenderKey {
                kid: k.kid.clone(),
                x: k.x.clone(),
            }),
        }
    }

    fn event(data: &Value, sig: Option<String>) -> Vec<u8> {
        let mut e = serde_json::json!({"specversion": "1.0", "id": "1", "data": data});
        if let Some(s) = sig {
            e["capsignature"] = s.into();
        }
        serde_json::to_vec(&e).unwrap()
    }

    #[test]
    fn the_shipped_list_is_valid_and_names_only_known_rules() {
        let book = SenderBook::default_book();
        assert!(book.get("ncsc.gov.jo").is_some());
        assert!(book.get("evil.example").is_none());
        let bad = DEFAULT_SENDERS.replace("food-price-spike", "no-such-rule");
        assert!(SenderBook::from_json(&bad, &RuleBook::default_book()).is_err());
        let bad = DEFAULT_SENDERS.replacen("\"JO\"", "\"JO-QQ\"", 1);
        assert!(SenderBook::from_json(&bad, &RuleBook::default_book()).is_err());
    }

    #[test]
    fn a_sender_covers_its_areas_and_their_descendants_only() {
        let s = sender(None);
        assert!(s.covers("JO-AJ") && s.covers("JO-AJ-02") && s.covers("JO-MA-01"));
        assert!(!s.covers("JO-MA") && !s.covers("JO-MA-02") && !s.covers("JO-AJX"));
        assert!(s.may_trigger("cold-wave-proposal") && !s.may_trigger("flood-severe-poor-areas"));
    }

    #[test]
    fn a_keyed_sender_must_sign_exactly_the_document_carried() {
        let key = Jwk::generate("jmd-1");
        let s = sender(Some(&key));
        let doc = Value::String("<alert>…</alert>".into());
        // The digest as any tool computes it: sha256 of the bytes.
        let want = format!("{:x}", Sha256::digest("<alert>…</alert>".as_bytes()));
        assert_eq!(document_sha256(&doc), want);
        let good = jws::sign(
            &DocumentDigest {
                sha256: want.clone(),
            },
            &key,
        )
        .unwrap();
        assert!(s
            .check_signature(&event(&doc, Some(good.clone())), &doc)
            .is_ok());

        let none = s.check_signature(&event(&doc, None), &doc).unwrap_err();
        assert_eq!(none.reason, Reason::Unsigned);
        let other_doc = Value::String("<alert>other</alert>".into());
        let moved = s.check_signature(&event(&other_doc, Some(good)), &other_doc);
        assert_eq!(moved.unwrap_err().reason, Reason::BadSignature);
        let forger = Jwk {
            kid: "jmd-1".into(),
            ..Jwk::generate("x")
        };
        let forged = jws::sign(&DocumentDigest { sha256: want }, &forger).unwrap();
        let r = s.check_signature(&event(&doc, Some(forged)), &doc);
        assert_eq!(r.unwrap_err().reason, Reason::BadSignature);
        assert!(sender(None)
            .check_signature(&event(&doc, None), &doc)
            .is_ok());
    }
}
