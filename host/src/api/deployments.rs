//! `/api/v1/deployments`: for now, `?dryRun=true`: resolve the targets, run the strategy in the
//! sandbox and return the plan it would follow, with device ids, without starting anything.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, AppState, Body};
use crate::plugin::{Fleet, PluginKind, StrategyPlugin, builtin};
use crate::store::{DeviceRecord, GroupFilter};

/// A device counts as online when it was seen this recently.
const ONLINE_WITHIN_SECONDS: i64 = 300;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    firmware_version: String,
    device_model: String,
    #[serde(default)]
    target_devices: Option<Vec<String>>,
    /// The same filter a dynamic device group has; `deviceModel` defaults to the deployment's.
    #[serde(default)]
    target_filter: Option<GroupFilter>,
    /// A device group by name.
    #[serde(default)]
    target_group: Option<String>,
    strategy: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    health_policy: Option<String>,
    #[serde(default)]
    health_config: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWave {
    name: String,
    mode: String,
    devices: Vec<String>,
    gate: hotswap_plan::Gate,
    max_in_flight: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    dry_run: bool,
    firmware_version: String,
    device_model: String,
    strategy: String,
    health_policy: String,
    targets: usize,
    waves: Vec<PlannedWave>,
}

fn config_text(field: &str, value: Option<Value>) -> Result<String, ApiError> {
    match value {
        None => Ok("{}".to_string()),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{field}` must be a JSON object, found {other}"
        ))),
    }
}

/// The strategy called `name`: a built-in (`canary`, `Canary`, ...), or an uploaded plugin as
/// `name@version` or `name` (its newest upload).
fn strategy(state: &AppState, name: &str) -> Result<StrategyPlugin, ApiError> {
    if builtin(PluginKind::Strategy, name).is_some() {
        return state
            .runtime
            .builtin_strategy(name)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let uploaded = state.store.list_plugins()?;
    let found = match name.split_once('@') {
        Some((n, v)) => uploaded.into_iter().find(|p| p.name == n && p.version == v),
        None => uploaded.into_iter().rev().find(|p| p.name == name),
    };
    let Some(plugin) = found.filter(|p| p.kind == PluginKind::Strategy.to_string()) else {
        let builtins: Vec<&str> = crate::plugin::BUILTINS
            .iter()
            .filter(|b| b.kind == PluginKind::Strategy)
            .map(|b| b.name)
            .collect();
        return Err(ApiError::bad_request(format!(
            "unknown strategy `{name}`: not a built-in ({}) nor an uploaded strategy plugin",
            builtins.join(", ")
        )));
    };
    let bytes = state.store.blobs().get(&plugin.sha256)?;
    state
        .runtime
        .load_strategy(&bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn fleet(devices: &[DeviceRecord]) -> hotswap_plan::Fleet {
    let now = crate::store::now();
    let devices: Vec<hotswap_plan::Device> = devices
        .iter()
        .map(|d| hotswap_plan::Device {
            id: d.device_id.clone(),
            region: d.region.clone(),
            groups: d.groups.clone(),
            labels: d
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            version: d.firmware_version.clone(),
            online: d
                .last_seen
                .is_some_and(|seen| now - seen <= ONLINE_WITHIN_SECONDS),
        })
        .collect();
    hotswap_plan::Fleet::from_devices(&devices)
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    params: Result<Query<Params>, QueryRejection>,
    Body(r): Body<Request>,
) -> Result<Json<DryRun>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !params.dry_run {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server plans deployments (`?dryRun=true`) but does not run them yet: the orchestrator is not built",
        ));
    }
    let config = config_text("config", r.config)?;
    let health_config = config_text("healthConfig", r.health_config)?;
    tokio::task::spawn_blocking(move || {
        let firmware = state
            .store
            .firmware_by_version(&r.device_model, &r.firmware_version)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "unknown firmware {} for model `{}`: register it first",
                        r.firmware_version, r.device_model
                    ),
                )
            })?;
        if firmware.deprecated {
            return Err(ApiError::bad_request(format!(
                "firmware {} for `{}` is deprecated and cannot be deployed",
                firmware.version, firmware.device_model
            )));
        }
        let given = [
            r.target_devices.is_some(),
            r.target_filter.is_some(),
            r.target_group.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => {
                return Err(ApiError::bad_request(
                    "`targetDevices`, `targetFilter` or `targetGroup` is required",
                ));
            }
            1 => {}
            _ => {
                return Err(ApiError::bad_request(
                    "give one of `targetDevices`, `targetFilter` and `targetGroup`",
                ));
            }
        }
        let devices = match (r.target_devices, r.target_filter) {
            (None, None) => {
                let name = r.target_group.unwrap_or_default();
                let group = state
                    .store
                    .group(&name)
                    .map_err(|_| ApiError::bad_request(format!("unknown device group `{name}`")))?;
                state.store.group_devices(&group)?
            }
            (Some(_), Some(_)) => unreachable!("at most one target kind, checked above"),
            (Some(ids), None) => {
                let (found, missing) = state.store.devices_by_id(&ids)?;
                if let Some(id) = missing.first() {
                    return Err(ApiError::bad_request(format!(
                        "`targetDevices` names `{id}`, which is not registered ({} unknown in all)",
                        missing.len()
                    )));
                }
                found
            }
            (None, Some(f)) => {
                let mut filter = f
                    .to_device_filter()
                    .map_err(|e| ApiError::bad_request(format!("`targetFilter`: {e}")))?;
                filter
                    .device_model
                    .get_or_insert_with(|| r.device_model.clone());
                state.store.list_devices(&filter)?
            }
        };
        if devices.is_empty() {
            return Err(ApiError::bad_request(
                "the targets match no registered device",
            ));
        }
        if let Some(d) = devices.iter().find(|d| d.device_model != r.device_model) {
            return Err(ApiError::bad_request(format!(
                "device `{}` is a `{}`, not a `{}`: firmware for one model cannot go to another",
                d.device_id, d.device_model, r.device_model
            )));
        }
        let strategy = strategy(&state, &r.strategy)?;
        let policy_name = r.health_policy.unwrap_or_else(|| "default".to_string());
        let policy = state
            .runtime
            .builtin_health_policy(&policy_name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // The policy's parameters are checked now, not when the first wave is judged.
        let probe = hotswap_plan::health::WaveStats {
            wave: 0,
            waves: 1,
            mode: hotswap_plan::Mode::Install,
            gate: hotswap_plan::Gate {
                soak_seconds: 0,
                min_success_percent: 0,
                failure_budget: 0,
                min_sample: 1,
            },
            targeted: 1,
            succeeded: 0,
            failed: 0,
            in_progress: 1,
            elapsed_seconds: 0,
            settled_seconds: None,
            deployment_targeted: 1,
            deployment_succeeded: 0,
            deployment_failed: 0,
        };
        policy
            .evaluate(&health_config, &(&probe).into(), &[])
            .map_err(|e| ApiError::bad_request(format!("invalid `healthConfig`: {e}")))?;
        let native = fleet(&devices);
        let plan = strategy
            .plan(&config, &Fleet::from(&native))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let waves = plan
            .waves
            .into_iter()
            .map(|w| PlannedWave {
                name: w.name,
                mode: w.mode.to_string(),
                devices: w
                    .devices
                    .iter()
                    .map(|&d| hotswap_plan::FleetView::id(&native, d as usize).to_string())
                    .collect(),
                gate: w.gate,
                max_in_flight: w.max_in_flight,
            })
            .collect();
        Ok(Json(DryRun {
            dry_run: true,
            firmware_version: firmware.version,
            device_model: firmware.device_model,
            strategy: strategy.name().to_string(),
            health_policy: policy.name().to_string(),
            targets: devices.len(),
            waves,
        }))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}
