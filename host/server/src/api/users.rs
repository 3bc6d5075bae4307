//! `/api/v1/users` and `/api/v1/auth/login`: people who sign in with a password and get a
//! short-lived session. Every sign-in, refused or not, is in the audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_protocol::{LoginRequest, Session, UserInfo, UserRequest};
use hotswap_store::NewAudit;

use super::{ApiError, AppState, Body, blocking};
use crate::credentials::Principal;
use crate::sessions::{MIN_PASSWORD_CHARS, hash_password, password_matches};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

#[utoipa::path(
    post,
    path = routes::LOGIN,
    operation_id = "login",
    tag = "users",
    summary = "Sign in with a name and a password for a session token",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = Session),
        (status = 401, description = "Wrong name or password", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(r): Body<LoginRequest>,
) -> Result<Json<Session>, ApiError> {
    let store = state.store.clone();
    let name = r.name.clone();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let found = blocking(move || {
        let user = store.user(&name)?;
        Ok(user.filter(|u| !u.info.disabled && password_matches(&r.password, &u.password_hash)))
    })
    .await?;
    let granted = found.is_some();
    state
        .store
        .append_audit(NewAudit {
            actor: format!("user:{}", r.name),
            token_id: None,
            source: source.map(|c| c.0.0.ip().to_string()),
            action: if granted { "login" } else { "login refused" }.into(),
            object: None,
            status: if granted { 200 } else { 401 },
        })
        .await?;
    // The same answer for an unknown name and a wrong password: names are not given away.
    let user = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong name or password, or the user is disabled",
        )
    })?;
    let (token, expires_at) = state
        .sessions
        .issue(
            &user.info.name,
            user.info.role,
            state.store.clock().now().seconds(),
        )
        .map_err(ApiError::internal)?;
    Ok(Json(Session {
        token,
        name: user.info.name,
        role: user.info.role,
        permissions: user.info.role.permissions().to_vec(),
        expires_at,
    }))
}

#[utoipa::path(
    post,
    path = routes::USERS,
    operation_id = "createUser",
    tag = "users",
    summary = "Create a user",
    request_body = UserRequest,
    responses(
        (status = 201, description = "Created", body = UserInfo),
        (status = 409, description = "The user exists", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(_by): Extension<Principal>,
    Body(r): Body<UserRequest>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    hotswap_protocol::Name::parse("name", &r.name)?;
    if r.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "`password` must be at least {MIN_PASSWORD_CHARS} characters, found {}",
            r.password.chars().count()
        )));
    }
    let user = blocking(move || {
        let hash = hash_password(&r.password).map_err(ApiError::internal)?;
        Ok(state.store.add_user(&r.name, r.role, &hash)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    get,
    path = routes::USERS,
    operation_id = "listUsers",
    tag = "users",
    summary = "List users",
    responses(
        (status = 200, description = "The users", body = Vec<UserInfo>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<UserInfo>>, ApiError> {
    blocking(move || Ok(Json(state.store.list_users()?))).await
}

#[utoipa::path(
    post,
    path = routes::USER_DISABLE,
    operation_id = "disableUser",
    tag = "users",
    summary = "Disable a user; its sessions end",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "Disabled", body = UserInfo),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<UserInfo>, ApiError> {
    blocking(move || Ok(Json(state.store.disable_user(&name)?))).await
}
