//! `sumud tasks keys add|revoke|list`: the keys field teams sign task
//! commands with on the tasks topic (docs/field-teams.md). A field-team
//! app holds the private JWK (`sumud keys generate`); disbursement keeps
//! the public half and refuses commands from any other key.

use std::path::PathBuf;

use clap::Subcommand;
use sumud_disbursement::db;
use sumud_shared::db::Store;

/// `sumud tasks keys` subcommands.
#[derive(Subcommand)]
pub enum FieldKeysCommand {
    /// Register a field team's public key: its signed task commands are
    /// heard from now on, recorded as made by `principal`.
    Add {
        /// The key file (a JWK with `kid` and `x`; a private part, if
        /// present, is not stored).
        #[arg(long)]
        key_file: PathBuf,
        /// The team or device holding the key, as task resolutions name it.
        #[arg(long)]
        principal: String,
    },
    /// Revoke a field key: its commands are refused from now on.
    Revoke {
        /// Key id.
        #[arg(long)]
        kid: String,
    },
    /// List field keys.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `sumud tasks keys` command on disbursement's store.
pub async fn run(store: &Store, command: FieldKeysCommand) -> anyhow::Result<()> {
    match command {
        FieldKeysCommand::Add {
            key_file,
            principal,
        } => {
            let principal = principal.trim();
            anyhow::ensure!(
                !principal.is_empty(),
                "--principal must name the team or device"
            );
            let key = crate::crisis_cmd::read_key(&key_file)?;
            db::add_field_key(store, &key.kid, principal, &key.x).await?;
            println!("field key {} registered for {principal}", key.kid);
        }
        FieldKeysCommand::Revoke { kid } => {
            anyhow::ensure!(
                db::revoke_field_key(store, &kid).await?,
                "no active field key {kid} (`sumud tasks keys list`)"
            );
            println!("field key {kid} revoked");
        }
        FieldKeysCommand::List { json } => {
            let keys = db::field_keys(store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            for k in keys {
                println!(
                    "{:<24} {:<24} {}",
                    k.kid,
                    k.principal,
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(())
}
