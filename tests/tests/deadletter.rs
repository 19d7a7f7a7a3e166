//! `sumud deadletter list|replay` on the real broker: a command signed with
//! a key registered only afterwards is dead-lettered as `unknown_key`; once
//! the key is registered, replaying it applies it, and replaying it again is
//! recognised as a replay.

use sumud_control::signing::Jwk;
use sumud_shared::deadletter::Reason;
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_rejected_for_a_late_key_is_applied_once_when_replayed() {
    let p = Pipeline::start(300, no_four_eyes()).await;
    let carol = Jwk::generate("carol-1");
    p.send(
        &carol,
        &claims(
            CommandKind::Declare,
            "DL-1",
            Some(definition(&["JO-MN"], "10000")),
        ),
    )
    .await;
    let letters = p.dead_letters(1);
    assert_eq!(letters[0].reason, Reason::UnknownKey);

    let s = &p.env.settings;
    let unknown_key = sumud::deadletter_cmd::Filter {
        reason: Some("unknown_key".into()),
        ..Default::default()
    };
    assert_eq!(
        sumud::deadletter_cmd::list(s, &unknown_key, false).unwrap(),
        1
    );
    assert_eq!(
        sumud::deadletter_cmd::replay(s, &unknown_key, true)
            .await
            .unwrap(),
        1,
        "a dry run counts"
    );
    assert_eq!(p.state("DL-1").await, None, "a dry run publishes nothing");

    sumud_control::db::add_operator(
        &p.env.store,
        "carol-1",
        "carol",
        &carol.x,
        &["declare".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        sumud::deadletter_cmd::replay(s, &unknown_key, false)
            .await
            .unwrap(),
        1
    );
    wait_for("the replayed declaration", DEADLINE, || async {
        (p.state("DL-1").await.as_deref() == Some("active")).then_some(())
    })
    .await;

    // The same dead letter again: the command id was applied; nothing changes.
    sumud::deadletter_cmd::replay(s, &unknown_key, false)
        .await
        .unwrap();
    let letters = p.dead_letters(2);
    assert_eq!(letters[1].reason, Reason::Replayed);
    assert_eq!(
        p.count("SELECT count(*) FROM control.audit WHERE crisis_id = 'DL-1'")
            .await,
        1
    );
    p.stop().await;
}
