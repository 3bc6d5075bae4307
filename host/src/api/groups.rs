//! `/api/v1/device-groups`: named target sets, static (`devices`) or dynamic (`filter`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body};
use crate::store::{DeviceGroup, GroupFilter};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Creation {
    name: String,
    #[serde(default)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<GroupFilter>,
}

/// A group with the devices it stands for now.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    #[serde(flatten)]
    group: DeviceGroup,
    members: Vec<String>,
}

/// A group with the ids of the devices it stands for now.
fn resolved(state: &AppState, group: DeviceGroup) -> Result<Resolved, ApiError> {
    let members = state
        .store
        .group_devices(&group)?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    Ok(Resolved { group, members })
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Body(c): Body<Creation>,
) -> Result<(StatusCode, Json<Resolved>), ApiError> {
    super::devices::check_name("name", &c.name)?;
    let group = match (c.devices, c.filter) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `devices` (a static group) or `filter` (a dynamic one), not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "`devices` (a static group) or `filter` (a dynamic one) is required",
            ));
        }
        (Some(ids), None) => {
            if ids.is_empty() {
                return Err(ApiError::bad_request("`devices` is empty"));
            }
            let (_, missing) = state.store.devices_by_id(&ids)?;
            if let Some(id) = missing.first() {
                return Err(ApiError::bad_request(format!(
                    "`devices` names `{id}`, which is not registered ({} unknown in all)",
                    missing.len()
                )));
            }
            DeviceGroup {
                name: c.name,
                devices: Some(ids),
                filter: None,
                created_at: 0,
            }
        }
        (None, Some(filter)) => {
            filter.to_device_filter().map_err(ApiError::bad_request)?;
            if filter == GroupFilter::default() {
                return Err(ApiError::bad_request(
                    "`filter` is empty: it would match every device; name at least one field",
                ));
            }
            DeviceGroup {
                name: c.name,
                devices: None,
                filter: Some(filter),
                created_at: 0,
            }
        }
    };
    let store_state = state.clone();
    let group = super::blocking(move || Ok(store_state.store.add_group(&group)?)).await?;
    Ok((StatusCode::CREATED, Json(resolved(&state, group)?)))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<DeviceGroup>>, ApiError> {
    Ok(Json(state.store.list_groups()?))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Resolved>, ApiError> {
    Ok(Json(resolved(&state, state.store.group(&name)?)?))
}
