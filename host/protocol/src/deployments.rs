//! `/api/v1/deployments`: starting a rollout, its status wave by wave, the health policy's
//! decisions with what they were shown, and the operator's actions.

use std::collections::BTreeMap;

use hotswap_plan::health::{HealthSample, Verdict, WaveStats};
use hotswap_plan::{Gate, Mode};
use serde::{Deserialize, Serialize};

use crate::groups::GroupFilter;
use crate::state::{DeploymentState, DeviceState};
use crate::time::UnixSeconds;

/// `POST /api/v1/deployments`: targets by ids, group or filter, a strategy and a health policy
/// with their configurations, and how devices are retried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRequest {
    pub firmware_version: String,
    pub device_model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_devices: Option<Vec<String>>,
    /// The same filter a dynamic device group has; `deviceModel` defaults to the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_filter: Option<GroupFilter>,
    /// A device group by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_config: Option<serde_json::Value>,
    /// How long a device may go without a report before it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_timeout_seconds: Option<u32>,
    /// Tries per device before it is failed and quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The wait before the first retry; it doubles with each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_seconds: Option<u32>,
}

/// How long a device may go without a report, how often it is retried, how long between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub device_timeout_seconds: u32,
    pub max_attempts: u32,
    pub retry_backoff_seconds: u32,
}

/// A whole number's allowed range and the value taken when it is left out: the rule behind
/// each of [`DeploymentRequest`]'s retry fields, checked by the server and written into the
/// OpenAPI document from the same constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

impl Bounds {
    /// `value`, or the default when it is absent; out of range, a message naming `field`.
    pub fn check(&self, field: &str, value: Option<u32>) -> Result<u32, String> {
        let v = value.unwrap_or(self.default);
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "`{field}` must be from {} to {}, found {v}",
                self.min, self.max
            ))
        }
    }
}

/// `deviceTimeoutSeconds`: from a second to a day, ten minutes when left out.
pub const DEVICE_TIMEOUT_SECONDS: Bounds = Bounds {
    min: 1,
    max: 86_400,
    default: 600,
};

/// `maxAttempts`: the tries per device.
pub const MAX_ATTEMPTS: Bounds = Bounds {
    min: 1,
    max: 10,
    default: 3,
};

/// `retryBackoffSeconds`: the first retry's wait.
pub const RETRY_BACKOFF_SECONDS: Bounds = Bounds {
    min: 0,
    max: 3_600,
    default: 30,
};

impl DeploymentRequest {
    /// The retry fields, each checked against its [`Bounds`] and defaulted.
    pub fn retry_policy(&self) -> Result<RetryPolicy, String> {
        Ok(RetryPolicy {
            device_timeout_seconds: DEVICE_TIMEOUT_SECONDS
                .check("deviceTimeoutSeconds", self.device_timeout_seconds)?,
            max_attempts: MAX_ATTEMPTS.check("maxAttempts", self.max_attempts)?,
            retry_backoff_seconds: RETRY_BACKOFF_SECONDS
                .check("retryBackoffSeconds", self.retry_backoff_seconds)?,
        })
    }
}

/// An operator's action on a deployment, each a route of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentAction {
    /// A running deployment hands out nothing more.
    Pause,
    /// A paused deployment goes on.
    Resume,
    /// Devices not yet updated are left as they are.
    Cancel,
    /// Every device the deployment updated is sent back.
    Rollback,
}

impl DeploymentAction {
    /// Its route.
    pub fn route(self) -> &'static str {
        match self {
            DeploymentAction::Pause => crate::routes::DEPLOYMENT_PAUSE,
            DeploymentAction::Resume => crate::routes::DEPLOYMENT_RESUME,
            DeploymentAction::Cancel => crate::routes::DEPLOYMENT_CANCEL,
            DeploymentAction::Rollback => crate::routes::DEPLOYMENT_ROLLBACK,
        }
    }
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: i64,
    pub firmware_id: i64,
    pub firmware_version: String,
    pub device_model: String,
    pub strategy: String,
    /// JSON text, as given.
    pub strategy_config: String,
    pub health_policy: String,
    /// The uploaded policy's component; `None` for a built-in. Not shown.
    #[serde(skip)]
    pub health_sha256: Option<String>,
    /// JSON text, as given.
    pub health_config: String,
    pub retry: RetryPolicy,
    pub state: DeploymentState,
    pub current_wave: u32,
    pub waves: u32,
    pub reason: Option<String>,
    /// Who started it (`token:<name>`).
    #[serde(default)]
    pub created_by: String,
    pub created_at: UnixSeconds,
    pub updated_at: UnixSeconds,
    /// The W3C trace context of the request that started it, when the server records traces:
    /// its trace id is the deployment's trace, from the operator's request to the last device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// `POST /api/v1/deployments/{id}/approve` and `.../deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why: kept in the deployment's events and the audit log.
    #[serde(default)]
    pub remark: String,
}

/// One wave of a deployment with its devices counted by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub index: u32,
    pub name: String,
    pub mode: Mode,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
    pub started_at: Option<UnixSeconds>,
    pub settled_at: Option<UnixSeconds>,
    pub devices: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub states: BTreeMap<DeviceState, u32>,
}

/// A decision a health policy made, with what it was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub id: i64,
    pub wave: u32,
    pub policy: String,
    pub config: String,
    pub stats: WaveStats,
    /// The health samples the policy was shown; left out where asked (a large wave's run to
    /// megabytes per decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<HealthSample>>,
    pub verdict: Verdict,
    pub at: UnixSeconds,
}

/// Something that happened to a deployment or one of its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub message: String,
}

/// What `GET /api/v1/deployments/{id}/status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(flatten)]
    pub deployment: Deployment,
    pub wave_status: Vec<WaveStatus>,
    /// Devices by state over every wave.
    pub states: BTreeMap<DeviceState, u32>,
    /// Rollback assignments by state, once a rollback began.
    pub rollback: BTreeMap<DeviceState, u32>,
    pub recent_events: Vec<Event>,
    pub recent_decisions: Vec<Decision>,
    /// Targets the deployment left out (outside the version's compatibility), how many in all.
    pub excluded_count: u64,
    /// The first [`MAX_EXCLUDED_SHOWN`] of them, with why.
    pub excluded: Vec<Excluded>,
}

/// The most excluded targets a dry run or a status lists (all are counted).
pub const MAX_EXCLUDED_SHOWN: usize = 100;

/// A target a deployment left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Excluded {
    pub device_id: String,
    pub reason: String,
}

/// One wave of a dry run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWave {
    pub name: String,
    pub mode: Mode,
    pub devices: Vec<String>,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
}

/// `POST /api/v1/deployments?dryRun=true`: the plan, with nothing started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub dry_run: bool,
    pub firmware_version: String,
    pub device_model: String,
    pub strategy: String,
    pub health_policy: String,
    pub targets: usize,
    /// Quarantined devices the targets matched, left out of the plan.
    pub quarantined_skipped: usize,
    /// Targets outside the version's compatibility, left out of the plan; how many in all.
    pub excluded_count: usize,
    /// The first [`MAX_EXCLUDED_SHOWN`] of them, with why.
    pub excluded: Vec<Excluded>,
    pub waves: Vec<PlannedWave>,
}

/// The most decisions `/decisions` returns at once.
pub const MAX_DECISIONS: usize = 1000;

/// `GET /api/v1/deployments/{id}/decisions`'s query.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecisionsQuery {
    /// The newest this many (1 to [`MAX_DECISIONS`], default 100).
    #[serde(default = "default_decisions")]
    pub limit: usize,
    /// With the health samples each verdict was given (default); `false` leaves them out.
    #[serde(default = "yes")]
    pub samples: bool,
}

impl Default for DecisionsQuery {
    fn default() -> Self {
        DecisionsQuery {
            limit: default_decisions(),
            samples: true,
        }
    }
}

fn default_decisions() -> usize {
    100
}

fn yes() -> bool {
    true
}
