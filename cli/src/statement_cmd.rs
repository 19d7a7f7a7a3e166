//! `sumud reconcile --crisis C --statement FILE`: the provider's own account
//! of what it paid (camt.054, pain.002 or CSV; docs/contracts.md, "Provider
//! statements") against our instructions, reference by reference. The
//! reading and the comparison are the disbursement crate's
//! (`sumud_disbursement::statement`); this module reads the file and our
//! rows, and prints.

use std::path::Path;

use sumud_disbursement::statement::{self, Kind, Line, Reconciliation};
use sumud_shared::config::Settings;
use sumud_shared::db::Store;

/// Largest statement read, in bytes: far above a crisis's payments (about
/// 1 KB per camt.054 entry), far below what would exhaust memory.
const MAX_STATEMENT_BYTES: u64 = 1 << 30;

/// Reads and parses `file`; an error names the file and what is wrong.
pub fn read(file: &Path) -> anyhow::Result<statement::Statement> {
    let size = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("cannot read the statement {}: {e}", file.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_STATEMENT_BYTES,
        "the statement {} is {size} bytes; split it (at most {MAX_STATEMENT_BYTES})",
        file.display()
    );
    let bytes = std::fs::read(file)
        .map_err(|e| anyhow::anyhow!("cannot read the statement {}: {e}", file.display()))?;
    statement::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// Compares the statement with crisis `crisis`'s instructions (only
/// `provider`'s when named) in an open store; an error when the crisis has
/// no payments recorded.
pub async fn compare(
    store: &Store,
    crisis: &str,
    provider: Option<&str>,
    statement: &statement::Statement,
) -> anyhow::Result<Reconciliation> {
    let ours = sumud_disbursement::db::statement_side(store, crisis, provider).await?;
    if ours.is_empty()
        && sumud_disbursement::db::budget(store, crisis)
            .await?
            .is_none()
    {
        anyhow::bail!("no payments are recorded for crisis {crisis}: check the crisis id");
    }
    Ok(statement::compare(&ours, statement))
}

/// The whole command: reads `file`, compares, prints a report (or its
/// JSON); returns the number of discrepancies (the caller exits 3 when
/// there are any). Errors are "could not run" (exit 1).
pub async fn run(
    settings: &Settings,
    crisis: &str,
    file: &Path,
    provider: Option<&str>,
    json: bool,
) -> anyhow::Result<usize> {
    let statement = read(file)?;
    let store = Store::connect_with(
        &settings.database_url,
        2,
        std::time::Duration::from_secs(10),
        settings.db_timeouts,
    )
    .await?;
    let r = compare(&store, crisis, provider, &statement).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r, crisis, file);
    }
    Ok(r.discrepancies())
}

/// The report for people: counts, then every discrepancy with its reason.
pub fn print(r: &Reconciliation, crisis: &str, file: &Path) {
    println!(
        "crisis {crisis} against {} ({}, {} entries)",
        file.display(),
        r.format.as_str(),
        r.entries
    );
    for kind in Kind::ALL {
        println!("{:<16} {:>8}", kind.as_str(), r.lines(kind).len());
    }
    for kind in Kind::ALL.into_iter().filter(|k| k.is_discrepancy()) {
        for l in r.lines(kind) {
            println!("{}: {}", kind.as_str().to_uppercase(), describe(l));
        }
    }
    match r.discrepancies() {
        0 => println!("reconciled: the statement and our records agree"),
        n => println!("{n} discrepancies: settle each with the provider"),
    }
}

/// One line of the report: the reference, our side, and why.
fn describe(l: &Line) -> String {
    let ours = match &l.ours {
        Some(o) => format!(
            "{} attempt {} ({}, {}, {})",
            o.instruction_id,
            o.attempt,
            o.provider,
            o.status,
            o.amount.display()
        ),
        None => format!("{:?} (not ours)", l.reference),
    };
    let refs: Vec<&str> = l
        .theirs
        .iter()
        .filter_map(|e| e.provider_ref.as_deref())
        .collect();
    if refs.is_empty() {
        format!("{ours}: {}", l.note)
    } else {
        format!("{ours}: {} [provider refs {}]", l.note, refs.join(", "))
    }
}
