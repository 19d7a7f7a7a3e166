//! Ed25519 JWS for operator commands: key files, signing (CLI, tests) and
//! verification (the control service), on the project's one JWS scheme
//! (`sumud_shared::jws`).
//!
//! A key file is a JWK (RFC 8037): `{"kty":"OKP","crv":"Ed25519","kid":…,
//! "x":…,"d":…}`, usable by any JOSE library.

use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::control::CommandClaims;
pub use sumud_shared::jws::Jwk;

/// Signs command claims as a compact JWS with `alg: EdDSA` and `kid`.
pub fn sign(claims: &CommandClaims, key: &Jwk) -> Result<String, String> {
    sumud_shared::jws::sign(claims, key)
}

/// The key id named in a JWS header, or why there is none.
pub fn key_id(jws: &str) -> Result<String, Rejection> {
    sumud_shared::jws::key_id(jws, "the command")
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
    sumud_shared::jws::verify(jws, public_x, Reason::InvalidCommand)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sumud_shared::events::control::CommandKind;

    fn claims() -> CommandClaims {
        CommandClaims {
            approves: None,
            operator: None,
            scope: None,
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
