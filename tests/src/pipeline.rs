//! A whole pipeline in one test process: registry, control and eligibility
//! (and, on request, disbursement and the provider simulator), with two
//! operators registered, plus helpers to sign commands and to compute the
//! expected caseload independently of the services' SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use sumud_control::config::ControlConfig;
use sumud_control::signing::{self, Jwk};
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::deadletter::DeadLetter;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::control::{CommandClaims, CommandKind, SignedCommand, CONTROL_COMMAND};
use sumud_shared::events::crisis::{
    CrisisDefinition, Hazard, Response, ResponseOverrides, Severity,
};
use sumud_shared::events::household::Household;
use sumud_shared::money::Money;
use sumud_shared::synthetic;

use crate::watchdog::phase;
use crate::{wait_for, Backend, Running, TestEnv};

/// How far down the pipeline a test runs.
enum Stages {
    /// Registry and control.
    Control,
    /// And eligibility.
    Eligibility,
    /// And disbursement and the provider simulator.
    Payments(DisbursementConfig, Behaviour),
}

/// How long scenario steps may take.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// Seed of the synthetic registry.
pub const SEED: u64 = 77;

/// The three services of this scenario, running in-process.
pub struct Pipeline {
    /// The private database and topics.
    pub env: TestEnv,
    /// Services, stopped in reverse order.
    pub services: Vec<Running>,
    /// Operator with declare and close roles.
    pub alice: Jwk,
    /// Operator with approve and declare roles.
    pub bob: Jwk,
    /// The synthetic registry as published.
    pub households: Vec<Household>,
    /// The providers' signing keys, registered with disbursement (empty
    /// without payments): a test reporting as a provider signs with them.
    pub provider_keys: BTreeMap<String, Jwk>,
}

impl Pipeline {
    /// Registry, control and eligibility on a fresh registry of `n` households.
    pub async fn start(n: u64, config: ControlConfig) -> Pipeline {
        Self::start_full(Backend::Postgres, n, config, Stages::Eligibility).await
    }

    /// Registry, control and eligibility on `backend`.
    pub async fn start_on(backend: Backend, n: u64, config: ControlConfig) -> Pipeline {
        Self::start_full(backend, n, config, Stages::Eligibility).await
    }

    /// Registry and control only, on `backend`: the services an early
    /// warning reaches before eligibility (start the alerts service with
    /// [`Pipeline::start_alerts`]).
    pub async fn start_early_warning(backend: Backend, n: u64, config: ControlConfig) -> Pipeline {
        Self::start_full(backend, n, config, Stages::Control).await
    }

    /// The same plus disbursement and the provider simulator.
    pub async fn start_with_payments(
        n: u64,
        config: ControlConfig,
        disbursement: DisbursementConfig,
        behaviour: Behaviour,
    ) -> Pipeline {
        Self::start_with_payments_on(Backend::Postgres, n, config, disbursement, behaviour).await
    }

    /// [`Pipeline::start_with_payments`] on `backend`.
    pub async fn start_with_payments_on(
        backend: Backend,
        n: u64,
        config: ControlConfig,
        disbursement: DisbursementConfig,
        behaviour: Behaviour,
    ) -> Pipeline {
        Self::start_full(
            backend,
            n,
            config,
            Stages::Payments(disbursement, behaviour),
        )
        .await
    }

    /// A one-tranche crisis `crisis` in `areas`, on a registry of `n`, paid
    /// as far as it goes by a provider that refuses `permanent_rate` of the
    /// payments for good (decided by its seed, not by the code under
    /// test); returns once every payment is final, so each refusal has
    /// raised its verification task.
    pub async fn paid_once_with_refusals(
        backend: Backend,
        n: u64,
        crisis: &str,
        areas: &[&str],
        permanent_rate: f64,
    ) -> Pipeline {
        let behaviour = Behaviour {
            permanent_reject_rate: permanent_rate,
            ..Behaviour::honest()
        };
        let schedule = DisbursementConfig {
            day_seconds: 1.0,
            tick_ms: 100,
            max_attempts: 1,
            ..DisbursementConfig::default()
        };
        let p = Self::start_with_payments_on(backend, n, no_four_eyes(), schedule, behaviour).await;
        let entitled = expected(&p.households, areas).len() as i64;
        let mut def = definition(areas, "10000000");
        def.response.overrides.tranches = Some(1);
        p.send(&p.alice, &claims(CommandKind::Declare, crisis, Some(def)))
            .await;
        p.wait_count(
            "every payment final",
            "SELECT count(*) FROM disbursement.instructions WHERE status IN ('succeeded', 'failed')",
            entitled,
        )
        .await;
        p
    }

    async fn start_full(
        backend: Backend,
        n: u64,
        config: ControlConfig,
        stages: Stages,
    ) -> Pipeline {
        let env = TestEnv::with(backend).await;
        phase(format!(
            "pipeline on {backend:?}: registry of {n}, services starting"
        ));
        let households: Vec<Household> = (0..n)
            .map(|i| synthetic::household(AreaCatalog::default_catalog(), SEED, i))
            .collect();
        sumud::registry_cmd::publish_synthetic(&env.settings, n, SEED, true)
            .await
            .unwrap();
        let registry = sumud_registry::App::build(env.settings.clone())
            .await
            .unwrap()
            .with_match_key(Some(match_secret()));
        let control = sumud_control::App::build(env.settings.clone(), config)
            .await
            .unwrap();
        let (alice, bob) = register_operators(control.store()).await;
        let mut services = vec![
            Running::spawn(|t| registry.run(t)),
            Running::spawn(|t| control.run(t)),
        ];
        if !matches!(stages, Stages::Control) {
            let eligibility = sumud_eligibility::App::build(env.settings.clone())
                .await
                .unwrap();
            services.push(Running::spawn(|t| eligibility.run(t)));
        }
        let mut provider_keys = BTreeMap::new();
        if let Stages::Payments(disbursement, mut behaviour) = stages {
            let d = sumud_disbursement::App::build(env.settings.clone(), disbursement)
                .await
                .unwrap();
            provider_keys = register_providers(d.store()).await;
            behaviour.keys = provider_keys.clone();
            let sim = sumud_provider_sim::App::build(env.settings.clone(), behaviour)
                .await
                .unwrap();
            services.push(Running::spawn(|t| d.run(t)));
            services.push(Running::spawn(|t| sim.run(t)));
        }
        let p = Pipeline {
            env,
            services,
            alice,
            bob,
            households,
            provider_keys,
        };
        phase("pipeline: waiting for the registry to be stored");
        p.wait_count(
            "the registry",
            "SELECT count(*) FROM registry.households",
            n as i64,
        )
        .await;
        phase("pipeline: started");
        p
    }

    /// Starts the alerts service with its own key registered (declare and
    /// close roles) under the principal `early-warning`, acting by `rules`.
    pub async fn start_alerts(&mut self, rules: sumud_alerts::rules::RuleBook) -> Jwk {
        let senders = sumud_alerts::senders::SenderBook::default_book();
        self.start_alerts_trusting(rules, senders).await
    }

    /// The alerts service trusting exactly `senders`.
    pub async fn start_alerts_trusting(
        &mut self,
        rules: sumud_alerts::rules::RuleBook,
        senders: sumud_alerts::senders::SenderBook,
    ) -> Jwk {
        let key = operator(
            &self.env.store,
            "alerts-1",
            "early-warning",
            &["declare", "close"],
        )
        .await;
        let config = sumud_alerts::config::AlertsConfig {
            key: key.clone(),
            rules,
            senders,
        };
        let app = sumud_alerts::App::build(self.env.settings.clone(), config)
            .await
            .unwrap();
        self.services.push(Running::spawn(|t| app.run(t)));
        key
    }

    /// Publishes an event on the alerts topic.
    pub async fn publish_alert<T: serde::Serialize>(&self, key: &str, e: &Envelope<T>) {
        self.env
            .publish(&self.env.settings.topics.alerts, key, &e.to_bytes())
            .await;
    }

    /// Stops every service gracefully, all at once as a deployment's
    /// processes stop: each is told first, then each is awaited, so the
    /// stop takes as long as the slowest service, not the sum of them.
    pub async fn stop(mut self) {
        let started = std::time::Instant::now();
        for s in &self.services {
            s.cancel();
        }
        while let Some(s) = self.services.pop() {
            s.stop().await;
        }
        crate::watchdog::phase(format!(
            "pipeline: services stopped in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }

    /// See the scenario tests.
    pub async fn count(&self, sql: &str) -> i64 {
        self.env.count(sql).await
    }

    /// See the scenario tests.
    pub async fn wait_count(&self, what: &str, sql: &str, expected: i64) {
        wait_for(what, DEADLINE, || async {
            (self.count(sql).await == expected).then_some(())
        })
        .await;
    }

    /// See the scenario tests.
    pub async fn send(&self, key: &Jwk, claims: &CommandClaims) {
        send(&self.env, key, claims).await;
    }

    /// See the scenario tests.
    pub async fn send_jws(&self, crisis_id: &str, jws: String) {
        send_jws(&self.env, crisis_id, jws).await;
    }

    /// See the scenario tests.
    pub fn dead_letters(&self, expected: usize) -> Vec<DeadLetter> {
        dead_letters(&self.env, expected)
    }

    /// Publishes a household upsert on the registry topic, as the social
    /// registry would.
    pub async fn publish_household(&self, h: &Household) {
        let e = Envelope::new(
            "urn:test",
            sumud_shared::events::household::HOUSEHOLD_UPSERTED,
            Some(h.household_id.clone()),
            h,
        );
        self.env
            .publish(
                &self.env.settings.topics.registry,
                &h.household_id,
                &e.to_bytes(),
            )
            .await;
    }

    /// Asserts that disbursement's reservations match its live instructions
    /// and stay within the crisis budget; returns (budget, reserved).
    pub async fn assert_budget_holds(&self, crisis: &str) -> (i64, i64) {
        let (budget, reserved, live) = sumud_disbursement::db::budget(&self.env.store, crisis)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("disbursement does not know crisis {crisis}"));
        assert_eq!(
            reserved, live,
            "{crisis}: reservations match live instructions"
        );
        assert!(
            reserved <= budget,
            "{crisis}: reserved {reserved} within {budget}"
        );
        (budget, reserved)
    }

    /// See the scenario tests.
    pub async fn state(&self, crisis: &str) -> Option<String> {
        sumud_control::db::crisis(&self.env.store, crisis)
            .await
            .unwrap()
            .map(|c| c.state.as_str().to_owned())
    }

    /// See the scenario tests.
    pub async fn entitlements(&self, crisis: &str) -> BTreeMap<String, (String, String, i64)> {
        const SQL: &str = "SELECT household_id, kind, status, amount_minor \
                           FROM eligibility.entitlements WHERE crisis_id = $1";
        let rows: Vec<(String, String, String, i64)> =
            sumud_shared::on_store!(&self.env.store, pool => sqlx::query_as(SQL)
                .bind(crisis)
                .fetch_all(pool)
                .await)
            .unwrap();
        rows.into_iter()
            .map(|(h, k, s, a)| (h, (k, s, a)))
            .collect()
    }
}

/// The scenarios' two operators, registered with control: alice
/// (declare, close) and bob (approve, declare), so four-eyes approvals have
/// a second principal.
pub async fn register_operators(store: &sumud_shared::db::Store) -> (Jwk, Jwk) {
    let alice = operator(store, "alice-1", "alice", &["declare", "close"]).await;
    let bob = operator(store, "bob-1", "bob", &["approve", "declare"]).await;
    (alice, bob)
}

/// The synthetic registry's providers, each registered with disbursement
/// with a fresh signing key; returns the private keys by provider (the
/// simulator signs with them, as a test reporting as a provider must).
pub async fn register_providers(store: &sumud_shared::db::Store) -> BTreeMap<String, Jwk> {
    let mut keys = BTreeMap::new();
    for provider in sumud_shared::synthetic::PROVIDERS {
        let key = Jwk::generate(&format!("{provider}-1"));
        sumud_disbursement::db::add_provider(store, provider, Some((&key.kid, &key.x)))
            .await
            .expect("register a provider");
        keys.insert(provider.to_owned(), key);
    }
    keys
}

/// A fresh key `kid` for `principal`, registered with control with `roles`.
pub async fn operator(
    store: &sumud_shared::db::Store,
    kid: &str,
    principal: &str,
    roles: &[&str],
) -> Jwk {
    let key = Jwk::generate(kid);
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    sumud_control::db::add_operator(store, kid, principal, &key.x, &roles)
        .await
        .expect("register an operator");
    key
}

/// Signs `claims` with `key` and publishes the command on the control topic.
pub async fn send(env: &TestEnv, key: &Jwk, claims: &CommandClaims) {
    let jws = signing::sign(claims, key).unwrap();
    send_jws(env, claims.subject(), jws).await;
}

/// Publishes a command as given (forged, replayed or unsigned ones too).
pub async fn send_jws(env: &TestEnv, crisis_id: &str, jws: String) {
    let e = Envelope::new(
        "urn:test",
        CONTROL_COMMAND,
        Some(crisis_id.into()),
        SignedCommand { jws },
    );
    env.publish(&env.settings.topics.control, crisis_id, &e.to_bytes())
        .await;
}

/// Every dead letter on the topic now: after [`TestEnv::settle`], every
/// one the input sent so far will ever produce.
pub fn all_dead_letters(env: &TestEnv) -> Vec<DeadLetter> {
    env.read_all(&env.settings.topics.deadletter)
        .into_iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Envelope<DeadLetter>>(&b)
                .expect("a dead letter")
                .data
        })
        .collect()
}

/// The dead letters so far: reads until `expected` arrived or 30 s passed
/// (to prove there are no others, settle and take [`all_dead_letters`]).
pub fn dead_letters(env: &TestEnv, expected: usize) -> Vec<DeadLetter> {
    env.read_topic(
        &env.settings.topics.deadletter,
        expected,
        Duration::from_secs(30),
    )
    .into_iter()
    .map(|(_, b)| {
        serde_json::from_slice::<Envelope<DeadLetter>>(&b)
            .unwrap()
            .data
    })
    .collect()
}

/// Budgets in these scenarios are large; four eyes has its own test.
pub fn no_four_eyes() -> ControlConfig {
    ControlConfig {
        four_eyes_threshold_minor: i64::MAX / 4,
        ..ControlConfig::default()
    }
}

/// The agencies' shared match-key secret of the scenarios' registries
/// (base64url of 32 bytes).
pub const MATCH_SECRET: &str = "c3VtdWQtdGVzdC1tYXRjaC1rZXktc2VjcmV0LTMyYnl0ZXM";

/// [`MATCH_SECRET`], parsed.
pub fn match_secret() -> sumud_shared::match_key::MatchKeySecret {
    sumud_shared::match_key::MatchKeySecret::parse(MATCH_SECRET).expect("a 32-byte secret")
}

/// A severe flood declaration over `areas` with a budget in JOD.
pub fn definition(areas: &[&str], budget_major: &str) -> CrisisDefinition {
    CrisisDefinition {
        title: "Flash floods in the south".into(),
        hazard: Hazard::Flood,
        severity: Severity::Severe,
        areas: areas.iter().map(|a| a.to_string()).collect(),
        response: Response {
            playbook: "flood-standard".into(),
            overrides: ResponseOverrides::default(),
        },
        budget: Money::parse_major(budget_major, "JOD").unwrap(),
        starts_on: "2026-12-01".parse().unwrap(),
        ends_on: "2027-03-01".parse().unwrap(),
    }
}

/// Fresh command claims issued now.
pub fn claims(cmd: CommandKind, crisis: &str, body: Option<CrisisDefinition>) -> CommandClaims {
    CommandClaims {
        approves: None,
        operator: None,
        scope: None,
        propose: false,
        jti: uuid::Uuid::new_v4().to_string(),
        iat: Utc::now().timestamp(),
        cmd,
        crisis_id: crisis.into(),
        body,
        note: None,
        trigger: None,
    }
}

/// An approval of `def`, proposed as `revision` of `crisis`, naming it as
/// its signer reviewed it (the proposal's revision and digest).
pub fn approval(crisis: &str, revision: i32, def: &CrisisDefinition) -> CommandClaims {
    let mut a = claims(CommandKind::Approve, crisis, None);
    a.approves = Some(sumud_shared::events::control::ApprovalTarget {
        revision,
        digest: sumud_shared::events::crisis::definition_digest(def),
    });
    a
}

/// The caseload computed independently of the service's SQL: households in
/// the areas, enrolled in NAF-CASH (vertical) or under the severe-flood
/// threshold of 30 + 5 (horizontal), priced with the severe factor 1.25.
pub fn expected(households: &[Household], areas: &[&str]) -> BTreeMap<String, (String, i64)> {
    let within = |code: &str| {
        areas
            .iter()
            .any(|a| code == *a || code.starts_with(&format!("{a}-")))
    };
    households
        .iter()
        .filter(|h| within(&h.area_code))
        .filter_map(|h| {
            let m = i64::from(h.members);
            if h.programmes.iter().any(|p| p == "NAF-CASH") {
                Some((
                    h.household_id.clone(),
                    ("vertical".to_string(), (62_500 + 12_500 * m).min(150_000)),
                ))
            } else if h.welfare_score < 35.0 {
                Some((
                    h.household_id.clone(),
                    ("horizontal".to_string(), (50_000 + 10_000 * m).min(125_000)),
                ))
            } else {
                None
            }
        })
        .collect()
}
