//! The HTTP routes: the page and its assets, the JSON API, the event stream, the report.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use pluribus_common::time::now_ms;
use serde::Deserialize;

use super::access::Access;
use super::controls::{self, Control};
use super::frame::{self, View};
use super::history::CLUSTER;
use super::hub::Shared;
use super::{device, report};

/// The embedded assets: no build step, nothing fetched at run time.
const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Longest report window.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

type App = Arc<Shared>;

/// An error answered as `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn bad(e: anyhow::Error) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, format!("{e:#}"))
}

/// The router.
pub fn router(shared: App) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route("/api/frame", get(frame_once))
        .route("/api/stream", get(stream))
        .route("/api/history", get(history))
        .route("/api/device", get(device_view))
        .route("/api/device/command", post(device_command))
        .route("/api/control", post(control))
        .route("/report", get(report_html))
        .route("/report.json", get(report_json))
        .route("/report.csv", get(report_csv))
        .with_state(shared)
}

async fn frame_once(State(s): State<App>, Query(view): Query<View>) -> Response {
    let model = s.model.borrow().clone();
    Json(frame::build(&s, &model, &view)).into_response()
}

/// One frame per model (about once a second) for as long as the page listens.
async fn stream(
    State(s): State<App>,
    Query(view): Query<View>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.model.clone();
    let stream = futures::stream::unfold(
        (s, rx, view, true),
        |(s, mut rx, mut view, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let model = rx.borrow_and_update().clone();
            let json = {
                let f = frame::build(&s, &model, &view);
                view.after = f.last_event;
                serde_json::to_string(&f).unwrap_or_default()
            };
            Some((
                Ok(SseEvent::default().event("frame").data(json)),
                (s, rx, view, false),
            ))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    /// A fleet; the cluster when absent.
    fleet: Option<String>,
}

async fn history(State(s): State<App>, Query(q): Query<HistoryQuery>) -> Response {
    let points = s
        .history
        .read()
        .map(|h| h.points(q.fleet.as_deref().unwrap_or(CLUSTER), 0))
        .unwrap_or_default();
    Json(points).into_response()
}

#[derive(Debug, Deserialize)]
struct DeviceQuery {
    id: String,
}

async fn device_view(
    State(s): State<App>,
    Query(q): Query<DeviceQuery>,
) -> Result<Response, ApiError> {
    let view = device::inspect(&s, q.id.trim()).await.map_err(bad)?;
    Ok(Json(view).into_response())
}

fn access(s: &Shared) -> Access {
    s.access
        .read()
        .map(|a| a.clone())
        .unwrap_or_else(|_| Access::read_only("read-only: internal error"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    id: String,
    payload: serde_json::Value,
}

async fn device_command(
    State(s): State<App>,
    Json(b): Json<CommandBody>,
) -> Result<Response, ApiError> {
    controls::allowed(&access(&s)).map_err(|e| ApiError(StatusCode::FORBIDDEN, e.to_string()))?;
    let reply = device::command(&s, b.id.trim(), &b.payload)
        .await
        .map_err(bad)?;
    Ok(Json(serde_json::json!({ "reply": reply })).into_response())
}

async fn control(State(s): State<App>, Json(c): Json<Control>) -> Result<Response, ApiError> {
    controls::allowed(&access(&s)).map_err(|e| ApiError(StatusCode::FORBIDDEN, e.to_string()))?;
    tracing::info!(control = ?c, "control from the dashboard");
    let message = controls::run(&s.ctx, c).await.map_err(bad)?;
    Ok(Json(serde_json::json!({ "message": message })).into_response())
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    /// e.g. `15m`.
    window: Option<String>,
}

fn window(q: &ReportQuery) -> Result<Duration, ApiError> {
    let text = q.window.as_deref().unwrap_or("15m");
    let w = humantime::parse_duration(text).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("window '{text}': {e}: write e.g. 15m"),
        )
    })?;
    if w.is_zero() || w > MAX_WINDOW {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("window '{text}': give 1s to 24h"),
        ));
    }
    Ok(w)
}

async fn report_html(
    State(s): State<App>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let w = window(&q)?;
    let now = now_ms();
    let data = report::data(&s, now, w);
    let model = s.model.borrow().clone();
    let name = format!(
        "attachment; filename=\"pluribus-report-{}.html\"",
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(now))
            .to_string()
            .replace(':', "-")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        report::html(&data, &model),
    )
        .into_response())
}

async fn report_json(
    State(s): State<App>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let w = window(&q)?;
    Ok(Json(report::data(&s, now_ms(), w)).into_response())
}

/// The window's figures as `pluribusctl report --window --csv` prints them.
async fn report_csv(
    State(s): State<App>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let w = window(&q)?;
    let d = report::data(&s, now_ms(), w);
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], d.csv).into_response())
}
