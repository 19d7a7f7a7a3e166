//! `sumud providers add|revoke|list`: the payment providers allowed to
//! report status on `sumud.payments.status.v1` (docs/operations.md,
//! "Payment providers"), each with the public key its reports are signed
//! with, or none for a provider that cannot sign.

use std::path::PathBuf;

use clap::Subcommand;
use sumud_shared::config::Settings;

use crate::{crisis_cmd, payments_cmd};

/// `sumud providers` subcommands.
#[derive(Subcommand)]
pub enum ProvidersCommand {
    /// Register a provider, with the public key it signs its status reports
    /// with (a provider registered without a key is heard unsigned, bound
    /// only to the instructions it holds).
    Add {
        /// Provider id, as households' payment_provider names it.
        #[arg(long)]
        id: String,
        /// The provider's key file (public JWK, `kid` and `x`): its reports
        /// must carry a JWS by this key.
        #[arg(long, conflicts_with = "no_key")]
        key_file: Option<PathBuf>,
        /// Register it without a key (its reports are not signed).
        #[arg(long)]
        no_key: bool,
        /// A provider an operator revoked is left revoked and this is not
        /// an error (for set-up jobs that run on every start); without it,
        /// adding a revoked provider fails.
        #[arg(long)]
        skip_revoked: bool,
    },
    /// Revoke a provider: its reports are refused from now on.
    Revoke {
        /// Provider id.
        #[arg(long)]
        id: String,
    },
    /// List registered providers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `sumud providers` command on disbursement's store.
pub async fn run(settings: &Settings, command: ProvidersCommand) -> anyhow::Result<()> {
    let store = payments_cmd::disbursement_store(settings).await?;
    match command {
        ProvidersCommand::Add {
            id,
            key_file,
            no_key,
            skip_revoked,
        } => {
            let revoked = sumud_disbursement::db::providers(&store)
                .await?
                .iter()
                .any(|p| p.provider_id == id && p.revoked);
            if revoked && skip_revoked {
                println!("provider {id} was revoked; left revoked");
                return Ok(());
            }
            let key = match (key_file, no_key) {
                (Some(f), _) => Some(crisis_cmd::read_key(&f)?),
                (None, true) => None,
                (None, false) => anyhow::bail!(
                    "give --key-file (the provider's public JWK), or --no-key for a provider that cannot sign"
                ),
            };
            sumud_disbursement::db::add_provider(
                &store,
                &id,
                key.as_ref().map(|k| (k.kid.as_str(), k.x.as_str())),
            )
            .await?;
            match key {
                Some(k) => println!("provider {id} registered with key {}", k.kid),
                None => {
                    println!("provider {id} registered without a key: its reports are not signed")
                }
            }
        }
        ProvidersCommand::Revoke { id } => {
            if !sumud_disbursement::db::revoke_provider(&store, &id).await? {
                anyhow::bail!("no active provider {id}");
            }
            println!("provider {id} revoked");
        }
        ProvidersCommand::List { json } => {
            let providers = sumud_disbursement::db::providers(&store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&providers)?);
                return Ok(());
            }
            for p in providers {
                println!(
                    "{:<16} {:<24} {}",
                    p.provider_id,
                    p.kid.as_deref().unwrap_or("(no key)"),
                    if p.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(())
}
