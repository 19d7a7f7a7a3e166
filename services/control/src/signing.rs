//! Ed25519 JWS for operator commands: key files, signing (CLI, tests) and
//! verification (the control service), on `jsonwebtoken` and `ed25519-dalek`.
//!
//! A key file is a JWK (RFC 8037): `{"kty":"OKP","crv":"Ed25519","kid":…,
//! "x":…,"d":…}`, usable by any JOSE library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::control::CommandClaims;

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

/// Signs command claims as a compact JWS with `alg: EdDSA` and `kid`.
pub fn sign(claims: &CommandClaims, key: &Jwk) -> Result<String, String> {
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
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes()))
        .map_err(|e| e.to_string())
}

/// The key id named in a JWS header, or why there is none.
pub fn key_id(jws: &str) -> Result<String, Rejection> {
    if jws.trim().is_empty() {
        return Err(Rejection::new(
            Reason::Unsigned,
            "the command carries no signature",
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

/// The command id (`jti`) a JWS claims, read **without** verifying it. Used
/// only to recognise a redelivery: a message at a position that already
/// holds this very command is acknowledged without effect. Offsets alone do
/// not identify a message — a recreated topic (or the embedded broker, whose
/// topics live in memory, after a restart) numbers new messages from 0
/// again — and nothing is ever applied on this unverified reading.
pub fn claimed_command_id(jws: &str) -> Option<String> {
    let token = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(jws).ok()?;
    token.claims.get("jti")?.as_str().map(str::to_owned)
}

/// Verifies the signature with the operator's public key (base64url `x`) and
/// returns the claims. Issued-at is checked by the caller, which knows the
/// clock and the allowed age.
pub fn verify(jws: &str, public_x: &str) -> Result<CommandClaims, Rejection> {
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
    match jsonwebtoken::decode::<CommandClaims>(jws, &key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Err(Rejection::new(
                Reason::BadSignature,
                "signature does not verify",
            )),
            jsonwebtoken::errors::ErrorKind::Json(_) => Err(Rejection::new(
                Reason::InvalidCommand,
                format!("claims are malformed: {e}"),
            )),
            _ => Err(Rejection::new(Reason::BadSignature, e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sumud_shared::events::control::CommandKind;

    fn claims() -> CommandClaims {
        CommandClaims {
            propose: false,
            jti: "c1".into(),
            iat: 1_764_400_000,
            cmd: CommandKind::Close,
            crisis_id: "X".into(),
            body: None,
            note: None,
            trigger: None,
        }
    }

    #[test]
    fn a_signed_command_verifies_with_its_public_key_only() {
        let key = Jwk::generate("op-1");
        let jws = sign(&claims(), &key).unwrap();
        assert_eq!(key_id(&jws).unwrap(), "op-1");
        assert_eq!(verify(&jws, &key.x).unwrap(), claims());
        let other = Jwk::generate("op-2");
        assert_eq!(
            verify(&jws, &other.x).unwrap_err().reason,
            Reason::BadSignature
        );
    }

    #[test]
    fn a_tampered_payload_fails_verification() {
        let key = Jwk::generate("op-1");
        let jws = sign(&claims(), &key).unwrap();
        let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c.crisis_id = "Y".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            verify(&parts.join("."), &key.x).unwrap_err().reason,
            Reason::BadSignature
        );
    }

    #[test]
    fn missing_or_stripped_signatures_are_unsigned() {
        assert_eq!(key_id("").unwrap_err().reason, Reason::Unsigned);
        let key = Jwk::generate("op-1");
        let jws = sign(&claims(), &key).unwrap();
        let stripped = format!("{}.", jws.rsplit_once('.').unwrap().0);
        assert_eq!(key_id(&stripped).unwrap_err().reason, Reason::Unsigned);
    }
}
