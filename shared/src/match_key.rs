//! The privacy-preserving match key agencies share, so that a partner's
//! record of assistance finds our household without any identity on a
//! topic: HMAC-SHA-256 of the normalised national id under a secret the
//! agencies hold together (`SUMUD_MATCH_KEY`), as base64url without
//! padding (43 characters). Without the secret a key cannot be recomputed
//! from a national id, so a list of keys reveals no one.
//!
//! Normalisation, which every agency must apply before the HMAC: remove
//! spaces and hyphens, then ASCII upper-case (`"987 123-4567"` →
//! `"9871234567"`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The environment variable holding the shared secret.
pub const ENV: &str = "SUMUD_MATCH_KEY";

/// The agencies' shared secret.
#[derive(Clone)]
pub struct MatchKeySecret(Vec<u8>);

impl std::fmt::Debug for MatchKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MatchKeySecret(…)")
    }
}

impl MatchKeySecret {
    /// Reads the secret from its base64 (standard or URL-safe) text; at
    /// least 32 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .or_else(|_| STANDARD.decode(text))
            .map_err(|e| format!("{ENV} is not base64: {e}"))?;
        if bytes.len() < 32 {
            return Err(format!(
                "{ENV} holds {} bytes; the agencies' shared secret must be at least 32 random bytes",
                bytes.len()
            ));
        }
        Ok(MatchKeySecret(bytes))
    }

    /// The secret from the environment, if one is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// The match key of `national_id`.
    pub fn key(&self, national_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(normalise(national_id).as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// A national id as every agency hashes it.
pub fn normalise(national_id: &str) -> String {
    national_id
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether `s` looks like a match key (43 base64url characters).
pub fn well_formed(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_hmac_of_the_normalised_id_as_another_implementation_computes_it() {
        // Python's hmac module: base64url(HMAC-SHA-256(0xaa × 131, "9871234567")).
        let secret = MatchKeySecret(vec![0xaa; 131]);
        assert_eq!(
            secret.key("98 71-234 567"),
            "zKT-Vy1CpauC8SX2g8ZxGrp7x1M2-0R7Tj5XQQm1Ino"
        );
        assert_eq!(secret.key("9871234567"), secret.key(" 9871234567 "));
        assert!(well_formed(&secret.key("x")));
        assert!(!well_formed("9871234567"));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(MatchKeySecret::parse(&URL_SAFE_NO_PAD.encode([1u8; 16])).is_err());
        assert!(MatchKeySecret::parse(&STANDARD.encode([1u8; 32])).is_ok());
    }
}
