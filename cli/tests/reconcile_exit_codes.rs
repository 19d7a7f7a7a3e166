//! The `sumud` binary's exit statuses for `sumud reconcile`, with and
//! without a provider statement: 0 reconciled, 3 something found, 1 could
//! not run (bad file, unknown crisis), 2 a usage error. Runs the real
//! binary on an SQLite database holding three instructions of one crisis
//! (two paid, one failed); the statements are written by the provider
//! simulator's own writer. Which references land where, on the real
//! pipeline and both backends, is tests/tests/reconcile_statement.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use sumud_disbursement::instruction::instruction_id;
use sumud_provider_sim::statement::{self as sim, Header, LedgerRow};
use sumud_shared::db::Store;

const CRISIS: &str = "EXIT-1";

struct World {
    dir: PathBuf,
    url: String,
    store: Store,
    /// (instruction id, status, amount) as inserted.
    ours: Vec<(String, &'static str, i64)>,
}

impl Drop for World {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn world() -> World {
    let dir = std::env::temp_dir().join(format!("sumud-exit-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/sumud.db", dir.display());
    let store = Store::connect(&url, 2, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    store
        .migrate(&sumud_disbursement::db::MIGRATIONS)
        .await
        .unwrap();
    let ours = vec![
        (
            instruction_id(CRISIS, "HH-1", "vertical", 1),
            "succeeded",
            112_500,
        ),
        (
            instruction_id(CRISIS, "HH-2", "vertical", 1),
            "succeeded",
            87_250,
        ),
        (
            instruction_id(CRISIS, "HH-3", "vertical", 1),
            "failed",
            50_000,
        ),
    ];
    let Store::Sqlite(pool) = &store else {
        unreachable!("an sqlite:// URL")
    };
    // Reserved: the live (not failed) instructions, as disbursement keeps it.
    sqlx::query(
        "INSERT INTO disbursement.crises (crisis_id, state, revision, currency, budget_minor, reserved_minor) \
         VALUES (?1, 'active', 1, 'JOD', 1000000, ?2)",
    )
    .bind(CRISIS)
    .bind(112_500 + 87_250_i64)
    .execute(pool)
    .await
    .unwrap();
    for (i, (id, status, amount)) in ours.iter().enumerate() {
        sqlx::query(
            "INSERT INTO disbursement.instructions (instruction_id, crisis_id, household_id, kind, tranche, \
                 amount_minor, currency, beneficiary_ref, channel, provider, account_token, scheduled_at, \
                 crisis_revision, status, deadline_at) \
             VALUES (?1, ?2, ?3, 'vertical', 1, ?4, 'JOD', 'ben', 'e_wallet', 'zain-cash', 'tok', \
                 '2026-12-01T08:00:00.000Z', 1, ?5, '2026-12-02T08:00:00.000Z')",
        )
        .bind(id)
        .bind(CRISIS)
        .bind(format!("HH-{i}"))
        .bind(amount)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }
    World {
        dir,
        url,
        store,
        ours,
    }
}

impl World {
    /// The provider's ledger for our instructions, as the simulator keeps it.
    fn ledger(&self) -> Vec<LedgerRow> {
        self.ours
            .iter()
            .map(|(id, status, amount)| LedgerRow {
                reference_id: id.clone(),
                attempt: 1,
                provider: "zain-cash".into(),
                amount_minor: *amount,
                outcome: if *status == "succeeded" {
                    "paid".into()
                } else {
                    "rejected_permanent".into()
                },
                paid: *status == "succeeded",
            })
            .collect()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.dir.join(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    /// Runs `sumud reconcile <args>` on this world's database: (exit status, stdout, stderr).
    fn reconcile(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_sumud"))
            .arg("reconcile")
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "error")
            .output()
            .expect("the sumud binary runs");
        (
            out.status.code().expect("exited, not killed"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn header() -> Header {
    Header {
        message_id: "STMT-EXIT".into(),
        account: format!("CRISIS-{CRISIS}"),
        currency: "JOD".into(),
        created: chrono::Utc::now(),
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn reconcile_against_a_statement_exits_0_when_it_agrees_3_when_it_differs_1_when_it_cannot_run(
) {
    let w = world().await;
    let clean = w.ledger();
    let mut planted = w.ledger();
    planted[1].amount_minor += 10;
    let clean_csv = w.write("clean.csv", &sim::csv(&clean, &header()));
    let clean_camt = w.write("clean.xml", &sim::camt054(&clean, &header()));
    let planted_pain = w.write("planted.xml", &sim::pain002(&planted, &header()));
    let garbage = w.write("garbage.txt", "this is no statement\n");

    let (code, out, err) = w.reconcile(&["--crisis", CRISIS, "--statement", path(&clean_csv)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reconciled"), "{out}");

    let (code, out, err) = w.reconcile(&[
        "--crisis",
        CRISIS,
        "--statement",
        path(&clean_camt),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(json["format"], "camt054");
    assert_eq!(
        json["matched"].as_array().unwrap().len(),
        2,
        "the two payments"
    );

    let (code, out, err) = w.reconcile(&[
        "--crisis",
        CRISIS,
        "--statement",
        path(&planted_pain),
        "--json",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mismatched = json["amount_mismatch"].as_array().unwrap();
    assert_eq!(mismatched.len(), 1);
    assert_eq!(mismatched[0]["reference"], w.ours[1].0.as_str());
    assert_eq!(
        json["matched"].as_array().unwrap().len(),
        2,
        "one payment and the rejection"
    );

    let missing = w.dir.join("no-such-statement.xml");
    let (code, _, err) = w.reconcile(&["--crisis", CRISIS, "--statement", path(&missing)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no-such-statement.xml"), "{err}");

    let (code, _, err) = w.reconcile(&["--crisis", CRISIS, "--statement", path(&garbage)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a statement"), "{err}");

    let (code, _, err) = w.reconcile(&["--crisis", "NO-SUCH", "--statement", path(&clean_csv)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NO-SUCH"), "{err}");
}

#[tokio::test]
async fn reconcile_without_a_statement_exits_0_3_1_and_2_as_documented() {
    let w = world().await;

    let (code, out, err) = w.reconcile(&["--crisis", CRISIS]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = w.reconcile(&["--crisis", CRISIS, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(json["providers"][0]["paid"], 2);
    assert_eq!(json["providers"][0]["failed"], 1);
    assert_eq!(json["unexplained"].as_array().unwrap().len(), 0);

    // A reservation that no longer matches the live instructions.
    let Store::Sqlite(pool) = &w.store else {
        unreachable!()
    };
    sqlx::query("UPDATE disbursement.crises SET reserved_minor = reserved_minor + 1")
        .execute(pool)
        .await
        .unwrap();
    let (code, out, err) = w.reconcile(&["--crisis", CRISIS, "--json"]);
    assert_eq!(code, 3, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["unexplained"].as_array().unwrap().len(), 1, "{json}");

    let (code, _, err) = w.reconcile(&["--crisis", "NO-SUCH"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = w.reconcile(&["--crisis", CRISIS, "--provider", "zain-cash"]);
    assert_eq!(code, 2, "--provider needs --statement: {err}");
}
