//! Tests that cannot hang: every wait of the harness is bounded around the
//! awaited future itself ([`bounded`]), scenarios say which phase they are
//! in as they enter it ([`phase`], on the real stderr, never captured), and
//! every test world carries a [`Watchdog`] that, past the test's budget,
//! prints the recent phases and every thread's stack and ends the process
//! with a failure instead of letting it sit until CI's limit (issue 25: a
//! test parked for 17 minutes in a future that never resolved).

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long one test world may live unless `SUMUD_TEST_BUDGET_SECS` says
/// otherwise: the longest scenario (a fault scenario, up to four minutes
/// to settle after its fault) fits with room to spare.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(12 * 60);

/// The suite's start, for the timestamps of phases.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The latest phases of every test of this process, newest last.
static PHASES: LazyLock<Mutex<VecDeque<String>>> =
    LazyLock::new(|| Mutex::new(VecDeque::with_capacity(PHASES_KEPT)));

/// How many phases are kept for a watchdog's report.
const PHASES_KEPT: usize = 40;

/// Writes a line to the process's real stderr, past libtest's capture (which
/// only catches `print!` and `eprint!`), so that a hang names itself even in
/// a test that never finishes.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Records and prints that the calling test enters `what`.
pub fn phase(what: impl AsRef<str>) {
    let line = format!(
        "[{:>7.1} s] {} | {}",
        STARTED.elapsed().as_secs_f64(),
        std::thread::current().name().unwrap_or("test"),
        what.as_ref()
    );
    say(&line);
    let mut phases = PHASES.lock().unwrap_or_else(|e| e.into_inner());
    if phases.len() == PHASES_KEPT {
        phases.pop_front();
    }
    phases.push_back(line);
}

/// Awaits `future` for at most `limit`, panicking with `what` when it does
/// not finish: for start-ups, probes, admin calls and queries whose own
/// timeouts (if any) cannot be trusted to fire.
pub async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {limit:?}"),
    }
}

/// Ends the process with a report if it is not disarmed (dropped) within
/// its budget.
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Arms a watchdog for `what` with the budget from
    /// `SUMUD_TEST_BUDGET_SECS`, or [`DEFAULT_BUDGET`].
    pub fn arm(what: &str) -> Watchdog {
        let budget = std::env::var("SUMUD_TEST_BUDGET_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_BUDGET);
        Self::arm_for(what, budget)
    }

    /// Arms a watchdog for `what` with an explicit budget.
    pub fn arm_for(what: &str, budget: Duration) -> Watchdog {
        let (disarm, armed) = mpsc::channel::<()>();
        let owned = what.to_owned();
        let test = std::thread::current().name().unwrap_or("test").to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("watchdog {test}"))
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = armed.recv_timeout(budget) {
                    over_budget(&test, &owned, budget);
                }
            });
        if let Err(e) = spawned {
            say(&format!("could not start the watchdog of {what}: {e}"));
        }
        Watchdog {
            disarm: Some(disarm),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.disarm.take() {
            let _ = tx.send(());
        }
    }
}

/// The report of a test over its budget, then the end of the process: a
/// failed run is worth more than one that holds CI until its limit.
fn over_budget(test: &str, what: &str, budget: Duration) -> ! {
    say(&format!(
        "\n==== WATCHDOG: test `{test}` ({what}) is still running after {budget:?}; ending the process.\n==== Its latest phases (of every test of this process):"
    ));
    let phases = PHASES.lock().map(|p| p.clone()).unwrap_or_default();
    for p in phases {
        say(&format!("  {p}"));
    }
    say(&format!(
        "==== Private brokers and databases of fault tests are left running under {}/.local/faults/; scripts/test.sh stops them and keeps their logs in target/faults-logs/",
        crate::infra::repo_root().display()
    ));
    say("==== Thread stacks:");
    dump_stacks();
    std::process::exit(101);
}

/// Prints every thread's stack of this process with gdb, if installed
/// (`scripts/test.sh` installs it), for at most a minute.
fn dump_stacks() {
    let pid = std::process::id().to_string();
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "gdb",
            "-p",
            &pid,
            "-batch",
            "-nx",
            "-ex",
            "set pagination off",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => say(&String::from_utf8_lossy(&o.stdout)),
        Err(e) => say(&format!("(no stacks: cannot run gdb: {e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bounded_wait_returns_what_finished_in_time() {
        assert_eq!(
            bounded("a ready value", Duration::from_secs(1), async { 7 }).await,
            7
        );
    }

    #[tokio::test]
    #[should_panic(expected = "a future that never resolves: no result within")]
    async fn a_bounded_wait_on_a_future_that_never_resolves_fails_with_what_it_waited_for() {
        bounded(
            "a future that never resolves",
            Duration::from_millis(50),
            std::future::pending::<()>(),
        )
        .await;
    }
}
