//! Devices that enroll themselves, as Mender's do: a device presents the fleet's enrollment
//! secret and its Ed25519 public key and waits, `pending`, until an operator accepts or rejects
//! it (or the configuration accepts every such device). An accepted device proves it holds its
//! key, by a signature over its id and the time, and is given its credential. Rejecting or
//! decommissioning a device takes its credential away at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hotswap_protocol::auth::DEVICE_TOKEN_PREFIX;
use hotswap_protocol::devices::ENROLLMENT_CLOCK_SKEW_SECONDS;
use hotswap_protocol::{DeviceRecord, DeviceStatus, DeviceToken, Enrollment, TokenClaim};

use super::{ApiError, AppState, Body, blocking};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::StandingChange;
use hotswap_protocol::routes;

#[utoipa::path(
    post,
    path = routes::ENROLL,
    operation_id = "enroll",
    tag = "enrollment",
    summary = "A device enrolls itself with the fleet secret",
    request_body = Enrollment,
    responses(
        (status = 202, description = "Enrolled, pending acceptance", body = DeviceRecord),
        (status = 401, description = "The enrollment secret is wrong", body = ErrorBody),
        (status = 403, description = "This server takes no enrollments", body = ErrorBody),
        (status = 409, description = "The device exists with another key", body = ErrorBody),
    )
)]
pub async fn enroll(
    State(state): State<Arc<AppState>>,
    Body(e): Body<Enrollment>,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let Some(config) = state.enrollment.clone() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this server takes no enrollments: an operator registers devices (POST /api/v1/devices)",
        ));
    };
    // Compared in full whatever the length, so the time says nothing of how much matched.
    let given = e.enrollment_secret.as_bytes();
    let expected = config.secret.as_bytes();
    let mut differ = given.len() != expected.len();
    for (i, b) in expected.iter().enumerate() {
        differ |= given.get(i) != Some(b);
    }
    if differ {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong enrollment secret",
        ));
    }
    let key = e.public_key.trim().to_ascii_lowercase();
    public_key(&key)?;
    let (mut new, _) = super::devices::check(e.device)?;
    new.token_sha256 = None;
    let device = blocking(move || {
        let d = state.store.enroll_device(&new, &key)?;
        if config.auto_accept && d.status == DeviceStatus::Pending {
            return Ok(state
                .store
                .set_device_status(&d.device_id, DeviceStatus::Registered)?);
        }
        Ok(d)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(device)))
}

fn public_key(hex_key: &str) -> Result<ed25519_dalek::VerifyingKey, ApiError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("`publicKey` must be 64 hex digits (Ed25519)"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| ApiError::bad_request("`publicKey` is not an Ed25519 public key"))
}

/// An accepted device's credential, for a signature by the key it enrolled with. Each claim
/// gives a new credential and ends the one before.
#[utoipa::path(
    post,
    path = routes::ENROLL_TOKEN,
    operation_id = "claimDeviceToken",
    tag = "enrollment",
    summary = "An accepted device claims its credential by signature",
    request_body = TokenClaim,
    responses(
        (status = 200, description = "A new credential", body = DeviceToken),
        (status = 401, description = "The signature does not check, or its timestamp is too far from the server's clock", body = ErrorBody),
        (status = 403, description = "The device is not accepted", body = ErrorBody),
        (status = 404, description = "No such device", body = ErrorBody),
        (status = 409, description = "The device did not enroll with a key", body = ErrorBody),
    )
)]
pub async fn claim_token(
    State(state): State<Arc<AppState>>,
    Body(c): Body<TokenClaim>,
) -> Result<Json<DeviceToken>, ApiError> {
    let now = state.store.clock().now().seconds().0;
    // A stale claim is refused as a credential would be: it may be a replay.
    if c.timestamp.saturating_sub(now).saturating_abs() > ENROLLMENT_CLOCK_SKEW_SECONDS {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "`timestamp` {} is more than {ENROLLMENT_CLOCK_SKEW_SECONDS} s from the server's {now}",
                c.timestamp
            ),
        ));
    }
    let store = state.store.clone();
    let id = c.device_id.clone();
    let (device, key) =
        blocking(move || Ok((store.device(&id)?, store.device_public_key(&id)?))).await?;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("device `{}` did not enroll with this key", c.device_id),
        )
    };
    let key = public_key(&key.ok_or_else(refused)?)?;
    let signature: [u8; 64] = hex::decode(&c.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("`signature` must be 128 hex digits"))?;
    key.verify_strict(
        &TokenClaim::signed_bytes(&c.device_id, c.timestamp),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| refused())?;
    match device.status {
        DeviceStatus::Pending => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "device `{}` is pending: an operator has not accepted it yet",
                    c.device_id
                ),
            ));
        }
        s if !s.deployable() && s != DeviceStatus::Quarantined => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("device `{}` is {s}", c.device_id),
            ));
        }
        _ => {}
    }
    let token = crate::credentials::new_secret(DEVICE_TOKEN_PREFIX)?;
    let sha = crate::credentials::digest(&token);
    let store = state.store.clone();
    let id = c.device_id.clone();
    let remembered = sha.clone();
    blocking(move || Ok(store.reissue_device_tokens(&[(id, sha)])?)).await?;
    state.credentials.forget_device(&c.device_id);
    state.credentials.remember_device(&c.device_id, &remembered);
    Ok(Json(DeviceToken {
        device_id: c.device_id,
        token,
    }))
}

/// Declares one handler per change of a device's standing, each with its own OpenAPI
/// operation, from one line each: the change, its path, its operation id and its summary.
macro_rules! standing_changes {
    ($($(#[$doc:meta])* $handler:ident: $change:expr, $path:expr, $operation:literal, $summary:literal;)*) => {$(
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $operation,
            tag = "devices",
            summary = $summary,
            params(("id" = String, Path, description = "The device id")),
            responses(
                (status = 200, description = "Done", body = DeviceRecord),
                (status = 404, description = "No such device", body = ErrorBody),
                (status = 409, description = "The device is not in a state this applies to", body = ErrorBody),
            )
        )]
        pub async fn $handler(
            State(state): State<Arc<AppState>>,
            Path(id): Path<String>,
        ) -> Result<Json<DeviceRecord>, ApiError> {
            set_standing(state, id, $change).await
        }
    )*};
}

standing_changes! {
    /// `POST /api/v1/devices/{id}/accept`: a pending device may claim its credential.
    accept: StandingChange::Accept, routes::DEVICE_ACCEPT, "acceptDevice",
        "Accept a pending device";
    /// `POST /api/v1/devices/{id}/reject`: a pending (or any) device is refused from now on.
    reject: StandingChange::Reject, routes::DEVICE_REJECT, "rejectDevice",
        "Refuse a device from now on";
    /// `POST /api/v1/devices/{id}/decommission`: the device leaves the fleet; its credential
    /// ends.
    decommission: StandingChange::Decommission, routes::DEVICE_DECOMMISSION, "decommissionDevice",
        "Take a device out of the fleet";
}

async fn set_standing(
    state: Arc<AppState>,
    id: String,
    change: StandingChange,
) -> Result<Json<DeviceRecord>, ApiError> {
    Ok(Json(
        blocking(move || Ok(state.rollout.set_standing(&id, change)?)).await?,
    ))
}
