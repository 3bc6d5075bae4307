//! `/api/v1/tokens`: named API tokens for scripts and CI, each with a role and an optional
//! expiry; the secret is shown once, at creation, and only its hash is kept. A revoked token
//! fails on its very next request.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_protocol::auth::API_TOKEN_PREFIX;
use hotswap_protocol::{CreatedToken, TokenInfo, TokenRequest};
use hotswap_store::NewToken;

use super::{ApiError, AppState, Body, blocking};
use crate::credentials::{Principal, digest, expiry, hint, new_secret};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// The longest a token may live, in days.
pub const MAX_TOKEN_DAYS: u32 = 366;

#[utoipa::path(
    post,
    path = routes::TOKENS,
    operation_id = "createToken",
    tag = "tokens",
    summary = "Make an API token; its secret is shown once",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = 409, description = "A token has the name", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Body(r): Body<TokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    hotswap_protocol::Name::parse("name", &r.name)?;
    if let Some(days) = r.expires_in_days
        && !(1..=MAX_TOKEN_DAYS).contains(&days)
    {
        return Err(ApiError::bad_request(format!(
            "`expiresInDays` must be from 1 to {MAX_TOKEN_DAYS}, found {days}"
        )));
    }
    let secret = new_secret(API_TOKEN_PREFIX)?;
    let new = NewToken {
        name: r.name,
        role: r.role,
        sha256: digest(&secret),
        hint: hint(&secret),
        created_by: by.actor(),
        expires_at: expiry(state.store.clock().now().seconds(), r.expires_in_days),
    };
    let info = blocking(move || Ok(state.store.add_token(&new)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info,
            token: secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = routes::TOKENS,
    operation_id = "listTokens",
    tag = "tokens",
    summary = "List API tokens (never their secrets)",
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenInfo>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    blocking(move || Ok(Json(state.store.list_tokens()?))).await
}

#[utoipa::path(
    post,
    path = routes::TOKEN_REVOKE,
    operation_id = "revokeToken",
    tag = "tokens",
    summary = "Revoke an API token",
    params(("id" = String, Path, description = "The token id (a number)")),
    responses(
        (status = 200, description = "Revoked", body = TokenInfo),
        (status = 404, description = "No such token", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    let id = super::path_id("token", &raw)?;
    let store = state.store.clone();
    let info = blocking(move || Ok(store.revoke_token(id)?)).await?;
    // Its next request reads the store again, and finds it revoked.
    state.credentials.forget_tokens();
    Ok(Json(info))
}
