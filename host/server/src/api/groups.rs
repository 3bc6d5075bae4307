//! `/api/v1/device-groups`: named target sets, static (`devices`) or dynamic (`filter`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hotswap_protocol::{DeviceGroup, GroupCreation, GroupFilter, ResolvedGroup, UnixSeconds};
use hotswap_store::DeviceFilter;

use super::{ApiError, AppState, Body, blocking};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// A group with the ids of the devices it stands for now.
fn resolved(state: &AppState, group: DeviceGroup) -> Result<ResolvedGroup, ApiError> {
    let members = state
        .store
        .group_devices(&group)?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    Ok(ResolvedGroup { group, members })
}

#[utoipa::path(
    post,
    path = routes::GROUPS,
    operation_id = "createGroup",
    tag = "groups",
    summary = "Create a static or dynamic device group",
    request_body = GroupCreation,
    responses(
        (status = 201, description = "Created", body = ResolvedGroup),
        (status = 409, description = "The group exists", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Body(c): Body<GroupCreation>,
) -> Result<(StatusCode, Json<ResolvedGroup>), ApiError> {
    hotswap_protocol::Name::parse("name", &c.name)?;
    blocking(move || {
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
                    requires_approval: c.requires_approval,
                    created_at: UnixSeconds::default(),
                }
            }
            (None, Some(filter)) => {
                DeviceFilter::matching(&filter).map_err(ApiError::bad_request)?;
                if filter == GroupFilter::default() {
                    return Err(ApiError::bad_request(
                        "`filter` is empty: it would match every device; name at least one field",
                    ));
                }
                DeviceGroup {
                    name: c.name,
                    devices: None,
                    filter: Some(filter),
                    requires_approval: c.requires_approval,
                    created_at: UnixSeconds::default(),
                }
            }
        };
        let group = state.store.add_group(&group)?;
        Ok((StatusCode::CREATED, Json(resolved(&state, group)?)))
    })
    .await
}

#[utoipa::path(
    get,
    path = routes::GROUPS,
    operation_id = "listGroups",
    tag = "groups",
    summary = "List device groups",
    responses(
        (status = 200, description = "The groups", body = Vec<DeviceGroup>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<DeviceGroup>>, ApiError> {
    Ok(Json(
        blocking(move || Ok(state.store.list_groups()?)).await?,
    ))
}

#[utoipa::path(
    get,
    path = routes::GROUP,
    operation_id = "getGroup",
    tag = "groups",
    summary = "A group with its members",
    params(("name" = String, Path, description = "The group's name")),
    responses(
        (status = 200, description = "The group", body = ResolvedGroup),
        (status = 404, description = "No such group", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ResolvedGroup>, ApiError> {
    blocking(move || Ok(Json(resolved(&state, state.store.group(&name)?)?))).await
}
