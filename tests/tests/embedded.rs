//! The embedded default (issue 7): the demo's whole pipeline on the
//! Kafka-protocol broker built into `sumud` instead of a Kafka cluster, and
//! on an SQLite file instead of PostgreSQL; and an outside Kafka client reading the
//! instructions topic from that broker as a payment provider would: Apache
//! Kafka's own Java console consumer, from the jars `scripts/kafka.sh`
//! fetches. (Debian's kcat was the first choice, but its librdkafka 2.0.2
//! misreads the tagged fields at the end of tansu's ApiVersions v3 response
//! — "Protocol read buffer underflow … at 267/272" — and gives up before
//! any metadata; librdkafka 2.10, which the services use, reads it.)

use std::collections::BTreeSet;

use sumud::embedded::EmbeddedBroker;
use sumud_tests::infra::{free_addr, repo_root};
use sumud_tests::pipeline::SEED;
use sumud_tests::{admin_url, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pays_and_reconciles_on_the_embedded_broker_and_an_outside_client_reads_its_instructions(
) {
    // Arrange: the broker inside this process, on a free loopback port.
    let broker = EmbeddedBroker::start(free_addr())
        .await
        .expect("the embedded broker starts");
    let bootstrap = broker.bootstrap_servers();
    let env = TestEnv::on(bootstrap.clone(), admin_url())
        .await
        .on_sqlite()
        .await;
    assert!(env.settings.database_url.starts_with("sqlite://"));

    // Act: the README's first command, smaller.
    // A fixed registry: on 2,000 households a random one can leave the
    // south with no area poor enough for the flood rule (it did once in CI).
    sumud::demo::run_seeded(env.settings.clone(), 2000, SEED, false)
        .await
        .expect("the demo completes on the embedded broker");

    // Assert: reconciled, nothing unexplained.
    let (crisis,): (String,) = env
        .rows("SELECT crisis_id FROM control.crises WHERE crisis_id LIKE 'EW-%'")
        .await
        .remove(0);
    let problems = sumud::payments_cmd::reconcile(&env.settings, &crisis)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let instructed: BTreeSet<String> = env
        .rows::<(String,)>(&format!(
            "SELECT instruction_id FROM disbursement.instructions WHERE crisis_id = '{crisis}'"
        ))
        .await
        .into_iter()
        .map(|(id,)| id)
        .collect();
    assert!(!instructed.is_empty(), "the demo instructed payments");

    // Assert: an outside client (another implementation of the protocol, in
    // another process) consumes every instruction from the embedded broker.
    // It stops after 15 s without a new message; its exit status then says
    // "timeout", so the content is what is checked.
    let topic = &env.settings.topics.instructions;
    let out = tokio::process::Command::new(repo_root().join("scripts/kafka.sh"))
        .args([
            "tool",
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "15000",
        ])
        .output()
        .await
        .expect("scripts/kafka.sh runs Kafka's console consumer");
    // The flood's instructions; the demo's price shock (its last act,
    // which it does not wait to pay) may have published some of its own.
    let seen: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).expect("an instruction event");
            let of = event["data"]["crisis_id"].as_str().expect("crisis_id");
            if of != crisis {
                assert!(of.starts_with("PS-DEMO-"), "an instruction of {of}");
                return None;
            }
            Some(
                event["data"]["reference_id"]
                    .as_str()
                    .expect("reference_id")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        instructed,
        "the console consumer saw exactly the instructions the database recorded; its log:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(env);
    drop(broker);
}
