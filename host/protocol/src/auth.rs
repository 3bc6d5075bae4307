//! Who may do what: roles, the permissions they grant, API tokens, sign-in, and the audit log.

use serde::{Deserialize, Serialize};
use strum::VariantArray;

use crate::state::spelled;
use crate::time::UnixSeconds;

spelled! {
    /// One thing an operator credential may be allowed to do, in the style of hawkBit's
    /// `READ_TARGET`, `CREATE_ROLLOUT`, `HANDLE_ROLLOUT`, `APPROVE_ROLLOUT`.
    pub enum Permission as "permission" {
        /// Read firmware, devices, groups, plugins, deployments, decisions and `/metrics`.
        Read,
        /// Register firmware and deprecate it; upload and delete plugins.
        Release,
        /// Register devices and define device groups.
        ManageDevices,
        /// Start deployments (and dry runs of them).
        CreateDeployment,
        /// Pause, resume, cancel and roll back deployments.
        HandleDeployment,
        /// Approve or deny deployments that need approval.
        ApproveDeployment,
        /// Create, list and revoke API tokens.
        ManageTokens,
        /// Read the audit log.
        ReadAudit,
        /// Create, list and disable users.
        ManageUsers,
    }
}

spelled! {
    /// A named set of permissions; every operator credential has exactly one.
    pub enum Role as "role" {
        /// Everything.
        Admin,
        /// Firmware and plugins.
        ReleaseManager,
        /// Create and handle deployments.
        Deployer,
        /// Approve or deny deployments.
        Approver,
        /// Read only.
        Viewer,
    }
}

impl Role {
    /// What the role may do. Every role reads; no role but `admin` has a permission of another.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => Permission::VARIANTS,
            Role::ReleaseManager => &[Read, Release],
            Role::Deployer => &[Read, CreateDeployment, HandleDeployment],
            Role::Approver => &[Read, ApproveDeployment],
            Role::Viewer => &[Read],
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

/// The prefix of every API token, so a leaked one is found by secret scanners.
pub const API_TOKEN_PREFIX: &str = "hsw_pat_";

/// The prefix of every device token.
pub const DEVICE_TOKEN_PREFIX: &str = "hsw_dev_";

/// `POST /api/v1/tokens`: a named token for a script or CI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(schema_with = crate::names::Name::schema)]
    pub name: String,
    pub role: Role,
    /// Days until it expires (1 to 366); it never expires when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The token's first characters, to tell tokens apart (`hsw_pat_ab12`).
    pub hint: String,
    pub created_by: String,
    pub created_at: UnixSeconds,
    pub expires_at: Option<UnixSeconds>,
    pub revoked_at: Option<UnixSeconds>,
    pub last_used_at: Option<UnixSeconds>,
}

/// The answer to `POST /api/v1/tokens`: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// One line of the audit log: who did what to which object, from where, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: UnixSeconds,
    /// `token:<name>`, `device:<id>`, or `anonymous` for a refused credential.
    pub actor: String,
    pub token_id: Option<i64>,
    /// The client's address.
    pub source: Option<String>,
    /// `METHOD /route/{template}`, or `credential refused`.
    pub action: String,
    /// The object acted on: the request's path.
    pub object: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// How many like requests this entry stands for: 1, or, for credentials refused to an
    /// anonymous caller, how many one source made in that minute after its first.
    pub count: u32,
}

/// `GET /api/v1/audit`'s query; every field narrows it. Newest first.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A piece of the action (`deployments`, `POST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A piece of the object's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Entries at or after this time (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Entries before this time (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Entries older than this id: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; null on the last.
    pub next: Option<i64>,
}

/// A device's credential, given once when it is registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceToken {
    pub device_id: String,
    pub token: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(schema_with = crate::names::Name::schema)]
    pub name: String,
    pub password: String,
}

/// The longest password the server hashes, in characters.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// `POST /api/v1/auth/password`: a user changes their own password, proving the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(schema_with = crate::names::Name::schema)]
    pub name: String,
    pub password: String,
    pub new_password: String,
}

/// `POST /api/v1/users/{name}/disable`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DisableQuery {
    /// Also revoke every API token the user made.
    #[serde(default)]
    pub revoke_tokens: bool,
}

/// A session: a short-lived token (a JWT) to send as `Authorization: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub token: String,
    pub name: String,
    pub role: Role,
    /// What the role may do: a client shows only the actions it permits.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    pub expires_at: UnixSeconds,
}

/// `POST /api/v1/users`: a person who signs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRequest {
    #[schema(schema_with = crate::names::Name::schema)]
    pub name: String,
    pub role: Role,
    pub password: String,
}

/// A user as listed: never the password or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_at: UnixSeconds,
    pub disabled: bool,
}
