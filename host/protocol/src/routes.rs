//! Every route of the API, once: the server's router registers these constants, its OpenAPI
//! annotations describe them, and the typed client calls them. Each is an axum template whose
//! `{name}` parameters [`fill`] puts values into.

/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// This API's OpenAPI document.
pub const OPENAPI: &str = "/api/v1/openapi.json";
/// Firmware versions: register, list.
pub const FIRMWARE: &str = "/api/v1/firmware";
/// One firmware version.
pub const FIRMWARE_VERSION: &str = "/api/v1/firmware/{id}";
/// Deprecate a version.
pub const FIRMWARE_DEPRECATE: &str = "/api/v1/firmware/{id}/deprecate";
/// Sunset a version.
pub const FIRMWARE_SUNSET: &str = "/api/v1/firmware/{id}/sunset";
/// Devices: register one, list.
pub const DEVICES: &str = "/api/v1/devices";
/// The fleet counted by version, status and region.
pub const FLEET: &str = "/api/v1/fleet";
/// Register devices in bulk.
pub const DEVICES_BATCH: &str = "/api/v1/devices/batch";
/// One device.
pub const DEVICE: &str = "/api/v1/devices/{id}";
/// A device's versions, step by step.
pub const DEVICE_LINEAGE: &str = "/api/v1/devices/{id}/lineage";
/// Accept a pending device.
pub const DEVICE_ACCEPT: &str = "/api/v1/devices/{id}/accept";
/// Refuse a device from now on.
pub const DEVICE_REJECT: &str = "/api/v1/devices/{id}/reject";
/// Take a device out of the fleet.
pub const DEVICE_DECOMMISSION: &str = "/api/v1/devices/{id}/decommission";
/// A device enrolls itself.
pub const ENROLL: &str = "/api/v1/enroll";
/// An accepted device claims its credential.
pub const ENROLL_TOKEN: &str = "/api/v1/enroll/token";
/// Device groups: create, list.
pub const GROUPS: &str = "/api/v1/device-groups";
/// One device group.
pub const GROUP: &str = "/api/v1/device-groups/{name}";
/// Plugins: upload, list.
pub const PLUGINS: &str = "/api/v1/plugins";
/// The limits plugins run under.
pub const PLUGIN_LIMITS: &str = "/api/v1/plugin-limits";
/// One uploaded plugin.
pub const PLUGIN: &str = "/api/v1/plugins/{name}/{version}";
/// Deployments: start (or plan), list.
pub const DEPLOYMENTS: &str = "/api/v1/deployments";
/// One deployment, wave by wave.
pub const DEPLOYMENT: &str = "/api/v1/deployments/{id}";
/// The same, at the original API's path.
pub const DEPLOYMENT_STATUS: &str = "/api/v1/deployments/{id}/status";
/// A deployment's health verdicts with their inputs.
pub const DEPLOYMENT_DECISIONS: &str = "/api/v1/deployments/{id}/decisions";
/// Approve a deployment.
pub const DEPLOYMENT_APPROVE: &str = "/api/v1/deployments/{id}/approve";
/// Deny a deployment.
pub const DEPLOYMENT_DENY: &str = "/api/v1/deployments/{id}/deny";
/// Pause a deployment.
pub const DEPLOYMENT_PAUSE: &str = "/api/v1/deployments/{id}/pause";
/// Resume a deployment.
pub const DEPLOYMENT_RESUME: &str = "/api/v1/deployments/{id}/resume";
/// Cancel a deployment.
pub const DEPLOYMENT_CANCEL: &str = "/api/v1/deployments/{id}/cancel";
/// Roll a deployment back.
pub const DEPLOYMENT_ROLLBACK: &str = "/api/v1/deployments/{id}/rollback";
/// API tokens: make one, list.
pub const TOKENS: &str = "/api/v1/tokens";
/// Revoke a token.
pub const TOKEN_REVOKE: &str = "/api/v1/tokens/{id}/revoke";
/// The audit log.
pub const AUDIT: &str = "/api/v1/audit";
/// Sign in.
pub const LOGIN: &str = "/api/v1/auth/login";
/// A user changes their own password.
pub const PASSWORD: &str = "/api/v1/auth/password";
/// Users: create, list.
pub const USERS: &str = "/api/v1/users";
/// Disable a user.
pub const USER_DISABLE: &str = "/api/v1/users/{name}/disable";
/// A device checks in.
pub const CHECK_IN: &str = "/api/v1/devices/{id}/check-in";
/// A device reports a step.
pub const REPORTS: &str = "/api/v1/devices/{id}/reports";
/// A device reports steps together.
pub const REPORTS_BATCH: &str = "/api/v1/devices/{id}/reports/batch";
/// An artifact's bytes.
pub const ARTIFACT: &str = "/api/v1/artifacts/{sha256}";

/// `template` with its `{...}` parameters replaced by `values`, in order. The values are ids,
/// names, versions and hashes, whose rules keep them to characters a path carries as they are.
pub fn fill(template: &str, values: &[&dyn std::fmt::Display]) -> String {
    let mut path = String::with_capacity(template.len() + 16);
    let mut values = values.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        match values.next() {
            Some(v) => path.push_str(&v.to_string()),
            None => path.push_str(&rest[open..close]),
        }
        rest = &rest[close..];
    }
    path.push_str(rest);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_filled_in_order() {
        assert_eq!(
            fill(PLUGIN, &[&"canary-x", &"1.2.0"]),
            "/api/v1/plugins/canary-x/1.2.0"
        );
        assert_eq!(
            fill(DEPLOYMENT_PAUSE, &[&42]),
            "/api/v1/deployments/42/pause"
        );
        assert_eq!(fill(DEVICES, &[]), "/api/v1/devices");
    }
}
