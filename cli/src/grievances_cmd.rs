//! `sumud grievances file|list|assign|answer`: a household's complaint or
//! appeal about a crisis (`not_included`, `wrong_amount`, `not_received`),
//! taken by the hotline or a field worker, worked as a task (open →
//! assigned → answered once), and answered with what `sumud explain` shows
//! — the real decision, its reason and every payment — kept with the
//! grievance exactly as it was given (docs/field-teams.md, "Grievances").

use clap::{Subcommand, ValueEnum};
use sumud_disbursement::db::{self, Complaint, Filed, GrievanceFilter, GrievanceRow};
use sumud_disbursement::grievance::{self, Channel, Kind, Outcome};
use sumud_shared::config::Settings;
use sumud_shared::db::Store;

use crate::explain_cmd::{self, Subject};
use crate::tasks_cmd::{answered, StateArg};

/// `sumud grievances` subcommands.
#[derive(Subcommand)]
pub enum GrievancesCommand {
    /// Take down a complaint (one open complaint of a kind per household
    /// and crisis: a second call joins the first).
    File {
        /// Crisis.
        #[arg(long)]
        crisis: String,
        /// Household (registry id).
        #[arg(long)]
        household: String,
        /// What went wrong.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// How it reached us.
        #[arg(long, value_enum)]
        channel: ChannelArg,
        /// The hotline agent or field worker taking it.
        #[arg(long)]
        by: String,
        /// The payment reference the household names, if any.
        #[arg(long)]
        instruction: Option<String>,
        /// What was said (no names, numbers or other personal data).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List grievances, by area.
    List {
        /// One crisis only.
        #[arg(long)]
        crisis: Option<String>,
        /// One state only.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Assign a grievance to a case worker or field team.
    Assign {
        /// Grievance id.
        #[arg(long)]
        id: i64,
        /// Who works it.
        #[arg(long)]
        to: String,
    },
    /// Answer a grievance: the answer cites `sumud explain` for the
    /// household, which is kept with it. Final.
    Answer {
        /// Grievance id.
        #[arg(long)]
        id: i64,
        /// How it ends.
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        /// Who answers.
        #[arg(long)]
        by: String,
        /// Words of your own for the household (no personal data).
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// A complaint kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Not included in the crisis.
    #[value(name = "not_included")]
    NotIncluded,
    /// Paid the wrong amount.
    #[value(name = "wrong_amount")]
    WrongAmount,
    /// A payment did not arrive.
    #[value(name = "not_received")]
    NotReceived,
}

/// A channel on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelArg {
    /// The hotline.
    Hotline,
    /// A field worker.
    Field,
}

/// An outcome on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// The decision stands; the explanation says why.
    Explained,
    /// The household is right; being corrected.
    Upheld,
    /// Could not be reached with the answer.
    Unreachable,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::NotIncluded => Kind::NotIncluded,
            KindArg::WrongAmount => Kind::WrongAmount,
            KindArg::NotReceived => Kind::NotReceived,
        }
    }
}

impl From<ChannelArg> for Channel {
    fn from(c: ChannelArg) -> Self {
        match c {
            ChannelArg::Hotline => Channel::Hotline,
            ChannelArg::Field => Channel::Field,
        }
    }
}

impl From<OutcomeArg> for Outcome {
    fn from(o: OutcomeArg) -> Self {
        match o {
            OutcomeArg::Explained => Outcome::Explained,
            OutcomeArg::Upheld => Outcome::Upheld,
            OutcomeArg::Unreachable => Outcome::Unreachable,
        }
    }
}

/// Runs one `sumud grievances` command.
pub async fn run(settings: &Settings, command: GrievancesCommand) -> anyhow::Result<()> {
    let store = crate::payments_cmd::disbursement_store(settings).await?;
    match command {
        GrievancesCommand::File {
            crisis,
            household,
            kind,
            channel,
            by,
            instruction,
            note,
        } => {
            let complaint = Complaint {
                crisis: &crisis,
                household: &household,
                kind: kind.into(),
                channel: channel.into(),
                filed_by: &by,
                instruction: instruction.as_deref(),
                note: &note,
            };
            match db::file_grievance(&store, &complaint).await? {
                Filed::New(id) => println!("grievance {id} filed"),
                Filed::AlreadyOpen(id) => {
                    println!("grievance {id} is already open for this household and complaint: it joins it")
                }
                Filed::Refused(why) => anyhow::bail!("{why}"),
            }
        }
        GrievancesCommand::List {
            crisis,
            state,
            json,
        } => {
            let filter = GrievanceFilter {
                crisis,
                state: state.map(Into::into),
            };
            let rows = db::grievances(&store, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
        }
        GrievancesCommand::Assign { id, to } => {
            answered(
                "grievance",
                id,
                db::assign_grievance(&store, id, &to).await?,
            )?;
            println!("grievance {id} assigned to {to}");
        }
        GrievancesCommand::Answer {
            id,
            outcome,
            by,
            note,
        } => {
            let (text, _) = answer(&store, id, outcome.into(), &by, &note).await?;
            println!("grievance {id} answered:\n{text}");
        }
    }
    Ok(())
}

/// Answers grievance `id`: explains the household in the crisis as
/// `sumud explain` does, composes the answer from it and keeps both with
/// the grievance. Returns the answer and the explanation (JSON) kept.
pub async fn answer(
    store: &Store,
    id: i64,
    outcome: Outcome,
    by: &str,
    note: &str,
) -> anyhow::Result<(String, String)> {
    let Some(g) = db::grievance(store, id).await? else {
        anyhow::bail!("no grievance {id}: `sumud grievances list` shows them with their ids");
    };
    let kind = Kind::parse(&g.kind)
        .ok_or_else(|| anyhow::anyhow!("grievance {id} has an unknown kind {:?}", g.kind))?;
    let subject = match &g.instruction_id {
        // A payment named: explain from it (it is the household's, checked at filing).
        Some(reference) => Subject::Instruction(reference.clone()),
        None => Subject::Household {
            crisis: g.crisis_id.clone(),
            household: g.household_id.clone(),
        },
    };
    let explanation = explain_cmd::explanation(store, subject).await?;
    let text = grievance::answer(kind, outcome, &explanation.lines(), note);
    let json = serde_json::to_string(&explanation)?;
    answered(
        "grievance",
        id,
        db::answer_grievance(store, id, by, outcome, &text, &json).await?,
    )?;
    Ok((text, json))
}

fn print_table(rows: &[GrievanceRow]) {
    if rows.is_empty() {
        println!("no grievances");
        return;
    }
    println!(
        "{:>6}  {:<12} {:<14} {:<12} {:<13} {:<8} {:<11} {:<16} filed",
        "id", "crisis", "household", "area", "kind", "channel", "state", "assigned to"
    );
    for g in rows {
        println!(
            "{:>6}  {:<12} {:<14} {:<12} {:<13} {:<8} {:<11} {:<16} {}",
            g.grievance_id,
            g.crisis_id,
            g.household_id,
            g.area_code.as_deref().unwrap_or("-"),
            g.kind,
            g.channel,
            g.outcome.as_deref().unwrap_or(&g.state),
            g.assigned_to.as_deref().unwrap_or("-"),
            g.created_at.format("%Y-%m-%d %H:%M")
        );
    }
}
