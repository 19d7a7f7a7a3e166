//! The dashboard's HTTP surface: the page (`/`, its script and style, all
//! embedded in the binary — no build step, nothing fetched from elsewhere,
//! because monitoring rooms are often offline), the JSON API under `/api/`,
//! the live event stream (`/api/events`, server-sent events), the OpenAPI
//! document and `/healthz`.
//!
//! Routes are added through [`Routes`], which records each path as it adds
//! it, so that a test can compare the served paths with the OpenAPI
//! document in both directions.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::model::{
    AreaRow, ConsumerLag, CrisisDetail, CrisisSummary, DeadLetters, ProviderHealth, Snapshot,
};
use crate::snapshot::{Frame, Monitor};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");

/// What every handler shares.
pub struct AppState {
    /// The read side.
    pub monitor: Arc<Monitor>,
    /// The latest snapshot frame; each open event stream subscribes.
    pub frames: watch::Sender<Option<Arc<Frame>>>,
    /// Ends the event streams at shutdown (they would otherwise hold the
    /// graceful shutdown open forever).
    pub shutdown: CancellationToken,
}

/// A router under construction that remembers the paths it serves.
pub struct Routes {
    router: Router<Arc<AppState>>,
    paths: Vec<&'static str>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    fn get<H, T>(mut self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.router = self.router.route(path, get(handler));
        self.paths.push(path);
        self
    }
}

fn routes() -> Routes {
    Routes::new()
        .get("/", index)
        .get("/assets/app.js", app_js)
        .get("/assets/app.css", app_css)
        .get("/openapi.json", openapi)
        .get("/schemas/{file}", contract)
        .get("/healthz", healthz)
        .get("/api/snapshot", snapshot)
        .get("/api/crises", crises)
        .get("/api/crises/{crisis_id}", crisis)
        .get("/api/areas", areas)
        .get("/api/providers", providers)
        .get("/api/deadletters", dead_letters)
        .get("/api/lag", lag)
        .get("/api/events", events)
}

/// The router, ready to serve.
pub fn router(state: Arc<AppState>) -> Router {
    routes().router.with_state(state)
}

/// Every path the router serves (all with GET), in OpenAPI's template
/// syntax (`{crisis_id}`), which is also axum's.
pub fn paths() -> Vec<&'static str> {
    routes().paths
}

/// `?lang=` of the page.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// `ar` or `en` (anything else is English).
    pub lang: Option<String>,
}

/// The page's language attributes: Arabic is right to left.
pub fn page(lang: Option<&str>) -> String {
    let (lang, dir) = match lang {
        Some("ar") => ("ar", "rtl"),
        _ => ("en", "ltr"),
    };
    INDEX_HTML.replace("{{lang}}", lang).replace("{{dir}}", dir)
}

async fn index(Query(q): Query<PageQuery>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page(q.lang.as_deref())),
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::OPENAPI,
    )
        .into_response()
}

/// A file of `schemas/`: the AsyncAPI document, or a schema it references.
async fn contract(Path(file): Path<String>) -> Result<Response> {
    let text = crate::contracts::file(&file).ok_or(crate::error::Error::UnknownContract(file))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn snapshot(State(s): State<Arc<AppState>>) -> Result<Json<Snapshot>> {
    Ok(Json(s.monitor.snapshot().await?))
}

async fn crises(State(s): State<Arc<AppState>>) -> Result<Json<Vec<CrisisSummary>>> {
    Ok(Json(s.monitor.crises().await?))
}

async fn crisis(
    State(s): State<Arc<AppState>>,
    Path(crisis_id): Path<String>,
) -> Result<Json<CrisisDetail>> {
    Ok(Json(s.monitor.crisis(&crisis_id).await?))
}

/// `?crisis_id=` of the area table.
#[derive(Debug, Deserialize)]
pub struct AreaQuery {
    /// Only this crisis; all crises when absent.
    pub crisis_id: Option<String>,
}

async fn areas(
    State(s): State<Arc<AppState>>,
    Query(q): Query<AreaQuery>,
) -> Result<Json<Vec<AreaRow>>> {
    Ok(Json(s.monitor.areas(q.crisis_id.as_deref()).await?))
}

async fn providers(State(s): State<Arc<AppState>>) -> Result<Json<Vec<ProviderHealth>>> {
    Ok(Json(s.monitor.providers().await?))
}

async fn dead_letters(State(s): State<Arc<AppState>>) -> Json<DeadLetters> {
    Json(s.monitor.dead_letters())
}

async fn lag(State(s): State<Arc<AppState>>) -> Json<ConsumerLag> {
    Json(s.monitor.consumer_lag())
}

fn event(f: &Frame) -> Event {
    Event::default()
        .event("snapshot")
        .id(f.seq.to_string())
        .data(&f.json)
}

/// The live stream: a fresh snapshot for this page at once, then every
/// snapshot the publisher computes, until the page goes or we shut down.
async fn events(
    State(s): State<Arc<AppState>>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    // Subscribe first, so that nothing published while the first snapshot
    // is computed is missed.
    let rx = s.frames.subscribe();
    let first = match s.monitor.snapshot().await {
        Ok(snap) => Some(Frame {
            seq: 0,
            json: serde_json::to_string(&snap).expect("a snapshot serialises"),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "First snapshot of an event stream failed.");
            None
        }
    };
    let first = futures::stream::iter(first.map(|f| Ok(event(&f))));
    let updates = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let frame = rx.borrow_and_update().clone();
        Some((frame, rx))
    })
    .filter_map(|f| async move { f.map(|f| Ok(event(&f))) });
    let stream = first
        .chain(updates)
        .take_until(s.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arabic_pages_are_right_to_left_and_others_left_to_right() {
        assert!(page(Some("ar")).contains(r#"<html lang="ar" dir="rtl">"#));
        assert!(page(Some("en")).contains(r#"<html lang="en" dir="ltr">"#));
        assert!(page(Some("xx")).contains(r#"dir="ltr""#));
        assert!(page(None).contains(r#"lang="en""#));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let html = page(None);
        for text in [html.as_str(), APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }
}
