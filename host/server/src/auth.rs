//! Who is calling, and whether they may: every route has a [`Rule`] in [`crate::api::ROUTES`],
//! and one middleware ([`check`]) holds each request to its route's rule before any handler runs.
//! Nothing is open but `GET /healthz`.
//!
//! Operators and scripts send `Authorization: Bearer <API token>` (`hsw_pat_...`); devices send
//! their own token (`hsw_dev_...`), which works only on the device routes and only for that
//! device: its check-in and reports, and an artifact while an assignment hands it to that
//! device. A token is known to the server only as its SHA-256; checking one costs a hash and a
//! lookup in memory (filled from the store on the first use, emptied when a token is revoked).
//! Every operator action that changes something, and every refused credential, goes to the
//! audit log before the answer is sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hotswap_protocol::auth::{API_TOKEN_PREFIX, DEVICE_TOKEN_PREFIX};
use hotswap_protocol::{Permission, Role, TokenInfo, UnixSeconds};
use hotswap_store::{NewAudit, NewToken, Store};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, AppState, ROUTES};

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

/// Who a request comes from, once its credential is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator {
        token_id: i64,
        name: String,
        role: Role,
    },
    /// A signed-in user, by a session token.
    User {
        name: String,
        role: Role,
    },
    Device {
        device_id: String,
    },
}

impl Principal {
    /// How the audit log names it.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator { name, .. } => format!("token:{name}"),
            Principal::User { name, .. } => format!("user:{name}"),
            Principal::Device { device_id } => format!("device:{device_id}"),
        }
    }
}

/// A new secret: the prefix and 32 random bytes in hex.
pub fn new_secret(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("randomness: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// What the server keeps of a secret: its SHA-256, hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The first characters of a token, to tell tokens apart in a list.
pub fn hint(secret: &str) -> String {
    secret.chars().take(API_TOKEN_PREFIX.len() + 4).collect()
}

/// The file the first start writes the administrator token to.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// On a data directory with no token yet, makes an administrator token and writes it to
/// `<dir>/ADMIN_TOKEN_FILE` (mode 0600). Returns the file's path when it made one. The token
/// itself is never logged.
pub fn first_start(store: &Store, dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if store.token_count()? > 0 {
        return Ok(None);
    }
    let secret = new_secret(API_TOKEN_PREFIX).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let path = dir.join(ADMIN_TOKEN_FILE);
    // Written before the token is stored: a token no file holds would lock everyone out.
    write_secret(&path, format!("{secret}\n").as_bytes())?;
    let stored = store.add_first_token(&NewToken {
        name: "admin".into(),
        role: Role::Admin,
        sha256: digest(&secret),
        hint: hint(&secret),
        created_by: "first start".into(),
        expires_at: None,
    })?;
    if !stored {
        // Another replica on the same database made the first token meanwhile.
        std::fs::remove_file(&path)?;
        return Ok(None);
    }
    Ok(Some(path))
}

/// Writes a secret to a file only its owner may read, synced.
pub(crate) fn write_secret(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret)?;
    file.sync_all()
}

/// Tokens and device credentials already looked up, by the SHA-256 of the secret.
pub struct Credentials {
    tokens: quick_cache::sync::Cache<String, Arc<TokenInfo>>,
    /// Device id to the SHA-256 of its credential.
    devices: quick_cache::sync::Cache<String, Arc<str>>,
    /// The SHA-256 of a device credential to its device, for the artifact route.
    owners: quick_cache::sync::Cache<String, Arc<str>>,
    /// The artifact each device was last handed by a check-in, and when.
    grants: quick_cache::sync::Cache<String, Grant>,
    /// Devices found in the fleet, whose client certificates count.
    certified: quick_cache::sync::Cache<String, ()>,
}

/// An artifact a check-in handed to a device.
#[derive(Debug, Clone)]
struct Grant {
    sha256: Arc<str>,
    at: std::time::Instant,
}

/// How long an artifact a check-in handed out may be fetched on the strength of that check-in
/// alone, in seconds; after it, or when the device reported the assignment over, the store is
/// asked whether an assignment still hands it the artifact.
pub const GRANT_SECONDS: u64 = 600;

/// The most devices whose credentials are kept in memory (the store holds the rest).
pub const CREDENTIALS_CACHED: usize = 250_000;

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            tokens: quick_cache::sync::Cache::new(4096),
            devices: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            owners: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            grants: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
            certified: quick_cache::sync::Cache::new(CREDENTIALS_CACHED),
        }
    }
}

impl Credentials {
    /// Forgets every cached token (a token was revoked by id).
    pub fn forget_tokens(&self) {
        self.tokens.clear();
    }

    /// A check-in handed `a` to `device_id`: its artifact may be fetched.
    pub fn grant(&self, device_id: &str, a: &hotswap_protocol::Assignment) {
        let sha256 = a.url.rsplit('/').next().unwrap_or_default();
        self.grants.insert(
            device_id.to_string(),
            Grant {
                sha256: Arc::from(sha256),
                at: std::time::Instant::now(),
            },
        );
    }

    /// The device reported its assignment over.
    pub fn withdraw(&self, device_id: &str) {
        self.grants.remove(device_id);
    }

    fn granted(&self, device_id: &str, sha256: &str) -> bool {
        self.grants.get(device_id).is_some_and(|g| {
            &*g.sha256 == sha256 && g.at.elapsed() < std::time::Duration::from_secs(GRANT_SECONDS)
        })
    }

    /// A device was given the credential whose hash is `sha256` (registered, or given a new
    /// one): its first request needs nothing from the store.
    pub fn remember_device(&self, device_id: &str, sha256: &str) {
        let sha: Arc<str> = Arc::from(sha256);
        self.devices.insert(device_id.to_string(), sha.clone());
        self.owners.insert(sha.to_string(), Arc::from(device_id));
    }

    /// A device's credential changed (registered again with a new one, or rejected).
    pub fn forget_device(&self, device_id: &str) {
        if let Some((_, sha)) = self.devices.remove(device_id) {
            self.owners.remove(&*sha);
        }
        self.grants.remove(device_id);
        self.certified.remove(device_id);
    }
}

/// A rate limit: `per_second` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Requests one operator token may make: a script or a dashboard polling status, with room for a
/// CLI import in batches.
pub const TOKEN_RATE: Rate = Rate {
    per_second: 100,
    burst: 500,
};

/// Requests one device may make. An update costs a device three requests and a download, a
/// long poll one a minute; the scale benchmark's devices stay far below it.
pub const DEVICE_RATE: Rate = Rate {
    per_second: 20,
    burst: 100,
};

type Limiter<K> = governor::DefaultKeyedRateLimiter<K>;

/// The rate limits, by operator token and by device (never by address: a fleet behind one
/// gateway shares an address).
pub struct RateLimits {
    tokens: Limiter<i64>,
    users: Limiter<String>,
    devices: Limiter<String>,
    token_rate: Rate,
    device_rate: Rate,
}

fn quota(r: Rate) -> governor::Quota {
    let per_second = std::num::NonZeroU32::new(r.per_second.max(1)).expect("at least 1");
    let burst = std::num::NonZeroU32::new(r.burst.max(1)).expect("at least 1");
    governor::Quota::per_second(per_second).allow_burst(burst)
}

impl RateLimits {
    pub fn new(token_rate: Rate, device_rate: Rate) -> RateLimits {
        RateLimits {
            tokens: governor::RateLimiter::keyed(quota(token_rate)),
            users: governor::RateLimiter::keyed(quota(token_rate)),
            devices: governor::RateLimiter::keyed(quota(device_rate)),
            token_rate,
            device_rate,
        }
    }

    /// Whether `p` may make a request now; the refusal says when to try again.
    fn check(&self, p: &Principal) -> Result<(), ApiError> {
        let (result, rate, whose) = match p {
            Principal::Operator { token_id, name, .. } => (
                self.tokens.check_key(token_id),
                self.token_rate,
                format!("token `{name}`"),
            ),
            Principal::User { name, .. } => (
                self.users.check_key(name),
                self.token_rate,
                format!("user `{name}`"),
            ),
            Principal::Device { device_id } => (
                self.devices.check_key(device_id),
                self.device_rate,
                format!("device `{device_id}`"),
            ),
        };
        result.map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::too_many(
                format!(
                    "rate limit: {whose} may make {} requests a second ({} at once); try again in {seconds} s",
                    rate.per_second, rate.burst
                ),
                seconds.max(1),
            )
        })
    }

    /// Forgets keys that have been quiet long enough to be back at their full burst.
    pub fn shrink(&self) {
        self.tokens.retain_recent();
        self.users.retain_recent();
        self.devices.retain_recent();
    }
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
    // What the audit log would say of this request; built only for a request it records.
    let entry = |req: &Request, actor: String, token_id: Option<i64>, action: String| NewAudit {
        actor,
        token_id,
        source: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        action,
        object: Some(req.uri().path().to_string()),
        status: 0,
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
            if let Err(err) = state.store.append_audit(audit).await {
                return ApiError::from(err).into_response();
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
        return limited.into_response();
    }
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
    let (name, role) = state.sessions.check(secret, now).map_err(unauthorized)?;
    let store = state.store.clone();
    let looked_up = name.clone();
    let user = crate::api::blocking(move || Ok(store.user(&looked_up)?)).await?;
    match user {
        Some(u) if !u.info.disabled => {}
        _ => return Err(unauthorized(format!("user `{name}` is disabled or gone"))),
    }
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
    if let Some(t) = state.credentials.tokens.get(&sha) {
        return Ok(t);
    }
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
    state.credentials.tokens.insert(sha, token.clone());
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
    match (rule, device_id) {
        (Rule::Device, Some(id)) => {
            let expected = device_token(state, id).await?;
            if expected.as_deref() != Some(sha.as_str()) {
                return Err(forbidden(format!(
                    "this credential is not device `{id}`'s: a device may act only for itself"
                )));
            }
            // Its downloads name no device: remember whose credential this is.
            if state.credentials.owners.get(&sha).is_none() {
                state.credentials.owners.insert(sha, Arc::from(id));
            }
            Ok(Principal::Device {
                device_id: id.to_string(),
            })
        }
        (Rule::Artifact, _) => {
            let artifact = path.rsplit('/').next().unwrap_or_default().to_string();
            // Whose credential this is: the artifact route names no device. A download right
            // after the check-in that handed it out needs nothing from the store.
            let known = state.credentials.owners.get(&sha);
            if let Some(d) = &known
                && state.credentials.granted(d, &artifact)
            {
                return Ok(Principal::Device {
                    device_id: d.to_string(),
                });
            }
            let found = state
                .store
                .artifact_owner(sha.clone(), known.map(|d| d.to_string()), artifact)
                .await?;
            let Some((device_id, assigned)) = found else {
                return Err(unauthorized("unknown device credential"));
            };
            state
                .credentials
                .owners
                .insert(sha, Arc::from(device_id.as_str()));
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
                    .artifact_owner(String::new(), Some(d.clone()), artifact)
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
    if state.credentials.certified.get(device_id).is_some() {
        return Ok(true);
    }
    let status = state
        .store
        .device_status_async(device_id.to_string())
        .await?;
    let in_fleet = matches!(status, Some(Registered | Online | Quarantined));
    if in_fleet {
        state
            .credentials
            .certified
            .insert(device_id.to_string(), ());
    }
    Ok(in_fleet)
}

/// The SHA-256 of a device's credential, from memory or the store.
async fn device_token(state: &Arc<AppState>, id: &str) -> Result<Option<Arc<str>>, ApiError> {
    if let Some(t) = state.credentials.devices.get(id) {
        return Ok(Some(t));
    }
    let found = state.store.device_token_async(id.to_string()).await?;
    Ok(found.map(|sha| {
        let sha: Arc<str> = Arc::from(sha);
        state
            .credentials
            .devices
            .insert(id.to_string(), sha.clone());
        sha
    }))
}

/// The expiry of a token made now for `days`.
pub fn expiry(now: UnixSeconds, days: Option<u32>) -> Option<UnixSeconds> {
    days.map(|d| UnixSeconds(now.0 + i64::from(d) * 86_400))
}
