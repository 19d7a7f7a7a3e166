//! `sumud-bench`: speed and memory figures, each printed as a ratio against a
//! raw baseline measured in the same run on the same machine.
//!
//! Run with `scripts/bench.sh <name>` (builds release binaries and starts
//! Kafka and PostgreSQL first).

mod alerts;
mod cpu;
mod disbursement;
mod eligibility;
mod harness;
mod registry;
mod rss;

use clap::{Parser, Subcommand};

/// Sumud benchmarks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Latency from an Actual CAP alert to the first disbursement instruction
    /// of the crisis it auto-declares vs one raw produce → consume hop.
    Alerts {
        /// Households in the registry.
        #[arg(long, default_value_t = 20_000)]
        households: u64,
        /// Alerts to time (one after another).
        #[arg(long, default_value_t = 120)]
        alerts: usize,
        /// Keep the benchmark database instead of dropping it.
        #[arg(long)]
        keep: bool,
    },
    /// Registry ingest from Kafka into PostgreSQL vs PostgreSQL COPY.
    Registry {
        /// Household upserts to ingest.
        #[arg(long, default_value_t = 1_000_000)]
        households: u64,
    },
    /// Crisis declaration to committed entitlements vs one INSERT … SELECT.
    Eligibility {
        /// Households in the registry.
        #[arg(long, default_value_t = 1_000_000)]
        households: u64,
        /// Crisis areas, comma-separated (default: the largest governorates
        /// until 40% of the population is covered).
        #[arg(long, value_delimiter = ',')]
        areas: Option<Vec<String>>,
        /// Keep the benchmark database instead of dropping it.
        #[arg(long)]
        keep: bool,
        /// Runs of the baseline statement; the ratio uses their median.
        #[arg(long, default_value_t = 3)]
        baseline_runs: usize,
    },
    /// Crisis activation to the last payment instruction acknowledged by
    /// Kafka vs rdkafka producing as many same-size messages.
    Disbursement {
        /// Households in the registry, every one entitled (one instruction each).
        #[arg(long, default_value_t = 400_000)]
        households: u64,
        /// Tranches per entitlement (only the first falls due at activation).
        #[arg(long, default_value_t = 1)]
        tranches: i32,
        /// Runs of the baseline; the ratio uses their median.
        #[arg(long, default_value_t = 3)]
        baseline_runs: usize,
        /// Keep the benchmark database and topics instead of dropping them.
        #[arg(long)]
        keep: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Alerts {
            households,
            alerts,
            keep,
        } => {
            alerts::run(alerts::Options {
                households,
                alerts,
                keep,
            })
            .await
        }
        Bench::Registry { households } => registry::run(households).await,
        Bench::Eligibility {
            households,
            areas,
            keep,
            baseline_runs,
        } => {
            eligibility::run(eligibility::Options {
                households,
                areas,
                keep,
                baseline_runs,
            })
            .await
        }
        Bench::Disbursement {
            households,
            tranches,
            baseline_runs,
            keep,
        } => {
            disbursement::run(disbursement::Options {
                households,
                tranches,
                baseline_runs,
                keep,
            })
            .await
        }
    }
}
