//! `sumud-bench`: speed and memory figures, each printed as a ratio against a
//! raw baseline measured in the same run on the same machine.
//!
//! Run with `scripts/bench.sh <name>` (builds release binaries and starts
//! Kafka and PostgreSQL first).

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
    /// Registry ingest from Kafka into PostgreSQL vs PostgreSQL COPY.
    Registry {
        /// Household upserts to ingest.
        #[arg(long, default_value_t = 1_000_000)]
        households: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Registry { households } => registry::run(households).await,
    }
}
