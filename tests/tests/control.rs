//! The control service alone, against the real broker, on both backends
//! (PostgreSQL and the embedded default's SQLite file): signed commands in,
//! crisis lifecycle events out through the outbox, forged and replayed
//! commands dead-lettered, nothing lost or published twice across a crash.

use std::collections::BTreeSet;
use std::time::Duration;

use sumud_control::config::ControlConfig;
use sumud_control::signing::{self, Jwk};
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{CommandClaims, CommandKind, OperatorGrant};
use sumud_shared::events::crisis::{
    CrisisEvent, CrisisState, CRISIS_ACTIVATED, CRISIS_CLOSED, CRISIS_PROPOSED,
};
use sumud_tests::pipeline::{
    all_dead_letters, approval, claims, dead_letters, definition, no_four_eyes, operator,
    register_operators, send, send_jws, DEADLINE,
};
use sumud_tests::{on_both_backends, wait_for, Backend, Running, Stage, TestEnv};

/// Control on a fresh database of `backend`, with alice (declare, close)
/// and bob (approve, declare) registered.
struct Control {
    env: TestEnv,
    service: Running,
    alice: Jwk,
    bob: Jwk,
}

async fn start(backend: Backend, config: ControlConfig) -> Control {
    let env = TestEnv::with(backend).await;
    let app = sumud_control::App::build(env.settings.clone(), config)
        .await
        .expect("control builds");
    let (alice, bob) = register_operators(app.store()).await;
    let service = Running::spawn(|t| app.run(t));
    Control {
        env,
        service,
        alice,
        bob,
    }
}

impl Control {
    async fn state(&self, crisis: &str) -> Option<CrisisState> {
        sumud_control::db::crisis(&self.env.store, crisis)
            .await
            .unwrap()
            .map(|c| c.state)
    }

    async fn wait_state(&self, crisis: &str, state: CrisisState) {
        wait_for(
            &format!("{crisis} {}", state.as_str()),
            DEADLINE,
            || async { (self.state(crisis).await == Some(state)).then_some(()) },
        )
        .await;
    }

    /// Every crisis event control will publish for the commands sent so
    /// far: read once control has settled (`settle_control`).
    async fn all_crisis_events(&self) -> Vec<Envelope<CrisisEvent>> {
        settle_control(&self.env).await;
        all_crisis_events(&self.env)
    }

    /// Every dead letter control will write for the commands sent so far.
    async fn all_dead_letters(&self) -> Vec<sumud_shared::deadletter::DeadLetter> {
        settle_control(&self.env).await;
        all_dead_letters(&self.env)
    }

    /// The crisis events on the topic: reads until `expected` arrived or
    /// 20 s passed.
    fn crisis_events(&self, expected: usize) -> Vec<Envelope<CrisisEvent>> {
        self.env
            .read_topic(
                &self.env.settings.topics.crisis,
                expected,
                Duration::from_secs(20),
            )
            .into_iter()
            .map(|(_, b)| serde_json::from_slice(&b).expect("a crisis event"))
            .collect()
    }
}

/// Waits until control has judged every command on its topic (its group
/// committed to the end) and published every event it enqueued: what the
/// crisis and dead-letter topics hold then is all there will be.
async fn settle_control(env: &TestEnv) {
    let stage = Stage {
        service: "control",
        topic: &env.settings.topics.control,
        outbox: Some("control"),
    };
    env.settle(&[stage], DEADLINE).await;
}

/// Every crisis event on the topic now.
fn all_crisis_events(env: &TestEnv) -> Vec<Envelope<CrisisEvent>> {
    env.read_all(&env.settings.topics.crisis)
        .into_iter()
        .map(|(_, b)| serde_json::from_slice(&b).expect("a crisis event"))
        .collect()
}

async fn a_declaration_is_applied_and_published_once_and_a_replay_is_refused(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let declare = claims(
        CommandKind::Declare,
        "FL-1",
        Some(definition(&["JO-MA"], "250000")),
    );
    let jws = signing::sign(&declare, &c.alice).unwrap();
    send_jws(&c.env, "FL-1", jws.clone()).await;
    c.wait_state("FL-1", CrisisState::Active).await;
    send_jws(&c.env, "FL-1", jws).await; // the same command again
    send(&c.env, &c.alice, &claims(CommandKind::Close, "FL-1", None)).await;
    c.wait_state("FL-1", CrisisState::Closed).await;

    let events = c.all_crisis_events().await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec![CRISIS_ACTIVATED, CRISIS_CLOSED]);
    assert_eq!(events[0].data.command_id, declare.jti);
    assert_eq!(events[0].data.definition.areas, vec!["JO-MA".to_string()]);
    assert_eq!(events[1].data.state, CrisisState::Closed);
    let letters = c.all_dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, Reason::Replayed);
    let trail = sumud_control::db::audit_trail(&c.env.store, "FL-1")
        .await
        .unwrap();
    let outcomes: Vec<&str> = trail.iter().map(|t| t.5.as_str()).collect();
    assert_eq!(outcomes, vec!["activated", "closed"]);
    assert_eq!(
        c.env.count("SELECT count(*) FROM control.commands").await,
        2
    );
    c.service.stop().await;
}

async fn four_eyes_hold_a_large_declaration_until_another_principal_approves(backend: Backend) {
    let config = ControlConfig {
        four_eyes_threshold_minor: 1_000_000,
        ..ControlConfig::default()
    };
    let c = start(backend, config).await;
    let big = definition(&["JO-MN"], "5000000");
    send(
        &c.env,
        &c.bob,
        &claims(CommandKind::Declare, "FL-2", Some(big.clone())),
    )
    .await;
    c.wait_state("FL-2", CrisisState::Proposed).await;
    send(&c.env, &c.bob, &approval("FL-2", 1, &big)).await; // own proposal
    send(&c.env, &c.alice, &approval("FL-2", 1, &big)).await; // no approve role
    let mut reasons: Vec<Reason> = dead_letters(&c.env, 2).iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| r.code());
    assert_eq!(reasons, vec![Reason::FourEyesViolation, Reason::WrongRole]);
    assert_eq!(c.state("FL-2").await, Some(CrisisState::Proposed));

    let carol = operator(&c.env.store, "carol-1", "carol", &["approve"]).await;
    send(&c.env, &carol, &approval("FL-2", 1, &big)).await;
    c.wait_state("FL-2", CrisisState::Active).await;
    let types: Vec<String> = c
        .all_crisis_events()
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, vec![CRISIS_PROPOSED, CRISIS_ACTIVATED]);
    let trail = sumud_control::db::audit_trail(&c.env.store, "FL-2")
        .await
        .unwrap();
    assert_eq!(
        trail.iter().map(|t| t.5.as_str()).collect::<Vec<_>>(),
        vec!["proposed", "activated"]
    );
    assert_eq!(trail[1].2, "carol");
    c.service.stop().await;
}

async fn forged_revoked_and_stale_commands_are_dead_lettered_and_change_nothing(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let def = || Some(definition(&["JO-MN"], "1000"));
    send_jws(&c.env, "X1", String::new()).await; // unsigned
    let mut impostor = c.bob.clone();
    impostor.kid = "alice-1".into(); // bob's key under alice's kid
    send(
        &c.env,
        &impostor,
        &claims(CommandKind::Declare, "X2", def()),
    )
    .await;
    let mallory = Jwk::generate("mallory-1");
    send(&c.env, &mallory, &claims(CommandKind::Declare, "X3", def())).await;
    let dave = operator(&c.env.store, "dave-1", "dave", &["admin"]).await;
    assert!(sumud_control::db::revoke_operator(&c.env.store, "dave-1")
        .await
        .unwrap());
    send(&c.env, &dave, &claims(CommandKind::Declare, "X4", def())).await;
    let mut old = claims(CommandKind::Declare, "X5", def());
    old.iat -= 3600;
    send(&c.env, &c.alice, &old).await;
    send(&c.env, &c.alice, &claims(CommandKind::Declare, "X6", def())).await;
    c.wait_state("X6", CrisisState::Active).await;
    send(&c.env, &c.bob, &claims(CommandKind::Close, "X6", None)).await; // bob cannot close

    let mut reasons: Vec<&str> = dead_letters(&c.env, 7)
        .iter()
        .map(|l| l.reason.code())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "bad_signature",
            "expired",
            "revoked_key",
            "unknown_key",
            "unsigned",
            "wrong_role"
        ]
    );
    assert_eq!(c.env.count("SELECT count(*) FROM control.crises").await, 1);
    assert_eq!(c.env.count("SELECT count(*) FROM control.audit").await, 1);
    assert_eq!(c.state("X6").await, Some(CrisisState::Active));
    assert_eq!(c.all_crisis_events().await.len(), 1);
    c.service.stop().await;
}

/// Signed claims are not schema-checked on the way in; the crisis event a
/// command would publish is, so control never holds a crisis its consumers
/// must reject.
async fn a_command_whose_crisis_event_would_break_its_contract_is_refused(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    send(
        &c.env,
        &c.alice,
        &claims(
            CommandKind::Declare,
            "bad id!",
            Some(definition(&["JO-MN"], "1000")),
        ),
    )
    .await;
    let mut long_title = definition(&["JO-MN"], "1000");
    long_title.title = "t".repeat(201);
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Declare, "X7", Some(long_title)),
    )
    .await;
    // A command id long enough that the event id (key, id and type) would
    // pass the CloudEvents limit of 200 characters.
    let mut long_id = claims(
        CommandKind::Declare,
        "X9",
        Some(definition(&["JO-MN"], "1000")),
    );
    long_id.jti = "j".repeat(180);
    send(&c.env, &c.alice, &long_id).await;
    send(
        &c.env,
        &c.alice,
        &claims(
            CommandKind::Declare,
            "X8",
            Some(definition(&["JO-MN"], "1000")),
        ),
    )
    .await;
    c.wait_state("X8", CrisisState::Active).await;

    let letters = c.all_dead_letters().await;
    let reasons: Vec<Reason> = letters.iter().map(|l| l.reason).collect();
    assert_eq!(reasons, vec![Reason::InvalidCommand; 3], "{letters:#?}");
    assert!(letters.iter().all(|l| l.detail.contains("contract")));
    assert_eq!(c.env.count("SELECT count(*) FROM control.crises").await, 1);
    assert_eq!(c.env.count("SELECT count(*) FROM control.audit").await, 1);
    assert_eq!(c.all_crisis_events().await.len(), 1);
    c.service.stop().await;
}

async fn events_committed_before_a_crash_are_published_after_the_restart(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let crises: Vec<String> = (0..30).map(|i| format!("CR-{i:02}")).collect();
    for id in &crises {
        let def = Some(definition(&["JO-IR"], "1000"));
        send(&c.env, &c.alice, &claims(CommandKind::Declare, id, def)).await;
    }
    // Killed as soon as part of the stream is committed: its relay may not
    // have published what the handler committed.
    wait_for("a first part of the commands", DEADLINE, || async {
        (c.env.count("SELECT count(*) FROM control.crises").await >= 5).then_some(())
    })
    .await;
    let Control { env, service, .. } = c;
    service.kill().await;
    // The crash took the relay with it: what is published from here on is
    // the restarted service's doing, not a leftover relay's.
    wait_for("the killed service's relay to let go", DEADLINE, || async {
        env.outbox_relay_free("control").await.then_some(())
    })
    .await;

    let app = sumud_control::App::build(env.settings.clone(), no_four_eyes())
        .await
        .unwrap();
    let restarted = Running::spawn(|t| app.run(t));
    wait_for("every crisis", DEADLINE, || async {
        (env.count("SELECT count(*) FROM control.crises").await == 30).then_some(())
    })
    .await;
    wait_for("an empty outbox", DEADLINE, || async {
        (env.count("SELECT count(*) FROM control.outbox WHERE published_at IS NULL")
            .await
            == 0)
            .then_some(())
    })
    .await;
    settle_control(&env).await;
    let events = all_crisis_events(&env);
    // A crash between publishing and marking republishes a row: consumers
    // are idempotent on the event id. None may be missing, none may differ.
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let announced: BTreeSet<&str> = events.iter().map(|e| e.data.crisis_id.as_str()).collect();
    assert_eq!(ids.len(), 30, "one activation event per crisis");
    assert_eq!(announced, crises.iter().map(String::as_str).collect());
    assert!(events.iter().all(|e| e.event_type == CRISIS_ACTIVATED));
    assert_eq!(env.count("SELECT count(*) FROM control.commands").await, 30);
    // Redelivered commands after the crash are recognised, not dead-lettered.
    assert!(all_dead_letters(&env).is_empty());
    restarted.stop().await;
}

/// A declaration whose overrides pay every household nothing would make
/// entitlements of 0 that can never be instructed; it is refused at the
/// source, and the next declaration is applied as usual.
async fn a_declaration_that_pays_nothing_is_an_invalid_command(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let mut zero = definition(&["JO-MN"], "1000");
    zero.response.overrides.vertical_flat_minor = Some(0);
    zero.response.overrides.vertical_per_member_minor = Some(0);
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Declare, "Z0", Some(zero)),
    )
    .await;
    send(
        &c.env,
        &c.alice,
        &claims(
            CommandKind::Declare,
            "Z1",
            Some(definition(&["JO-MN"], "1000")),
        ),
    )
    .await;
    c.wait_state("Z1", CrisisState::Active).await;
    let letters = dead_letters(&c.env, 1);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].reason, Reason::InvalidCommand);
    assert!(
        letters[0].detail.contains("pays nothing"),
        "{}",
        letters[0].detail
    );
    assert_eq!(c.state("Z0").await, None);
    c.service.stop().await;
}

/// A minor unit of one currency is never compared with another's: one
/// count of minor units is within the JOD threshold and above the USD one;
/// a currency the deployment does not pay in, or one nobody pays in (gold),
/// is refused.
async fn each_currency_has_its_own_four_eyes_threshold_and_others_are_refused(backend: Backend) {
    let config = ControlConfig {
        four_eyes_threshold_minor: 1_000_000,
        other_currencies: std::collections::BTreeMap::from([("USD".to_owned(), 500_000)]),
        ..ControlConfig::default()
    };
    let c = start(backend, config).await;
    // 1,000,000 minor units: 1,000.000 JOD (at its threshold) and
    // 10,000.00 USD (twice its threshold).
    let jod = definition(&["JO-MN"], "1000");
    assert_eq!(jod.budget.minor, 1_000_000);
    let in_currency = |code: &str| {
        let mut d = jod.clone();
        d.budget.currency = code.to_owned();
        Some(d)
    };
    for (id, def) in [
        ("CUR-JOD", Some(jod.clone())),
        ("CUR-USD", in_currency("USD")),
        ("CUR-EUR", in_currency("EUR")),
        ("CUR-XAU", in_currency("XAU")),
    ] {
        send(&c.env, &c.alice, &claims(CommandKind::Declare, id, def)).await;
    }
    c.wait_state("CUR-JOD", CrisisState::Active).await;
    c.wait_state("CUR-USD", CrisisState::Proposed).await;
    let letters = dead_letters(&c.env, 2);
    let reasons: Vec<Reason> = letters.iter().map(|l| l.reason).collect();
    assert_eq!(reasons, vec![Reason::InvalidCommand; 2], "{letters:#?}");
    assert!(
        letters
            .iter()
            .any(|l| l.detail.contains("EUR is not accepted")),
        "{letters:#?}"
    );
    assert!(
        letters.iter().any(|l| l.detail.contains("XAU")),
        "{letters:#?}"
    );
    assert_eq!(c.state("CUR-EUR").await, None);
    assert_eq!(c.state("CUR-XAU").await, None);
    c.service.stop().await;
}

/// A valid, signed declaration keyed by another crisis id would land on
/// another partition than the rest of its crisis's commands, where a second
/// instance could judge it beside them: dead-lettered, nothing applied; the
/// same command keyed by its crisis is then applied.
async fn a_command_keyed_by_another_crisis_is_dead_lettered_and_changes_nothing(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let jws = signing::sign(
        &claims(
            CommandKind::Declare,
            "KEY-1",
            Some(definition(&["JO-MN"], "1000")),
        ),
        &c.alice,
    )
    .unwrap();

    send_jws(&c.env, "KEY-2", jws.clone()).await;

    let letters = dead_letters(&c.env, 1);
    assert_eq!(letters[0].reason, Reason::KeyMismatch, "{letters:#?}");
    assert_eq!(c.env.count("SELECT count(*) FROM control.crises").await, 0);
    send_jws(&c.env, "KEY-1", jws).await;
    c.wait_state("KEY-1", CrisisState::Active).await;
    c.service.stop().await;
}

/// The first declaration of a crisis id wins: a second one, judged while
/// the first was not yet visible (two instances, `FOR UPDATE` on a missing
/// row locking nothing), writes nothing over it.
async fn a_second_first_declaration_of_one_crisis_writes_nothing_over_the_first(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    send(
        &c.env,
        &c.alice,
        &claims(
            CommandKind::Declare,
            "RACE-1",
            Some(definition(&["JO-MN"], "1000")),
        ),
    )
    .await;
    c.wait_state("RACE-1", CrisisState::Active).await;
    let first = sumud_control::db::crisis(&c.env.store, "RACE-1")
        .await
        .unwrap()
        .unwrap();

    // What the losing instance would write: another definition, as new.
    let mut second = first.clone();
    second.definition.budget.minor *= 100;
    second.declared_by = "bob".into();
    let mut tx = c.env.store.begin().await.unwrap();
    let written = sumud_control::db::save_crisis(&mut tx, &second, None, true)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert!(!written, "the second declaration reports it lost");
    let stored = sumud_control::db::crisis(&c.env.store, "RACE-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first);
    c.service.stop().await;
}

/// Control with four eyes above 1,000 JOD and crisis `id` active at 500 JOD
/// (declared by alice over JO-MN).
async fn active_small(backend: Backend, id: &str) -> Control {
    let config = ControlConfig {
        four_eyes_threshold_minor: 1_000_000,
        ..ControlConfig::default()
    };
    let c = start(backend, config).await;
    let small = definition(&["JO-MN"], "500");
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Declare, id, Some(small)),
    )
    .await;
    c.wait_state(id, CrisisState::Active).await;
    c
}

impl Control {
    /// Waits until what `id` has pending has this budget (major units).
    async fn wait_pending(&self, id: &str, budget_major: &str) {
        let want = definition(&["JO-MN"], budget_major).budget;
        wait_for(
            &format!("{id} pending {budget_major}"),
            DEADLINE,
            || async {
                let c = sumud_control::db::crisis(&self.env.store, id)
                    .await
                    .unwrap()?;
                (c.pending.map(|p| p.budget) == Some(want.clone())).then_some(())
            },
        )
        .await;
    }

    async fn crisis(&self, id: &str) -> sumud_control::lifecycle::Crisis {
        sumud_control::db::crisis(&self.env.store, id)
            .await
            .unwrap()
            .unwrap()
    }
}

/// The attack: bob reviews and approves a raise to 2,000 JOD; before his
/// approval is judged, the proposer replaces it with 9,000 JOD. Before
/// approvals named what they approve, bob's approval installed 9,000.
async fn an_approval_in_flight_never_lands_on_a_replaced_proposal(backend: Backend) {
    let c = active_small(backend, "FL-7").await;
    let reviewed = definition(&["JO-MN"], "2000");
    let larger = definition(&["JO-MN"], "9000");
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Amend, "FL-7", Some(reviewed.clone())),
    )
    .await;
    c.wait_pending("FL-7", "2000").await;
    let bobs = approval("FL-7", 2, &reviewed); // signed now, judged later
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Amend, "FL-7", Some(larger)),
    )
    .await;
    c.wait_pending("FL-7", "9000").await;
    send(&c.env, &c.bob, &bobs).await;

    let letters = dead_letters(&c.env, 1);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, Reason::StaleApproval);
    let now = c.crisis("FL-7").await;
    assert_eq!(now.revision, 1);
    assert_eq!(now.definition.budget.minor, 500_000, "nothing was approved");
    assert_eq!(now.pending.map(|p| p.budget.minor), Some(9_000_000));
    // The replacement said what it set aside.
    let events = c.crisis_events(3);
    assert_eq!(events.len(), 3, "activated and two proposals");
    let superseded = events[2]
        .data
        .superseded
        .as_ref()
        .expect("names the replaced proposal");
    assert_eq!(superseded.revision, 2);
    assert_eq!(superseded.digest, bobs.approves.as_ref().unwrap().digest);
    c.service.stop().await;
}

/// The attack: an approval refused when it arrived ("nothing is awaiting
/// approval") is kept by whoever can write the control topic and replayed,
/// within the command age window, once the proposal it names is pending.
/// Before refused command ids were recorded, the replay applied.
async fn a_refused_command_can_never_take_effect_later(backend: Backend) {
    let c = active_small(backend, "FL-8").await;
    let raise = definition(&["JO-MN"], "2000");
    let early = approval("FL-8", 2, &raise);
    let jws = signing::sign(&early, &c.bob).unwrap();
    send_jws(&c.env, "FL-8", jws.clone()).await; // nothing pending yet
    let first = dead_letters(&c.env, 1);
    assert_eq!(first[0].reason, Reason::InvalidTransition, "{first:?}");
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Amend, "FL-8", Some(raise)),
    )
    .await;
    c.wait_pending("FL-8", "2000").await;
    send_jws(&c.env, "FL-8", jws).await; // the replay, now that it would fit

    let letters = dead_letters(&c.env, 2);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1].reason, Reason::Replayed);
    let now = c.crisis("FL-8").await;
    assert_eq!((now.revision, now.definition.budget.minor), (1, 500_000));
    assert!(
        now.pending.is_some(),
        "the raise still waits for a real approval"
    );
    let refused = sumud_control::db::refusals(&c.env.store, "FL-8")
        .await
        .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].1.as_str(), refused[0].3.as_str()),
        ("crisis.approve", "invalid_transition")
    );
    c.service.stop().await;
}

/// The attack: a rival operator key writes commands under the ids another
/// operator's client will use next (the ids are on the topic for anyone
/// who reads it, and a third-party client may count them). One is refused
/// (bob may not close), one applies (bob declares another crisis). Before
/// commands were judged per key, alice's later commands under those ids
/// were dead-lettered as replays: her close of FL-10 never took effect.
async fn a_command_id_another_key_used_is_no_veto(backend: Backend) {
    let c = active_small(backend, "FL-10").await;
    let mut bobs_close = claims(CommandKind::Close, "FL-10", None);
    bobs_close.jti = "ops-0001".into();
    send(&c.env, &c.bob, &bobs_close).await; // refused: bob may not close
    let first = dead_letters(&c.env, 1);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_ne!(first[0].reason, Reason::Replayed, "{first:?}");
    let mut bobs_declare = claims(
        CommandKind::Declare,
        "FL-11",
        Some(definition(&["JO-MA"], "500")),
    );
    bobs_declare.jti = "ops-0002".into();
    send(&c.env, &c.bob, &bobs_declare).await; // applies
    c.wait_state("FL-11", CrisisState::Active).await;

    // Alice's client sends under the same two ids.
    let mut alices_close = claims(CommandKind::Close, "FL-11", None);
    alices_close.jti = "ops-0002".into();
    send(&c.env, &c.alice, &alices_close).await;
    c.wait_state("FL-11", CrisisState::Closed).await;
    let mut alices_other = claims(CommandKind::Close, "FL-10", None);
    alices_other.jti = "ops-0001".into();
    send(&c.env, &c.alice, &alices_other).await;
    c.wait_state("FL-10", CrisisState::Closed).await;

    // Still judged once per key: bob's refused close sent again is a replay.
    send(&c.env, &c.bob, &bobs_close).await;
    let letters = dead_letters(&c.env, 2);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1].reason, Reason::Replayed, "{letters:?}");
    // Every crisis event has an id of its own.
    let events = c.crisis_events(4);
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((events.len(), ids.len()), (4, 4), "{events:?}");
    c.service.stop().await;
}

/// The attack: an older pending raise outlives a newer amendment that
/// applied directly; approving it later installed the older definition
/// (its areas, its budget) over the newer one.
async fn an_amendment_applied_directly_supersedes_the_pending_one_and_says_so(backend: Backend) {
    let c = active_small(backend, "FL-9").await;
    let raise = definition(&["JO-MN"], "2000");
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Amend, "FL-9", Some(raise.clone())),
    )
    .await;
    c.wait_pending("FL-9", "2000").await;
    let newer = definition(&["JO-MN", "JO-KA"], "400");
    send(
        &c.env,
        &c.alice,
        &claims(CommandKind::Amend, "FL-9", Some(newer.clone())),
    )
    .await;
    wait_for("revision 2", DEADLINE, || async {
        (c.crisis("FL-9").await.revision == 2).then_some(())
    })
    .await;
    send(&c.env, &c.bob, &approval("FL-9", 2, &raise)).await;

    let letters = dead_letters(&c.env, 1);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, Reason::InvalidTransition);
    let now = c.crisis("FL-9").await;
    assert_eq!(now.revision, 2);
    assert_eq!(now.definition, newer, "the newer amendment stands");
    assert_eq!(now.pending, None);
    let events = c.crisis_events(3);
    let amended = &events[2].data;
    assert_eq!(amended.revision, 2);
    assert_eq!(
        amended.superseded.as_ref().map(|p| p.digest.clone()),
        Some(sumud_shared::events::crisis::definition_digest(&raise)),
        "the amendment names the proposal it set aside"
    );
    c.service.stop().await;
}

/// An `operator.*` command on `kid`.
fn operator_cmd(cmd: CommandKind, kid: &str, x: &str, roles: &[&str]) -> CommandClaims {
    let mut c = claims(cmd, "", None);
    c.operator = Some(OperatorGrant {
        kid: kid.into(),
        principal: kid.split('-').next().unwrap_or(kid).into(),
        x: x.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    });
    c
}

async fn key_state(c: &Control, kid: &str) -> Option<(String, bool)> {
    sumud_control::db::operator_key(&c.env.store, kid)
        .await
        .unwrap()
        .map(|k| (k.public_key, k.revoked_at.is_some()))
}

/// The attacks: a non-admin grants itself (or a friend) admin; a revoked
/// key id is re-registered under another public key (before: `operators
/// add` silently un-revoked it and swapped the key, with no trace); the
/// last admin locks everyone out. Operators change only by an admin's signed
/// command, each recorded with who signed it.
async fn operators_change_only_by_an_admins_signed_command(backend: Backend) {
    let c = start(backend, no_four_eyes()).await;
    let root = Jwk::generate("root-1");
    let admin = ["admin".to_owned()];
    let first = sumud_control::db::NewOperator {
        key_id: "root-1",
        principal: "root",
        public_key: &root.x,
        roles: &admin,
    };
    assert!(
        sumud_control::db::bootstrap_admin(&c.env.store, first, "root")
            .await
            .unwrap()
    );
    let other = Jwk::generate("root-2");
    let second = sumud_control::db::NewOperator {
        key_id: "root-2",
        public_key: &other.x,
        ..first
    };
    assert!(
        !sumud_control::db::bootstrap_admin(&c.env.store, second, "root")
            .await
            .unwrap(),
        "a second bootstrap is refused while an admin is active"
    );

    let mallory = Jwk::generate("mallory-1");
    send(
        &c.env,
        &c.bob,
        &operator_cmd(
            CommandKind::OperatorAdd,
            "mallory-1",
            &mallory.x,
            &["admin"],
        ),
    )
    .await;
    let carol = Jwk::generate("carol-1");
    send(
        &c.env,
        &root,
        &operator_cmd(CommandKind::OperatorAdd, "carol-1", &carol.x, &["approve"]),
    )
    .await;
    send(
        &c.env,
        &root,
        &operator_cmd(CommandKind::OperatorRevoke, "carol-1", "", &[]),
    )
    .await;
    let swapped = Jwk::generate("carol-1");
    send(
        &c.env,
        &root,
        &operator_cmd(CommandKind::OperatorAdd, "carol-1", &swapped.x, &["admin"]),
    )
    .await;
    send(
        &c.env,
        &root,
        &operator_cmd(CommandKind::OperatorRevoke, "root-1", "", &[]),
    )
    .await;

    let mut reasons: Vec<Reason> = dead_letters(&c.env, 3).iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| r.code());
    assert_eq!(
        reasons,
        vec![
            Reason::InvalidTransition,
            Reason::InvalidTransition,
            Reason::WrongRole
        ]
    );
    assert_eq!(key_state(&c, "mallory-1").await, None);
    assert_eq!(
        key_state(&c, "carol-1").await,
        Some((carol.x.clone(), true)),
        "revoked stays revoked, same key"
    );
    assert_eq!(
        key_state(&c, "root-1").await,
        Some((root.x.clone(), false)),
        "the last admin stays"
    );
    // Nor can a direct write bring the key back (the schema refuses).
    let direct =
        sumud_control::db::add_operator(&c.env.store, "carol-1", "carol", &swapped.x, &admin).await;
    assert!(direct.is_err(), "{direct:?}");
    let unrevoke = match &c.env.store {
        sumud_shared::db::Store::Postgres(pool) => sqlx::query(
            "UPDATE control.operator_keys SET revoked_at = NULL WHERE key_id = 'carol-1'",
        )
        .execute(pool)
        .await
        .map(|_| ()),
        sumud_shared::db::Store::Sqlite(pool) => sqlx::query(
            "UPDATE control.operator_keys SET revoked_at = NULL WHERE key_id = 'carol-1'",
        )
        .execute(pool)
        .await
        .map(|_| ()),
    };
    assert!(unrevoke.is_err(), "the schema keeps a revoked key revoked");
    // The revoked key signs nothing any more.
    send(
        &c.env,
        &carol,
        &claims(
            CommandKind::Declare,
            "CR-1",
            Some(definition(&["JO-MN"], "10")),
        ),
    )
    .await;
    let letters = dead_letters(&c.env, 4);
    assert!(
        letters.iter().any(|l| l.reason == Reason::RevokedKey),
        "{letters:?}"
    );

    let changes = sumud_control::db::operator_changes(&c.env.store)
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|(_, kind, key, _, by, _)| (kind.as_str(), key.as_str(), by.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("setup.add", "alice-1", "(setup)"),
            ("setup.add", "bob-1", "(setup)"),
            ("operator.bootstrap", "root-1", "root"),
            ("operator.add", "carol-1", "root"),
            ("operator.revoke", "carol-1", "root"),
        ]
    );
    c.service.stop().await;
}

on_both_backends!(
    a_command_id_another_key_used_is_no_veto,
    operators_change_only_by_an_admins_signed_command,
    an_approval_in_flight_never_lands_on_a_replaced_proposal,
    a_refused_command_can_never_take_effect_later,
    an_amendment_applied_directly_supersedes_the_pending_one_and_says_so,
    a_command_keyed_by_another_crisis_is_dead_lettered_and_changes_nothing,
    a_second_first_declaration_of_one_crisis_writes_nothing_over_the_first,
    each_currency_has_its_own_four_eyes_threshold_and_others_are_refused,
    a_declaration_that_pays_nothing_is_an_invalid_command,
    a_command_whose_crisis_event_would_break_its_contract_is_refused,
    a_declaration_is_applied_and_published_once_and_a_replay_is_refused,
    four_eyes_hold_a_large_declaration_until_another_principal_approves,
    forged_revoked_and_stale_commands_are_dead_lettered_and_change_nothing,
    events_committed_before_a_crash_are_published_after_the_restart,
);
