//! Ed25519 compact JWS (RFC 7515 with RFC 8037's `EdDSA`), the one signature
//! scheme of the project: operators sign their commands with it, payment
//! providers their status reports. Keys are JWKs (`{"kty":"OKP",
//! "crv":"Ed25519","kid":…,"x":…,"d":…}`), usable by any JOSE library; the
//! work is done by `jsonwebtoken` and `ed25519-dalek`.
//!
//! Rejections use the stable dead-letter codes: `unsigned`,
//! `bad_signature`, `unknown_key`; the caller decides what a verified
//! payload may do.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::deadletter::Reason;
use crate::envelope::Rejection;

/// An Ed25519 key as a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// Key id; the `kid` of every JWS signed with it.
    pub kid: String,
    /// Public key, base64url.
    pub x: String,
    /// Private key, base64url; absent in a public JWK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

impl Jwk {
    /// Generates a new key pair.
    pub fn generate(kid: &str) -> Self {
        let seed: [u8; 32] = rand::random();
        let sk = SigningKey::from_bytes(&seed);
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: kid.into(),
            x: URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes()),
            d: Some(URL_SAFE_NO_PAD.encode(seed)),
        }
    }

    /// The public half.
    pub fn public(&self) -> Jwk {
        Jwk {
            d: None,
            ..self.clone()
        }
    }
}

/// Signs `payload` (as its JSON) as a compact JWS with `alg: EdDSA` and the
/// key's `kid`.
pub fn sign<T: Serialize>(payload: &T, key: &Jwk) -> Result<String, String> {
    let d = key
        .d
        .as_ref()
        .ok_or("the key file has no private part (d)")?;
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(d)
        .map_err(|e| format!("private key is not base64url: {e}"))?
        .try_into()
        .map_err(|_| "private key is not 32 bytes".to_string())?;
    let der = SigningKey::from_bytes(&seed)
        .to_pkcs8_der()
        .map_err(|e| e.to_string())?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, payload, &EncodingKey::from_ed_der(der.as_bytes()))
        .map_err(|e| e.to_string())
}

/// The key id named in a JWS header, or why there is none; `what` names
/// the signed thing in the rejection ("the command", "the report").
pub fn key_id(jws: &str, what: &str) -> Result<String, Rejection> {
    if jws.trim().is_empty() {
        return Err(Rejection::new(
            Reason::Unsigned,
            format!("{what} carries no signature"),
        ));
    }
    let header = jsonwebtoken::decode_header(jws)
        .map_err(|e| Rejection::new(Reason::BadSignature, format!("not a compact JWS: {e}")))?;
    if header.alg != Algorithm::EdDSA {
        return Err(Rejection::new(
            Reason::BadSignature,
            format!("alg {:?} is not EdDSA", header.alg),
        ));
    }
    if jws.split('.').nth(2).is_none_or(str::is_empty) {
        return Err(Rejection::new(
            Reason::Unsigned,
            "the JWS has an empty signature",
        ));
    }
    header
        .kid
        .ok_or_else(|| Rejection::new(Reason::UnknownKey, "the JWS header names no kid"))
}

/// Verifies the signature with a registered public key (base64url `x`) and
/// returns the payload; a payload that does not parse as `T` is rejected
/// with `malformed`. Time claims are the caller's to check.
pub fn verify<T: DeserializeOwned>(
    jws: &str,
    public_x: &str,
    malformed: Reason,
) -> Result<T, Rejection> {
    let key = DecodingKey::from_ed_components(public_x).map_err(|e| {
        Rejection::new(
            Reason::UnknownKey,
            format!("registered key is unusable: {e}"),
        )
    })?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    match jsonwebtoken::decode::<T>(jws, &key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Err(Rejection::new(
                Reason::BadSignature,
                "signature does not verify",
            )),
            jsonwebtoken::errors::ErrorKind::Json(_) => Err(Rejection::new(
                malformed,
                format!("the signed payload is malformed: {e}"),
            )),
            _ => Err(Rejection::new(Reason::BadSignature, e.to_string())),
        },
    }
}

/// How far ahead of the reader's clock an `iat` may be (clock skew).
pub const SKEW_SECS: i64 = 300;

/// Why a signed message issued at `iat` is too old (or too far ahead) to
/// be heard at `now`, if it is; `what` names such messages in the reason
/// ("commands", "records"). Pure.
pub fn stale(
    iat: i64,
    now: chrono::DateTime<chrono::Utc>,
    max_age_secs: i64,
    what: &str,
) -> Option<String> {
    let age = now.timestamp() - iat;
    if age > max_age_secs {
        Some(format!(
            "issued {age} s ago; {what} older than {max_age_secs} s are refused"
        ))
    } else if age < -SKEW_SECS {
        Some(format!("issued {} s in the future", -age))
    } else {
        None
    }
}

/// The reason a signed message's recorded refusal was given, read back
/// when the very message is read again: a refusal recorded after the
/// signature verified is one of these codes.
pub fn recorded_refusal(code: &str) -> Reason {
    [
        Reason::RevokedKey,
        Reason::Expired,
        Reason::InvalidTransition,
        Reason::InvalidCommand,
        Reason::UnknownReferral,
        Reason::WrongProvider,
    ]
    .into_iter()
    .find(|r| r.code() == code)
    .unwrap_or(Reason::InvalidCommand)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    #[test]
    fn messages_older_than_the_bound_or_from_the_future_are_stale() {
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        assert_eq!(stale(1_000_000 - 900, now, 900, "commands"), None);
        assert!(stale(1_000_000 - 901, now, 900, "commands").is_some());
        assert_eq!(stale(1_000_000 + 300, now, 900, "commands"), None);
        assert!(stale(1_000_000 + 301, now, 900, "commands").is_some());
        assert_eq!(recorded_refusal("expired"), Reason::Expired);
        assert_eq!(recorded_refusal("nonsense"), Reason::InvalidCommand);
    }

    #[test]
    fn a_signed_payload_verifies_with_its_public_key_only() {
        let key = Jwk::generate("k-1");
        let note = Note { text: "hi".into() };
        let jws = sign(&note, &key).unwrap();
        assert_eq!(key_id(&jws, "the note").unwrap(), "k-1");
        assert_eq!(
            verify::<Note>(&jws, &key.x, Reason::SchemaInvalid).unwrap(),
            note
        );
        let other = Jwk::generate("k-2");
        assert_eq!(
            verify::<Note>(&jws, &other.x, Reason::SchemaInvalid)
                .unwrap_err()
                .reason,
            Reason::BadSignature
        );
    }
}
