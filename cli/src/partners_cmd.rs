//! `sumud partners keys add|revoke|list`: the keys partner agencies (UN
//! agencies, NGOs, other ministries) sign their assistance records with on
//! `sumud.assistance.v1` (docs/contracts.md, Partner agencies). The agency
//! holds the private JWK (`sumud keys generate`); eligibility keeps the
//! public half, and hears a record only under a registered, unrevoked key,
//! as that key's agency.

use std::path::PathBuf;

use clap::Subcommand;
use sumud_eligibility::db;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;

/// `sumud partners` subcommands.
#[derive(Subcommand)]
pub enum PartnersCommand {
    /// The keys partner agencies sign assistance records with.
    Keys {
        /// What to do with them.
        #[command(subcommand)]
        command: PartnerKeysCommand,
    },
    /// Run by a partner agency: sign every row of its beneficiary list
    /// (CSV) with its private key and publish the records. National ids
    /// become match keys here (SUMUD_MATCH_KEY) and never leave.
    Publish {
        /// The list (CSV with a header: record_id, national_id or
        /// match_key, action, amount_minor, currency, period_from,
        /// period_to, programme).
        #[arg(long)]
        file: PathBuf,
        /// The agency's private key file (JWK).
        #[arg(long)]
        key_file: PathBuf,
        /// Check the list and print the records instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `sumud partners keys` subcommands.
#[derive(Subcommand)]
pub enum PartnerKeysCommand {
    /// Register an agency's public key: its signed records are heard from
    /// now on, as made by `agency`.
    Add {
        /// The key file (a JWK with `kid` and `x`; a private part, if
        /// present, is not stored).
        #[arg(long)]
        key_file: PathBuf,
        /// The agency the key speaks for, as ledgers and reasons name it.
        #[arg(long)]
        agency: String,
    },
    /// Revoke a partner key: its records are refused from now on.
    Revoke {
        /// Key id.
        #[arg(long)]
        kid: String,
    },
    /// List partner keys.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Eligibility's store, migrated.
async fn eligibility_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = crate::payments_cmd::connect(settings).await?;
    store.migrate(&sumud_registry::db::MIGRATIONS).await?;
    store.migrate(&db::MIGRATIONS).await?;
    Ok(store)
}

/// Runs one `sumud partners` command.
pub async fn run(settings: &Settings, command: PartnersCommand) -> anyhow::Result<()> {
    let command = match command {
        PartnersCommand::Keys { command } => command,
        PartnersCommand::Publish {
            file,
            key_file,
            dry_run,
        } => {
            let key = crate::crisis_cmd::read_key(&key_file)?;
            let secret =
                sumud_shared::match_key::MatchKeySecret::from_env().map_err(anyhow::Error::msg)?;
            crate::partner_list::publish(settings, &file, &key, secret.as_ref(), dry_run).await?;
            return Ok(());
        }
    };
    let store = eligibility_store(settings).await?;
    match command {
        PartnerKeysCommand::Add { key_file, agency } => {
            let agency = agency.trim();
            anyhow::ensure!(
                !agency.is_empty() && !agency.contains(',') && agency.len() <= 64,
                "--agency must name the agency (1 to 64 characters, no comma)"
            );
            let key = crate::crisis_cmd::read_key(&key_file)?;
            db::add_partner_key(&store, &key.kid, agency, &key.x).await?;
            println!("partner key {} registered for {agency}", key.kid);
        }
        PartnerKeysCommand::Revoke { kid } => {
            anyhow::ensure!(
                db::revoke_partner_key(&store, &kid).await?,
                "no active partner key {kid} (`sumud partners keys list`)"
            );
            println!("partner key {kid} revoked");
        }
        PartnerKeysCommand::List { json } => {
            let keys = db::partner_keys(&store).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            for k in keys {
                println!(
                    "{:<24} {:<24} {}",
                    k.kid,
                    k.agency,
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(())
}
