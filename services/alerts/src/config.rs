//! Settings of the alerts service, from the environment.

use std::path::PathBuf;

use sumud_control::signing::Jwk;
use sumud_shared::{Error, Result};

use crate::rules::RuleBook;
use crate::senders::SenderBook;

/// The service's signing key and trigger rules.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// The service's own operator key (`SUMUD_ALERTS_KEY_FILE`, a JWK file
    /// from `sumud keys generate`). Its public half must be registered with
    /// `sumud operators add` with the declare and close roles; commands it
    /// signs are otherwise dead-lettered by the control service as `unknown_key`.
    pub key: Jwk,
    /// The rules (`SUMUD_ALERTS_RULES_FILE`, default: the shipped set).
    pub rules: RuleBook,
    /// Who may speak on the alerts topic, and for what
    /// (`SUMUD_ALERTS_SENDERS_FILE`, default: the shipped list).
    pub senders: SenderBook,
}

impl AlertsConfig {
    /// The shipped trigger rules and trusted senders, signing with `key`:
    /// what `sumud up`, the demo and the tests run when no file names others.
    pub fn shipped(key: Jwk) -> Self {
        AlertsConfig {
            key,
            rules: RuleBook::default_book(),
            senders: SenderBook::default_book(),
        }
    }

    /// Reads the settings; a missing key is an error that says how to make one.
    pub fn from_env() -> Result<Self> {
        let key_path = std::env::var("SUMUD_ALERTS_KEY_FILE").map_err(|_| {
            Error::Config(
                "SUMUD_ALERTS_KEY_FILE is not set: create a key with `sumud keys generate --kid alerts-1 --out alerts.jwk`, \
                 register it with `sumud operators add --kid alerts-1 --principal early-warning --roles declare,close --public-key <x>`, \
                 and point SUMUD_ALERTS_KEY_FILE at the file"
                    .into(),
            )
        })?;
        let key = read_key(&PathBuf::from(key_path))?;
        let rules = match std::env::var("SUMUD_ALERTS_RULES_FILE") {
            Ok(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::Config(format!("cannot read rules file {path}: {e}")))?;
                RuleBook::from_json(&text)
                    .map_err(|e| Error::Config(format!("rules file {path} is invalid: {e}")))?
            }
            Err(_) => RuleBook::default_book(),
        };
        let senders = match std::env::var("SUMUD_ALERTS_SENDERS_FILE") {
            Ok(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::Config(format!("cannot read senders file {path}: {e}")))?;
                SenderBook::from_json(&text, &rules)
                    .map_err(|e| Error::Config(format!("senders file {path} is invalid: {e}")))?
            }
            Err(_) => SenderBook::default_book(),
        };
        Ok(AlertsConfig {
            key,
            rules,
            senders,
        })
    }
}

/// Reads a private JWK key file.
pub fn read_key(path: &std::path::Path) -> Result<Jwk> {
    let text = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read key file {}: {e}", path.display())))?;
    let key: Jwk = serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{} is not a JWK key file: {e}", path.display())))?;
    if key.d.is_none() {
        return Err(Error::Config(format!(
            "{} holds only a public key; the alerts service needs the private key to sign",
            path.display()
        )));
    }
    Ok(key)
}
