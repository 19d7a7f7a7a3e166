//! The dashboard end to end: a whole pipeline with payments on the real
//! broker and database, the dashboard in-process on 127.0.0.1:0, and its
//! page in headless Chromium. One page is loaded before the crisis exists
//! and watched: the crisis appears with its state, and its paid figures
//! grow tranche by tranche as the provider pays — without a reload. The
//! Arabic page is right to left with Arabic labels, and the API's real
//! answers validate against the OpenAPI document.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sumud_dashboard::config::DashboardConfig;
use sumud_dashboard::openapi;
use sumud_disbursement::config::DisbursementConfig;
use sumud_provider_sim::behaviour::Behaviour;
use sumud_shared::areas::AreaCatalog;
use sumud_shared::events::control::CommandKind;
use sumud_tests::browser::{Browser, Page};
use sumud_tests::pipeline::*;
use sumud_tests::{on_both_backends, Backend, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CRISIS: &str = "DASH-1";
const AREAS: [&str; 2] = ["JO-MN", "JO-KA"];

/// Three tranches 30 "days" of 0.15 s apart: the first at activation, the
/// last about 9 s later, so a page watching from the start must see the
/// paid figures grow in steps.
fn spaced_schedule() -> DisbursementConfig {
    DisbursementConfig {
        day_seconds: 0.15,
        retry_base_secs: 0,
        tick_ms: 100,
        ..DisbursementConfig::default()
    }
}

/// What the crisis row and funnel card of the page show for `CRISIS`, or
/// null while the page has no such row.
const READ_CRISIS: &str = r#"(() => {
  const row = document.querySelector('#crises tr[data-crisis="DASH-1"]');
  const card = document.querySelector('#funnels article[data-crisis="DASH-1"]');
  if (!row || !card) return null;
  const field = (root, f) => root.querySelector('[data-field="' + f + '"]');
  return {
    id: field(row, 'crisis-id').textContent,
    state: field(row, 'state').dataset.value,
    state_text: field(row, 'state').textContent,
    paid_amount: Number(field(row, 'paid-amount').dataset.value),
    paid_count: Number(field(card, 'paid-count').dataset.value),
    paid_text: field(card, 'paid-count').textContent,
    eligible: Number(field(card, 'eligible-count').dataset.value),
    updates: Number(document.body.dataset.updates),
    marker: window.sumudTestMarker === true,
  };
})()"#;

/// A plain HTTP/1.1 GET: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Evaluates `expression` in the page every 100 ms until `done` accepts
/// its value, or panics with the last value at the deadline.
async fn poll_page(
    browser: &mut Browser,
    page: &Page,
    what: &str,
    expression: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let end = Instant::now() + DEADLINE;
    loop {
        let v = browser.eval(page, expression).await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}; the page shows {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page has rendered at least `n` snapshots.
async fn wait_updates(browser: &mut Browser, page: &Page, n: u64) {
    poll_page(
        browser,
        page,
        "the page to render snapshots",
        "Number(document.body?.dataset.updates || 0)",
        |v| v.as_u64().unwrap_or(0) >= n,
    )
    .await;
}

fn with_commas(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn the_page_shows_a_declared_crisis_and_its_payments_as_they_succeed(backend: Backend) {
    // Arrange: the pipeline, the dashboard, and the page open before anything happens.
    let p = Pipeline::start_with_payments_on(
        backend,
        1500,
        no_four_eyes(),
        spaced_schedule(),
        Behaviour::honest(),
    )
    .await;
    let config = DashboardConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        refresh: Duration::from_millis(250),
        lag_refresh: Duration::from_secs(1),
    };
    let dashboard = sumud_dashboard::App::build(p.env.settings.clone(), config)
        .await
        .unwrap();
    let addr = dashboard.local_addr();
    let running = Running::spawn(|t| dashboard.run(t));
    let mut browser = Browser::launch().await;
    let page = browser.open(&format!("http://{addr}/")).await;
    wait_updates(&mut browser, &page, 1).await;
    // Survives only as long as the document: a reload would lose it.
    browser.eval(&page, "window.sumudTestMarker = true").await;
    assert_eq!(browser.eval(&page, READ_CRISIS).await, Value::Null);

    // Act: declare the crisis, and put one poison message on a topic.
    let want = expected(&p.households, &AREAS);
    assert!(!want.is_empty());
    let tranche_amount: i64 = want.values().map(|(_, a)| a).sum();
    let total = want.len() as i64 * 3;
    p.send(
        &p.alice,
        &claims(
            CommandKind::Declare,
            CRISIS,
            Some(definition(&AREAS, "10000000")),
        ),
    )
    .await;
    p.env
        .publish(
            &p.env.settings.topics.registry,
            "poison",
            b"not json at all",
        )
        .await;

    // Assert: the crisis appears, active, before its last tranche is paid…
    let first = poll_page(
        &mut browser,
        &page,
        "the crisis on the page",
        READ_CRISIS,
        |v| v["state"] == "active",
    )
    .await;
    assert_eq!(first["id"], CRISIS);
    assert_eq!(first["state_text"], "Active");
    assert!(
        first["paid_count"].as_i64().unwrap() < total,
        "the page saw the crisis before every tranche was paid: {first}"
    );
    // …and its paid figures grow on the same page until every tranche is paid.
    let mut seen = vec![first["paid_count"].as_i64().unwrap()];
    let last = poll_page(
        &mut browser,
        &page,
        "every tranche paid on the page",
        READ_CRISIS,
        |v| {
            let n = v["paid_count"].as_i64().unwrap_or(-1);
            if seen.last() != Some(&n) {
                seen.push(n);
            }
            n == total
        },
    )
    .await;
    assert!(
        seen.len() >= 2 && seen.windows(2).all(|w| w[0] < w[1]),
        "paid count grew step by step: {seen:?}"
    );
    assert_eq!(last["paid_amount"], tranche_amount * 3);
    assert_eq!(last["eligible"], want.len() as i64);
    assert_eq!(
        last["paid_text"],
        format!("{} payments", with_commas(total))
    );
    assert_eq!(last["marker"], true, "the page was never reloaded");
    assert!(last["updates"].as_i64().unwrap() > first["updates"].as_i64().unwrap());
    // The database agrees with what the page showed.
    assert_eq!(
        p.count("SELECT count(*) FROM disbursement.instructions WHERE status = 'succeeded'")
            .await,
        total
    );
    // What needs a payment-operations lead shows on the crisis's card: a
    // payment held on an unknown outcome and a failed scheduler pass, as
    // disbursement records them.
    let held: Vec<(String,)> = p
        .env
        .rows(
            "SELECT instruction_id FROM disbursement.instructions ORDER BY instruction_id LIMIT 1",
        )
        .await;
    let hold = format!(
        "UPDATE disbursement.instructions SET status = 'retry_scheduled', reason_code = 'timeout', \
         next_attempt_at = NULL WHERE instruction_id = '{}'",
        held[0].0
    );
    sumud_shared::on_store!(&p.env.store, pool => sqlx::query(&hold).execute(pool).await.map(drop))
        .unwrap();
    sumud_disbursement::db::pass_failed(&p.env.store, CRISIS, "a CHECK refused an amount")
        .await
        .unwrap();
    let attention = poll_page(
        &mut browser,
        &page,
        "the held payment and the failed pass on the card",
        r#"(() => {
            const card = document.querySelector('#funnels article[data-crisis="DASH-1"]');
            const f = (n) => card?.querySelector('[data-field="' + n + '"]');
            return { held: Number(f('held')?.dataset.value ?? 0), held_text: f('held')?.textContent ?? '',
                     passes: Number(f('pass-failures')?.dataset.value ?? 0) };
        })()"#,
        |v| v["held"] == 1 && v["passes"].as_i64().unwrap_or(0) >= 1,
    )
    .await;
    assert!(
        attention["held_text"]
            .as_str()
            .unwrap()
            .contains("awaiting the provider"),
        "{attention}"
    );

    // The area table names the crisis's governorates; the dead letter and
    // the consumer groups' lag show up too.
    let ma_an = &AreaCatalog::default_catalog().get("JO-MN").unwrap().name;
    let tables = poll_page(
        &mut browser,
        &page,
        "dead letters and lag on the page",
        r#"({
            areas: document.querySelector('#areas').textContent,
            area_paid: Number(document.querySelector('#areas tr[data-area="JO-MN"] td:nth-child(5)')?.dataset.value ?? -1),
            dead: document.querySelector('#deadletters tr[data-reason="not_json"] td.num')?.dataset.value ?? null,
            lag_rows: document.querySelectorAll('#lag tr[data-group]').length,
        })"#,
        |v| v["dead"] == "1" && v["lag_rows"].as_u64().unwrap_or(0) > 0,
    )
    .await;
    assert!(
        tables["areas"].as_str().unwrap().contains(&ma_an.en),
        "{tables}"
    );
    assert!(tables["area_paid"].as_i64().unwrap() > 0, "{tables}");

    // The language toggle turns the same page to Arabic, right to left.
    browser
        .eval(&page, "document.getElementById('lang').click()")
        .await;
    let ar = browser
        .eval(
            &page,
            "({dir: document.documentElement.dir, lang: document.documentElement.lang, url: location.search, text: document.body.innerText})",
        )
        .await;
    assert_eq!(
        (ar["dir"].as_str(), ar["lang"].as_str()),
        (Some("rtl"), Some("ar"))
    );
    assert_eq!(ar["url"], "?lang=ar");
    assert!(ar["text"].as_str().unwrap().contains("الأزمات"), "{ar}");

    // The Arabic page, loaded as such: served right to left, Arabic labels
    // and area names, the same crisis.
    let arabic = browser.open(&format!("http://{addr}/?lang=ar")).await;
    wait_updates(&mut browser, &arabic, 1).await;
    let v = browser
        .eval(
            &arabic,
            "({html: document.documentElement.outerHTML, text: document.body.innerText})",
        )
        .await;
    let html = v["html"].as_str().unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(
        html.starts_with(r#"<html lang="ar" dir="rtl">"#),
        "{}",
        &html[..80]
    );
    for label in [
        "لوحة المتابعة",
        "الأزمات",
        "مسار كل أزمة",
        "الرسائل المرفوضة",
        "نشطة",
    ] {
        assert!(text.contains(label), "the Arabic page says {label}");
    }
    assert!(text.contains(&ma_an.ar), "area names in Arabic");
    assert!(text.contains(CRISIS));
    let (_, raw) = get(addr, "/?lang=ar").await;
    assert!(
        raw.contains(r#"<html lang="ar" dir="rtl">"#),
        "right to left before any script runs"
    );

    // The API's real answers validate against the OpenAPI document.
    let doc = openapi::document();
    for path in [
        "/api/snapshot",
        "/api/crises",
        "/api/crises/DASH-1",
        "/api/areas",
        "/api/areas?crisis_id=DASH-1",
        "/api/providers",
        "/api/deadletters",
        "/api/lag",
    ] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let template = match path {
            "/api/crises/DASH-1" => "/api/crises/{crisis_id}",
            p => p.split('?').next().unwrap(),
        };
        let schema = openapi::response_schema(&doc, template, 200, "application/json").unwrap();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let json: Value = serde_json::from_str(&body).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }
    let (status, body) = get(addr, "/api/crises/NO-SUCH").await;
    assert_eq!(status, 404, "{body}");
    // The contracts, as an integrator browses them: the AsyncAPI document
    // and every schema it references resolve beside it, byte for byte the
    // files of schemas/.
    let (status, doc) = get(addr, "/schemas/asyncapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc, include_str!("../../schemas/asyncapi.json"));
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    for m in doc["components"]["messages"].as_object().unwrap().values() {
        for part in m["payload"]["schema"]["allOf"].as_array().unwrap() {
            let file = part["$ref"]
                .as_str()
                .or(part["properties"]["data"]["$ref"].as_str())
                .unwrap();
            let (status, text) = get(addr, &format!("/schemas/{file}")).await;
            assert_eq!(status, 200, "{file}");
            let on_disk = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../schemas")
                    .join(file),
            )
            .unwrap();
            assert_eq!(text, on_disk, "{file}");
        }
    }
    let (status, body) = get(addr, "/schemas/no-such.json").await;
    assert_eq!(status, 404, "{body}");

    browser.close().await;
    running.stop().await;
    p.stop().await;
}

on_both_backends!(the_page_shows_a_declared_crisis_and_its_payments_as_they_succeed);
