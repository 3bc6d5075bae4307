//! `GET /api/v1/artifacts/{sha256}`: an artifact's bytes, whole or one `Range` of them (206), so a
//! broken download resumes where it stopped.
//!
//! Artifacts are content-addressed and never change, and during a rollout every device of a wave
//! fetches the same one: they are served from memory. The first request for an artifact reads
//! it from the store's blobs and checks it against its name (a damaged blob is an error, never
//! served); the cache holds at most [`CACHE_BYTES`], and the least used go first.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::Digest;

use super::{ApiError, AppState};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;
use hotswap_store::{Store, StoreError};

/// The most artifact bytes kept in memory.
pub const CACHE_BYTES: u64 = 64 << 20;

#[derive(Clone)]
struct Size;

impl quick_cache::Weighter<String, Bytes> for Size {
    fn weight(&self, _: &String, bytes: &Bytes) -> u64 {
        bytes.len() as u64 + 1
    }
}

/// Artifacts in memory, by SHA-256.
pub struct Artifacts {
    cache: quick_cache::sync::Cache<String, Bytes, Size>,
}

impl Default for Artifacts {
    fn default() -> Self {
        Artifacts {
            cache: quick_cache::sync::Cache::with_weighter(64, CACHE_BYTES, Size),
        }
    }
}

impl Artifacts {
    /// The artifact named `sha256`, or `None` when there is none. Concurrent first requests for
    /// one artifact read and check it once; the others wait for that.
    async fn get(&self, store: &Arc<Store>, sha256: &str) -> Result<Option<Bytes>, ApiError> {
        match self
            .cache
            .get_or_insert_async(sha256, load(store, sha256))
            .await
        {
            Ok(bytes) => Ok(Some(bytes)),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }
}

/// Reads a blob and checks it against its name; `Err(None)` when there is no such blob.
async fn load(store: &Arc<Store>, sha256: &str) -> Result<Bytes, Option<ApiError>> {
    let blobs = store.clone();
    let name = sha256.to_string();
    // From this replica's files, or (PostgreSQL) from the database the first time.
    let read = tokio::task::spawn_blocking(move || blobs.blobs().get(&name))
        .await
        .map_err(|e| {
            Some(ApiError::internal(format!(
                "reading artifact `{sha256}`: {e}"
            )))
        })?;
    let bytes = match read {
        Ok(bytes) => Bytes::from(bytes),
        Err(StoreError::NotFound(_)) => return Err(None),
        Err(e) => {
            return Err(Some(ApiError::internal(format!(
                "reading artifact `{sha256}`: {e}"
            ))));
        }
    };
    if hex::encode(sha2::Sha256::digest(&bytes)) != sha256.to_ascii_lowercase() {
        return Err(Some(ApiError::internal(format!(
            "the stored artifact `{sha256}` is damaged: its bytes do not match its hash"
        ))));
    }
    Ok(bytes)
}

/// Serves an artifact's bytes; a `Range` request for one range gets `206 Partial Content`.
#[utoipa::path(
    get,
    path = routes::ARTIFACT,
    operation_id = "getArtifact",
    tag = "device-protocol",
    summary = "An agent's bytes; one Range gives 206",
    params(("sha256" = String, Path, description = "The artifact's SHA-256, hex")),
    responses(
        (status = 200, description = "The bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "No such artifact", body = ErrorBody),
        (status = 416, description = "The range is not satisfiable", body = ErrorBody),
    )
)]
pub async fn artifact(
    State(state): State<Arc<AppState>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let bytes = state
        .artifacts
        .get(&state.store, &sha256)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no artifact `{sha256}`")))?;
    let len = bytes.len() as u64;
    let mut response = match headers.get(header::RANGE) {
        None => (StatusCode::OK, bytes).into_response(),
        Some(range) => {
            let Ok(range) = range.to_str() else {
                return Ok(unsatisfiable(
                    len,
                    "the Range header is not ASCII".to_string(),
                ));
            };
            let ranges = http_range_header::parse_range_header(range).and_then(|r| r.validate(len));
            match ranges.as_deref() {
                Ok([one]) => {
                    let (start, end) = (*one.start(), *one.end());
                    let mut r = (
                        StatusCode::PARTIAL_CONTENT,
                        bytes.slice(start as usize..=end as usize),
                    )
                        .into_response();
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        header_value(&format!("bytes {start}-{end}/{len}")),
                    );
                    r
                }
                Ok(_) => unsatisfiable(len, "ask for one range at a time".to_string()),
                Err(e) => unsatisfiable(len, format!("the Range header: {e}")),
            }
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, header_value(&format!("\"{sha256}\"")));
    Ok(response)
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("ASCII header value")
}

/// 416 with the artifact's length, as RFC 9110 asks, and what was wrong.
fn unsatisfiable(len: u64, message: String) -> Response {
    let mut r = ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, message).into_response();
    r.headers_mut().insert(
        header::CONTENT_RANGE,
        header_value(&format!("bytes */{len}")),
    );
    r
}
