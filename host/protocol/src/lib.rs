//! The vocabulary HotSwap speaks over HTTP: the operator API's request and answer bodies, the
//! device protocol's, and the state enums they carry.
//!
//! One definition serves the server, the typed client, the simulator and the tests, so the two
//! ends of a request cannot drift apart. Bodies are camelCase JSON; every enum has one spelling
//! (kebab-case), the same in JSON, in SQL and in messages, through `strum` and `serde` derived
//! from one attribute. A rule on a value (a name, a version, a label) is a type in [`names`]
//! whose parsing and whose OpenAPI schema come from one definition. Depends on serde, strum and
//! utoipa (the plan's own serde types too), and on nothing that does I/O.

#![forbid(unsafe_code)]

pub mod auth;
pub mod deployments;
pub mod device_protocol;
pub mod devices;
pub mod error;
pub mod firmware;
pub mod groups;
pub mod names;
pub mod plugins;
pub mod routes;
pub mod state;
pub mod time;
pub mod trace;

pub use hotswap_plan::health::{HealthSample, Verdict, WaveStats};
pub use hotswap_plan::{Gate, Mode};

pub use auth::{
    AuditEntry, AuditPage, AuditQuery, CreatedToken, DeviceToken, DisableQuery, LoginRequest,
    MAX_PASSWORD_CHARS, PasswordChange, Permission, Role, Session, TokenInfo, TokenRequest,
    UserInfo, UserRequest,
};
pub use deployments::{
    ApprovalRequest, Decision, DecisionsQuery, Deployment, DeploymentAction, DeploymentRequest,
    DeploymentStatus, DryRun, Event, Excluded, PlannedWave, RetryPolicy, WaveStatus,
};
pub use device_protocol::{
    Assignment, CheckIn, CheckInAnswer, CheckInQuery, Health, Report, ReportAnswer, ReportBatch,
    SlotInfo,
};
pub use devices::{
    BatchAnswer, DeviceBatch, DeviceDetail, DevicePage, DeviceQuery, DeviceRecord,
    DeviceRegistration, Enrollment, FleetSummary, HistoryEntry, IfRegistered, Inventory, Lineage,
    LineageStep, RegisteredDevice, StandingChange, StandingQuery, TokenClaim,
};
pub use error::{ErrorBody, ErrorDetail};
pub use firmware::{
    CameFrom, Compatibility, Firmware, FirmwareDetail, FirmwareQuery, FirmwareRegistration, Sunset,
};
pub use groups::{DeviceGroup, GroupCreation, GroupFilter, ResolvedGroup};
pub use names::{Label, Name, Version};
pub use plugins::{PluginInfo, PluginLimitOverrides, PluginLimits};
pub use state::{
    AssignmentKind, AssignmentMode, DeploymentState, DeviceState, DeviceStatus, FirmwareStatus,
    LineageHow, Outcome, PluginKind, Spelling, UnknownValue,
};
pub use time::{UnixMillis, UnixSeconds};
pub use trace::{BadTraceParent, TraceParent};
