//! The embedded default (issue 7): the demo's whole pipeline on the
//! Kafka-protocol broker built into `sumud` instead of a Kafka cluster, with
//! the suite's PostgreSQL; and an outside Kafka client — Debian's kcat,
//! installed by scripts/test.sh — reading the instructions topic from that
//! broker as a payment provider would.

use std::collections::BTreeSet;

use sumud::embedded::EmbeddedBroker;
use sumud_tests::infra::free_addr;
use sumud_tests::{admin_url, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pays_and_reconciles_on_the_embedded_broker_and_kcat_reads_its_instructions() {
    // Arrange: the broker inside this process, on a free loopback port.
    let broker = EmbeddedBroker::start(free_addr())
        .await
        .expect("the embedded broker starts");
    let bootstrap = broker.bootstrap_servers();
    let env = TestEnv::on(bootstrap.clone(), admin_url()).await;

    // Act: the README's first command, smaller.
    sumud::demo::run(env.settings.clone(), 2000, false)
        .await
        .expect("the demo completes on the embedded broker");

    // Assert: reconciled, nothing unexplained.
    let crisis: String =
        sqlx::query_scalar("SELECT crisis_id FROM control.crises WHERE crisis_id LIKE 'EW-%'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let problems = sumud::payments_cmd::reconcile(&env.settings, &crisis)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let instructed: BTreeSet<String> = sqlx::query_scalar(
        "SELECT instruction_id FROM disbursement.instructions WHERE crisis_id = $1",
    )
    .bind(&crisis)
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(!instructed.is_empty(), "the demo instructed payments");

    // Assert: kcat, an outside client, consumes every instruction from the
    // embedded broker (`-e`: exit at the end of every partition).
    let topic = &env.settings.topics.instructions;
    let out = tokio::process::Command::new("kcat")
        .args([
            "-C", "-b", &bootstrap, "-t", topic, "-e", "-q", "-f", "%s\n",
        ])
        .output()
        .await
        .expect("kcat runs (scripts/test.sh installs Debian's kcat)");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).expect("an instruction event");
            assert_eq!(event["data"]["crisis_id"], crisis.as_str());
            event["data"]["reference_id"]
                .as_str()
                .expect("reference_id")
                .to_owned()
        })
        .collect();
    assert_eq!(
        seen, instructed,
        "kcat saw exactly the instructions the database recorded"
    );
    drop(env);
    drop(broker);
}
