//! Who is calling, and whether they may: every route has a [`Rule`] in [`crate::api::ROUTES`],
//! and one middleware ([`check`]) holds each request to its route's rule before any handler runs.
//! Nothing is open but `GET /healthz`.
//!
//! Operators and scripts send `Authorization: Bearer <API token>` (`hsw_pat_...`); devices send
//! their own token (`hsw_dev_...`), which works only on the device routes and only for that
//! device: its check-in and reports, and an artifact while an assignment hands it to that
//! device. A token is known to the server only as its SHA-256; checking one costs a hash and a
//! lookup in memory (filled from the store on the first use, emptied here and on every replica
//! when a token is revoked). Every operator action that changes something goes to the audit log
//! before the answer is sent; refused credentials too, the first of each source's route and
//! minute at once and the rest as their count ([`crate::refusals`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hotswap_protocol::auth::{API_TOKEN_PREFIX, DEVICE_TOKEN_PREFIX};
use hotswap_protocol::{Permission, TokenInfo};
use hotswap_store::{ArtifactHolder, NewAudit};

use crate::api::{ApiError, AppState, ROUTES};
use crate::credentials::{Principal, digest};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone: liveness only.
    Open,
    /// Anyone, to sign in with a name and a password (the handler checks them and audits it).
    Login,
    /// A device enrolling itself: the body carries the fleet's enrollment secret, or a signature
    /// by the key it enrolled with; the handler checks them.
    Enroll,
    /// An operator credential whose role grants the permission.
    Operator(Permission),
    /// The device the route's `{id}` names, with its own credential.
    Device,
    /// A device credential, for an artifact an open assignment hands to that device.
    Artifact,
}

/// Why a credential was refused: 401 for none or a bad one, 403 for a good one that may not.
fn refused(status: StatusCode, message: String) -> ApiError {
    ApiError::new(status, message)
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    refused(StatusCode::UNAUTHORIZED, message.into())
}

fn forbidden(message: impl Into<String>) -> ApiError {
    refused(StatusCode::FORBIDDEN, message.into())
}

/// The rule of the route `path` (its template) for `method`; `HEAD` is `GET`'s.
pub fn rule(method: &Method, path: &str) -> Option<Rule> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == path)
        .map(|r| r.rule)
}

/// `405 Method Not Allowed` with the `Allow` header of the path's methods.
fn method_not_allowed(method: &Method, path: &str) -> Response {
    let mut allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method.as_str())
        .collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} takes {allow}, not {method}"),
    )
    .into_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Holds a request to its route's rule; audits what an operator changes and every refusal.
pub async fn check(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    // The table and the router are one, so a path without a rule for this method is a method
    // the path does not take: 405, naming the ones it does.
    let Some(rule) = rule(&method, route.as_str()) else {
        return method_not_allowed(&method, route.as_str());
    };
    if state.unchecked_devices && matches!(rule, Rule::Device | Rule::Artifact) {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    // The leaf certificate a TLS client presented (the handshake checked it against the
    // client CA); it stands for a device's token.
    let certificate = req
        .extensions()
        .get::<Arc<axum_server::tls::TlsInfo>>()
        .and_then(|info| info.peer_certificates.first().map(Vec::as_slice));
    let checked = authenticate(&state, rule, bearer, certificate, req.uri().path()).await;
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // What the audit log would say of this request; built only for a request it records.
    let entry = |req: &Request, actor: String, token_id: Option<i64>, action: String| NewAudit {
        actor,
        token_id,
        source: address.map(|a| a.to_string()),
        action,
        object: Some(req.uri().path().to_string()),
        status: 0,
        count: 1,
    };
    let action = || format!("{method} {}", route.as_str());
    let principal = match checked {
        Ok(p) => p,
        Err(e) => {
            let audit = NewAudit {
                status: e.status().as_u16(),
                ..entry(
                    &req,
                    "anonymous".into(),
                    None,
                    format!("credential refused: {}", action()),
                )
            };
            // Counted, not written one by one: the first of its source's route and minute is
            // written now, the rest as one entry when the minute is over.
            let now = state.store.clock().now().seconds().0;
            if let Some(first) = state.refusals.refused(now, audit)
                && let Err(err) = state.store.append_audit(first).await
            {
                return ApiError::from(err).into_response();
            }
            if let Some(address) = address
                && let Err(limited) = state.rate_limits.check_address(address)
            {
                return ApiError::too_many(limited.message, limited.retry_after_seconds)
                    .into_response();
            }
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            return response;
        }
    };
    let audited = match &principal {
        Some(p @ Principal::Operator { token_id, .. }) if method != Method::GET => {
            Some(entry(&req, p.actor(), Some(*token_id), action()))
        }
        Some(p @ Principal::User { .. }) if method != Method::GET => {
            Some(entry(&req, p.actor(), None, action()))
        }
        _ => None,
    };
    if let Some(p) = &principal
        && let Err(limited) = state.rate_limits.check(p)
    {
        return ApiError::too_many(limited.message, limited.retry_after_seconds).into_response();
    }
    let _slot = match principal.as_ref().map(|p| state.in_flight.enter(p)) {
        Some(Err(limited)) => {
            return ApiError::too_many(limited.message, limited.retry_after_seconds)
                .into_response();
        }
        Some(Ok(slot)) => slot,
        None => None,
    };
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    let response = next.run(req).await;
    if let Some(entry) = audited {
        let entry = NewAudit {
            status: response.status().as_u16(),
            ..entry
        };
        if let Err(err) = state.store.append_audit(entry).await {
            // The action happened, but it is not on record: say so rather than pretend.
            return ApiError::from(err).into_response();
        }
    }
    response
}

/// The principal a request's credential stands for (`bearer` is the `Authorization` header,
/// `certificate` the DER of a TLS client certificate the handshake accepted), held to `rule`
/// for the request path `path`. A token, when sent, is what counts. Public for the benchmark
/// of what it costs.
pub async fn authenticate(
    state: &Arc<AppState>,
    rule: Rule,
    bearer: Option<&str>,
    certificate: Option<&[u8]>,
    path: &str,
) -> Result<Option<Principal>, ApiError> {
    if matches!(rule, Rule::Open | Rule::Login | Rule::Enroll) {
        return Ok(None);
    }
    let Some(value) = bearer else {
        return match certificate {
            Some(der) if matches!(rule, Rule::Device | Rule::Artifact) => {
                certified(state, der, rule, device_of(path, rule), path)
                    .await
                    .map(Some)
            }
            Some(_) => Err(unauthorized(
                "a client certificate stands only for a device, on the device routes: operators send `Authorization: Bearer <token>`",
            )),
            None => Err(unauthorized(
                "this route needs a credential: send `Authorization: Bearer <token>`",
            )),
        };
    };
    let Some(secret) = value.strip_prefix("Bearer ") else {
        return Err(unauthorized(
            "malformed credential: expected `Authorization: Bearer <token>`",
        ));
    };
    let secret = secret.trim();
    if let Some(_rest) = secret.strip_prefix(DEVICE_TOKEN_PREFIX) {
        let device_id = device_of(path, rule);
        return match rule {
            Rule::Device | Rule::Artifact => {
                device(state, secret, rule, device_id, path).await.map(Some)
            }
            _ => Err(forbidden(
                "a device credential works only on the device routes",
            )),
        };
    }
    // A session token is a JWT: three base64url parts, the first `{"...`.
    if secret.starts_with("eyJ") {
        return session(state, secret, rule).await.map(Some);
    }
    if !secret.starts_with(API_TOKEN_PREFIX) {
        return Err(unauthorized(format!(
            "malformed credential: tokens start with `{API_TOKEN_PREFIX}` (operators) or `{DEVICE_TOKEN_PREFIX}` (devices)"
        )));
    }
    let token = operator_token(state, secret).await?;
    let now = state.store.clock().now().seconds();
    if let Some(at) = token.revoked_at {
        return Err(unauthorized(format!(
            "token `{}` was revoked at {at}",
            token.name
        )));
    }
    if let Some(at) = token.expires_at.filter(|at| *at <= now) {
        return Err(unauthorized(format!(
            "token `{}` expired at {at}",
            token.name
        )));
    }
    let principal = Principal::Operator {
        token_id: token.id,
        name: token.name.clone(),
        role: token.role,
    };
    match rule {
        Rule::Operator(p) if token.role.allows(p) => Ok(Some(principal)),
        Rule::Operator(p) => Err(forbidden(format!(
            "token `{}` has the role `{}`, which lacks the permission `{p}`",
            token.name, token.role
        ))),
        _ => Err(forbidden(
            "an operator credential cannot speak for a device: the device routes take the device's own token",
        )),
    }
}

/// Checks a session token: this install's, not expired, its user not disabled.
async fn session(state: &Arc<AppState>, secret: &str, rule: Rule) -> Result<Principal, ApiError> {
    let now = state.store.clock().now().seconds();
    let (name, _signed_in_as) = state.sessions.check(secret, now).map_err(unauthorized)?;
    let store = state.store.clone();
    let looked_up = name.clone();
    let user = crate::api::blocking(move || Ok(store.user(&looked_up)?)).await?;
    // The role is the user's now, not the one the session was signed in with: a user whose
    // role changed has the new one from their next request.
    let role = match user {
        Some(u) if !u.info.disabled => u.info.role,
        _ => return Err(unauthorized(format!("user `{name}` is disabled or gone"))),
    };
    match rule {
        Rule::Operator(p) if role.allows(p) => Ok(Principal::User { name, role }),
        Rule::Operator(p) => Err(forbidden(format!(
            "user `{name}` has the role `{role}`, which lacks the permission `{p}`"
        ))),
        _ => Err(forbidden(
            "an operator credential cannot speak for a device: the device routes take the device's own token",
        )),
    }
}

/// The device a device route is for: the `{id}` after `/devices/`.
fn device_of(path: &str, rule: Rule) -> Option<&str> {
    match rule {
        Rule::Device => path
            .strip_prefix("/api/v1/devices/")
            .and_then(|rest| rest.split('/').next()),
        _ => None,
    }
}

async fn operator_token(state: &Arc<AppState>, secret: &str) -> Result<Arc<TokenInfo>, ApiError> {
    let sha = digest(secret);
    if let Some(t) = state.credentials.token(&sha) {
        return Ok(t);
    }
    let since = state.credentials.generation();
    let store = state.store.clone();
    let looked_up = sha.clone();
    let found = crate::api::blocking(move || {
        let token = store.token_by_hash(&looked_up)?;
        if let Some(t) = &token {
            store.token_used(t.id)?;
        }
        Ok(token)
    })
    .await?;
    let token = Arc::new(found.ok_or_else(|| unauthorized("unknown token"))?);
    state.credentials.cache_token(since, sha, token.clone());
    Ok(token)
}

/// Checks a device credential: the device the route names (or, for an artifact, any device
/// with an open assignment for it) must be the one whose credential this is.
async fn device(
    state: &Arc<AppState>,
    secret: &str,
    rule: Rule,
    device_id: Option<&str>,
    path: &str,
) -> Result<Principal, ApiError> {
    let sha = digest(secret);
    let since = state.credentials.generation();
    match (rule, device_id) {
        (Rule::Device, Some(id)) => {
            let expected = device_token(state, id).await?;
            if expected.as_deref() != Some(sha.as_str()) {
                return Err(forbidden(format!(
                    "this credential is not device `{id}`'s: a device may act only for itself"
                )));
            }
            // Its downloads name no device: remember whose credential this is.
            if state.credentials.owner(&sha).is_none() {
                state.credentials.cache_owner(since, sha, id);
            }
            Ok(Principal::Device {
                device_id: id.to_string(),
            })
        }
        (Rule::Artifact, _) => {
            let artifact = path.rsplit('/').next().unwrap_or_default().to_string();
            // Whose credential this is: the artifact route names no device. A download right
            // after the check-in that handed it out needs nothing from the store.
            let known = state.credentials.owner(&sha);
            if let Some(d) = &known
                && state.credentials.granted(d, &artifact)
            {
                return Ok(Principal::Device {
                    device_id: d.to_string(),
                });
            }
            let found = state
                .store
                .artifact_owner(ArtifactHolder::Token(sha.clone()), artifact)
                .await?;
            let Some((device_id, assigned)) = found else {
                return Err(unauthorized("unknown device credential"));
            };
            state.credentials.cache_owner(since, sha, &device_id);
            if !assigned {
                return Err(forbidden(format!(
                    "no open assignment hands this artifact to device `{device_id}`"
                )));
            }
            Ok(Principal::Device { device_id })
        }
        _ => Err(forbidden("this route takes no device credential")),
    }
}

/// Checks a device's client certificate: its subject common name or a DNS name among its
/// subject alternative names must be the device the route names (or, for an artifact, a device
/// an open assignment hands it to), and that device must be in the fleet (not pending, rejected
/// or decommissioned).
async fn certified(
    state: &Arc<AppState>,
    der: &[u8],
    rule: Rule,
    device_id: Option<&str>,
    path: &str,
) -> Result<Principal, ApiError> {
    let names = certificate_names(der)?;
    let device = match (rule, device_id) {
        (Rule::Device, Some(id)) => {
            if !names.iter().any(|n| n == id) {
                return Err(forbidden(format!(
                    "the client certificate names {names:?}, not device `{id}`: a device may act only for itself"
                )));
            }
            id.to_string()
        }
        (Rule::Artifact, _) => {
            let mut found = None;
            for name in &names {
                if in_fleet(state, name).await? {
                    found = Some(name.clone());
                    break;
                }
            }
            let Some(d) = found else {
                return Err(unauthorized(format!(
                    "the client certificate names {names:?}: no device of the fleet"
                )));
            };
            let artifact = path.rsplit('/').next().unwrap_or_default().to_string();
            if !state.credentials.granted(&d, &artifact) {
                let found = state
                    .store
                    .artifact_owner(ArtifactHolder::Device(d.clone()), artifact)
                    .await?;
                if !found.is_some_and(|(_, assigned)| assigned) {
                    return Err(forbidden(format!(
                        "no open assignment hands this artifact to device `{d}`"
                    )));
                }
            }
            return Ok(Principal::Device { device_id: d });
        }
        _ => return Err(forbidden("this route takes no device credential")),
    };
    if !in_fleet(state, &device).await? {
        return Err(unauthorized(format!(
            "device `{device}` is not in the fleet (unknown, pending, rejected or decommissioned): its certificate does not count"
        )));
    }
    Ok(Principal::Device { device_id: device })
}

/// The names a client certificate gives its holder: the subject's common names and the DNS
/// names among its subject alternative names.
fn certificate_names(der: &[u8]) -> Result<Vec<String>, ApiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| unauthorized(format!("the client certificate does not parse: {e}")))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    if names.is_empty() {
        return Err(unauthorized(
            "the client certificate names no device: it has neither a common name nor a DNS subject alternative name",
        ));
    }
    Ok(names)
}

/// Whether `device_id` is a device of the fleet, one a credential may speak for.
async fn in_fleet(state: &Arc<AppState>, device_id: &str) -> Result<bool, ApiError> {
    use hotswap_protocol::DeviceStatus::*;
    if state.credentials.certified(device_id) {
        return Ok(true);
    }
    let since = state.credentials.generation();
    let status = state
        .store
        .device_status_async(device_id.to_string())
        .await?;
    let in_fleet = matches!(status, Some(Registered | Online | Quarantined));
    if in_fleet {
        state.credentials.cache_certified(since, device_id);
    }
    Ok(in_fleet)
}

/// The SHA-256 of a device's credential, from memory or the store.
async fn device_token(state: &Arc<AppState>, id: &str) -> Result<Option<Arc<str>>, ApiError> {
    if let Some(t) = state.credentials.device_credential(id) {
        return Ok(Some(t));
    }
    let since = state.credentials.generation();
    let found = state.store.device_token_async(id.to_string()).await?;
    Ok(found.map(|sha| {
        let sha: Arc<str> = Arc::from(sha);
        state
            .credentials
            .cache_device_credential(since, id, sha.clone());
        sha
    }))
}
