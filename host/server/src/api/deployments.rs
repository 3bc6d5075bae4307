//! `/api/v1/deployments`: resolve the targets, run the strategy in the sandbox, check the health
//! policy's configuration, then either return the plan (`?dryRun=true`) or store it and start it
//! (the orchestrator runs it). Status, the decision log, and the operator's pause, resume, cancel
//! and rollback.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_plugin_host::{
    BUILTINS, Fleet, HealthPolicyPlugin, PluginKind, StrategyPlugin, builtin,
};
use hotswap_protocol::deployments::{MAX_DECISIONS, MAX_EXCLUDED_SHOWN};
use hotswap_protocol::{
    ApprovalRequest, Decision, DecisionsQuery, Deployment, DeploymentRequest, DeploymentState,
    DeploymentStatus, DeviceRecord, DryRun, Excluded, PlannedWave, RetryPolicy, UnixMillis,
    UnixSeconds,
};
use hotswap_store::{DeviceFilter, NewDeployment, NewWave, Transitioned};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState, Body, blocking};
use crate::auth::Principal;
use crate::traces::Planned;
use hotswap_protocol::ErrorBody;

/// A device counts as online when it was seen this recently.
const ONLINE_WITHIN_SECONDS: i64 = 300;

/// The per-device timeout's range, in seconds, and its default.
pub const DEVICE_TIMEOUT_SECONDS: (u32, u32, u32) = (1, 86_400, 600);
/// The tries per device's range and default.
pub const MAX_ATTEMPTS: (u32, u32, u32) = (1, 10, 3);
/// The first retry's backoff range, in seconds, and its default.
pub const RETRY_BACKOFF_SECONDS: (u32, u32, u32) = (0, 3_600, 30);

fn bounded(
    field: &str,
    value: Option<u32>,
    (min, max, default): (u32, u32, u32),
) -> Result<u32, ApiError> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be from {min} to {max}, found {v}"
        )))
    }
}

/// `POST /api/v1/deployments`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DryRunQuery {
    /// Plan the rollout and answer with its waves; start nothing.
    #[serde(default)]
    dry_run: bool,
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

/// The uploaded plugin of `kind` called `name`: `name@version`, or `name` for its newest
/// upload; `None` when `name` is a built-in. Returns the name to record and the stored plugin.
fn uploaded(
    state: &AppState,
    kind: PluginKind,
    name: &str,
) -> Result<Option<(String, hotswap_store::StoredPlugin)>, ApiError> {
    if builtin(kind, name).is_some() {
        return Ok(None);
    }
    let uploaded = state.store.list_plugins()?;
    let found = match name.split_once('@') {
        Some((n, v)) => uploaded.into_iter().find(|p| p.name == n && p.version == v),
        None => uploaded.into_iter().rev().find(|p| p.name == name),
    };
    match found.filter(|p| p.kind == kind) {
        Some(p) => Ok(Some((format!("{}@{}", p.name, p.version), p))),
        None => {
            let builtins: Vec<&str> = BUILTINS
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| b.name)
                .collect();
            Err(ApiError::bad_request(format!(
                "unknown {kind} `{name}`: not a built-in ({}) nor an uploaded {kind} plugin",
                builtins.join(", ")
            )))
        }
    }
}

/// The strategy called `name`, built-in or uploaded, with the name to record.
fn strategy(state: &AppState, name: &str) -> Result<(String, StrategyPlugin), ApiError> {
    match uploaded(state, PluginKind::Strategy, name)? {
        None => {
            let plugin = state.runtime.builtin_strategy(name)?;
            Ok((plugin.name().to_string(), plugin))
        }
        Some((recorded, stored)) => {
            let bytes = state.store.blobs().get(&stored.sha256)?;
            let limits = super::plugins::limits_of(&state.runtime, &stored)?;
            let plugin = state.runtime.load_strategy_with(&bytes, &limits)?;
            Ok((recorded, plugin))
        }
    }
}

/// The health policy called `name`, built-in or uploaded, with the name to record and, for an
/// upload, its component's hash.
fn health_policy(
    state: &AppState,
    name: &str,
) -> Result<(String, Option<String>, HealthPolicyPlugin), ApiError> {
    match uploaded(state, PluginKind::HealthPolicy, name)? {
        None => {
            let plugin = state.runtime.builtin_health_policy(name)?;
            Ok((plugin.name().to_string(), None, plugin))
        }
        Some((recorded, stored)) => {
            let bytes = state.store.blobs().get(&stored.sha256)?;
            let limits = super::plugins::limits_of(&state.runtime, &stored)?;
            let plugin = state.runtime.load_health_policy_with(&bytes, &limits)?;
            Ok((recorded, Some(stored.sha256), plugin))
        }
    }
}

/// The calendar day (UTC) of `at`, for messages: `2027-06-30`.
fn date(at: UnixSeconds) -> String {
    time::OffsetDateTime::from_unix_timestamp(at.0)
        .map_or_else(|_| at.to_string(), |t| t.date().to_string())
}

fn fleet(devices: &[DeviceRecord], now: UnixMillis) -> hotswap_plan::Fleet {
    let now = now.seconds();
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
                .is_some_and(|seen| now.0 - seen.0 <= ONLINE_WITHIN_SECONDS),
        })
        .collect();
    hotswap_plan::Fleet::from_devices(&devices)
}

#[utoipa::path(
    post,
    path = "/api/v1/deployments",
    operation_id = "createDeployment",
    tag = "deployments",
    summary = "Start a deployment, or plan one with dryRun=true",
    request_body = DeploymentRequest,
    params(DryRunQuery),
    responses(
        (status = 201, description = "Started", body = DeploymentStatus),
        (status = 200, description = "The plan of a dry run; nothing started", body = DryRun),
        (status = 404, description = "Unknown firmware, group, strategy or policy", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    params: Result<Query<DryRunQuery>, QueryRejection>,
    Body(r): Body<DeploymentRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let config = config_text("config", r.config)?;
    let health_config = config_text("healthConfig", r.health_config)?;
    let retry = RetryPolicy {
        device_timeout_seconds: bounded(
            "deviceTimeoutSeconds",
            r.device_timeout_seconds,
            DEVICE_TIMEOUT_SECONDS,
        )?,
        max_attempts: bounded("maxAttempts", r.max_attempts, MAX_ATTEMPTS)?,
        retry_backoff_seconds: bounded(
            "retryBackoffSeconds",
            r.retry_backoff_seconds,
            RETRY_BACKOFF_SECONDS,
        )?,
    };
    // The request's trace becomes the deployment's (taken here: the blocking pool's thread is
    // outside the request's span).
    let trace = state.traces.current().filter(|_| !params.dry_run);
    blocking(move || {
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
        let now = state.store.clock().now().seconds();
        if let Some(at) = firmware.sunset_at.filter(|at| *at <= now) {
            return Err(ApiError::bad_request(format!(
                "firmware {} for `{}` was sunset on {} (at {at}) and can no longer be deployed",
                firmware.version,
                firmware.device_model,
                date(at)
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
            (Some(ids), _) => {
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
                let mut filter = DeviceFilter::matching(&f)
                    .map_err(|e| ApiError::bad_request(format!("`targetFilter`: {e}")))?;
                filter
                    .device_model
                    .get_or_insert_with(|| r.device_model.clone());
                state.store.list_devices(&filter)?
            }
            (None, None) => {
                let name = r.target_group.unwrap_or_default();
                let group = state
                    .store
                    .group(&name)
                    .map_err(|_| ApiError::bad_request(format!("unknown device group `{name}`")))?;
                state.store.group_devices(&group)?
            }
        };
        let matched = devices.len();
        let devices: Vec<DeviceRecord> = devices
            .into_iter()
            .filter(|d| d.status.deployable())
            .collect();
        if devices.is_empty() {
            return Err(ApiError::bad_request(if matched == 0 {
                "the targets match no registered device".to_string()
            } else {
                format!(
                    "the targets match {matched} devices, none of them deployable (quarantined, pending, rejected or decommissioned)"
                )
            }));
        }
        let models = &firmware.compatibility.device_models;
        if let Some(d) = devices.iter().find(|d| !models.contains(&d.device_model)) {
            return Err(ApiError::bad_request(format!(
                "device `{}` is a `{}`, and firmware {} runs on {}: firmware for one model cannot go to another",
                d.device_id,
                d.device_model,
                firmware.version,
                models
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Targets whose installed version the new one may not go over are left out, and said.
        let (devices, excluded): (Vec<DeviceRecord>, Vec<Excluded>) = match &firmware
            .compatibility
            .installed_versions
        {
            None => (devices, Vec::new()),
            Some(range) => {
                // Parsed once for every target.
                let allowed = hotswap_store::InstalledVersions::parse(range, &firmware.version);
                let mut kept = Vec::with_capacity(devices.len());
                let mut excluded = Vec::new();
                for d in devices {
                    let refused = match &allowed {
                        Ok(a) => a.refuses(&d.firmware_version, &firmware.version),
                        Err(reason) => Some(reason.clone()),
                    };
                    match refused {
                        None => kept.push(d),
                        Some(reason) => excluded.push(Excluded {
                            device_id: d.device_id,
                            reason,
                        }),
                    }
                }
                (kept, excluded)
            }
        };
        if devices.is_empty() {
            let first = &excluded[0];
            return Err(ApiError::bad_request(format!(
                "all {} deployable targets are outside firmware {}'s compatibility, so nothing would be deployed: `{}` {}{}",
                excluded.len(),
                firmware.version,
                first.device_id,
                first.reason,
                match excluded.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            )));
        }
        let (strategy_name, strategy) = strategy(&state, &r.strategy)?;
        let policy_name = r.health_policy.unwrap_or_else(|| "default".to_string());
        let (policy_name, policy_sha, policy) = health_policy(&state, &policy_name)?;
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
        let timings = state.metrics.timings();
        timings
            .time(PluginKind::HealthPolicy, "evaluate", || {
                policy.evaluate(&health_config, &(&probe).into(), &[])
            })
            .map_err(|e| match ApiError::from(e) {
                // The policy refused the configuration: say which one.
                refused if refused.status() == StatusCode::BAD_REQUEST => {
                    refused.prefixed("invalid `healthConfig`")
                }
                other => other,
            })?;
        let native = fleet(&devices, state.store.clock().now());
        let planning = std::time::SystemTime::now();
        let (plan, fuel_used) = timings
            .time(PluginKind::Strategy, "plan", || {
                strategy.plan_metered(&config, &Fleet::from(&native))
            })
            .map_err(ApiError::from)?;
        state.traces.planned(
            trace.as_ref(),
            Planned {
                strategy: &strategy_name,
                devices: devices.len(),
                waves: plan.waves.len(),
                fuel_used,
                started: planning,
            },
        );
        if !params.dry_run {
            let waves = plan
                .waves
                .into_iter()
                .map(|w| NewWave {
                    devices: w
                        .devices
                        .iter()
                        .map(|&i| {
                            let d = &devices[i as usize];
                            (d.device_id.clone(), d.firmware_version.clone())
                        })
                        .collect(),
                    name: w.name,
                    mode: w.mode,
                    gate: w.gate,
                    max_in_flight: w.max_in_flight,
                })
                .collect();
            // Four eyes for protected devices: a group that asks for it, or a protected label.
            let targets: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();
            let groups = state.store.protecting_groups(&targets)?;
            let labelled = devices.iter().any(|d| {
                state
                    .protected_labels
                    .iter()
                    .any(|(k, v)| d.labels.get(k) == Some(v))
            });
            let needs_approval = !groups.is_empty() || labelled;
            let id = state.store.create_deployment(&NewDeployment {
                created_by: by.actor(),
                needs_approval,
                firmware_id: firmware.id,
                device_model: firmware.device_model,
                strategy: strategy_name,
                strategy_config: config,
                health_policy: policy_name,
                health_sha256: policy_sha,
                health_config,
                retry,
                waves,
                excluded: excluded
                    .into_iter()
                    .map(|e| (e.device_id, e.reason))
                    .collect(),
                traceparent: trace.map(|t| t.to_string()),
            })?;
            state.metrics.deployment_started();
            let status = state.store.deployment_status(id)?;
            return Ok((
                StatusCode::CREATED,
                Json(serde_json::to_value(status).map_err(ApiError::internal)?),
            ));
        }
        let waves = plan
            .waves
            .into_iter()
            .map(|w| PlannedWave {
                name: w.name,
                mode: w.mode,
                devices: w
                    .devices
                    .iter()
                    .map(|&d| hotswap_plan::FleetView::id(&native, d as usize).to_string())
                    .collect(),
                gate: w.gate,
                max_in_flight: w.max_in_flight,
            })
            .collect();
        let dry_run = DryRun {
            dry_run: true,
            firmware_version: firmware.version,
            device_model: firmware.device_model,
            strategy: strategy_name,
            health_policy: policy_name,
            targets: devices.len(),
            quarantined_skipped: matched - devices.len() - excluded.len(),
            excluded_count: excluded.len(),
            excluded: excluded.into_iter().take(MAX_EXCLUDED_SHOWN).collect(),
            waves,
        };
        Ok((
            StatusCode::OK,
            Json(serde_json::to_value(dry_run).map_err(ApiError::internal)?),
        ))
    })
    .await
}

/// `GET /api/v1/deployments`: the newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    operation_id = "listDeployments",
    tag = "deployments",
    summary = "The newest deployments first",
    responses(
        (status = 200, description = "The deployments", body = Vec<Deployment>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Deployment>>, ApiError> {
    blocking(move || Ok(Json(state.store.list_deployments(1000)?))).await
}

fn id(raw: &str) -> Result<i64, ApiError> {
    super::path_id("deployment", raw)
}

/// `GET /api/v1/deployments/{id}` and `.../status`: state, waves with their counts by device
/// state, recent events and decisions.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}",
    operation_id = "getDeployment",
    tag = "deployments",
    summary = "A deployment, wave by wave",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Its status", body = DeploymentStatus),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let id = id(&raw)?;
    blocking(move || Ok(Json(state.store.deployment_status(id)?))).await
}

/// `GET /api/v1/deployments/{id}/status`: the same as `GET /api/v1/deployments/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/status",
    operation_id = "getDeploymentStatus",
    tag = "deployments",
    summary = "The same as GET /api/v1/deployments/{id}",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Its status", body = DeploymentStatus),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn status_again(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    status(state, raw).await
}

/// `GET /api/v1/deployments/{id}/decisions[?limit=N&samples=false]`: the health policy's
/// newest verdicts with what it was shown, oldest first, for replay.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{id}/decisions",
    operation_id = "getDecisions",
    tag = "deployments",
    summary = "The health policy's verdicts with what it was shown",
    params(("id" = String, Path, description = "The deployment id (a number)"), DecisionsQuery),
    responses(
        (status = 200, description = "Oldest first", body = Vec<Decision>),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn decisions(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Json<Vec<Decision>>, ApiError> {
    let id = id(&raw)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !(1..=MAX_DECISIONS).contains(&q.limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` is 1 to {MAX_DECISIONS}, found {}",
            q.limit
        )));
    }
    blocking(move || {
        state.store.deployment(id)?;
        Ok(Json(state.store.decisions(id, q.limit, q.samples)?))
    })
    .await
}

/// The operator's actions on a deployment, each a route of its own.
#[derive(Debug, Clone, Copy)]
enum Action {
    Pause,
    Resume,
    Cancel,
    Rollback,
}

/// `POST /api/v1/deployments/{id}/pause`: a running deployment hands out nothing more.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/pause",
    operation_id = "pauseDeployment",
    tag = "deployments",
    summary = "Pause a running deployment",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not in a state this applies to", body = ErrorBody),
    )
)]
pub async fn pause(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    act(state, raw, Action::Pause).await
}

/// `POST /api/v1/deployments/{id}/resume`.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/resume",
    operation_id = "resumeDeployment",
    tag = "deployments",
    summary = "Resume a paused deployment",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not in a state this applies to", body = ErrorBody),
    )
)]
pub async fn resume(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    act(state, raw, Action::Resume).await
}

/// `POST /api/v1/deployments/{id}/cancel`: devices not yet updated are left as they are.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/cancel",
    operation_id = "cancelDeployment",
    tag = "deployments",
    summary = "Cancel a deployment",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not in a state this applies to", body = ErrorBody),
    )
)]
pub async fn cancel(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    act(state, raw, Action::Cancel).await
}

/// `POST /api/v1/deployments/{id}/rollback`: every device the deployment updated is sent back.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/rollback",
    operation_id = "rollbackDeployment",
    tag = "deployments",
    summary = "Send every updated device back",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not in a state this applies to", body = ErrorBody),
    )
)]
pub async fn rollback(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    act(state, raw, Action::Rollback).await
}

async fn act(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    action: Action,
) -> Result<Json<Deployment>, ApiError> {
    use DeploymentState::*;
    let id = id(&raw)?;
    let doorbell = state.doorbell.clone();
    let (from, to, reason): (&[DeploymentState], _, _) = match action {
        Action::Pause => (&[Running], Paused, "paused by the operator"),
        Action::Resume => (&[Paused], Running, "resumed by the operator"),
        Action::Cancel => (
            &[WaitingForApproval, Running, Paused],
            Cancelled,
            "cancelled by the operator",
        ),
        // A completed deployment too: a problem found later sends back every device that still
        // runs its version.
        Action::Rollback => (
            &[Running, Paused, Completed],
            RollingBack,
            "rollback asked by the operator",
        ),
    };
    let changed = blocking(move || transition(&state, id, from, to, reason)).await?;
    doorbell.ring(changed.handed_out.iter().map(String::as_str));
    Ok(Json(changed.deployment))
}

/// An operator's transition, recorded in the deployment's trace when it ends the wave under
/// way or the deployment itself.
fn transition(
    state: &AppState,
    id: i64,
    from: &[DeploymentState],
    to: DeploymentState,
    reason: &str,
) -> Result<Transitioned, ApiError> {
    if !state.traces.on() {
        return Ok(state.store.transition(id, from, to, reason)?);
    }
    let before = state.store.deployment(id)?;
    let changed = state.store.transition(id, from, to, reason)?;
    let after = &changed.deployment;
    let wave_cut = matches!(
        before.state,
        DeploymentState::Running | DeploymentState::Paused
    ) && matches!(
        after.state,
        DeploymentState::Cancelled | DeploymentState::RollingBack
    );
    if wave_cut {
        let status = state.store.deployment_status(id)?;
        if let Some(w) = status
            .wave_status
            .get(before.current_wave as usize)
            .filter(|w| w.started_at.is_some())
        {
            state
                .traces
                .wave_ended(after, before.current_wave, w.into(), Some(reason));
        }
    }
    if !after.state.is_active() {
        state.traces.deployment_ended(after);
    }
    Ok(changed)
}

/// `POST /api/v1/deployments/{id}/approve`: a deployment waiting for an approval starts. Four
/// eyes: never by the credential that created it.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/approve",
    operation_id = "approveDeployment",
    tag = "deployments",
    summary = "Approve a deployment (not by its creator)",
    request_body = ApprovalRequest,
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not waiting for an approval", body = ErrorBody),
    )
)]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    Body(r): Body<ApprovalRequest>,
) -> Result<Json<Deployment>, ApiError> {
    decide_approval(state, by, &raw, r, DeploymentState::Running).await
}

/// `POST /api/v1/deployments/{id}/deny`: a deployment waiting for an approval ends, cancelled.
#[utoipa::path(
    post,
    path = "/api/v1/deployments/{id}/deny",
    operation_id = "denyDeployment",
    tag = "deployments",
    summary = "Deny a deployment; it is cancelled",
    request_body = ApprovalRequest,
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not waiting for an approval", body = ErrorBody),
    )
)]
pub async fn deny(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    Body(r): Body<ApprovalRequest>,
) -> Result<Json<Deployment>, ApiError> {
    decide_approval(state, by, &raw, r, DeploymentState::Cancelled).await
}

async fn decide_approval(
    state: Arc<AppState>,
    by: Principal,
    raw: &str,
    r: ApprovalRequest,
    to: DeploymentState,
) -> Result<Json<Deployment>, ApiError> {
    let id = id(raw)?;
    let actor = by.actor();
    let doorbell = state.doorbell.clone();
    let changed = blocking(move || {
        let d = state.store.deployment(id)?;
        if d.created_by == actor {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{actor} started deployment {id}, so it cannot approve or deny it: four eyes, someone else decides"
                ),
            ));
        }
        let verb = if to == DeploymentState::Running {
            "approved"
        } else {
            "denied"
        };
        let reason = match r.remark.trim() {
            "" => format!("{verb} by {actor}"),
            remark => format!("{verb} by {actor}: {remark}"),
        };
        transition(
            &state,
            id,
            &[DeploymentState::WaitingForApproval],
            to,
            &reason,
        )
    })
    .await?;
    doorbell.ring(changed.handed_out.iter().map(String::as_str));
    Ok(Json(changed.deployment))
}
