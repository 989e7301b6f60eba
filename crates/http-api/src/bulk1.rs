//! Bulk API 1.0 (`/services/async/NN.N/...`): being written.

use axum::extract::{Request, State};
use axum::response::Response;

use crate::AppState;

/// `/services/async/{rest…}`.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let _ = (state, req);
    crate::api_error(&model::ApiError::not_found())
}
