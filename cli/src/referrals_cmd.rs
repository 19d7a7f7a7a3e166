//! `sumud referrals list|answer`: the social worker's list of referrals
//! (by crisis, service or status, as a table or JSON), and a service
//! provider's signed answer for an agency without its own adapter — the
//! same `org.sumud.referral.acknowledged` a provider's system would send
//! (docs/contracts.md, Social-service referrals), signed with the agency's
//! private JWK, whose public half is registered with `sumud partners keys
//! add --agency <provider>`.

use std::path::PathBuf;

use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use serde::Serialize;
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::referral::{
    AcknowledgementClaims, ReferralStatus, SignedAcknowledgement, REFERRAL_ACKNOWLEDGED,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::on_store;

/// `sumud referrals` subcommands.
#[derive(Subcommand)]
pub enum ReferralsCommand {
    /// List referrals, oldest first.
    List {
        /// Only this crisis's.
        #[arg(long)]
        crisis: Option<String>,
        /// Only those to this service.
        #[arg(long)]
        service: Option<String>,
        /// Only those standing here.
        #[arg(long, value_enum)]
        status: Option<Standing>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Answer a referral as its provider: sign and publish an
    /// acknowledgement.
    Answer {
        /// The referral id (`<crisis>/<household>/<service>`).
        #[arg(long)]
        referral: String,
        /// The answer.
        #[arg(long, value_enum)]
        status: Answer,
        /// A note for the social worker (required when declining: why).
        #[arg(long)]
        note: Option<String>,
        /// The provider's private key file (JWK).
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Where a referral stands, as a filter.
#[derive(Clone, Copy, ValueEnum)]
pub enum Standing {
    /// Sent, not yet answered.
    Referred,
    /// Taken by the provider.
    Accepted,
    /// Served.
    Served,
    /// Declined.
    Declined,
}

/// A provider's answer.
#[derive(Clone, Copy, ValueEnum)]
pub enum Answer {
    /// The provider takes the case.
    Accepted,
    /// The household was served.
    Served,
    /// The provider declines (say why in --note).
    Declined,
}

impl From<Answer> for ReferralStatus {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Accepted => ReferralStatus::Accepted,
            Answer::Served => ReferralStatus::Served,
            Answer::Declined => ReferralStatus::Declined,
        }
    }
}

/// One referral as listed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Listed {
    /// `<crisis>/<household>/<service>`.
    pub referral_id: String,
    /// Crisis.
    pub crisis_id: String,
    /// Household.
    pub household_id: String,
    /// Area code.
    pub area_code: String,
    /// Service.
    pub service: String,
    /// Provider agency.
    pub provider: String,
    /// Where it stands.
    pub status: String,
    /// The provider's last note.
    pub note: Option<String>,
}

/// Runs one `sumud referrals` command.
pub async fn run(settings: &Settings, command: ReferralsCommand) -> anyhow::Result<()> {
    match command {
        ReferralsCommand::List {
            crisis,
            service,
            status,
            json,
        } => {
            let store = crate::payments_cmd::connect(settings).await?;
            anyhow::ensure!(
                store.has_table("eligibility", "referrals").await?,
                "eligibility's referrals are not in this database: point DATABASE_URL at the \
                 pipeline's database (sqlite://.sumud/sumud.db for the embedded default of `sumud up`)"
            );
            let status = status.map(|s| {
                match s {
                    Standing::Referred => ReferralStatus::Referred,
                    Standing::Accepted => ReferralStatus::Accepted,
                    Standing::Served => ReferralStatus::Served,
                    Standing::Declined => ReferralStatus::Declined,
                }
                .as_str()
            });
            const SQL: &str = "SELECT referral_id, crisis_id, household_id, area_code, service, \
                               provider, status, note FROM eligibility.referrals \
                               WHERE ($1 IS NULL OR crisis_id = $1) AND ($2 IS NULL OR service = $2) \
                               AND ($3 IS NULL OR status = $3) ORDER BY referred_at, referral_id";
            let rows: Vec<Listed> = on_store!(&store, pool => sqlx::query_as(SQL)
                .bind(crisis.as_deref())
                .bind(service.as_deref())
                .bind(status)
                .fetch_all(pool)
                .await)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<44} {:<10} {:<10} {:<16} {}",
                        r.referral_id,
                        r.area_code,
                        r.status,
                        r.provider,
                        r.note.as_deref().unwrap_or("")
                    );
                }
            }
        }
        ReferralsCommand::Answer {
            referral,
            status,
            note,
            key_file,
        } => {
            let key = crate::crisis_cmd::read_key(&key_file)?;
            anyhow::ensure!(
                key.d.is_some(),
                "{} holds no private key: a provider signs with its own private JWK",
                key_file.display()
            );
            let claims = AcknowledgementClaims {
                jti: uuid::Uuid::new_v4().to_string(),
                iat: Utc::now().timestamp(),
                referral_id: referral.clone(),
                status: status.into(),
                note,
            };
            if let Some(why) = sumud_eligibility::referral::malformed(&claims) {
                anyhow::bail!("{why}");
            }
            let jws = sumud_shared::jws::sign(&claims, &key).map_err(anyhow::Error::msg)?;
            let event = Envelope::new(
                &format!("urn:partner:{}", key.kid),
                REFERRAL_ACKNOWLEDGED,
                Some(referral.clone()),
                SignedAcknowledgement { jws },
            );
            EventProducer::new(settings)?
                .send(&settings.topics.referral_answers, &referral, &event)
                .await?;
            println!(
                "acknowledgement {} ({}) of {referral} signed by {} published; a refusal, if any, \
                 is on the dead-letter topic (`sumud deadletter list`)",
                claims.jti,
                claims.status.as_str(),
                key.kid
            );
        }
    }
    Ok(())
}
