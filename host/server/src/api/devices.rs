//! `/api/v1/devices`: register devices, list them with filters and cursor paging, show one.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hotswap_protocol::auth::DEVICE_TOKEN_PREFIX;
use hotswap_protocol::names::{Name, Version};
use hotswap_protocol::{
    BatchAnswer, DeviceBatch, DeviceDetail, DevicePage, DeviceQuery, DeviceRegistration,
    DeviceToken, IfRegistered, RegisteredDevice,
};
use hotswap_store::{DeviceFilter, NewDevice, parse_label};

use super::{ApiError, AppState, Body, blocking};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// The most devices one page lists.
pub const MAX_PAGE: usize = 1000;

/// Checks every field of a registration; the device to store, with a new credential (whose
/// hash is stored) and the credential.
pub(super) fn check(r: DeviceRegistration) -> Result<(NewDevice, String), ApiError> {
    Name::parse("deviceId", &r.device_id)?;
    if r.device_id == "batch" {
        return Err(ApiError::bad_request(
            "`deviceId` cannot be `batch`: /api/v1/devices/batch registers devices in bulk",
        ));
    }
    Name::parse("deviceModel", &r.device_model)?;
    Name::parse_optional("region", &r.region)?;
    for g in &r.groups {
        Name::parse("groups", g)?;
    }
    for (k, v) in &r.labels {
        Name::parse("labels", k)?;
        Name::check_label_value(k, v)?;
    }
    Version::parse_optional("firmwareVersion", &r.firmware_version)?;
    let token = crate::credentials::new_secret(DEVICE_TOKEN_PREFIX)?;
    Ok((
        NewDevice {
            device_id: r.device_id,
            device_model: r.device_model,
            region: r.region,
            labels: r.labels,
            groups: r.groups,
            firmware_version: r.firmware_version,
            token_sha256: Some(crate::credentials::digest(&token)),
        },
        token,
    ))
}

#[utoipa::path(
    post,
    path = routes::DEVICES,
    operation_id = "registerDevice",
    tag = "devices",
    summary = "Register one device; the answer carries its token, once",
    request_body = DeviceRegistration,
    responses(
        (status = 201, description = "Registered", body = RegisteredDevice),
        (status = 409, description = "The device exists", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    Body(r): Body<DeviceRegistration>,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let (new, token) = check(r)?;
    let sha = new.token_sha256.clone().unwrap_or_default();
    let store = state.store.clone();
    let device = blocking(move || Ok(store.add_device(new)?)).await?;
    state.credentials.remember_device(&device.device_id, &sha);
    Ok((
        StatusCode::CREATED,
        Json(RegisteredDevice { device, token }),
    ))
}

/// The most devices one `POST /api/v1/devices/batch` registers.
pub const MAX_BATCH: usize = 10_000;

/// Registers up to [`MAX_BATCH`] devices in one transaction: all of them or, on any error,
/// none. Each error names the device's place in the batch.
#[utoipa::path(
    post,
    path = routes::DEVICES_BATCH,
    operation_id = "registerDevices",
    tag = "devices",
    summary = "Register up to MAX_BATCH devices, all or none",
    request_body = DeviceBatch,
    responses(
        (status = 201, description = "Registered", body = BatchAnswer),
        (status = 409, description = "A device exists", body = ErrorBody),
    )
)]
pub async fn register_batch(
    State(state): State<Arc<AppState>>,
    Body(batch): Body<DeviceBatch>,
) -> Result<(StatusCode, Json<BatchAnswer>), ApiError> {
    if batch.devices.is_empty() {
        return Err(ApiError::bad_request("`devices` is empty"));
    }
    if batch.devices.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "`devices` holds {} devices, the limit is {MAX_BATCH} per batch",
            batch.devices.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(batch.devices.len());
    let mut devices = Vec::with_capacity(batch.devices.len());
    let mut tokens = Vec::with_capacity(batch.devices.len());
    for (i, r) in batch.devices.into_iter().enumerate() {
        let (new, token) = check(r).map_err(|e| e.prefixed(&format!("devices[{i}]")))?;
        if !seen.insert(new.device_id.clone()) {
            return Err(ApiError::bad_request(format!(
                "devices[{i}]: `{}` appears twice in the batch",
                new.device_id
            )));
        }
        tokens.push(DeviceToken {
            device_id: new.device_id.clone(),
            token,
        });
        devices.push(new);
    }
    let mode = batch.if_registered;
    let hashes: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d.device_id.clone(),
                d.token_sha256.clone().unwrap_or_default(),
            )
        })
        .collect();
    let store = state.store.clone();
    let (created, skipped, registered_before) = blocking(move || {
        let (created, mut skipped) = store.add_devices(&devices, mode != IfRegistered::Fail)?;
        let registered_before = skipped.clone();
        if mode == IfRegistered::Reissue && !skipped.is_empty() {
            let again: std::collections::HashSet<&String> = skipped.iter().collect();
            let reissued: Vec<(String, String)> = devices
                .iter()
                .filter(|d| again.contains(&d.device_id))
                .map(|d| {
                    (
                        d.device_id.clone(),
                        d.token_sha256.clone().unwrap_or_default(),
                    )
                })
                .collect();
            // Only devices in the fleet get a new credential; the rest stay skipped.
            let changed: std::collections::HashSet<String> = store
                .reissue_device_tokens(&reissued)?
                .into_iter()
                .collect();
            skipped.retain(|d| !changed.contains(d));
        }
        Ok((created, skipped, registered_before))
    })
    .await?;
    let skipped_set: std::collections::HashSet<&String> = skipped.iter().collect();
    // Devices given a new credential were known before: every replica forgets the old one.
    // New devices were cached nowhere.
    state.credentials.forget_devices(
        registered_before
            .iter()
            .filter(|id| !skipped_set.contains(id))
            .map(String::as_str),
    );
    for (id, sha) in &hashes {
        if !skipped_set.contains(id) {
            state.credentials.remember_device(id, sha);
        }
    }
    let tokens: Vec<DeviceToken> = tokens
        .into_iter()
        .filter(|t| !skipped_set.contains(&t.device_id))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(BatchAnswer {
            created,
            skipped,
            tokens,
        }),
    ))
}

#[utoipa::path(
    get,
    path = routes::FLEET,
    operation_id = "fleetSummary",
    tag = "devices",
    summary = "The fleet counted by agent version, status and region",
    responses(
        (status = 200, description = "The counts", body = hotswap_protocol::FleetSummary),
    )
)]
pub async fn summary(
    State(state): State<Arc<AppState>>,
) -> Result<Json<hotswap_protocol::FleetSummary>, ApiError> {
    Ok(Json(
        blocking(move || Ok(state.store.fleet_summary()?)).await?,
    ))
}

#[utoipa::path(
    get,
    path = routes::DEVICES,
    operation_id = "listDevices",
    tag = "devices",
    summary = "One page of devices",
    params(DeviceQuery),
    responses(
        (status = 200, description = "The page", body = DevicePage),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Json<DevicePage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be from 1 to {MAX_PAGE}, found {limit}"
        )));
    }
    let label = q
        .label
        .as_deref()
        .map(parse_label)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = DeviceFilter {
        device_model: q.device_model,
        region: q.region,
        group: q.group,
        label,
        firmware_version: q.firmware_version,
        status: q.status,
        firmware_status: q.firmware_status,
        after: q.after,
        limit,
    };
    let devices = blocking(move || Ok(state.store.list_devices(&filter)?)).await?;
    let next = (devices.len() == limit)
        .then(|| devices.last().map(|d| d.device_id.clone()))
        .flatten();
    Ok(Json(DevicePage { devices, next }))
}

/// `GET /api/v1/devices/{id}/lineage`: the versions a device went through, oldest first, each
/// step with its deployment, how it came about and how it ended.
#[utoipa::path(
    get,
    path = routes::DEVICE_LINEAGE,
    operation_id = "getDeviceLineage",
    tag = "devices",
    summary = "The versions a device went through",
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Its lineage", body = hotswap_protocol::Lineage),
        (status = 404, description = "No such device", body = ErrorBody),
    )
)]
pub async fn lineage(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<hotswap_protocol::Lineage>, ApiError> {
    Ok(Json(blocking(move || Ok(state.store.lineage(&id)?)).await?))
}

/// A device with its inventory: slots, last health, deployment history.
#[utoipa::path(
    get,
    path = routes::DEVICE,
    operation_id = "getDevice",
    tag = "devices",
    summary = "A device with its slots, health and history",
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "The device", body = DeviceDetail),
        (status = 404, description = "No such device", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    blocking(move || {
        Ok(Json(DeviceDetail {
            device: state.store.device(&id)?,
            inventory: state.store.inventory(&id)?,
        }))
    })
    .await
}
