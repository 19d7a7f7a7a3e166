//! The dashboard's errors, and how each becomes an HTTP answer: what went
//! wrong and what to do, as `{"error": "..."}` with a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::model::ErrorBody;

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while answering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement failed; PostgreSQL may be down or a table missing.
    #[error("database error: {0} (check that PostgreSQL is reachable at DATABASE_URL and the services have started once)")]
    Database(#[from] sqlx::Error),
    /// The crisis asked for does not exist.
    #[error("no crisis {0}; GET /api/crises lists the known ones")]
    UnknownCrisis(String),
    /// The contract file asked for is not one of `schemas/`.
    #[error("no contract {0}; GET /schemas/asyncapi.json names the event schemas, /openapi.json this API")]
    UnknownContract(String),
    /// The service owning the data has never started, so its tables do not exist.
    #[error("{0} has not created its tables yet; start it, then ask again")]
    NotYet(&'static str),
}

impl Error {
    /// The HTTP status that fits.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Database(_) | Error::NotYet(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UnknownCrisis(_) | Error::UnknownContract(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Database(e) = &self {
            tracing::warn!(error = %e, "Dashboard query failed.");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

impl From<Error> for sumud_shared::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Database(e) => sumud_shared::Error::Database(e),
            other => sumud_shared::Error::Other(other.to_string()),
        }
    }
}
