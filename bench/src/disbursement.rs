//! Disbursement (issue 4): a crisis with N entitled households (400,000 by
//! default, one tranche due at once) and the time from its activation event
//! being acknowledged by Kafka to the last payment instruction acknowledged
//! by Kafka, through the real `sumud-disbursement` binary — against the raw
//! baseline of rdkafka producing the same number of messages of the same
//! size, with the same producer settings, to a topic created the same way,
//! measured in the same run.
//!
//! The registry is written straight into `registry.households` with COPY and
//! the entitlements straight into the service's projection
//! (`disbursement.entitlements`), with the crisis as `proposed`; none of
//! that is timed. The service consumes `org.sumud.crisis.activated`, the
//! scheduler creates every instruction (reserving each amount against the
//! budget and recording its outbox batch in the same transaction) and the
//! relay publishes each committed batch, marking it only after the broker
//! has acknowledged every message of it.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use sumud_disbursement::db::InstructionRow;
use sumud_disbursement::instruction_event::instruction_event;
use sumud_shared::config::Settings;
use sumud_shared::envelope::Envelope;
use sumud_shared::events::crisis::{
    CrisisDefinition, CrisisEvent, CrisisState, Hazard, Response, ResponseOverrides, Severity,
    CRISIS_ACTIVATED,
};
use sumud_shared::kafka::producer::EventProducer;
use sumud_shared::money::Money;
use sumud_tests::TestEnv;

use crate::harness::*;

const CRISIS: &str = "BENCH-PAY-1";
const WARMUP: &str = "BENCH-PAY-WARMUP";
const WARMUP_HOUSEHOLDS: i64 = 50;
const CURRENCY: &str = "JOD";

/// Options of the benchmark.
pub struct Options {
    /// Households in the registry, every one entitled in the crisis.
    pub households: u64,
    /// Tranches per entitlement (only the first is due at activation).
    pub tranches: i32,
    /// Runs of the baseline; the ratio uses their median.
    pub baseline_runs: usize,
    /// Keep the benchmark database and topics instead of dropping them.
    pub keep: bool,
}

/// Runs the benchmark and prints its figures.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let n = o.households;
    let env = TestEnv::new().await;
    sumud_shared::db::migrate(&env.pool, &sumud_registry::db::MIGRATOR).await?;
    sumud_shared::db::migrate(&env.pool, &sumud_disbursement::db::MIGRATOR).await?;
    println!("disbursement benchmark: {n} entitled households, one tranche due at activation");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(
            PgConnectOptions::from_str(&env.settings.database_url)?.disable_statement_logging(),
        )
        .await?;

    // Untimed set-up: registry, entitlements, crises.
    let t = Instant::now();
    load_registry(&pool, n).await?;
    sqlx::query("VACUUM (FREEZE, ANALYZE) registry.households")
        .execute(&pool)
        .await?;
    let (count, total_minor) = entitle(&pool, CRISIS, None, o.tranches).await?;
    anyhow::ensure!(count as u64 == n, "entitled {count} of {n}");
    let (warm_count, warm_minor) =
        entitle(&pool, WARMUP, Some(WARMUP_HOUSEHOLDS), o.tranches).await?;
    sqlx::query("VACUUM (ANALYZE) disbursement.entitlements")
        .execute(&pool)
        .await?;
    let budget = total_minor * i64::from(o.tranches) + total_minor / 10 + 1;
    propose(&pool, CRISIS, budget).await?;
    propose(&pool, WARMUP, warm_minor * i64::from(o.tranches) + 1).await?;
    println!(
        "  registry (COPY) and {count} entitlements loaded in {:.1} s (not part of either figure); \
         first tranche {} of a {} budget",
        t.elapsed().as_secs_f64(),
        money(total_minor),
        money(budget)
    );

    // The service, as the release binary.
    let service = Service::spawn("sumud-disbursement", &env.settings, &[])?;
    let topic = env.settings.topics.instructions.clone();
    let watermarks = Watermarks::new(&env.settings, &topic)?;

    // Warm-up: a small crisis through the whole path, so that the consumer
    // group has joined and the producer is connected before the clock starts.
    let t = Instant::now();
    activate(&env, WARMUP, warm_minor * i64::from(o.tranches) + 1).await?;
    wait_until_every(
        &[&service],
        Duration::from_millis(50),
        "the warm-up instructions",
        || async { Ok((watermarks.total()? >= warm_count).then_some(())) },
    )
    .await?;
    let on_topic_before = watermarks.total()?;
    println!(
        "  service started and warmed up in {:.1} s ({warm_count} warm-up instructions)",
        t.elapsed().as_secs_f64()
    );
    sqlx::query("CHECKPOINT").execute(&pool).await?;

    // Timed: activation acknowledged → last instruction acknowledged.
    let meter = crate::cpu::Meter::start(Some(service.pid()));
    activate(&env, CRISIS, budget).await?;
    let acked = Instant::now();
    let mut active_s = None;
    let mut committed_s = None;
    let mut first_s = None;
    let target = on_topic_before + n as i64;
    loop {
        let now = acked.elapsed().as_secs_f64();
        if committed_s.is_none() {
            // The reservation commits with the instructions it pays for: a
            // primary-key lookup that does not load the database.
            let (state, reserved): (String, i64) = sqlx::query_as(
                "SELECT state, reserved_minor FROM disbursement.crises WHERE crisis_id = $1",
            )
            .bind(CRISIS)
            .fetch_one(&pool)
            .await?;
            if active_s.is_none() && state == "active" {
                active_s = Some(now);
            }
            anyhow::ensure!(
                reserved <= total_minor,
                "reserved {reserved}, more than {total_minor}"
            );
            if reserved == total_minor {
                committed_s = Some(now);
            }
        }
        let on_topic = watermarks.total()?;
        if first_s.is_none() && on_topic > on_topic_before {
            first_s = Some(now);
        }
        anyhow::ensure!(
            on_topic <= target,
            "{on_topic} messages on the topic, more than {target}"
        );
        if on_topic == target {
            break;
        }
        service.alive()?;
        anyhow::ensure!(
            acked.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for the instructions on the topic"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service_s = acked.elapsed().as_secs_f64();
    let service_cpu = meter.and_then(|m| m.used());

    // Every instruction is there once, reserved and marked published.
    let marked = Instant::now();
    wait_until_every(
        &[&service],
        Duration::from_millis(50),
        "the last publication mark",
        || async {
            let lagging: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM disbursement.instruction_batches WHERE published_at IS NULL",
            )
            .fetch_one(&pool)
            .await?;
            Ok((lagging == 0).then_some(()))
        },
    )
    .await?;
    let mark_lag_s = marked.elapsed().as_secs_f64();
    let (rows, published, amount, reserved): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), \
                (SELECT coalesce(sum(cardinality(ids)), 0)::bigint FROM disbursement.instruction_batches \
                 WHERE crisis_id = $1 AND published_at IS NOT NULL), \
                coalesce(sum(amount_minor), 0)::bigint, \
                (SELECT reserved_minor FROM disbursement.crises WHERE crisis_id = $1) \
         FROM disbursement.instructions WHERE crisis_id = $1",
    )
    .bind(CRISIS)
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(
        rows == count && published == count && amount == total_minor && reserved == total_minor,
        "{rows} instructions ({published} published) of {amount} reserving {reserved}; \
         expected {count} of {total_minor}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    anyhow::ensure!(
        watermarks.total()? == target,
        "the topic moved on past {target}"
    );
    let phases = phases(&pool).await?;
    // Peak memory over the whole run, the trailing marks included.
    let peak = service.peak_rss();
    drop(service);

    // Baseline: the same messages (rebuilt from the rows, same keys, same
    // sizes) produced by a fresh producer with the service's settings to a
    // topic created the same way, everything enqueued at once.
    let (rows, messages) = messages(&pool).await?;
    let bytes: usize = messages.iter().map(|m| m.key.len() + m.payload.len()).sum();
    let avg =
        messages.iter().map(|m| m.payload.len()).sum::<usize>() as f64 / messages.len() as f64;
    let baseline_topic = format!("{topic}.baseline");
    sumud_shared::kafka::admin::ensure(
        &env.settings,
        &[baseline_topic.as_str()],
        env.settings.topic_partitions,
    )
    .await?;
    let mut baseline_runs = Vec::new();
    let mut baseline_cpus = Vec::new();
    for _ in 0..o.baseline_runs.max(1) {
        let meter = crate::cpu::Meter::start(None);
        baseline_runs.push(baseline(&env.settings, &baseline_topic, &messages).await?);
        baseline_cpus.extend(meter.and_then(|m| m.used()).map(|u| u.machine));
    }
    let baseline_s = median(&baseline_runs);

    // The floor of any design that records an instruction in PostgreSQL
    // before publishing it: the same messages, COPYed into a table of
    // (id, payload) in 20,000-row transactions, each chunk produced as soon
    // as it has committed; one and two writers.
    let floor_topic = format!("{topic}.floor");
    sumud_shared::kafka::admin::ensure(
        &env.settings,
        &[floor_topic.as_str()],
        env.settings.topic_partitions,
    )
    .await?;
    let mut floors = Vec::new();
    for (writers, record) in [
        (1, Record::Payload),
        (2, Record::Payload),
        (2, Record::Narrow),
        (2, Record::Minimal),
        (2, Record::MinimalRead),
        (2, Record::MinimalRendered),
        (2, Record::MinimalEndToEnd),
    ] {
        floors.push((
            writers,
            record,
            floor(
                &env.settings,
                &pool,
                &floor_topic,
                &rows,
                &messages,
                writers,
                record,
            )
            .await?,
        ));
    }
    drop(messages);
    let read_s = read_due(&pool).await?;

    println!(
        "  instructions:               {count} (all published, {} reserved)",
        money(reserved)
    );
    println!(
        "  message size:               {avg:.0} bytes on average ({:.0} MB with keys)",
        bytes as f64 / 1e6
    );
    println!("  service: activation acked → last instruction acked by Kafka: {service_s:.2} s");
    println!(
        "    crisis active at +{}, first instruction created at +{}, all {count} committed at +{}",
        secs(active_s),
        secs(phases.created_s),
        secs(committed_s)
    );
    println!(
        "    first instruction acked at +{}, last at +{service_s:.2} s; last mark {mark_lag_s:.2} s later",
        secs(first_s)
    );
    println!(
        "    last instruction acked {} after the last commit (publishing overlaps creation)",
        committed_s.map_or("?".into(), |c| format!("{:.2} s", service_s - c))
    );
    let runs: Vec<String> = baseline_runs.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "  baseline rdkafka produce:   {baseline_s:.2} s (median of {} runs: {} s) = {:.0} messages/s",
        runs.len(),
        runs.join(", "),
        count as f64 / baseline_s
    );
    println!(
        "  ratio service / baseline:   {:.2} (target <= 2.5)",
        service_s / baseline_s
    );
    match (service_cpu, baseline_cpus.len() == baseline_runs.len()) {
        (Some(used), true) => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let own = used.process.unwrap_or(f64::NAN);
            let baseline_cpu = median(&baseline_cpus);
            println!(
                "  CPU over the service's window: {:.2} core-seconds on the machine ({own:.2} in \
                 sumud-disbursement, {:.2} in PostgreSQL, the broker and the rest), {:.0} % of its {cores} cores; \
                 baseline {baseline_cpu:.2} core-seconds (median): {:.2} x",
                used.machine,
                used.machine - own,
                100.0 * used.machine / (cores as f64 * service_s),
                used.machine / baseline_cpu
            );
        }
        _ => println!("  CPU: not metered (/proc could not be read)"),
    }
    for (writers, record, floor_s) in &floors {
        let columns = match record {
            Record::Payload => "(id text, payload)",
            Record::Narrow => "(id uuid, key)",
            Record::Minimal => "(the least an instruction row holds, outbox index)",
            Record::MinimalRead => "(the same, each chunk after it is read, unsorted)",
            Record::MinimalRendered => "(the same, no read, each message rendered after commit)",
            Record::MinimalEndToEnd => "(the same, read unsorted and rendered after commit)",
        };
        println!(
            "  floor, {writers} writer(s): COPY {columns} per 20,000, produce after commit: \
             {floor_s:.2} s = {:.2} x baseline",
            floor_s / baseline_s
        );
    }
    println!(
        "  floor, reading what is due (sorted, with payment details, no probe): {read_s:.2} s = {:.2} x baseline",
        read_s / baseline_s
    );
    println!(
        "  peak RSS of sumud-disbursement: {:.0} MB (target < 300 MB)",
        peak as f64 / 1e6
    );

    if o.keep {
        println!(
            "  kept database {} and topics with suffix of {topic}",
            env.settings.database_url
        );
    } else {
        let mut topics: Vec<String> = env
            .settings
            .topics
            .all()
            .iter()
            .map(|t| t.to_string())
            .collect();
        topics.push(baseline_topic);
        topics.push(floor_topic);
        delete_topics(&env.settings, &topics).await;
        pool.close().await;
        drop_database(env).await?;
    }
    Ok(())
}

fn money(minor: i64) -> String {
    Money::new(minor, CURRENCY)
        .map(|m| m.display())
        .unwrap_or_else(|_| minor.to_string())
}

fn secs(s: Option<f64>) -> String {
    s.map_or("?".into(), |s| format!("{s:.2} s"))
}

/// Entitles households (all, or the first `limit`) in `crisis`, straight into
/// the service's projection; returns (entitlements, sum per tranche).
async fn entitle(
    pool: &PgPool,
    crisis: &str,
    limit: Option<i64>,
    tranches: i32,
) -> anyhow::Result<(i64, i64)> {
    sqlx::query(
        "INSERT INTO disbursement.entitlements (entitlement_id, crisis_id, household_id, kind, status, \
             amount_minor, currency, tranches, interval_days, crisis_revision, change_seq) \
         SELECT $1 || '/' || household_id || '/' || kind, $1, household_id, kind, 'entitled', \
                least(CASE WHEN kind = 'vertical' THEN 50000 ELSE 40000 END + 10000 * members, 120000), \
                $2, $3, 30, 1, row_number() OVER (ORDER BY household_id) \
         FROM (SELECT household_id, members, \
                      CASE WHEN cardinality(programmes) > 0 THEN 'vertical' ELSE 'horizontal' END AS kind \
               FROM registry.households_v ORDER BY household_id LIMIT $4) h",
    )
    .bind(crisis)
    .bind(CURRENCY)
    .bind(tranches)
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(sqlx::query_as(
        "SELECT count(*), coalesce(sum(amount_minor), 0)::bigint FROM disbursement.entitlements \
         WHERE crisis_id = $1",
    )
    .bind(crisis)
    .fetch_one(pool)
    .await?)
}

/// The crisis as the service knows it before activation.
async fn propose(pool: &PgPool, crisis: &str, budget: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO disbursement.crises (crisis_id, state, revision, currency, budget_minor) \
         VALUES ($1, 'proposed', 1, $2, $3)",
    )
    .bind(crisis)
    .bind(CURRENCY)
    .bind(budget)
    .execute(pool)
    .await?;
    Ok(())
}

/// Publishes `org.sumud.crisis.activated` for `crisis` and waits for the ack.
async fn activate(env: &TestEnv, crisis: &str, budget: i64) -> anyhow::Result<()> {
    let event = CrisisEvent {
        crisis_id: crisis.into(),
        state: CrisisState::Active,
        revision: 1,
        definition: CrisisDefinition {
            title: "Benchmark: flash floods".into(),
            hazard: Hazard::Flood,
            severity: Severity::Severe,
            areas: vec!["JO-AM".into()],
            response: Response {
                playbook: "flood-standard".into(),
                overrides: ResponseOverrides::default(),
            },
            budget: Money::new(budget, CURRENCY).map_err(anyhow::Error::msg)?,
            starts_on: "2026-12-01".parse()?,
            ends_on: "2027-03-01".parse()?,
        },
        pending: None,
        proposal: None,
        superseded: None,
        command_id: format!("bench-{crisis}"),
        signed_by: "bench".into(),
        trigger: None,
    };
    let e = Envelope::new(
        "urn:sumud:control",
        CRISIS_ACTIVATED,
        Some(crisis.into()),
        event,
    );
    env.publish(&env.settings.topics.crisis, crisis, &e.to_bytes())
        .await;
    Ok(())
}

/// When the first instruction's transaction started, after the activation
/// (database clock, relative to the crisis's activation time).
struct Phases {
    created_s: Option<f64>,
}

async fn phases(pool: &PgPool) -> anyhow::Result<Phases> {
    // `activated_at` is the event time, set just before the event was sent.
    let created: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM (SELECT min(created_at) FROM disbursement.instructions WHERE crisis_id = $1) \
                - (SELECT activated_at FROM disbursement.crises WHERE crisis_id = $1))::float8",
    )
    .bind(CRISIS)
    .fetch_one(pool)
    .await?;
    Ok(Phases { created_s: created })
}

/// The crisis's instructions and their messages as the relay built them.
async fn messages(pool: &PgPool) -> anyhow::Result<(Vec<InstructionRow>, Vec<Message>)> {
    let rows: Vec<InstructionRow> = sqlx::query_as(
        "SELECT instruction_id, attempt, crisis_id, crisis_revision, beneficiary_ref, account_token, amount_minor, \
                currency, channel, provider, tranche, part, scheduled_at \
         FROM disbursement.instructions WHERE crisis_id = $1 ORDER BY created_at, instruction_id",
    )
    .bind(CRISIS)
    .fetch_all(pool)
    .await?;
    let messages = rows.iter().map(Message::of).collect();
    Ok((rows, messages))
}

/// Produces every message once with a fresh producer (service settings),
/// all enqueued at once; returns seconds until the last acknowledgement.
async fn baseline(settings: &Settings, topic: &str, messages: &[Message]) -> anyhow::Result<f64> {
    let producer = warm_producer(settings, topic).await?;
    let started = Instant::now();
    let mut acks = Vec::with_capacity(messages.len());
    enqueue_all(&producer, topic, messages, &mut acks).await?;
    for ack in acks {
        ack.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A producer with the service's settings, connected and holding the
/// topic's metadata, so that the clock starts on a warm client.
async fn warm_producer(settings: &Settings, topic: &str) -> anyhow::Result<EventProducer> {
    let producer = EventProducer::new(settings)?;
    producer
        .enqueue(topic, b"warm-up", b"{}")
        .await?
        .await_ack()
        .await?;
    Ok(producer)
}

/// Enqueues `messages` in order, collecting their acknowledgements.
async fn enqueue_all(
    producer: &EventProducer,
    topic: &str,
    messages: &[Message],
    acks: &mut Vec<sumud_shared::kafka::producer::Ack>,
) -> anyhow::Result<()> {
    for m in messages {
        acks.push(
            producer
                .enqueue(topic, m.key.as_bytes(), &m.payload)
                .await?,
        );
    }
    Ok(())
}

/// One instruction message: its id, its Kafka key and its payload.
struct Message {
    id: String,
    key: String,
    payload: Vec<u8>,
}

impl Message {
    /// The message the relay publishes for an instruction.
    fn of(r: &InstructionRow) -> Message {
        Message {
            id: r.instruction_id.clone(),
            key: r.beneficiary_ref.clone(),
            payload: instruction_event(r).to_bytes(),
        }
    }
}

/// What the floor measurement records per instruction.
#[derive(Debug, Clone, Copy)]
enum Record {
    /// The instruction as published: its id (text) and the whole payload.
    Payload,
    /// Only its id (a `uuid`) and its key: less than any record of an
    /// instruction can hold, so a floor below every real design.
    Narrow,
    /// The least a real instruction row must hold to be the record of
    /// truth and its own outbox: a `uuid` key, what it pays to whom for
    /// which tranche (crisis, household, kind, tranche, part, amount), its
    /// status, attempt and deadline, and the change counter with the
    /// partial index the relay reads unpublished rows by. The payload is
    /// rendered from memory, as a design that hands committed chunks to
    /// the relay would.
    Minimal,
    /// [`Record::Minimal`], each chunk written only once that many due
    /// tranches have been read (with payment details, through a cursor, in
    /// no order, which is cheaper than the due order), the read running
    /// alongside the writers: the least a real design does end to end.
    MinimalRead,
    /// [`Record::Minimal`] with nothing read, as if every due tranche and
    /// its payment details were already in memory at activation, but each
    /// message rendered (as the relay renders it) once its chunk has
    /// committed rather than before the clock started.
    MinimalRendered,
    /// Both: each chunk written once read, its messages rendered once it
    /// has committed — the least a real design does from activation to
    /// the last acknowledgement.
    MinimalEndToEnd,
}

/// A due tranche as the floors read it: what its instruction carries.
type DueRow = (String, String, i64, String, i32, String, String, String);

/// Every due (first) tranche of a crisis with its payment details, in no
/// order: the scheduler's read without its probe for tranches already
/// instructed.
const DUE: &str = "SELECT e.household_id, e.kind, e.amount_minor, e.currency, e.crisis_revision, \
            h.payment_channel, h.payment_provider, h.account_token \
     FROM disbursement.entitlements e \
     JOIN disbursement.crises c ON c.crisis_id = e.crisis_id \
     JOIN registry.households_v h ON h.household_id = e.household_id \
     WHERE e.crisis_id = $1 AND e.status = 'entitled'";

/// The least any design reads before its first instruction: every due
/// tranche of the crisis with the payment details its message carries, in
/// due order (what is created is a prefix of that order when the budget
/// runs out), read by the client. Cheaper than the scheduler's read, which
/// also probes for tranches already instructed. Seconds.
async fn read_due(pool: &PgPool) -> anyhow::Result<f64> {
    let started = Instant::now();
    let rows: Vec<DueRow> = sqlx::query_as(&format!(
        "{DUE} ORDER BY c.activated_at, e.household_id, e.kind"
    ))
    .bind(CRISIS)
    .fetch_all(pool)
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(!rows.is_empty(), "nothing due was read");
    Ok(elapsed)
}

/// Rows per transaction in the floor measurement (the scheduler's chunk).
const FLOOR_CHUNK: usize = 20_000;

/// The least work a design can do and still have PostgreSQL record every
/// instruction before Kafka sees it: `writers` connections COPY the
/// messages, 20,000 to a transaction, into a table shaped by `record` (see
/// [`Record`]), and each chunk is produced the moment its transaction has
/// committed. No reservation and no marks; ids and pseudonyms are not
/// computed, and messages are rendered beforehand unless `record` says so
/// (from `rows`, which `messages` were rendered from). Seconds from the
/// first COPY to the last acknowledgement.
#[allow(clippy::too_many_arguments)]
async fn floor(
    settings: &Settings,
    pool: &PgPool,
    topic: &str,
    rows: &[InstructionRow],
    messages: &[Message],
    writers: usize,
    record: Record,
) -> anyhow::Result<f64> {
    sqlx::query("DROP TABLE IF EXISTS public.bench_floor")
        .execute(pool)
        .await?;
    let (table, copy_sql) = match record {
        Record::Payload => (
            "CREATE TABLE public.bench_floor (instruction_id text PRIMARY KEY, payload text NOT NULL)",
            "COPY public.bench_floor (instruction_id, payload) FROM STDIN (FORMAT csv)",
        ),
        Record::Narrow => (
            "CREATE TABLE public.bench_floor (instruction_id uuid PRIMARY KEY, key text NOT NULL)",
            "COPY public.bench_floor (instruction_id, key) FROM STDIN (FORMAT csv)",
        ),
        Record::Minimal
        | Record::MinimalRead
        | Record::MinimalRendered
        | Record::MinimalEndToEnd => (
            "CREATE TABLE public.bench_floor (instruction_id uuid PRIMARY KEY, crisis_id text NOT NULL, \
             household_id text NOT NULL, kind text NOT NULL, tranche integer NOT NULL, part integer NOT NULL, \
             amount_minor bigint NOT NULL, status text NOT NULL DEFAULT 'instructed', \
             attempt integer NOT NULL DEFAULT 1, deadline_at timestamptz NOT NULL DEFAULT now(), \
             change_seq bigserial, published_seq bigint); \
             CREATE INDEX bench_floor_unpublished ON public.bench_floor (change_seq) \
             WHERE published_seq IS DISTINCT FROM change_seq",
            "COPY public.bench_floor (instruction_id, crisis_id, household_id, kind, tranche, part, amount_minor) \
             FROM STDIN (FORMAT csv)",
        ),
    };
    sqlx::raw_sql(table).execute(pool).await?;
    let producer = warm_producer(settings, topic).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    let chunks: Vec<&[Message]> = messages.chunks(FLOOR_CHUNK).collect();
    // The rows to render each chunk's messages from, when the floor renders.
    let to_render: Vec<std::sync::Arc<Vec<InstructionRow>>> =
        if matches!(record, Record::MinimalRendered | Record::MinimalEndToEnd) {
            rows.chunks(FLOOR_CHUNK)
                .map(|c| std::sync::Arc::new(c.to_vec()))
                .collect()
        } else {
            Vec::new()
        };
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    // Chunks read so far (all of them at once unless the floor reads).
    let reads = matches!(record, Record::MinimalRead | Record::MinimalEndToEnd);
    let (read_tx, read_rx) = tokio::sync::watch::channel(if reads { 0 } else { chunks.len() });
    // A task of its own (decoding rows is work for a thread), as the
    // scheduler's read is to the relay.
    let (read_pool, expected) = (pool.clone(), chunks.len());
    let read = tokio::spawn(async move {
        if !reads {
            return anyhow::Ok(());
        }
        let mut conn = read_pool.acquire().await?;
        let mut t = sqlx::Acquire::begin(&mut *conn).await?;
        sqlx::query(&format!("DECLARE due NO SCROLL CURSOR FOR {DUE}"))
            .bind(CRISIS)
            .execute(&mut *t)
            .await?;
        let fetch = format!("FETCH {FLOOR_CHUNK} FROM due");
        let mut read = 0;
        loop {
            let rows: Vec<DueRow> = sqlx::query_as(&fetch).fetch_all(&mut *t).await?;
            if rows.is_empty() {
                break;
            }
            read += 1;
            read_tx.send_replace(read);
        }
        anyhow::ensure!(read == expected, "read {read} chunks of {expected}");
        t.rollback().await?;
        anyhow::Ok(())
    });
    let copies = async {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let writer = || async {
            let mut conn = pool.acquire().await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(chunk) = chunks.get(i) else {
                    return anyhow::Ok(());
                };
                read_rx.clone().wait_for(|&n| n > i).await?;
                let mut csv = Vec::with_capacity(chunk.len() * 900);
                for m in chunk.iter() {
                    let field = match record {
                        Record::Payload => m.payload.as_slice(),
                        Record::Narrow => m.key.as_bytes(),
                        Record::Minimal
                        | Record::MinimalRead
                        | Record::MinimalRendered
                        | Record::MinimalEndToEnd => {
                            csv.extend_from_slice(m.id.as_bytes());
                            csv.extend_from_slice(b",crisis-bench,");
                            csv.extend_from_slice(m.key.as_bytes());
                            csv.extend_from_slice(b",topup,1,0,9114\n");
                            continue;
                        }
                    };
                    csv.extend_from_slice(m.id.as_bytes());
                    csv.extend_from_slice(b",\"");
                    for &b in field {
                        if b == b'"' {
                            csv.push(b'"');
                        }
                        csv.push(b);
                    }
                    csv.extend_from_slice(b"\"\n");
                }
                let mut t = sqlx::Acquire::begin(&mut *conn).await?;
                let mut copy = t.copy_in_raw(copy_sql).await?;
                copy.send(csv).await?;
                copy.finish().await?;
                t.commit().await?;
                let _ = tx.send(i);
            }
        };
        let mut all = Vec::new();
        for _ in 0..writers {
            all.push(writer());
        }
        futures::future::try_join_all(all).await?;
        drop(tx);
        anyhow::Ok(())
    };
    let produce = async {
        let mut acks = Vec::with_capacity(messages.len());
        while let Some(i) = rx.recv().await {
            if let Some(owned) = to_render.get(i) {
                // Rendered on a thread of its own, as a relay would, while
                // the writers go on.
                let owned = owned.clone();
                let rendered: Vec<Message> =
                    tokio::task::spawn_blocking(move || owned.iter().map(Message::of).collect())
                        .await?;
                enqueue_all(&producer, topic, &rendered, &mut acks).await?;
            } else {
                enqueue_all(&producer, topic, chunks[i], &mut acks).await?;
            }
        }
        for ack in acks {
            ack.await?;
        }
        anyhow::Ok(())
    };
    let (copied, produced, read) = tokio::join!(copies, produce, read);
    read??;
    copied?;
    produced?;
    let elapsed = started.elapsed().as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.bench_floor")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(rows as usize == messages.len(), "floor wrote {rows} rows");
    sqlx::query("DROP TABLE public.bench_floor")
        .execute(pool)
        .await?;
    Ok(elapsed)
}
