//! What each `sumud` command does: the settings read once, then each
//! subcommand handed to its module (`crisis_cmd`, `operators_cmd`, …), and
//! a crisis command's wait for control's verdict.

use clap::CommandFactory;
use sumud_shared::config::Settings;
use sumud_shared::events::control::CommandKind;

use crate::alerts_cmd;
use crate::args::*;
use crate::crisis_cmd;
use crate::{demo, payments_cmd, registry_cmd, topics_cmd, up};

/// Waits for control's verdict on `key_id`'s command `command_id` unless
/// `--no-wait`, prints it, and exits 3 when control refused the command.
async fn await_verdict(
    settings: &sumud_shared::config::Settings,
    key_id: &str,
    command_id: &str,
    what: &str,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    if wait.no_wait {
        return Ok(());
    }
    let store = crisis_cmd::control_store(settings).await?;
    let v = crate::verdict::wait(
        &store,
        key_id,
        command_id,
        std::time::Duration::from_secs(wait.wait_secs),
    )
    .await?;
    println!("{}", v.line(what));
    if v.exit_code() != crate::verdict::exit::OK {
        std::process::exit(v.exit_code());
    }
    Ok(())
}

/// Shell completions and man pages, written from the parser: `None` for
/// every other command.
fn from_the_parser(command: &Command) -> Option<anyhow::Result<()>> {
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "sumud", &mut std::io::stdout());
            Some(Ok(()))
        }
        Command::Man { out } => Some(write_man_pages(out)),
        _ => None,
    }
}

/// One man page per command, into `out`.
fn write_man_pages(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    clap_mangen::generate_to(Cli::command(), out)?;
    println!("man pages written to {}", out.display());
    Ok(())
}

/// Runs the command `cli` names. `broker` keeps an embedded broker
/// `sumud up` started alive until the caller drops it, after the runtime.
pub async fn dispatch(cli: Cli, broker: &mut Option<up::BrokerInUse>) -> anyhow::Result<()> {
    // Shell completions and man pages come from the parser alone: they
    // work whatever the environment's SUMUD_* settings say.
    if let Some(done) = from_the_parser(&cli.command) {
        return done;
    }
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("answered from the parser above")
        }
        Command::Demo {
            households,
            exit,
            broker: args,
        } => {
            let _t = sumud_shared::telemetry::init("sumud");
            let mut settings = settings;
            let empty = up::point_at_the_default(&mut settings, &args, broker).await?;
            demo::run(settings, households, !exit, &args.data_dir, empty).await
        }
        Command::Up {
            broker: args,
            without_provider_sim,
        } => {
            let _t = sumud_shared::telemetry::init("sumud");
            let mut settings = settings;
            let empty = up::point_at_the_default(&mut settings, &args, broker).await?;
            up::run(settings, args, !without_provider_sim, empty).await
        }
        Command::Topics {
            command: TopicsCommand::Ensure { partitions },
        } => topics_cmd::ensure(&settings, partitions).await,
        Command::Registry { command } => match command {
            RegistryCommand::Generate {
                households,
                seed,
                out,
                publish,
            } => {
                if publish {
                    let n =
                        registry_cmd::publish_synthetic(&settings, households, seed, false).await?;
                    println!("{n} households published to {}", settings.topics.registry);
                    Ok(())
                } else {
                    registry_cmd::generate_csv(households, seed, &out)
                }
            }
            RegistryCommand::Import { file } => {
                let n = registry_cmd::import_csv(&settings, &file).await?;
                println!("{n} households published to {}", settings.topics.registry);
                Ok(())
            }
        },
        Command::Keys {
            command: KeysCommand::Generate { kid, out },
        } => {
            let public = crisis_cmd::generate_key(&kid, &out)?;
            println!(
                "key {kid} written to {}; public key: {public}",
                out.display()
            );
            Ok(())
        }
        Command::Operators { command } => crate::operators_cmd::run(&settings, command).await,
        Command::Providers { command } => crate::providers_cmd::run(&settings, command).await,
        Command::Crisis { command } => match command {
            CrisisCommand::Declare {
                key,
                wait,
                crisis_id,
                note,
                definition,
            } => {
                let def = definition.build(None)?;
                let key = crisis_cmd::read_key(&key)?;
                let id = crisis_cmd::publish(
                    &settings,
                    &key,
                    CommandKind::Declare,
                    &crisis_id,
                    Some(def),
                    note,
                )
                .await?;
                println!("crisis.declare {crisis_id} published (command {id})");
                await_verdict(
                    &settings,
                    &key.kid,
                    &id,
                    &format!("crisis.declare {crisis_id}"),
                    &wait,
                )
                .await
            }
            CrisisCommand::Amend {
                key,
                wait,
                crisis_id,
                note,
                definition,
            } => {
                let store = crisis_cmd::control_store(&settings).await?;
                let Some(current) = sumud_control::db::crisis(&store, &crisis_id).await? else {
                    anyhow::bail!("crisis {crisis_id} does not exist");
                };
                let def = definition.build(Some(current.definition))?;
                let key = crisis_cmd::read_key(&key)?;
                let id = crisis_cmd::publish(
                    &settings,
                    &key,
                    CommandKind::Amend,
                    &crisis_id,
                    Some(def),
                    note,
                )
                .await?;
                println!("crisis.amend {crisis_id} published (command {id})");
                await_verdict(
                    &settings,
                    &key.kid,
                    &id,
                    &format!("crisis.amend {crisis_id}"),
                    &wait,
                )
                .await
            }
            CrisisCommand::Approve {
                key,
                wait,
                crisis_id,
                digest,
                note,
            } => {
                let key = crisis_cmd::read_key(&key)?;
                let (id, p) =
                    crisis_cmd::approve(&settings, &key, &crisis_id, &digest, note).await?;
                println!(
                    "crisis.approve {crisis_id} of revision {} ({}) published (command {id})",
                    p.revision, p.digest
                );
                await_verdict(
                    &settings,
                    &key.kid,
                    &id,
                    &format!("crisis.approve {crisis_id}"),
                    &wait,
                )
                .await
            }
            CrisisCommand::Close {
                key,
                wait,
                crisis_id,
            } => {
                let key = crisis_cmd::read_key(&key)?;
                let id = crisis_cmd::publish(
                    &settings,
                    &key,
                    CommandKind::Close,
                    &crisis_id,
                    None,
                    None,
                )
                .await?;
                println!("crisis.close {crisis_id} published (command {id})");
                await_verdict(
                    &settings,
                    &key.kid,
                    &id,
                    &format!("crisis.close {crisis_id}"),
                    &wait,
                )
                .await
            }
            CrisisCommand::List { json } => crisis_cmd::list(&settings, json).await,
            CrisisCommand::Show { crisis_id, json } => {
                crisis_cmd::show(&settings, &crisis_id, json).await
            }
        },
        Command::Export {
            command:
                ExportCommand::Caseload {
                    crisis,
                    format,
                    out,
                },
        } => {
            let store = crate::payments_cmd::connect(&settings).await?;
            let rows = crate::caseload_cmd::caseload(&store, &crisis).await?;
            match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    crate::caseload_cmd::write(&rows, format, std::io::BufWriter::new(file))?;
                    eprintln!(
                        "{} decisions of {crisis} written to {}",
                        rows.len(),
                        path.display()
                    );
                }
                None => crate::caseload_cmd::write(&rows, format, std::io::stdout().lock())?,
            }
            Ok(())
        }
        Command::Export {
            command:
                ExportCommand::Pain001 {
                    crisis,
                    provider,
                    out,
                },
        } => {
            let n =
                crate::payments_cmd::export_pain001(&settings, &crisis, &provider, &out).await?;
            println!("{n} credit transfers written to {}", out.display());
            Ok(())
        }
        Command::Deadletter { command } => match command {
            DeadletterCommand::List { filter, json } => {
                crate::deadletter_cmd::list(&settings, &filter, json)?;
                Ok(())
            }
            DeadletterCommand::Show { at } => crate::deadletter_cmd::show(&settings, &at),
            DeadletterCommand::Replay { filter, dry_run } => {
                crate::deadletter_cmd::replay(&settings, &filter, dry_run).await?;
                Ok(())
            }
        },
        Command::Alerts { command } => match command {
            AlertsCommand::Send { file, key } => {
                let id = alerts_cmd::send(&settings, &file, key.as_deref()).await?;
                println!("published alert event {id}");
                Ok(())
            }
            AlertsCommand::List { limit, json } => alerts_cmd::list(&settings, limit, json).await,
        },
        Command::Simulate {
            definition,
            place,
            json,
        } => {
            let def = alerts_cmd::scenario(definition, &place)?;
            alerts_cmd::simulate(&settings, &def, json).await?;
            Ok(())
        }
        Command::Incidents {
            command: IncidentsCommand::Resolve { id, by, resolution },
        } => payments_cmd::resolve_incident(&settings, id, &by, &resolution).await,
        Command::Tasks { command } => crate::tasks_cmd::run(&settings, command).await,
        Command::Partners { command } => crate::partners_cmd::run(&settings, command).await,
        Command::Referrals { command } => crate::referrals_cmd::run(&settings, command).await,
        Command::Grievances { command } => crate::grievances_cmd::run(&settings, command).await,
        Command::Reconcile {
            crisis,
            statement,
            provider,
            json,
        } => {
            // Errors (a bad file, no database, an unknown crisis) end in
            // exit status 1; something found to explain ends in 3.
            let found = match statement {
                Some(file) => {
                    crate::statement_cmd::run(&settings, &crisis, &file, provider.as_deref(), json)
                        .await?
                }
                None => payments_cmd::reconcile_cmd(&settings, &crisis, json).await?,
            };
            if found > 0 {
                std::process::exit(payments_cmd::EXIT_DISCREPANCIES);
            }
            Ok(())
        }
        Command::Ledger { household, json } => {
            let store = crate::payments_cmd::connect(&settings).await?;
            let ledger = crate::ledger_cmd::ledger(&store, &household).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ledger)?);
            } else {
                for line in crate::ledger_cmd::lines(&household, &ledger) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Explain {
            crisis,
            household,
            instruction,
            json,
        } => {
            let store = crate::payments_cmd::connect(&settings).await?;
            let subject = match (instruction, crisis, household) {
                (Some(reference), _, _) => crate::explain_cmd::Subject::Instruction(reference),
                (None, Some(crisis), Some(household)) => {
                    crate::explain_cmd::Subject::Household { crisis, household }
                }
                _ => unreachable!("clap requires --instruction or --crisis with --household"),
            };
            let e = crate::explain_cmd::explanation(&store, subject).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                for line in e.lines() {
                    println!("{line}");
                }
            }
            Ok(())
        }
    }
}
