//! Starting a deployment, in the order its checks run: the firmware (registered, not deprecated,
//! not sunset); the targets (by ids, filter or group, exactly one); which of them are deployable
//! and of a model the firmware runs on; which the firmware may not be installed over (left out,
//! and said); the strategy and the health policy, built-in or uploaded, the policy's
//! configuration checked now rather than at the first wave; the plan; and, to store it, the
//! four-eyes rule for protected devices. [`Rollout::plan`] stops before storing and answers with
//! the plan; [`Rollout::start`] stores it and the orchestrator runs it.

use hotswap_plugin_host::{FleetRecord, PluginKind};
use hotswap_protocol::deployments::MAX_EXCLUDED_SHOWN;
use hotswap_protocol::{
    DeploymentRequest, DeploymentStatus, DeviceRecord, DryRun, Excluded, Firmware, PlannedWave,
    RetryPolicy, TraceParent, UnixMillis, UnixSeconds,
};
use hotswap_store::{DeviceFilter, InstalledVersions, NewDeployment, NewWave};
use serde_json::Value;

use super::plugins::{self, NamedHealthPolicy, NamedStrategy};
use super::{Rollout, RolloutError};
use crate::traces::Planned;

/// A device counts as online when it was seen this recently.
pub const ONLINE_WITHIN_SECONDS: i64 = 300;

/// A deployment started: its status as stored.
pub type Started = DeploymentStatus;

/// Everything a deployment is made of, checked, before it is stored or shown.
struct Prepared {
    firmware: Firmware,
    /// The targets the firmware goes to, in the order the strategy was given them.
    devices: Vec<DeviceRecord>,
    /// Targets the firmware may not be installed over.
    excluded: Vec<Excluded>,
    /// How many devices the targets matched, undeployable ones included.
    matched: usize,
    config: String,
    health_config: String,
    retry: RetryPolicy,
    strategy: NamedStrategy,
    policy: NamedHealthPolicy,
    plan: hotswap_plan::Plan,
    /// The fleet the strategy planned over, to name a wave's devices by id.
    fleet: hotswap_plan::Fleet,
}

impl Rollout {
    /// Stores the deployment `request` asks for, made by `by` (as the audit log names it), and
    /// starts it, or leaves it waiting for an approval when it reaches protected devices.
    /// `trace` becomes the deployment's trace.
    pub fn start(
        &self,
        request: DeploymentRequest,
        by: &str,
        trace: Option<TraceParent>,
    ) -> Result<Started, RolloutError> {
        let p = self.prepare(request, trace.as_ref())?;
        let waves = p
            .plan
            .waves
            .into_iter()
            .map(|w| NewWave {
                devices: w
                    .devices
                    .iter()
                    .map(|&i| {
                        let d = &p.devices[i as usize];
                        (d.device_id.clone(), d.firmware_version.clone())
                    })
                    .collect(),
                name: w.name,
                mode: w.mode,
                gate: w.gate,
                max_in_flight: w.max_in_flight,
            })
            .collect();
        let needs_approval = self.needs_approval(&p.devices)?;
        let id = self.store.create_deployment(&NewDeployment {
            created_by: by.to_string(),
            needs_approval,
            firmware_id: p.firmware.id,
            device_model: p.firmware.device_model,
            strategy: p.strategy.recorded,
            strategy_config: p.config,
            health_policy: p.policy.recorded,
            health_sha256: p.policy.sha256,
            health_config: p.health_config,
            retry: p.retry,
            waves,
            excluded: p
                .excluded
                .into_iter()
                .map(|e| (e.device_id, e.reason))
                .collect(),
            traceparent: trace.map(|t| t.to_string()),
        })?;
        self.metrics.deployment_started();
        Ok(self.store.deployment_status(id)?)
    }

    /// The plan `request` would start, wave by wave, with the targets left out; nothing is
    /// stored.
    pub fn plan(&self, request: DeploymentRequest) -> Result<DryRun, RolloutError> {
        let p = self.prepare(request, None)?;
        let waves = p
            .plan
            .waves
            .into_iter()
            .map(|w| PlannedWave {
                name: w.name,
                mode: w.mode,
                devices: w
                    .devices
                    .iter()
                    .map(|&d| hotswap_plan::FleetView::id(&p.fleet, d as usize).to_string())
                    .collect(),
                gate: w.gate,
                max_in_flight: w.max_in_flight,
            })
            .collect();
        Ok(DryRun {
            dry_run: true,
            firmware_version: p.firmware.version,
            device_model: p.firmware.device_model,
            strategy: p.strategy.recorded,
            health_policy: p.policy.recorded,
            targets: p.devices.len(),
            quarantined_skipped: p.matched - p.devices.len() - p.excluded.len(),
            excluded_count: p.excluded.len(),
            excluded: p.excluded.into_iter().take(MAX_EXCLUDED_SHOWN).collect(),
            waves,
        })
    }

    /// Four eyes for protected devices: a group that asks for it, or a protected label.
    pub fn needs_approval(&self, devices: &[DeviceRecord]) -> Result<bool, RolloutError> {
        let targets: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();
        if !self.store.protecting_groups(&targets)?.is_empty() {
            return Ok(true);
        }
        Ok(devices.iter().any(|d| {
            self.protected_labels
                .iter()
                .any(|(k, v)| d.labels.get(k) == Some(v))
        }))
    }

    fn prepare(
        &self,
        mut r: DeploymentRequest,
        trace: Option<&TraceParent>,
    ) -> Result<Prepared, RolloutError> {
        let config = config_text("config", r.config.take())?;
        let health_config = config_text("healthConfig", r.health_config.take())?;
        let retry = r.retry_policy().map_err(RolloutError::Invalid)?;
        let firmware = self.deployable_firmware(&r.device_model, &r.firmware_version)?;
        let matching = self.targets(&r)?;
        let matched = matching.len();
        let devices = deployable(matching, &firmware)?;
        let (devices, excluded) = installable(devices, &firmware);
        if devices.is_empty() {
            let first = &excluded[0];
            return Err(RolloutError::Invalid(format!(
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
        let strategy = plugins::strategy(&self.store, &self.runtime, &r.strategy)?;
        let policy_name = r.health_policy.as_deref().unwrap_or("default");
        let policy = plugins::health_policy(&self.store, &self.runtime, policy_name)?;
        self.check_health_config(&policy, &health_config)?;
        let fleet = fleet(&devices, self.store.clock().now());
        let planning = std::time::SystemTime::now();
        let (plan, fuel_used) =
            self.metrics
                .timings()
                .time(PluginKind::Strategy, "plan", || {
                    strategy
                        .plugin
                        .plan_metered(&config, &FleetRecord::from(&fleet))
                })?;
        self.traces.planned(
            trace,
            Planned {
                strategy: &strategy.recorded,
                devices: devices.len(),
                waves: plan.waves.len(),
                fuel_used,
                started: planning,
            },
        );
        Ok(Prepared {
            firmware,
            devices,
            excluded,
            matched,
            config,
            health_config,
            retry,
            strategy,
            policy,
            plan,
            fleet,
        })
    }

    /// The version `model` runs as `version`, if it may still be deployed.
    fn deployable_firmware(&self, model: &str, version: &str) -> Result<Firmware, RolloutError> {
        let firmware = self
            .store
            .firmware_by_version(model, version)?
            .ok_or_else(|| {
                RolloutError::NotFound(format!(
                    "unknown firmware {version} for model `{model}`: register it first"
                ))
            })?;
        if firmware.deprecated {
            return Err(RolloutError::Invalid(format!(
                "firmware {} for `{}` is deprecated and cannot be deployed",
                firmware.version, firmware.device_model
            )));
        }
        let now = self.store.clock().now().seconds();
        if let Some(at) = firmware.sunset_at.filter(|at| *at <= now) {
            return Err(RolloutError::Invalid(format!(
                "firmware {} for `{}` was sunset on {} (at {at}) and can no longer be deployed",
                firmware.version,
                firmware.device_model,
                date(at)
            )));
        }
        Ok(firmware)
    }

    /// The devices the request targets: by ids, by a filter (of the deployment's model unless it
    /// says another), or by a group; exactly one of the three.
    fn targets(&self, r: &DeploymentRequest) -> Result<Vec<DeviceRecord>, RolloutError> {
        let given = [
            r.target_devices.is_some(),
            r.target_filter.is_some(),
            r.target_group.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => {
                return Err(RolloutError::Invalid(
                    "`targetDevices`, `targetFilter` or `targetGroup` is required".into(),
                ));
            }
            1 => {}
            _ => {
                return Err(RolloutError::Invalid(
                    "give one of `targetDevices`, `targetFilter` and `targetGroup`".into(),
                ));
            }
        }
        if let Some(ids) = &r.target_devices {
            let (found, missing) = self.store.devices_by_id(ids)?;
            if let Some(id) = missing.first() {
                return Err(RolloutError::Invalid(format!(
                    "`targetDevices` names `{id}`, which is not registered ({} unknown in all)",
                    missing.len()
                )));
            }
            return Ok(found);
        }
        if let Some(f) = &r.target_filter {
            let mut filter = DeviceFilter::matching(f)
                .map_err(|e| RolloutError::Invalid(format!("`targetFilter`: {e}")))?;
            filter
                .device_model
                .get_or_insert_with(|| r.device_model.clone());
            return Ok(self.store.list_devices(&filter)?);
        }
        let name = r.target_group.as_deref().unwrap_or_default();
        let group = self
            .store
            .group(name)
            .map_err(|_| RolloutError::Invalid(format!("unknown device group `{name}`")))?;
        Ok(self.store.group_devices(&group)?)
    }

    /// The policy's parameters, checked now rather than when the first wave is judged: one call
    /// on a wave that has just begun.
    fn check_health_config(
        &self,
        policy: &NamedHealthPolicy,
        health_config: &str,
    ) -> Result<(), RolloutError> {
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
        self.metrics
            .timings()
            .time(PluginKind::HealthPolicy, "evaluate", || {
                policy.plugin.evaluate(health_config, &(&probe).into(), &[])
            })
            .map(drop)
            .map_err(RolloutError::HealthConfig)
    }
}

/// A plugin's configuration as the text it is given: an object, `{}` when left out.
fn config_text(field: &str, value: Option<Value>) -> Result<String, RolloutError> {
    match value {
        None => Ok("{}".to_string()),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        Some(other) => Err(RolloutError::Invalid(format!(
            "`{field}` must be a JSON object, found {other}"
        ))),
    }
}

/// The targets that may be deployed to (not quarantined, pending, rejected or decommissioned),
/// each of a model `firmware` runs on.
fn deployable(
    matching: Vec<DeviceRecord>,
    firmware: &Firmware,
) -> Result<Vec<DeviceRecord>, RolloutError> {
    let matched = matching.len();
    let devices: Vec<DeviceRecord> = matching
        .into_iter()
        .filter(|d| d.status.deployable())
        .collect();
    if devices.is_empty() {
        return Err(RolloutError::Invalid(if matched == 0 {
            "the targets match no registered device".to_string()
        } else {
            format!(
                "the targets match {matched} devices, none of them deployable (quarantined, pending, rejected or decommissioned)"
            )
        }));
    }
    let models = &firmware.compatibility.device_models;
    if let Some(d) = devices.iter().find(|d| !models.contains(&d.device_model)) {
        return Err(RolloutError::Invalid(format!(
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
    Ok(devices)
}

/// The targets split into those `firmware` may be installed over and those it may not (its
/// `installedVersions` range), each of the latter with the reason.
fn installable(
    devices: Vec<DeviceRecord>,
    firmware: &Firmware,
) -> (Vec<DeviceRecord>, Vec<Excluded>) {
    let Some(range) = &firmware.compatibility.installed_versions else {
        return (devices, Vec::new());
    };
    // Parsed once for every target.
    let allowed = InstalledVersions::parse(range, &firmware.version);
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

/// The calendar day (UTC) of `at`, for messages: `2027-06-30`.
fn date(at: UnixSeconds) -> String {
    time::OffsetDateTime::from_unix_timestamp(at.0)
        .map_or_else(|_| at.to_string(), |t| t.date().to_string())
}

/// The targets as a strategy sees them.
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
