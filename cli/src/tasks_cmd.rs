//! `sumud tasks list|assign|resolve|export`: the field team's work list.
//! A payment the provider refused for good, or whose retries ran out,
//! raises a field-verification task in disbursement; here a coordinator
//! lists them, assigns them to a field worker or team, records what the
//! visit found, and exports the list (CSV, GeoJSON) for the team's own
//! tools, sorted by area. The export holds only what a visit needs: no
//! name, national id, phone or account detail (docs/field-teams.md).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use sumud_disbursement::db::{self, Answer, TaskFilter, TaskRow};
use sumud_disbursement::field_task::{Destination, Resolution, TaskState};
use sumud_shared::areas::AreaCatalog;
use sumud_shared::config::Settings;
use sumud_shared::db::Store;

/// `sumud tasks` subcommands.
#[derive(Subcommand)]
pub enum TasksCommand {
    /// List verification tasks (all states unless --state).
    List {
        /// Which tasks.
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Assign a task to a field worker or team (again to re-assign it).
    Assign {
        /// Task id, as `sumud tasks list` prints it.
        #[arg(long)]
        id: i64,
        /// The field worker or team.
        #[arg(long)]
        to: String,
    },
    /// Record what the field visit found; a resolved task is final.
    Resolve {
        /// Task id, as `sumud tasks list` prints it.
        #[arg(long)]
        id: i64,
        /// What the visit found.
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        /// Who resolved it.
        #[arg(long)]
        by: String,
        /// A note for the audit (no names, numbers or other personal data).
        #[arg(long)]
        note: String,
        /// details_corrected: the corrected channel (e_wallet, bank, cash_pickup).
        #[arg(long, required_if_eq("outcome", "details_corrected"))]
        channel: Option<String>,
        /// details_corrected: the corrected provider id.
        #[arg(long, required_if_eq("outcome", "details_corrected"))]
        provider: Option<String>,
        /// details_corrected: the provider's account token (`tok_…`), never
        /// an account number.
        #[arg(long, required_if_eq("outcome", "details_corrected"))]
        token: Option<String>,
    },
    /// Export the work list for a field team's tools, sorted by area
    /// (open and assigned tasks unless --state).
    Export {
        /// Which tasks.
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file (standard output if absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The keys field-team apps sign task commands with on the tasks topic.
    Keys {
        /// What to do with them.
        #[command(subcommand)]
        command: crate::field_keys_cmd::FieldKeysCommand,
    },
}

/// Which tasks.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// One crisis only.
    #[arg(long)]
    pub crisis: Option<String>,
    /// One state only.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// One area only: a governorate or a district code (covers what lies in it).
    #[arg(long)]
    pub area: Option<String>,
}

/// A task state on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Raised, nobody on it.
    Open,
    /// A field worker or team is on it.
    Assigned,
    /// Closed with an outcome.
    Resolved,
}

impl From<StateArg> for TaskState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Open => TaskState::Open,
            StateArg::Assigned => TaskState::Assigned,
            StateArg::Resolved => TaskState::Resolved,
        }
    }
}

/// An outcome on the command line (named as in docs/contracts.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// Corrected payment details: the payment is re-issued there.
    #[value(name = "details_corrected")]
    DetailsCorrected,
    /// Not eligible: the household's later tranches stop.
    Ineligible,
    /// Could not be reached: closed.
    Unreachable,
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A GeoJSON FeatureCollection, one Point per task at its area's centroid.
    Geojson,
}

/// Runs a `sumud tasks` subcommand.
pub async fn run(settings: &Settings, command: TasksCommand) -> anyhow::Result<()> {
    let store = crate::payments_cmd::disbursement_store(settings).await?;
    match command {
        TasksCommand::Keys { command } => crate::field_keys_cmd::run(&store, command).await?,
        TasksCommand::List { filter, json } => {
            let rows = rows(&store, &filter, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
        }
        TasksCommand::Assign { id, to } => {
            answered(
                "task",
                id,
                db::assign(&store, &settings.topics.tasks, id, &to).await?,
            )?;
            println!("task {id} assigned to {to}");
        }
        TasksCommand::Resolve {
            id,
            outcome,
            by,
            note,
            channel,
            provider,
            token,
        } => {
            let resolution = match outcome {
                OutcomeArg::DetailsCorrected => Resolution::DetailsCorrected(
                    Destination::parse(
                        channel.as_deref().unwrap_or_default(),
                        provider.as_deref().unwrap_or_default(),
                        token.as_deref().unwrap_or_default(),
                    )
                    .map_err(anyhow::Error::msg)?,
                ),
                OutcomeArg::Ineligible => Resolution::Ineligible,
                OutcomeArg::Unreachable => Resolution::Unreachable,
            };
            let answer = db::resolve(
                &store,
                &settings.topics.tasks,
                id,
                &by,
                &note,
                &resolution,
                deadline_secs()?,
            )
            .await?;
            let reissued = match &answer {
                Answer::Changed { reissued } => *reissued,
                _ => None,
            };
            answered("task", id, answer)?;
            match reissued {
                Some(attempt) => println!(
                    "task {id} resolved as {}; the payment goes out again as attempt {attempt}",
                    resolution.outcome()
                ),
                None => println!("task {id} resolved as {}", resolution.outcome()),
            }
        }
        TasksCommand::Export {
            filter,
            format,
            out,
        } => {
            let rows = rows(
                &store,
                &filter,
                Some(&[TaskState::Open, TaskState::Assigned]),
            )
            .await?;
            let text = render(&rows, format, AreaCatalog::default_catalog());
            match out {
                Some(path) => {
                    std::fs::write(&path, text)?;
                    eprintln!("{} tasks written to {}", rows.len(), path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// An answer about `what` (`task`, `grievance`) `id` as the command's
/// outcome: a refusal is an error (exit 1).
pub fn answered(what: &str, id: i64, answer: Answer) -> anyhow::Result<()> {
    match answer {
        Answer::Changed { .. } => Ok(()),
        Answer::Unchanged => {
            eprintln!("{what} {id} was already so: nothing changed");
            Ok(())
        }
        Answer::Refused(why) => anyhow::bail!("{why}"),
    }
}

/// The deadline of a re-issued attempt, as the disbursement service sets
/// it (`SUMUD_PAYMENT_DEADLINE_SECS`).
fn deadline_secs() -> anyhow::Result<i64> {
    match std::env::var("SUMUD_PAYMENT_DEADLINE_SECS") {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("SUMUD_PAYMENT_DEADLINE_SECS must be whole seconds")),
        Err(_) => Ok(sumud_disbursement::config::DisbursementConfig::default().deadline_secs),
    }
}

/// The tasks `filter` selects, sorted by area code then id; without a
/// state in the filter, those in `default_states` (all if `None`).
pub async fn rows(
    store: &Store,
    filter: &FilterArgs,
    default_states: Option<&[TaskState]>,
) -> anyhow::Result<Vec<TaskRow>> {
    let all = db::tasks(
        store,
        &TaskFilter {
            crisis: filter.crisis.clone(),
            state: filter.state.map(TaskState::from),
        },
    )
    .await?;
    let catalog = AreaCatalog::default_catalog();
    Ok(all
        .into_iter()
        .filter(|t| {
            filter.state.is_some()
                || default_states.is_none_or(|states| {
                    TaskState::parse(&t.state).is_some_and(|s| states.contains(&s))
                })
        })
        .filter(|t| match (&filter.area, &t.area_code) {
            (None, _) => true,
            (Some(area), Some(code)) => catalog.contains(area, code),
            (Some(_), None) => false,
        })
        .collect())
}

/// The export in `format`.
pub fn render(rows: &[TaskRow], format: ExportFormat, catalog: &AreaCatalog) -> String {
    match format {
        ExportFormat::Csv => render_csv(rows),
        ExportFormat::Geojson => {
            let mut text = serde_json::to_string_pretty(&render_geojson(rows, catalog))
                .expect("JSON values serialise");
            text.push('\n');
            text
        }
    }
}

/// The exported columns, in order: what a field visit needs and nothing
/// else (no instruction reference, destination or personal data).
pub const EXPORT_COLUMNS: [&str; 10] = [
    "task_id",
    "crisis_id",
    "household_id",
    "area_code",
    "governorate",
    "district",
    "reason",
    "state",
    "assigned_to",
    "created_at",
];

/// One task's exported values, in [`EXPORT_COLUMNS`] order.
fn export_values(t: &TaskRow) -> [String; 10] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        t.task_id.to_string(),
        t.crisis_id.clone(),
        t.household_id.clone(),
        opt(&t.area_code),
        opt(&t.governorate),
        opt(&t.district),
        t.reason_code.clone(),
        t.state.clone(),
        opt(&t.assigned_to),
        t.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ]
}

/// CSV with a header row (RFC 4180 quoting).
pub fn render_csv(rows: &[TaskRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(EXPORT_COLUMNS).expect("writing to memory");
    for t in rows {
        w.write_record(export_values(t)).expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("UTF-8 in, UTF-8 out")
}

/// A GeoJSON FeatureCollection (RFC 7946): one Point feature per task at
/// the centroid of its district (of its governorate if the district is
/// unknown to the area data), or with a null geometry if the area is not
/// known at all; the properties are [`EXPORT_COLUMNS`].
pub fn render_geojson(rows: &[TaskRow], catalog: &AreaCatalog) -> Value {
    let features: Vec<Value> = rows
        .iter()
        .map(|t| {
            let centroid = [&t.district, &t.governorate, &t.area_code]
                .into_iter()
                .flatten()
                .find_map(|code| catalog.get(code))
                .map(|a| a.centroid);
            let geometry = match centroid {
                Some([lon, lat]) => json!({"type": "Point", "coordinates": [lon, lat]}),
                None => Value::Null,
            };
            let properties: serde_json::Map<String, Value> = EXPORT_COLUMNS
                .iter()
                .zip(export_values(t))
                .map(|(k, v)| {
                    let v = match *k {
                        "task_id" => json!(t.task_id),
                        _ if v.is_empty() => Value::Null,
                        _ => Value::String(v),
                    };
                    ((*k).to_owned(), v)
                })
                .collect();
            json!({
                "type": "Feature",
                "id": t.task_id,
                "geometry": geometry,
                "properties": properties,
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

fn print_table(rows: &[TaskRow]) {
    if rows.is_empty() {
        println!("no verification tasks");
        return;
    }
    println!(
        "{:>6}  {:<12} {:<14} {:<12} {:<22} {:<9} {:<16} created",
        "id", "crisis", "household", "area", "reason", "state", "assigned to"
    );
    for t in rows {
        println!(
            "{:>6}  {:<12} {:<14} {:<12} {:<22} {:<9} {:<16} {}",
            t.task_id,
            t.crisis_id,
            t.household_id,
            t.area_code.as_deref().unwrap_or("-"),
            t.reason_code,
            match &t.outcome {
                Some(o) => o.as_str(),
                None => t.state.as_str(),
            },
            t.assigned_to.as_deref().unwrap_or("-"),
            t.created_at.format("%Y-%m-%d %H:%M")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn task(id: i64, area: Option<(&str, &str, &str)>, assigned: Option<&str>) -> TaskRow {
        TaskRow {
            task_id: id,
            crisis_id: "FL-1".into(),
            household_id: format!("HH-{id:04}"),
            instruction_id: "ref-1".into(),
            attempt: 1,
            reason_code: "account_closed".into(),
            state: if assigned.is_some() {
                "assigned"
            } else {
                "open"
            }
            .into(),
            assigned_to: assigned.map(str::to_owned),
            created_at: chrono::Utc.with_ymd_and_hms(2026, 12, 8, 9, 30, 0).unwrap(),
            area_code: area.map(|a| a.0.to_owned()),
            governorate: area.map(|a| a.1.to_owned()),
            district: area.map(|a| a.2.to_owned()),
            outcome: None,
        }
    }

    fn catalog() -> AreaCatalog {
        AreaCatalog::from_json(
            r#"{"country":"XX","name":{"en":"X","ar":"X"},"currency":"JOD","areas":[
                {"code":"XX-A","level":"governorate","parent":null,"name":{"en":"A","ar":"A"},
                 "population_share":1.0,"centroid":[35.5,32.25],"boundary":[]},
                {"code":"XX-A-01","level":"district","parent":"XX-A","name":{"en":"A1","ar":"A1"},
                 "population_share":1.0,"centroid":[35.75,32.5],"boundary":[]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_csv_holds_the_visit_fields_only_quoted_where_needed() {
        let rows = [
            task(
                3,
                Some(("XX-A-01-007", "XX-A", "XX-A-01")),
                Some("team, north"),
            ),
            task(4, None, None),
        ];
        assert_eq!(
            render_csv(&rows),
            "task_id,crisis_id,household_id,area_code,governorate,district,reason,state,assigned_to,created_at\n\
             3,FL-1,HH-0003,XX-A-01-007,XX-A,XX-A-01,account_closed,assigned,\"team, north\",2026-12-08T09:30:00Z\n\
             4,FL-1,HH-0004,,,,account_closed,open,,2026-12-08T09:30:00Z\n"
        );
    }

    #[test]
    fn geojson_places_a_task_at_its_district_centroid_or_leaves_the_geometry_null() {
        let rows = [
            task(3, Some(("XX-A-01-007", "XX-A", "XX-A-01")), None),
            task(4, Some(("XX-A", "XX-A", "")), None),
            task(5, None, None),
        ];
        let got = render_geojson(&rows, &catalog());
        let props = |id: i64, area: Value, gov: Value, district: Value| {
            json!({
                "task_id": id, "crisis_id": "FL-1", "household_id": format!("HH-{id:04}"),
                "area_code": area, "governorate": gov, "district": district,
                "reason": "account_closed", "state": "open", "assigned_to": null,
                "created_at": "2026-12-08T09:30:00Z"
            })
        };
        let want = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": 3,
             "geometry": {"type": "Point", "coordinates": [35.75, 32.5]},
             "properties": props(3, json!("XX-A-01-007"), json!("XX-A"), json!("XX-A-01"))},
            {"type": "Feature", "id": 4,
             "geometry": {"type": "Point", "coordinates": [35.5, 32.25]},
             "properties": props(4, json!("XX-A"), json!("XX-A"), Value::Null)},
            {"type": "Feature", "id": 5, "geometry": null,
             "properties": props(5, Value::Null, Value::Null, Value::Null)},
        ]});
        assert_eq!(got, want);
    }
}
