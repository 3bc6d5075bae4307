//! `/api/v1/plugins`: upload strategy and health-policy components, list them with the built-ins,
//! delete them.
//!
//! An upload is the component's bytes as the request body. It goes through the plugin runtime's
//! checks (WebAssembly component, the right world, no import beyond the log, a sane `describe`)
//! and is refused with the runtime's message when any fails; its name and version come from its
//! own `describe`. The query may ask for limits of the plugin's own
//! ([`hotswap_protocol::PluginLimitOverrides`]), each at most the server's `[plugin-ceilings]`;
//! they are stored with it and every later load of the plugin runs under them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hotswap_plugin_host::{BUILTINS, PluginError};
use hotswap_protocol::{PluginInfo, PluginLimitOverrides, UnixSeconds};
use hotswap_store::StoredPlugin;
use serde_json::Value;

use super::{ApiError, AppState, blocking};
use crate::rollout::plugins::asked;
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// An uploaded plugin as operators see it. Its schema was checked to be a JSON object when it
/// was uploaded; one that no longer reads is the store's failure, never shown as null.
fn info(p: StoredPlugin) -> Result<PluginInfo, ApiError> {
    let params_schema: Value = serde_json::from_str(&p.params_schema).map_err(|e| {
        ApiError::internal(format!(
            "stored schema of plugin {}@{}: {e}",
            p.name, p.version
        ))
    })?;
    let limits = asked(&p)?;
    Ok(PluginInfo {
        params_schema,
        limits,
        name: p.name,
        version: p.version,
        kind: p.kind,
        builtin: false,
        summary: p.summary,
        sha256: p.sha256,
    })
}

#[utoipa::path(
    post,
    path = routes::PLUGINS,
    operation_id = "uploadPlugin",
    tag = "plugins",
    summary = "Upload a strategy or health policy component",
    params(PluginLimitOverrides),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The WebAssembly component (any Content-Type is taken; the client sends application/wasm)"),
    responses(
        (status = 201, description = "Stored", body = PluginInfo),
        (status = 200, description = "The same component was stored already", body = PluginInfo),
        (status = 409, description = "Another component has the name and version", body = ErrorBody),
        (status = 413, description = "The component is over `max-component-bytes`: the one this upload asked for, or the server's", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PluginLimitOverrides>, QueryRejection>,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<PluginInfo>), ApiError> {
    let Query(asked) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limits = state
        .runtime
        .limits()
        .overridden(&asked, state.runtime.ceilings())?;
    let limit = limits.max_component_bytes;
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the component is over {limit} bytes, the limit: raise `max-component-bytes` (for this plugin at upload, within the server's [plugin-ceilings], or in its [plugin-limits])"
                ),
            )
        })?;
    let state2 = state.clone();
    let (created, stored) =
        tokio::task::spawn_blocking(move || -> Result<(bool, StoredPlugin), ApiError> {
            let plugin = state2
                .runtime
                .load_with(&bytes, &limits)
                .map_err(|e| match e {
                    PluginError::TooLarge { .. }
                    | PluginError::Busy(_)
                    | PluginError::Runtime(_) => ApiError::from(e),
                    other => ApiError::from(other).prefixed("plugin refused"),
                })?;
            let d = plugin.description();
            if BUILTINS
                .iter()
                .any(|b| b.kind == plugin.kind() && b.name == d.name)
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "`{}` is the name of a built-in {}: give the plugin another name",
                        d.name,
                        plugin.kind()
                    ),
                ));
            }
            let sha256 = state2.store.blobs().put(&bytes)?;
            let stored = StoredPlugin {
                name: d.name.clone(),
                version: d.version.clone(),
                kind: plugin.kind(),
                sha256,
                summary: d.summary.clone(),
                params_schema: d.params_schema.clone(),
                created_at: UnixSeconds::default(),
                limits: serde_json::to_string(&asked).map_err(ApiError::internal)?,
            };
            let created = state2.store.add_plugin(&stored)?;
            Ok((created, state2.store.plugin(&stored.name, &stored.version)?))
        })
        .await
        .map_err(ApiError::internal)??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info(stored)?)))
}

#[utoipa::path(
    get,
    path = routes::PLUGIN_LIMITS,
    operation_id = "pluginLimits",
    tag = "plugins",
    summary = "The limits plugins run under on this server, and the most one may ask for",
    responses(
        (status = 200, description = "The server's [plugin-limits] and [plugin-ceilings]", body = hotswap_protocol::PluginLimits),
    )
)]
pub async fn limits(State(state): State<Arc<AppState>>) -> Json<hotswap_protocol::PluginLimits> {
    let l = state.runtime.limits();
    Json(hotswap_protocol::PluginLimits {
        max_component_bytes: l.max_component_bytes as u64,
        max_core_instances: l.max_core_instances,
        max_memories: l.max_memories,
        fuel_per_call: l.fuel_per_call,
        memory_bytes: l.memory_bytes as u64,
        deadline_ms: l.deadline.as_millis() as u64,
        stack_bytes: l.stack_bytes as u64,
        log_lines_per_call: l.log_lines_per_call,
        log_line_bytes: l.log_line_bytes as u64,
        pool_instances: l.pool_instances,
        ceilings: state.runtime.ceilings().as_overrides(),
    })
}

#[utoipa::path(
    get,
    path = routes::PLUGINS,
    operation_id = "listPlugins",
    tag = "plugins",
    summary = "The built-in and uploaded plugins",
    responses(
        (status = 200, description = "The plugins", body = Vec<PluginInfo>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<PluginInfo>>, ApiError> {
    blocking(move || {
        let mut out = Vec::new();
        for b in BUILTINS {
            // A built-in that does not load is the build's failure, not the client's.
            let plugin = state.runtime.load(b.bytes).map_err(ApiError::internal)?;
            let d = plugin.description();
            out.push(PluginInfo {
                name: d.name.clone(),
                version: d.version.clone(),
                kind: plugin.kind(),
                builtin: true,
                summary: d.summary.clone(),
                params_schema: serde_json::from_str(&d.params_schema)
                    .map_err(ApiError::internal)?,
                sha256: plugin.content_hash(),
                limits: PluginLimitOverrides::default(),
            });
        }
        for p in state.store.list_plugins()? {
            out.push(info(p)?);
        }
        Ok(Json(out))
    })
    .await
}

#[utoipa::path(
    delete,
    path = routes::PLUGIN,
    operation_id = "deletePlugin",
    tag = "plugins",
    summary = "Delete an uploaded plugin",
    params(("name" = String, Path, description = "The plugin's name"), ("version" = String, Path, description = "Its version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 409, description = "A deployment uses it", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    blocking(move || Ok(state.store.delete_plugin(&name, &version)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
