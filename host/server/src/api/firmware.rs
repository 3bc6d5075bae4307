//! `/api/v1/firmware`: register, list, show, deprecate and sunset agent versions.
//!
//! A registration carries the binary (base64), its checksum (`sha256:<hex>`) and the Ed25519
//! signature of its manifest (version, size, SHA-256, security counter: what devices check). The
//! checksum is checked against the bytes and the signature against the server's trusted release
//! keys before anything is stored. It may declare its compatibility: the device models it runs
//! on, and a semver range of the installed versions it may go over; and a sunset, after which it
//! can no longer be deployed. A version that a deployment which has not ended uses can be neither
//! deprecated nor sunset.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use hotswap_device_vm::{Manifest, Version};
use hotswap_protocol::{Firmware, FirmwareDetail, FirmwareQuery, FirmwareRegistration, Sunset};
use hotswap_store::{FirmwareFilter, NewFirmware};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, Body, blocking};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// Parses a version devices can hold: `major.minor.patch`, each at most 65535, no pre-release.
fn device_version(s: &str) -> Result<Version, ApiError> {
    let v = semver::Version::parse(s).map_err(|e| {
        ApiError::bad_request(format!(
            "`version` must be semver such as 1.2.0, found {s:?}: {e}"
        ))
    })?;
    if !v.pre.is_empty() || !v.build.is_empty() {
        return Err(ApiError::bad_request(format!(
            "`version` {s} has a pre-release or build part, which devices cannot hold"
        )));
    }
    let part = |n: u64| {
        u16::try_from(n)
            .map_err(|_| ApiError::bad_request(format!("`version` {s} has a part above 65535")))
    };
    Ok(Version::new(part(v.major)?, part(v.minor)?, part(v.patch)?))
}

#[utoipa::path(
    post,
    path = routes::FIRMWARE,
    operation_id = "registerFirmware",
    tag = "firmware",
    summary = "Register a signed agent version",
    request_body = FirmwareRegistration,
    responses(
        (status = 201, description = "Registered", body = Firmware),
        (status = 400, description = "Not a valid agent, signature or version", body = ErrorBody),
        (status = 409, description = "The version exists for the model", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    Body(r): Body<FirmwareRegistration>,
) -> Result<(StatusCode, Json<Firmware>), ApiError> {
    if r.device_model.trim().is_empty() {
        return Err(ApiError::bad_request("`deviceModel` must not be empty"));
    }
    let version = device_version(&r.version)?;
    let mut other_models = Vec::new();
    for model in &r.compatibility.device_models {
        if model.trim().is_empty() {
            return Err(ApiError::bad_request(
                "`compatibility.deviceModels` holds an empty model name",
            ));
        }
        if *model != r.device_model {
            other_models.push(model.clone());
        }
    }
    let installed_versions = match &r.compatibility.installed_versions {
        None => None,
        Some(range) => Some(
            semver::VersionReq::parse(range)
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "`compatibility.installedVersions` must be a semver range such as `>=1.4.0, <3.0.0`, found {range:?}: {e}"
                    ))
                })?
                .to_string(),
        ),
    };
    let binary = match (r.binary, r.binary_url) {
        (Some(b), None) => b,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "`binaryUrl` is not supported by this server: send the bytes in `binary` (base64)",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `binary` or `binaryUrl`, not both",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("`binary` (base64) is required")),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(binary.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("`binary` is not valid base64: {e}")))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("`binary` is empty"));
    }
    let limit = state.limits.max_firmware_bytes;
    if bytes.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("binary is {} bytes, the limit is {limit}", bytes.len()),
        ));
    }
    let expected = r.checksum.strip_prefix("sha256:").ok_or_else(|| {
        ApiError::bad_request(format!(
            "`checksum` must be `sha256:<hex>`, found {:?}",
            r.checksum
        ))
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if !expected.eq_ignore_ascii_case(&actual) {
        return Err(ApiError::bad_request(format!(
            "checksum mismatch: `checksum` says sha256:{expected}, the binary is sha256:{actual}"
        )));
    }
    let signature: [u8; 64] = hex::decode(&r.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "`signature` must be 64 bytes of Ed25519 signature in hex (128 characters)",
            )
        })?;
    let manifest = Manifest::for_image(version, &bytes, r.security_counter);
    let key = state
        .trusted_keys
        .iter()
        .find(|k| hotswap_device_vm::slots::verify_signature(std::slice::from_ref(k), &manifest, k.id, &signature).is_ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`signature` does not verify against any of the server's {} trusted release keys for this manifest \
                 (version {version}, {} bytes, sha256:{actual}, security counter {})",
                state.trusted_keys.len(),
                bytes.len(),
                r.security_counter
            ))
        })?;
    let key_id = key.id.to_string();
    let state2 = state.clone();
    let firmware = tokio::task::spawn_blocking(move || {
        let sha256 = state2.store.blobs().put(&bytes)?;
        state2.store.add_firmware(NewFirmware {
            device_model: r.device_model,
            version: r.version,
            sha256,
            size: bytes.len() as u64,
            key_id,
            signature: r.signature.to_ascii_lowercase(),
            security_counter: r.security_counter,
            release_notes: r.release_notes,
            other_models,
            installed_versions,
            sunset_at: r.sunset_at,
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(firmware)))
}

#[utoipa::path(
    get,
    path = routes::FIRMWARE,
    operation_id = "listFirmware",
    tag = "firmware",
    summary = "List firmware versions",
    params(FirmwareQuery),
    responses(
        (status = 200, description = "The versions", body = Vec<Firmware>),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<FirmwareQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Firmware>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = FirmwareFilter {
        device_model: q.device_model,
        include_deprecated: q.include_deprecated,
    };
    Ok(Json(
        blocking(move || Ok(state.store.list_firmware(&filter)?)).await?,
    ))
}

/// A version, with how many devices came to it from which version.
#[utoipa::path(
    get,
    path = routes::FIRMWARE_VERSION,
    operation_id = "getFirmware",
    tag = "firmware",
    summary = "A version, with where its devices came from",
    params(("id" = String, Path, description = "The firmware id (a number)")),
    responses(
        (status = 200, description = "The version", body = FirmwareDetail),
        (status = 404, description = "No such firmware", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<FirmwareDetail>, ApiError> {
    let id = super::path_id("firmware", &raw)?;
    Ok(Json(
        blocking(move || {
            Ok(FirmwareDetail {
                firmware: state.store.firmware(id)?,
                came_from: state.store.came_from(id)?,
            })
        })
        .await?,
    ))
}

/// `POST /api/v1/firmware/{id}/sunset`: after `at`, the version can no longer be deployed.
#[utoipa::path(
    post,
    path = routes::FIRMWARE_SUNSET,
    operation_id = "sunsetFirmware",
    tag = "firmware",
    summary = "Set when a version stops being deployable",
    request_body = Sunset,
    params(("id" = String, Path, description = "The firmware id (a number)")),
    responses(
        (status = 200, description = "Sunset set", body = Firmware),
        (status = 404, description = "No such firmware", body = ErrorBody),
    )
)]
pub async fn sunset(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    Body(s): Body<Sunset>,
) -> Result<Json<Firmware>, ApiError> {
    let id = super::path_id("firmware", &raw)?;
    Ok(Json(
        blocking(move || Ok(state.store.sunset_firmware(id, s.at)?)).await?,
    ))
}

#[utoipa::path(
    post,
    path = routes::FIRMWARE_DEPRECATE,
    operation_id = "deprecateFirmware",
    tag = "firmware",
    summary = "Stop new deployments of a version",
    params(("id" = String, Path, description = "The firmware id (a number)")),
    responses(
        (status = 200, description = "Deprecated", body = Firmware),
        (status = 404, description = "No such firmware", body = ErrorBody),
    )
)]
pub async fn deprecate(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<Firmware>, ApiError> {
    let id = super::path_id("firmware", &raw)?;
    Ok(Json(
        blocking(move || Ok(state.store.deprecate_firmware(id)?)).await?,
    ))
}
