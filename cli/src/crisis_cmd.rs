//! `sumud keys|operators|crisis|explain`: operator keys, signed crisis
//! commands, and reading crisis state and decisions.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use chrono::{NaiveDate, Utc};
use sumud_control::signing::{self, Jwk};
use sumud_shared::config::Settings;
use sumud_shared::db::Store;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{
    ApprovalTarget, CommandClaims, CommandKind, SignedCommand, CONTROL_COMMAND,
};
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Proposal, Response, ResponseOverrides, Severity,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::money::Money;
use sumud_shared::playbook::OverlapRule;

/// Writes a new key pair as a JWK file and returns its public key.
pub fn generate_key(kid: &str, out: &Path) -> anyhow::Result<String> {
    if out.exists() {
        bail!(
            "{} exists; choose another file (keys are never overwritten)",
            out.display()
        );
    }
    let key = Jwk::generate(kid);
    // Readable by its owner only, from the moment it exists.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    file.write_all(&serde_json::to_vec_pretty(&key)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(key.x)
}

/// Reads a key file. A private key that anyone but its owner can read is
/// refused: it may already have been copied, and signing with it would
/// hide that.
pub fn read_key(path: &Path) -> anyhow::Result<Jwk> {
    let cannot = || format!("cannot read key file {}", path.display());
    // One open: the mode checked is the mode of the very file read.
    let mut file = std::fs::File::open(path).with_context(cannot)?;
    let mode = file.metadata().with_context(cannot)?.permissions().mode();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut text).with_context(cannot)?;
    let key: Jwk = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JWK key file", path.display()))?;
    if key.d.is_some() && mode & 0o077 != 0 {
        bail!(
            "{} holds a private key and is readable by others (mode {:o}); \
             run `chmod 600 {}` — and if others may have read it, revoke the key",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(key)
}

/// Opens the control schema on either backend (migrating it if needed).
pub async fn control_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect_with(
        &settings.database_url,
        2,
        std::time::Duration::from_secs(10),
        settings.db_timeouts,
    )
    .await?;
    store.migrate(&sumud_control::db::MIGRATIONS).await?;
    Ok(store)
}

/// Signs and publishes a command; returns its id.
pub async fn publish(
    settings: &Settings,
    key: &Jwk,
    cmd: CommandKind,
    crisis_id: &str,
    body: Option<CrisisDefinition>,
    note: Option<String>,
) -> anyhow::Result<String> {
    publish_claims(settings, key, claims(cmd, crisis_id, body, note)).await
}

/// Claims of a command issued now under a fresh id.
pub fn claims(
    cmd: CommandKind,
    crisis_id: &str,
    body: Option<CrisisDefinition>,
    note: Option<String>,
) -> CommandClaims {
    CommandClaims {
        approves: None,
        operator: None,
        scope: None,
        propose: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        cmd,
        crisis_id: crisis_id.to_owned(),
        body,
        note,
        trigger: None,
    }
}

/// Signs and publishes prepared claims, keyed by their crisis; returns the command id.
pub async fn publish_claims(
    settings: &Settings,
    key: &Jwk,
    claims: CommandClaims,
) -> anyhow::Result<String> {
    let crisis_id = claims.subject();
    let jws = signing::sign(&claims, key).map_err(anyhow::Error::msg)?;
    let event = Envelope::new(
        "urn:sumud:cli",
        CONTROL_COMMAND,
        Some(crisis_id.to_owned()),
        SignedCommand { jws },
    );
    EventProducer::new(settings)?
        .send(&settings.topics.control, crisis_id, &event)
        .await?;
    Ok(claims.jti)
}

/// The fields of a declaration or amendment as typed on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DefinitionArgs {
    /// Human title.
    #[arg(long)]
    pub title: Option<String>,
    /// Kind of shock.
    #[arg(long, value_parser = crate::closed_sets::hazard())]
    pub hazard: Option<Hazard>,
    /// Severity (scales amounts and relaxes the enrolment threshold).
    #[arg(long, value_parser = crate::closed_sets::severity())]
    pub severity: Option<Severity>,
    /// Comma-separated area codes (governorates, districts, localities).
    #[arg(long, value_delimiter = ',')]
    pub areas: Option<Vec<String>>,
    /// Playbook id (see shared/data/playbooks.json).
    #[arg(long)]
    pub playbook: Option<String>,
    /// Budget cap in major units, e.g. 250000.000.
    #[arg(long)]
    pub budget: Option<String>,
    /// ISO 4217 currency (default JOD).
    #[arg(long)]
    pub currency: Option<String>,
    /// First day (YYYY-MM-DD).
    #[arg(long)]
    pub starts: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD).
    #[arg(long)]
    pub ends: Option<NaiveDate>,
    /// Override the playbook's number of tranches.
    #[arg(long)]
    pub tranches: Option<u32>,
    /// Override the vertical flat amount per tranche, in minor units.
    #[arg(long)]
    pub vertical_flat_minor: Option<i64>,
    /// Override what this crisis does for a household another crisis
    /// already assists in an overlapping period.
    #[arg(long, value_parser = crate::closed_sets::overlap())]
    pub overlap: Option<OverlapRule>,
    /// Override the per-household cap over the period on all overlapping
    /// assistance together, in minor units.
    #[arg(long)]
    pub household_cap_minor: Option<i64>,
}

impl DefinitionArgs {
    /// Builds a definition, starting from `base` (for amendments) or from scratch.
    pub fn build(self, base: Option<CrisisDefinition>) -> anyhow::Result<CrisisDefinition> {
        let currency = self
            .currency
            .clone()
            .or(base.as_ref().map(|b| b.budget.currency.clone()))
            .unwrap_or_else(|| "JOD".into());
        let need = |what: &str| anyhow::anyhow!("--{what} is required for a declaration");
        let mut overrides = base
            .as_ref()
            .map(|b| b.response.overrides.clone())
            .unwrap_or_default();
        if self.tranches.is_some() {
            overrides.tranches = self.tranches;
        }
        if self.vertical_flat_minor.is_some() {
            overrides.vertical_flat_minor = self.vertical_flat_minor;
        }
        if self.overlap.is_some() {
            overrides.overlap = self.overlap;
        }
        if self.household_cap_minor.is_some() {
            overrides.household_cap_minor = self.household_cap_minor;
        }
        Ok(CrisisDefinition {
            title: self
                .title
                .or(base.as_ref().map(|b| b.title.clone()))
                .ok_or_else(|| need("title"))?,
            hazard: match self.hazard {
                Some(h) => h,
                None => base
                    .as_ref()
                    .map(|b| b.hazard)
                    .ok_or_else(|| need("hazard"))?,
            },
            severity: match self.severity {
                Some(s) => s,
                None => base
                    .as_ref()
                    .map(|b| b.severity)
                    .ok_or_else(|| need("severity"))?,
            },
            areas: self
                .areas
                .or(base.as_ref().map(|b| b.areas.clone()))
                .ok_or_else(|| need("areas"))?,
            response: Response {
                playbook: self
                    .playbook
                    .or(base.as_ref().map(|b| b.response.playbook.clone()))
                    .ok_or_else(|| need("playbook"))?,
                overrides: ResponseOverrides { ..overrides },
            },
            budget: match self.budget {
                Some(b) => Money::parse_major(&b, &currency).map_err(anyhow::Error::msg)?,
                None => base
                    .as_ref()
                    .map(|b| b.budget.clone())
                    .ok_or_else(|| need("budget"))?,
            },
            starts_on: self
                .starts
                .or(base.as_ref().map(|b| b.starts_on))
                .ok_or_else(|| need("starts"))?,
            ends_on: self
                .ends
                .or(base.as_ref().map(|b| b.ends_on))
                .ok_or_else(|| need("ends"))?,
        })
    }
}

/// Approves what `crisis_id` has pending, provided it is what the operator
/// reviewed: `digest` (as `sumud crisis show` printed it) must match. The
/// approval is signed over that revision and digest, so if the proposal is
/// replaced before the approval is judged, it is refused (`stale_approval`)
/// rather than landing on something its signer never saw.
pub async fn approve(
    settings: &Settings,
    key: &Jwk,
    crisis_id: &str,
    digest: &str,
    note: Option<String>,
) -> anyhow::Result<(String, Proposal)> {
    let store = control_store(settings).await?;
    let Some(c) = sumud_control::db::crisis(&store, crisis_id).await? else {
        bail!("crisis {crisis_id} does not exist (sumud crisis list shows the known ones)");
    };
    let Some(p) = c.proposal() else {
        bail!("nothing on crisis {crisis_id} awaits approval");
    };
    if p.digest != digest {
        bail!(
            "what awaits approval on {crisis_id} is revision {} {} proposed by {}, not {digest}: \
             review it again with `sumud crisis show {crisis_id}`",
            p.revision,
            p.digest,
            p.proposed_by
        );
    }
    let mut claims = claims(CommandKind::Approve, crisis_id, None, note);
    claims.approves = Some(ApprovalTarget {
        revision: p.revision,
        digest: p.digest.clone(),
    });
    Ok((publish_claims(settings, key, claims).await?, p))
}

/// On whose authority the crisis's definition in force stands (its
/// proposer and approvers, or its signer), from control's audit trail.
pub async fn authority(store: &Store, crisis_id: &str) -> anyhow::Result<Option<String>> {
    let trail = sumud_control::db::audit_trail(store, crisis_id).await?;
    let entries: Vec<_> = trail
        .iter()
        .map(|(_, kind, who, rev, _, outcome)| {
            (kind.as_str(), who.as_str(), *rev, outcome.as_str())
        })
        .collect();
    Ok(sumud_control::decided::decided(&entries).map(|d| d.sentence()))
}

/// Prints every crisis, as a table or (`json`) one JSON array.
pub async fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let store = control_store(settings).await?;
    let crises = sumud_control::db::crises(&store).await?;
    if json {
        let rows: Vec<serde_json::Value> = crises
            .iter()
            .map(|c| {
                serde_json::json!({
                    "crisis_id": c.id, "state": c.state.as_str(), "revision": c.revision,
                    "hazard": c.definition.hazard, "budget": c.definition.budget,
                    "title": c.definition.title, "awaiting_approval": c.pending.is_some(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:>3} {:<12} {:>20}  title",
        "crisis", "state", "rev", "hazard", "budget"
    );
    for c in crises {
        println!(
            "{:<20} {:<9} {:>3} {:<12} {:>20}  {}{}",
            c.id,
            c.state.as_str(),
            c.revision,
            format!("{:?}", c.definition.hazard).to_lowercase(),
            c.definition.budget.display(),
            c.definition.title,
            if c.pending.is_some() {
                "  (awaiting approval)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Prints one crisis with its audit trail and refused commands; `json`
/// prints all of it as one JSON document.
pub async fn show(settings: &Settings, crisis_id: &str, json: bool) -> anyhow::Result<()> {
    let store = control_store(settings).await?;
    let Some(c) = sumud_control::db::crisis(&store, crisis_id).await? else {
        bail!("crisis {crisis_id} does not exist (sumud crisis list shows the known ones)");
    };
    let crisis = serde_json::json!({
        "crisis_id": c.id, "state": c.state.as_str(), "revision": c.revision,
        "definition": c.definition, "pending": c.pending, "proposal": c.proposal(),
        "declared_by": c.declared_by,
    });
    let trail = sumud_control::db::audit_trail(&store, crisis_id).await?;
    let refused = sumud_control::db::refusals(&store, crisis_id).await?;
    if json {
        let mut doc = crisis;
        doc["audit_trail"] = trail
            .iter()
            .map(|(at, kind, principal, revision, state, outcome)| {
                serde_json::json!({"at": at, "kind": kind, "principal": principal,
                    "revision": revision, "state": state, "outcome": outcome})
            })
            .collect();
        doc["refused"] = refused
            .iter()
            .map(|(at, kind, principal, reason, detail)| {
                serde_json::json!({"at": at, "kind": kind, "principal": principal,
                    "reason": reason, "detail": detail})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(&crisis)?);
    if let Some(p) = c.proposal() {
        println!(
            "\nawaiting approval: revision {} proposed by {}; to approve it after review:\n  \
             sumud crisis approve --key <your key> --crisis-id {} --digest {}",
            p.revision, p.proposed_by, c.id, p.digest
        );
    }
    println!("\naudit trail:");
    for (at, kind, principal, revision, state, outcome) in trail {
        println!(
            "  {} {kind:<15} by {principal:<16} rev {revision:<3} → {state:<9} {outcome}",
            at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if !refused.is_empty() {
        println!("\nrefused commands (each judged once; none can take effect later):");
        for (at, kind, principal, reason, detail) in refused {
            println!(
                "  {} {kind:<15} by {principal:<16} {reason}: {detail}",
                at.format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod key_file_tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sumud-keys-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_generated_key_file_is_readable_by_its_owner_only() {
        let path = scratch("k.jwk");
        generate_key("k-1", &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key(&path).unwrap().kid, "k-1");
        assert!(generate_key("k-2", &path).is_err(), "never overwritten");
    }

    #[test]
    fn a_private_key_others_can_read_is_refused_and_a_public_one_is_not() {
        let path = scratch("k.jwk");
        generate_key("k-1", &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let public = scratch("p.jwk");
        let key = Jwk::generate("p-1").public();
        std::fs::write(&public, serde_json::to_vec(&key).unwrap()).unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_key(&public).unwrap().kid, "p-1");
    }
}
