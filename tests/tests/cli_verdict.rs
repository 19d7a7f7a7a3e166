//! `sumud crisis …` tells an operator what control did with the command,
//! on the real broker and database, on both backends: a declaration by a
//! key with the role is applied (the crisis active at revision 1), a close
//! by a key without the close role is refused with `wrong_role` (exit 3),
//! and a command signed by a key control has never seen gets no verdict
//! (refused before its signature could be checked, so not recorded): the
//! wait ends with an error that says where to look.

use std::time::Duration;

use sumud::verdict::{self, Verdict};
use sumud_control::signing::Jwk;
use sumud_shared::events::control::CommandKind;
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, Backend};

async fn the_cli_tells_an_operator_what_control_did(backend: Backend) {
    let p = Pipeline::start_on(backend, 50, no_four_eyes()).await;
    let settings = &p.env.settings;
    let declared = sumud::crisis_cmd::publish(
        settings,
        &p.alice,
        CommandKind::Declare,
        "CLI-1",
        Some(definition(&["JO-MN"], "1000")),
        Some("a test declaration".into()),
    )
    .await
    .unwrap();
    let v = verdict::wait(&p.env.store, &p.alice.kid, &declared, DEADLINE)
        .await
        .unwrap();
    let Verdict::Applied {
        crisis_id,
        revision,
        state,
        ..
    } = &v
    else {
        panic!("the declaration was not applied: {v:?}");
    };
    assert_eq!(
        (crisis_id.as_str(), *revision, state.as_str()),
        ("CLI-1", 1, "active")
    );
    assert_eq!(v.exit_code(), 0);

    // Bob may approve and declare, not close.
    let closed =
        sumud::crisis_cmd::publish(settings, &p.bob, CommandKind::Close, "CLI-1", None, None)
            .await
            .unwrap();
    let v = verdict::wait(&p.env.store, &p.bob.kid, &closed, DEADLINE)
        .await
        .unwrap();
    assert!(
        matches!(&v, Verdict::Refused { reason, .. } if reason == "wrong_role"),
        "{v:?}"
    );
    assert_eq!(v.exit_code(), 3);
    assert_eq!(p.state("CLI-1").await.as_deref(), Some("active"));
    // A verdict is the signer's: bob's refusal is nothing under alice's key.
    assert!(verdict::verdict(&p.env.store, &p.alice.kid, &closed)
        .await
        .unwrap()
        .is_none());

    // A stranger's key: dead-lettered before any record, so no verdict.
    let stranger = Jwk::generate("stranger-1");
    let unknown =
        sumud::crisis_cmd::publish(settings, &stranger, CommandKind::Close, "CLI-1", None, None)
            .await
            .unwrap();
    // Once its dead letter is out (bob's refusal is the other), control
    // has judged it: still no verdict on record, and the wait says where
    // to look.
    let letters = p.dead_letters(2);
    assert!(
        letters
            .iter()
            .any(|d| d.reason == sumud_shared::deadletter::Reason::UnknownKey),
        "{letters:?}"
    );
    assert!(verdict::verdict(&p.env.store, &stranger.kid, &unknown)
        .await
        .unwrap()
        .is_none());
    let err = verdict::wait(&p.env.store, &stranger.kid, &unknown, Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sumud deadletter list"), "{err}");
    p.stop().await;
}

on_both_backends!(the_cli_tells_an_operator_what_control_did);
