//! `/api/v1/devices`: register devices, list them with filters and cursor paging, show one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body};
use crate::store::{DeviceFilter, DeviceRecord, NewDevice, parse_label};

/// The most devices one page lists.
pub const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    device_id: String,
    device_model: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    firmware_version: String,
}

/// Ids, models, regions, group names and label keys: 1 to 128 characters of letters, digits and
/// `-_.:`, so they read the same in URLs, logs and filters.
pub(super) fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`, found {value:?}"
        )))
    }
}

impl Registration {
    /// Checks every field; the device to store.
    fn check(self) -> Result<NewDevice, ApiError> {
        check_name("deviceId", &self.device_id)?;
        if self.device_id == "batch" {
            return Err(ApiError::bad_request(
                "`deviceId` cannot be `batch`: /api/v1/devices/batch registers devices in bulk",
            ));
        }
        check_name("deviceModel", &self.device_model)?;
        if !self.region.is_empty() {
            check_name("region", &self.region)?;
        }
        for g in &self.groups {
            check_name("groups", g)?;
        }
        for (k, v) in &self.labels {
            check_name("labels", k)?;
            if v.len() > 256 {
                return Err(ApiError::bad_request(format!(
                    "label `{k}` has a value of {} bytes, the limit is 256",
                    v.len()
                )));
            }
        }
        if !self.firmware_version.is_empty()
            && semver::Version::parse(&self.firmware_version).is_err()
        {
            return Err(ApiError::bad_request(format!(
                "`firmwareVersion` must be semver such as 1.2.0, found {:?}",
                self.firmware_version
            )));
        }
        Ok(NewDevice {
            device_id: self.device_id,
            device_model: self.device_model,
            region: self.region,
            labels: self.labels,
            groups: self.groups,
            firmware_version: self.firmware_version,
        })
    }
}

pub async fn register(
    State(state): State<Arc<AppState>>,
    Body(r): Body<Registration>,
) -> Result<(StatusCode, Json<DeviceRecord>), ApiError> {
    let new = r.check()?;
    let device = super::blocking(move || Ok(state.store.add_device(new)?)).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

/// The most devices one `POST /api/v1/devices/batch` registers.
pub const MAX_BATCH: usize = 10_000;

/// What to do with devices of a batch that are registered already.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IfRegistered {
    /// Refuse the whole batch, naming them (the default).
    #[default]
    Fail,
    /// Leave them as they are and register the others.
    Skip,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    devices: Vec<Registration>,
    #[serde(default)]
    if_registered: IfRegistered,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchAnswer {
    created: usize,
    /// Devices left as they were because they were registered already (`ifRegistered: skip`).
    skipped: Vec<String>,
}

/// Registers up to [`MAX_BATCH`] devices in one transaction: all of them or, on any error,
/// none. Each error names the device's place in the batch.
pub async fn register_batch(
    State(state): State<Arc<AppState>>,
    Body(batch): Body<Batch>,
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
    for (i, r) in batch.devices.into_iter().enumerate() {
        let new = r
            .check()
            .map_err(|e| e.prefixed(&format!("devices[{i}]")))?;
        if !seen.insert(new.device_id.clone()) {
            return Err(ApiError::bad_request(format!(
                "devices[{i}]: `{}` appears twice in the batch",
                new.device_id
            )));
        }
        devices.push(new);
    }
    let skip = batch.if_registered == IfRegistered::Skip;
    let (created, skipped) =
        super::blocking(move || Ok(state.store.add_devices(&devices, skip)?)).await?;
    Ok((StatusCode::CREATED, Json(BatchAnswer { created, skipped })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    device_model: Option<String>,
    region: Option<String>,
    group: Option<String>,
    /// `key=value`.
    label: Option<String>,
    firmware_version: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct Page {
    devices: Vec<DeviceRecord>,
    /// Pass as `after` for the next page; null on the last page.
    next: Option<String>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
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
        after: q.after,
        limit,
    };
    let devices = state.store.list_devices(&filter)?;
    let next = (devices.len() == limit)
        .then(|| devices.last().map(|d| d.device_id.clone()))
        .flatten();
    Ok(Json(Page { devices, next }))
}

/// A device with its inventory: slots, last health, deployment history.
#[derive(Serialize)]
pub struct Detail {
    #[serde(flatten)]
    device: DeviceRecord,
    #[serde(flatten)]
    inventory: crate::store::Inventory,
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Detail>, ApiError> {
    super::blocking(move || {
        Ok(Json(Detail {
            device: state.store.device(&id)?,
            inventory: state.store.inventory(&id)?,
        }))
    })
    .await
}
