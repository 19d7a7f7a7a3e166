//! The `sumud` command line as clap parses it: every subcommand, flag and
//! closed set, and so the help text, the shell completions and the man
//! pages. What each command does is `dispatch.rs`'s and the `*_cmd` modules'.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::alerts_cmd::FootprintArgs;
use crate::crisis_cmd::DefinitionArgs;
use crate::up;

/// Sumud: from a declared crisis to social-protection payments.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Print shell completions for `sumud` (e.g. `sumud completions bash >
    /// /etc/bash_completion.d/sumud`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write a man page per command (sumud.1, sumud-crisis-declare.1, …)
    /// into a directory.
    Man {
        /// Directory to write into (created if missing).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
    /// Run the live end-to-end demo on the pipeline of `sumud up`, then keep
    /// it running (dashboard included) until Ctrl-C.
    Demo {
        /// Synthetic households to register.
        #[arg(long, default_value_t = 100_000)]
        households: u64,
        /// Stop the services and exit after the reconciliation instead of
        /// running on until Ctrl-C.
        #[arg(long)]
        exit: bool,
        #[command(flatten)]
        broker: up::EmbeddedArgs,
    },
    /// Run every service of the pipeline in this process until Ctrl-C, on the
    /// embedded default (the built-in broker, an SQLite file under the data
    /// directory) unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set.
    Up {
        #[command(flatten)]
        broker: up::EmbeddedArgs,
        /// Run without the built-in payment provider simulator (real
        /// providers consume the instructions topic).
        #[arg(long)]
        without_provider_sim: bool,
    },
    /// Publish CAP alerts as an alerting authority would; list what became of them.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// What if: the caseload and cost of a response, computed by the live
    /// eligibility code in a rolled-back transaction; publishes nothing.
    Simulate {
        #[command(flatten)]
        definition: DefinitionArgs,
        #[command(flatten)]
        place: FootprintArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect dead letters and replay the ones whose cause is fixed.
    Deadletter {
        #[command(subcommand)]
        command: DeadletterCommand,
    },
    /// Manage Kafka topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Work with the social registry.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Operator signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Operator keys: the first admin once, then add and revoke by admin-signed commands.
    Operators {
        #[command(subcommand)]
        command: crate::operators_cmd::OperatorsCommand,
    },
    /// Register, revoke and list the payment providers allowed to report on
    /// the status topic (writes to the disbursement database).
    Providers {
        #[command(subcommand)]
        command: crate::providers_cmd::ProvidersCommand,
    },
    /// Declare, amend, approve, close, list and show crises.
    Crisis {
        #[command(subcommand)]
        command: CrisisCommand,
    },
    /// Payment incidents (a reference paid twice, or paid after it was
    /// given up on): the recovery tasks reconcile lists.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Field-verification tasks: list, assign, resolve, export for field teams.
    Tasks {
        #[command(subcommand)]
        command: crate::tasks_cmd::TasksCommand,
    },
    /// Grievances: a household's complaint, filed by the hotline or a field
    /// worker, worked as a task and answered with what `explain` shows.
    Grievances {
        #[command(subcommand)]
        command: crate::grievances_cmd::GrievancesCommand,
    },
    /// Reconcile a crisis's payments: per provider against our own records,
    /// or, with --statement, against the provider's statement. Exits 0 when
    /// reconciled, 3 when something is unexplained, awaits a provider or
    /// differs from the statement, 1 when it could not run.
    Reconcile {
        /// Crisis id.
        #[arg(long)]
        crisis: String,
        /// The provider's statement: ISO 20022 camt.054 or pain.002 XML, or
        /// CSV with the header reference,amount,currency,status,provider_ref,booked_at.
        #[arg(long)]
        statement: Option<PathBuf>,
        /// Compare only this provider's instructions (a statement covers one provider).
        #[arg(long, requires = "statement")]
        provider: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export files for payment providers that take files instead of events.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Partner agencies whose signed assistance records are weighed under
    /// the overlap rules.
    Partners {
        #[command(subcommand)]
        command: crate::partners_cmd::PartnersCommand,
    },
    /// Social-service referrals: the social worker's list, and a
    /// provider's signed answer.
    Referrals {
        #[command(subcommand)]
        command: crate::referrals_cmd::ReferralsCommand,
    },
    /// Everything a household holds across crises — decision, period,
    /// paid and reversed — as the overlap rules weigh it.
    Ledger {
        /// Household id.
        #[arg(long)]
        household: String,
        /// Print JSON instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Explain everything behind a household's payments in a crisis, or
    /// behind one payment: authority, rules, registry record, decision,
    /// instructions and their status history.
    Explain {
        /// Crisis id (with --household).
        #[arg(long, requires = "household", required_unless_present = "instruction")]
        crisis: Option<String>,
        /// Household id (with --crisis).
        #[arg(long, requires = "crisis")]
        household: Option<String>,
        /// Start from a payment: its instruction reference (the EndToEndId
        /// of a pain.001 export).
        #[arg(long, conflicts_with_all = ["crisis", "household"])]
        instruction: Option<String>,
        /// Print one JSON document instead of sentences.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ExportCommand {
    /// A crisis's caseload and payments, one row per decision, as CSV or
    /// JSON (schemas/caseload.row.schema.json); no personal data.
    Caseload {
        /// Crisis id.
        #[arg(long)]
        crisis: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: crate::caseload_cmd::Format,
        /// Output file (standard output if absent).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// An ISO 20022 pain.001.001.09 credit-transfer batch of a provider's open instructions.
    Pain001 {
        /// Crisis id.
        #[arg(long)]
        crisis: String,
        /// Provider name.
        #[arg(long)]
        provider: String,
        /// Output file.
        #[arg(long, default_value = "pain001.xml")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate an Ed25519 key pair as a JWK file; prints the public key.
    Generate {
        /// Key id (the `kid` of every command signed with it).
        #[arg(long)]
        kid: String,
        /// Where to write the private key file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum IncidentsCommand {
    /// Close an incident once it is settled with the provider (the second
    /// payment recovered, or accepted and accounted for).
    Resolve {
        /// Incident id, as `sumud reconcile` prints it.
        #[arg(long)]
        id: i64,
        /// Who settled it.
        #[arg(long)]
        by: String,
        /// How it was settled, for the audit.
        #[arg(long)]
        resolution: String,
    },
}

/// Whether to wait for control's verdict on a published command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WaitArgs {
    /// Return once the command is published, without waiting for control's
    /// verdict (exit 0 then means only "published").
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for control's verdict, in seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) wait_secs: u64,
}

#[derive(Subcommand)]
pub(crate) enum CrisisCommand {
    /// Declare a crisis (signed with --key and published).
    Declare {
        /// Signing key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
        /// Crisis id chosen by the operator.
        #[arg(long)]
        crisis_id: String,
        /// Justification for the audit trail.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Amend an active crisis: only the fields given change.
    Amend {
        /// Signing key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
        /// Crisis id.
        #[arg(long)]
        crisis_id: String,
        /// Justification for the audit trail.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Approve what awaits approval (four eyes), naming what you reviewed.
    Approve {
        /// Signing key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
        /// Crisis id.
        #[arg(long)]
        crisis_id: String,
        /// The digest of the proposal you reviewed, as `sumud crisis show`
        /// prints it; the approval is refused if anything else is pending.
        #[arg(long)]
        digest: String,
        /// Justification for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },
    /// Close a crisis.
    Close {
        /// Signing key file.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
        /// Crisis id.
        #[arg(long)]
        crisis_id: String,
    },
    /// List crises.
    List {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one crisis and its audit trail.
    Show {
        /// Crisis id.
        crisis_id: String,
        /// Print one JSON document (crisis, audit trail, refused commands).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum DeadletterCommand {
    /// Dead letters on the topic, oldest first.
    List {
        #[command(flatten)]
        filter: crate::deadletter_cmd::Filter,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full, with its original message.
    Show {
        /// Position on the dead-letter topic, `partition:offset` (from `list`).
        at: String,
    },
    /// Put originals back on their source topics (after fixing the cause).
    Replay {
        #[command(flatten)]
        filter: crate::deadletter_cmd::Filter,
        /// Say what would be replayed without publishing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AlertsCommand {
    /// Publish a CAP document (XML, or the JSON form) on the alerts topic.
    Send {
        /// The CAP file.
        file: PathBuf,
        /// The sender's signing key (JWK), for a sender listed with a key.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// The most recent alerts and what the rules did about each.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create every topic the pipeline uses (existing ones are kept).
    Ensure {
        /// Partitions per new topic (default: SUMUD_TOPIC_PARTITIONS or 3).
        #[arg(long)]
        partitions: Option<i32>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RegistryCommand {
    /// Make a realistic synthetic registry for the default country data.
    Generate {
        /// How many households.
        #[arg(long, default_value_t = 1000)]
        households: u64,
        /// Random seed (same seed, same registry).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write CSV here (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// Publish straight to the registry topic instead of writing CSV.
        #[arg(long)]
        publish: bool,
    },
    /// Publish a CSV of households to the registry topic.
    Import {
        /// The CSV file (header: household_id,version,area_code,members,...).
        file: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_documents_itself() {
        // clap's own checks: no clashing flags, every argument reachable.
        Cli::command().debug_assert();
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "sumud",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("--no-wait") && bash.contains("caseload"));
        let dir = std::env::temp_dir().join(format!("sumud-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        clap_mangen::generate_to(Cli::command(), &dir).unwrap();
        let page = std::fs::read_to_string(dir.join("sumud-crisis-declare.1")).unwrap();
        assert!(
            page.contains("price_shock"),
            "the closed sets are in the page"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
