//! `sumud operators bootstrap|add|revoke|list`: the first admin key, then
//! operator keys by admin-signed commands, and their history.

use std::path::PathBuf;

use clap::Subcommand;
use sumud_control::signing::Jwk;
use sumud_shared::config::Settings;
use sumud_shared::events::control::{CommandKind, OperatorGrant};

use crate::crisis_cmd::{self, claims, control_store, publish_claims};

/// `sumud operators …`.
#[derive(Subcommand)]
pub enum OperatorsCommand {
    /// Register the first admin key, once: refused while any admin key is
    /// active (from then on admins manage operators with signed commands).
    Bootstrap {
        /// Key id of the admin key.
        #[arg(long)]
        kid: String,
        /// The person holding it.
        #[arg(long)]
        principal: String,
        /// The admin's key file (only its public half is stored).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Register an operator key with roles: an `operator.add` command
    /// signed by an admin, applied and audited by the control service.
    Add {
        /// The admin's signing key file.
        #[arg(long)]
        key: PathBuf,
        /// Key id to register (never reused, even after revocation).
        #[arg(long)]
        kid: String,
        /// The person or system holding the key.
        #[arg(long)]
        principal: String,
        /// Public key (base64url), as printed by `sumud keys generate`; or give --key-file.
        #[arg(long)]
        public_key: Option<String>,
        /// A key file to take the public key from.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',', required = true, value_parser = crate::closed_sets::role())]
        roles: Vec<String>,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Revoke a key for good (an admin-signed `operator.revoke`); commands
    /// signed with it are rejected from then on.
    Revoke {
        /// The admin's signing key file.
        #[arg(long)]
        key: PathBuf,
        /// Key id to revoke.
        #[arg(long)]
        kid: String,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Every key, its roles and state, and who changed what.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `sumud operators` command.
pub async fn run(settings: &Settings, command: OperatorsCommand) -> anyhow::Result<()> {
    match command {
        OperatorsCommand::Bootstrap {
            kid,
            principal,
            key_file,
        } => {
            let key = crisis_cmd::read_key(&key_file)?;
            let store = crisis_cmd::control_store(settings).await?;
            let admin = ["admin".to_owned()];
            let new = sumud_control::db::NewOperator {
                key_id: &kid,
                principal: &principal,
                public_key: &key.x,
                roles: &admin,
            };
            if !sumud_control::db::bootstrap_admin(&store, new, &principal).await? {
                anyhow::bail!(
                    "an admin key is already active: bootstrap is refused; an admin adds \
                     operators with `sumud operators add --key <admin key>`"
                );
            }
            println!("admin key {kid} of {principal} bootstrapped");
        }
        OperatorsCommand::Add {
            key,
            kid,
            principal,
            public_key,
            key_file,
            roles,
            note,
        } => {
            let x = match (public_key, key_file) {
                (Some(p), _) => p,
                (None, Some(f)) => crisis_cmd::read_key(&f)?.x,
                (None, None) => anyhow::bail!("give --public-key or --key-file"),
            };
            let grant = OperatorGrant {
                kid: kid.clone(),
                principal: principal.clone(),
                x,
                roles: roles.clone(),
            };
            let admin = crisis_cmd::read_key(&key)?;
            let id =
                publish_operator(settings, &admin, CommandKind::OperatorAdd, grant, note).await?;
            println!(
                "operator.add {kid} of {principal} with roles {} published (command {id}); \
                 `sumud operators list` shows it once applied",
                roles.join(",")
            );
        }
        OperatorsCommand::Revoke { key, kid, note } => {
            let grant = OperatorGrant {
                kid: kid.clone(),
                principal: String::new(),
                x: String::new(),
                roles: Vec::new(),
            };
            let admin = crisis_cmd::read_key(&key)?;
            let id = publish_operator(settings, &admin, CommandKind::OperatorRevoke, grant, note)
                .await?;
            println!("operator.revoke {kid} published (command {id})");
        }
        OperatorsCommand::List { json } => list_operators(settings, json).await?,
    }
    Ok(())
}

/// Signs and publishes an `operator.add` or `operator.revoke` with an
/// admin's key; returns the command id.
pub async fn publish_operator(
    settings: &Settings,
    admin: &Jwk,
    cmd: CommandKind,
    grant: OperatorGrant,
    note: Option<String>,
) -> anyhow::Result<String> {
    let mut c = claims(cmd, "", None, note);
    c.operator = Some(grant);
    publish_claims(settings, admin, c).await
}

/// Prints every operator key and the history of changes to them.
pub async fn list_operators(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let store = control_store(settings).await?;
    if json {
        let keys = sumud_control::db::operator_keys(&store).await?;
        let changes: Vec<serde_json::Value> = sumud_control::db::operator_changes(&store)
            .await?
            .into_iter()
            .map(|(at, kind, key, principal, by, command)| {
                serde_json::json!({"at": at, "kind": kind, "key_id": key,
                    "principal": principal, "by": by, "command": command})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"keys": keys, "changes": changes}))?
        );
        return Ok(());
    }
    println!("{:<24} {:<20} {:<28} state", "key id", "principal", "roles");
    for k in sumud_control::db::operator_keys(&store).await? {
        println!(
            "{:<24} {:<20} {:<28} {}",
            k.key_id,
            k.principal,
            k.role_names.join(","),
            k.revoked_at.map_or("active".to_owned(), |t| format!(
                "revoked {}",
                t.format("%Y-%m-%d %H:%M")
            ))
        );
    }
    println!("\nchanges (oldest first):");
    for (at, kind, key, principal, by, command) in
        sumud_control::db::operator_changes(&store).await?
    {
        println!(
            "  {} {kind:<18} {key:<24} of {principal:<16} by {by}{}",
            at.format("%Y-%m-%d %H:%M:%S"),
            command
                .map(|c| format!(" (command {c})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
