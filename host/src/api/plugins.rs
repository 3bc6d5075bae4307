//! `/api/v1/plugins`: upload strategy and health-policy components, list them with the built-ins,
//! delete them.
//!
//! An upload is the component's bytes as the request body. It goes through the plugin runtime's
//! checks (WebAssembly component, the right world, no import beyond the log, a sane `describe`)
//! and is refused with the runtime's message when any fails; its name and version come from its
//! own `describe`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, AppState};
use crate::plugin::{BUILTINS, PluginError};
use crate::store::StoredPlugin;

/// A plugin as operators see it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    name: String,
    version: String,
    kind: String,
    builtin: bool,
    summary: String,
    params_schema: Value,
    sha256: String,
}

impl From<StoredPlugin> for PluginInfo {
    fn from(p: StoredPlugin) -> Self {
        PluginInfo {
            params_schema: serde_json::from_str(&p.params_schema).unwrap_or(Value::Null),
            name: p.name,
            version: p.version,
            kind: p.kind,
            builtin: false,
            summary: p.summary,
            sha256: p.sha256,
        }
    }
}

pub async fn upload(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PluginInfo>), ApiError> {
    let bytes = body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit: {}", e.body_text()),
        )
    })?;
    let state2 = state.clone();
    let (created, stored) =
        tokio::task::spawn_blocking(move || -> Result<(bool, StoredPlugin), ApiError> {
            let plugin = state2.runtime.load(&bytes).map_err(|e| match e {
                PluginError::TooLarge { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
                }
                other => ApiError::bad_request(format!("plugin refused: {other}")),
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
                kind: plugin.kind().to_string(),
                sha256,
                summary: d.summary.clone(),
                params_schema: d.params_schema.clone(),
                created_at: 0,
            };
            let created = state2.store.add_plugin(&stored)?;
            Ok((created, state2.store.plugin(&stored.name, &stored.version)?))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored.into())))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<PluginInfo>>, ApiError> {
    let mut out = Vec::new();
    for b in BUILTINS {
        let plugin = state
            .runtime
            .load(b.bytes)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let d = plugin.description();
        out.push(PluginInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            kind: plugin.kind().to_string(),
            builtin: true,
            summary: d.summary.clone(),
            params_schema: serde_json::from_str(&d.params_schema).unwrap_or(Value::Null),
            sha256: plugin.content_hash(),
        });
    }
    out.extend(
        state
            .store
            .list_plugins()?
            .into_iter()
            .map(PluginInfo::from),
    );
    Ok(Json(out))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::blocking(move || Ok(state.store.delete_plugin(&name, &version)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
