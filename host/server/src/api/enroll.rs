//! Devices that enroll themselves, as Mender's do: a device presents the fleet's enrollment
//! secret and its Ed25519 public key and waits, `pending`, until an operator accepts or rejects
//! it (or the configuration accepts every such device). An accepted device proves it holds its
//! key, by a signature over its id and the time, and is given its credential. Rejecting or
//! decommissioning a device takes its credential away at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_protocol::auth::DEVICE_TOKEN_PREFIX;
use hotswap_protocol::devices::ENROLLMENT_CLOCK_SKEW_SECONDS;
use hotswap_protocol::{
    DeviceRecord, DeviceStatus, DeviceToken, Enrollment, StandingQuery, TokenClaim,
};
use hotswap_store::NewAudit;

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
        (status = 400, description = "The enrollment is malformed", body = ErrorBody),
        (status = 401, description = "The enrollment secret is wrong", body = ErrorBody),
        (status = 403, description = "This server takes no enrollments", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    )
)]
pub async fn enroll(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(e): Body<Enrollment>,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let address = source.map(|c| c.0.0.ip());
    limit(&state, address)?;
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
        refused(&state, address, "enrollment refused: wrong secret", 401).await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong enrollment secret",
        ));
    }
    let key = e.public_key.trim().to_ascii_lowercase();
    public_key(&key)?;
    let (mut new, _) = super::devices::check(e.device)?;
    new.token_sha256 = None;
    // Groups and labels decide which deployments reach a device: the operator gives them, not
    // whoever holds the fleet's secret.
    new.groups.clear();
    new.labels.clear();
    let store = state.store.clone();
    let (sent_key, now) = (key.clone(), store.clock().now().seconds());
    let answered = DeviceRecord {
        device_id: new.device_id.clone(),
        device_model: new.device_model.clone(),
        region: new.region.clone(),
        labels: Default::default(),
        groups: Vec::new(),
        firmware_version: new.firmware_version.clone(),
        status: DeviceStatus::Pending,
        last_seen: None,
        created_at: now,
        key_fingerprint: hotswap_store::key_fingerprint(&sent_key),
    };
    let device = blocking(move || {
        let d = match store.enroll_device(&new, &key) {
            Ok(d) => d,
            // An id the fleet has, with another key: answered as a new enrollment would be,
            // so the answer does not tell which ids exist; nothing is stored.
            Err(hotswap_store::StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if config.auto_accept && d.status == DeviceStatus::Pending {
            return Ok(Some(
                store.set_device_status(&d.device_id, DeviceStatus::Registered)?,
            ));
        }
        Ok(Some(d))
    })
    .await?;
    let Some(device) = device else {
        refused(
            &state,
            address,
            "enrollment refused: a known id with another key",
            202,
        )
        .await?;
        return Ok((StatusCode::ACCEPTED, Json(answered)));
    };
    audit(&state, address, &device.device_id, "enroll", 202).await?;
    Ok((StatusCode::ACCEPTED, Json(device)))
}

/// Enrollment is anonymous: each client address has its rate ([`ADDRESS_RATE`]).
///
/// [`ADDRESS_RATE`]: crate::credentials::ADDRESS_RATE
fn limit(state: &AppState, address: Option<IpAddr>) -> Result<(), ApiError> {
    match address {
        Some(a) => state
            .rate_limits
            .check_address(a)
            .map_err(|l| ApiError::too_many(l.message, l.retry_after_seconds)),
        None => Ok(()),
    }
}

/// Records what a device's enrollment or claim did.
async fn audit(
    state: &AppState,
    address: Option<IpAddr>,
    device_id: &str,
    action: &str,
    status: u16,
) -> Result<(), ApiError> {
    let entry = NewAudit::of(format!("device:{device_id}"), address, action, status);
    Ok(state.store.append_audit(entry).await?)
}

/// Records a refused enrollment or claim, counted per source and minute like refused
/// credentials (the caller is anonymous).
async fn refused(
    state: &AppState,
    address: Option<IpAddr>,
    action: &str,
    status: u16,
) -> Result<(), ApiError> {
    let now = state.store.clock().now().seconds().0;
    let entry = NewAudit::of("anonymous".into(), address, action, status);
    if let Some(first) = state.refusals.refused(now, entry) {
        state.store.append_audit(first).await?;
    }
    Ok(())
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
/// gives a new credential and ends the one before; a claim is used once (its timestamp must be
/// later than the last claim's).
#[utoipa::path(
    post,
    path = routes::ENROLL_TOKEN,
    operation_id = "claimDeviceToken",
    tag = "enrollment",
    summary = "An accepted device claims its credential by signature",
    request_body = TokenClaim,
    responses(
        (status = 200, description = "A new credential", body = DeviceToken),
        (status = 400, description = "The claim is malformed", body = ErrorBody),
        (status = 401, description = "No device enrolled with this key (unknown ids answer the same), the claim was used already, or its timestamp is too far from the server's clock", body = ErrorBody),
        (status = 403, description = "The device is rejected or decommissioned", body = ErrorBody),
        (status = 409, description = "The device is pending: not accepted yet", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    )
)]
pub async fn claim_token(
    State(state): State<Arc<AppState>>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(c): Body<TokenClaim>,
) -> Result<Json<DeviceToken>, ApiError> {
    let address = source.map(|c| c.0.0.ip());
    limit(&state, address)?;
    hotswap_protocol::Name::parse("deviceId", &c.device_id)?;
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
    let (device, key) = blocking(move || {
        let device = match store.device(&id) {
            Ok(d) => Some(d),
            Err(hotswap_store::StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        Ok((device, store.device_public_key(&id)?))
    })
    .await?;
    // An unknown id, a device without a key and a wrong signature answer alike.
    let not_this_key = ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!(
            "device `{}` did not enroll with the key this claim is signed by",
            c.device_id
        ),
    );
    let signature: [u8; 64] = hex::decode(&c.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("`signature` must be 128 hex digits"))?;
    let checked = key
        .as_deref()
        .map(public_key)
        .transpose()
        .ok()
        .flatten()
        .zip(device)
        .filter(|(key, _)| {
            key.verify_strict(
                &TokenClaim::signed_bytes(&c.device_id, c.timestamp),
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .is_ok()
        });
    let Some((_, device)) = checked else {
        refused(&state, address, "credential claim refused", 401).await?;
        return Err(not_this_key);
    };
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
    let (id, timestamp) = (c.device_id.clone(), c.timestamp);
    let remembered = sha.clone();
    let claimed = blocking(move || Ok(store.claim_device_token(&id, timestamp, &sha)?)).await?;
    if !claimed {
        refused(
            &state,
            address,
            "credential claim refused: used already",
            401,
        )
        .await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "this claim of device `{}` was used already: each claim gives one credential; sign a new one with a later timestamp",
                c.device_id
            ),
        ));
    }
    state.credentials.forget_device(&c.device_id);
    state.credentials.remember_device(&c.device_id, &remembered);
    audit(&state, address, &c.device_id, "credential claimed", 200).await?;
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
            params(("id" = String, Path, description = "The device id"), StandingQuery),
            responses(
                (status = 200, description = "Done", body = DeviceRecord),
                (status = 404, description = "No such device", body = ErrorBody),
                (status = 409, description = "The device is not in a state this applies to", body = ErrorBody),
            )
        )]
        pub async fn $handler(
            State(state): State<Arc<AppState>>,
            Path(id): Path<String>,
            query: Result<Query<StandingQuery>, QueryRejection>,
        ) -> Result<Json<DeviceRecord>, ApiError> {
            let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
            set_standing(state, id, $change, q.fingerprint).await
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
    fingerprint: Option<String>,
) -> Result<Json<DeviceRecord>, ApiError> {
    Ok(Json(
        blocking(move || {
            Ok(state
                .rollout
                .set_standing_of_key(&id, change, fingerprint.as_deref())?)
        })
        .await?,
    ))
}
