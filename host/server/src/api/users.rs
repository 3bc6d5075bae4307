//! `/api/v1/users` and `/api/v1/auth/login`: people who sign in with a password and get a
//! short-lived session. Every sign-in, refused or not, is in the audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_protocol::{
    DisableQuery, LoginRequest, MAX_PASSWORD_CHARS, PasswordChange, Session, UserInfo, UserRequest,
};
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
        (status = 400, description = "The name is not a name, or the password is too long", body = ErrorBody),
        (status = 401, description = "Wrong name or password", body = ErrorBody),
        (status = 429, description = "Too many sign-ins for this name or from this address", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(r): Body<LoginRequest>,
) -> Result<Json<Session>, ApiError> {
    let address = source.map(|c| c.0.0.ip());
    let user = signed_in(&state, address, &r.name, &r.password, "login").await?;
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
    path = routes::PASSWORD,
    operation_id = "changePassword",
    tag = "users",
    summary = "Change one's own password, proving the current one",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The name is not a name, or a password is too short or too long", body = ErrorBody),
        (status = 401, description = "Wrong name or password", body = ErrorBody),
        (status = 429, description = "Too many sign-ins for this name or from this address", body = ErrorBody),
    )
)]
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(r): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    check_new_password("newPassword", &r.new_password)?;
    let address = source.map(|c| c.0.0.ip());
    let user = signed_in(&state, address, &r.name, &r.password, "password change").await?;
    let _permit = state
        .password_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let store = state.store.clone();
    blocking(move || {
        let hash = hash_password(&r.new_password).map_err(ApiError::internal)?;
        Ok(store.set_password(&user.info.name, &hash)?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user `name` signs in with `password` from `address`: throttled per name and address,
/// checked under the semaphore that bounds password hashing, costing the same whether the
/// name is unknown, disabled or the password wrong, and recorded in the audit log as `what`
/// (or `what refused`).
async fn signed_in(
    state: &Arc<AppState>,
    address: Option<std::net::IpAddr>,
    name: &str,
    password: &str,
    what: &str,
) -> Result<hotswap_store::UserRow, ApiError> {
    // Checked before anything is recorded: the audit log keeps only names that are names.
    hotswap_protocol::Name::parse("name", name)?;
    check_password("password", password, 0)?;
    state
        .rate_limits
        .check_sign_in(name, address)
        .map_err(|l| ApiError::too_many(l.message, l.retry_after_seconds))?;
    let _permit = state
        .password_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let store = state.store.clone();
    let (looked_up, password) = (name.to_string(), password.to_string());
    let dummy = state.sessions.dummy_hash().to_string();
    let found = blocking(move || {
        let user = store.user(&looked_up)?;
        // An unknown or disabled name is checked against a hash of the same cost, so the time
        // an answer takes does not tell which names exist.
        let hash = user
            .as_ref()
            .filter(|u| !u.info.disabled)
            .map_or(dummy.as_str(), |u| u.password_hash.as_str());
        let matches = password_matches(&password, hash);
        Ok(user.filter(|u| matches && !u.info.disabled))
    })
    .await?;
    let granted = found.is_some();
    let action = if granted {
        what.to_string()
    } else {
        format!("{what} refused")
    };
    let status = if granted { 200 } else { 401 };
    let entry = NewAudit::of(format!("user:{name}"), address, &action, status);
    state.store.append_audit(entry).await?;
    // The same answer for an unknown name and a wrong password: names are not given away.
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong name or password, or the user is disabled",
        )
    })
}

/// A new password: at least [`MIN_PASSWORD_CHARS`], at most [`MAX_PASSWORD_CHARS`].
fn check_new_password(field: &str, password: &str) -> Result<(), ApiError> {
    check_password(field, password, MIN_PASSWORD_CHARS)
}

/// A password of `field`: at least `min` characters and at most [`MAX_PASSWORD_CHARS`].
fn check_password(field: &str, password: &str, min: usize) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < min {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be at least {min} characters, found {chars}"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "`{field}` is {chars} characters, the limit is {MAX_PASSWORD_CHARS}"
        )));
    }
    Ok(())
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
    Body(r): Body<UserRequest>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    hotswap_protocol::Name::parse("name", &r.name)?;
    check_new_password("password", &r.password)?;
    let _permit = state
        .password_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let store = state.store.clone();
    let user = blocking(move || {
        let hash = hash_password(&r.password).map_err(ApiError::internal)?;
        Ok(store.add_user(&r.name, r.role, &hash)?)
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
    summary = "Disable a user; its sessions end, and with `revokeTokens` the tokens it made",
    params(("name" = String, Path, description = "The user's name"), DisableQuery),
    responses(
        (status = 200, description = "Disabled", body = UserInfo),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn disable(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: Result<Query<DisableQuery>, QueryRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let store = state.store.clone();
    let (user, revoked) = blocking(move || {
        let user = store.disable_user(&name)?;
        let revoked = if q.revoke_tokens {
            let maker = Principal::User {
                name: name.clone(),
                role: user.role,
            };
            store.revoke_tokens_made_by(&maker.actor())?
        } else {
            0
        };
        Ok((user, revoked))
    })
    .await?;
    if revoked > 0 {
        state.credentials.forget_tokens();
    }
    Ok(Json(user))
}
