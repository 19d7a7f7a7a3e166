//! `sumud`: the operator's and newcomer's command line. Parsing is
//! `args.rs`'s, what each command does `dispatch.rs`'s.

use clap::Parser;
use sumud::args::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut broker = None;
    let result = runtime.block_on(sumud::dispatch::dispatch(cli, &mut broker));
    // An embedded broker outlives the runtime: dropping the runtime waits for
    // blocking tasks (a consumer's last lag report, say) that still talk to it.
    drop(runtime);
    drop(broker);
    result
}
