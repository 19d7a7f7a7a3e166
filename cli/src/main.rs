//! `sumud`: the operator's and newcomer's command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sumud::{demo, registry_cmd, topics_cmd};
use sumud_shared::config::Settings;

/// Sumud: from a declared crisis to social-protection payments.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the live end-to-end demo.
    Demo {
        /// Synthetic households to register.
        #[arg(long, default_value_t = 20_000)]
        households: u64,
        /// Keep the services running after the demo until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
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
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every topic the pipeline uses (existing ones are kept).
    Ensure {
        /// Partitions per new topic (default: SUMUD_TOPIC_PARTITIONS or 3).
        #[arg(long)]
        partitions: Option<i32>,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Demo {
            households,
            keep_running,
        } => {
            let _t = sumud_shared::telemetry::init("sumud");
            demo::run(settings, households, keep_running).await
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
    }
}
