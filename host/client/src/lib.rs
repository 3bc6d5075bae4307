//! A typed client of HotSwap's whole HTTP API: the operators' endpoints and the device protocol,
//! on the protocol crate's own types, so what it sends and reads is what the server defines.
//!
//! A request the server refuses (4xx, or a server failure it reports) is an error carrying the
//! server's status and message as the server said them. A request that does not get through
//! (connection refused or cut, 502, 503, 504: a server restarting or busy) is tried again with a
//! growing pause, as [`Retry`] says, and then given up with the last error. Depends on neither
//! wasmtime nor rusqlite: the simulator, the demo, the benchmarks, the CLI and the tests use it.

#![forbid(unsafe_code)]

mod error;
mod retry;

use std::time::Duration;

use hotswap_protocol::{
    AuditPage, AuditQuery, BatchAnswer, CheckIn, CheckInAnswer, CreatedToken, Decision,
    DecisionsQuery, Deployment, DeploymentRequest, DeploymentStatus, DeviceBatch, DeviceDetail,
    DeviceGroup, DevicePage, DeviceQuery, DeviceRecord, DeviceRegistration, DryRun, ErrorBody,
    Firmware, FirmwareDetail, FirmwareQuery, FirmwareRegistration, GroupCreation, Lineage,
    PluginInfo, RegisteredDevice, Report, ReportAnswer, ReportBatch, ResolvedGroup, TokenInfo,
    TokenRequest,
};
use hotswap_protocol::{
    DeploymentAction, LoginRequest, Session, StandingChange, UserInfo, UserRequest, routes,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::ClientError;
pub use retry::Retry;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port`, with or without a trailing slash.
    pub server: String,
    /// Speak HTTP/2 with prior knowledge (the server serves it beside HTTP/1.1): many devices
    /// share one connection.
    pub http2: bool,
    pub retry: Retry,
    /// The longest one request may take, a long poll's wait not included.
    pub timeout: Option<Duration>,
    /// The operator credential sent with every operator request (an API token); the device
    /// protocol's calls take the device's own.
    pub token: Option<String>,
    /// For an `https://` server: trust this CA certificate (PEM) instead of the system's roots.
    pub ca_certificate: Option<std::path::PathBuf>,
}

impl ClientConfig {
    pub fn new(server: &str) -> ClientConfig {
        ClientConfig {
            server: server.trim_end_matches('/').to_string(),
            http2: false,
            retry: Retry::default(),
            timeout: None,
            token: None,
            ca_certificate: None,
        }
    }
}

/// A client of one server. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    retry: Retry,
    token: Option<String>,
}

/// A device's own credential: its id and its token, for the device protocol's calls. An empty
/// token sends none (a device whose TLS client certificate stands for it).
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub id: &'a str,
    pub token: &'a str,
}

impl Device<'_> {
    fn credential(&self) -> Option<&str> {
        (!self.token.is_empty()).then_some(self.token)
    }
}

impl Client {
    /// A client of `server` over HTTP/1.1 with the default retries.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        Client::with_config(ClientConfig::new(server))
    }

    pub fn with_config(config: ClientConfig) -> Result<Client, ClientError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        // Only an https server needs the roots (reading the system's takes milliseconds, and a
        // simulator makes hundreds of clients).
        if config.server.starts_with("https://") {
            builder = builder
                .use_preconfigured_tls(tls(config.ca_certificate.as_deref(), &config.server)?);
        }
        if config.http2 {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(t) = config.timeout {
            builder = builder.timeout(t);
        }
        let http = builder.build().map_err(|source| ClientError::Transport {
            url: config.server.clone(),
            source,
        })?;
        Ok(Client {
            http,
            server: config.server.trim_end_matches('/').to_string(),
            retry: config.retry,
            token: config.token,
        })
    }

    /// The same client (the same connections) sending `token` with operator requests.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The same client (the same connections) with other retries.
    pub fn retrying(&self, retry: Retry) -> Client {
        Client {
            retry,
            ..self.clone()
        }
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Sends one request (again, as `retry` says, while it does not get through) and reads the
    /// answer as `A`.
    async fn call<A: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Body<'_>,
    ) -> Result<A, ClientError> {
        let bytes = self
            .send(method, path, query, body, self.token.as_deref())
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            detail: e.to_string(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Body<'_>,
        token: Option<&str>,
    ) -> Result<bytes::Bytes, ClientError> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(q) = query {
                request = q.apply(request);
            }
            request = match body {
                Body::None => request,
                Body::Json(value) => value.json(request),
                Body::Bytes(bytes) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .body(bytes.to_vec()),
            };
            let error = match request.send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(bytes) => return Ok(bytes),
                    Err(source) => ClientError::Transport {
                        url: url.clone(),
                        source,
                    },
                },
                Ok(r) => refused(&url, r).await,
                Err(source) => ClientError::Transport {
                    url: url.clone(),
                    source,
                },
            };
            if !error.is_transient() || attempt >= self.retry.attempts {
                return Err(error);
            }
            tokio::time::sleep(self.retry.pause(attempt)).await;
        }
    }

    async fn get<A: DeserializeOwned>(&self, path: &str) -> Result<A, ClientError> {
        self.call(Method::GET, path, None, Body::None).await
    }

    async fn post<A: DeserializeOwned>(
        &self,
        path: &str,
        body: &(dyn ErasedJson + Sync),
    ) -> Result<A, ClientError> {
        self.call(Method::POST, path, None, Body::Json(body)).await
    }

    // The operator API.

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<serde_json::Value, ClientError> {
        self.get(routes::HEALTHZ).await
    }

    /// Waits until the server answers `/healthz` (a server starting up), asking every
    /// `every`, for at most `within`; the last error when it never did.
    pub async fn wait_until_up(
        &self,
        every: Duration,
        within: Duration,
    ) -> Result<(), ClientError> {
        let attempts = (within.as_millis() / every.as_millis().max(1)).max(1);
        self.retrying(Retry {
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            step: every,
            max_pause: every,
        })
        .healthz()
        .await
        .map(drop)
    }

    /// `GET /metrics`: the OpenMetrics text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self
            .send(
                Method::GET,
                "/metrics",
                None,
                Body::None,
                self.token.as_deref(),
            )
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn register_firmware(
        &self,
        f: &FirmwareRegistration,
    ) -> Result<Firmware, ClientError> {
        self.post(routes::FIRMWARE, f).await
    }

    pub async fn list_firmware(&self, q: &FirmwareQuery) -> Result<Vec<Firmware>, ClientError> {
        self.call(Method::GET, routes::FIRMWARE, Some(q), Body::None)
            .await
    }

    /// A version, with how many devices came to it from which version.
    pub async fn firmware(&self, id: i64) -> Result<FirmwareDetail, ClientError> {
        self.get(&routes::fill(routes::FIRMWARE_VERSION, &[&id]))
            .await
    }

    /// After `at`, the version can no longer be deployed.
    pub async fn sunset_firmware(
        &self,
        id: i64,
        at: hotswap_protocol::UnixSeconds,
    ) -> Result<Firmware, ClientError> {
        self.post(
            &routes::fill(routes::FIRMWARE_SUNSET, &[&id]),
            &hotswap_protocol::Sunset { at },
        )
        .await
    }

    pub async fn deprecate_firmware(&self, id: i64) -> Result<Firmware, ClientError> {
        self.post(&routes::fill(routes::FIRMWARE_DEPRECATE, &[&id]), &())
            .await
    }

    /// Registers a device; the answer holds its credential, shown this once.
    pub async fn register_device(
        &self,
        d: &DeviceRegistration,
    ) -> Result<RegisteredDevice, ClientError> {
        self.post(routes::DEVICES, d).await
    }

    /// Registers a batch of devices in one transaction (`POST /api/v1/devices/batch`).
    pub async fn register_devices(&self, batch: &DeviceBatch) -> Result<BatchAnswer, ClientError> {
        self.post(routes::DEVICES_BATCH, batch).await
    }

    pub async fn devices(&self, q: &DeviceQuery) -> Result<DevicePage, ClientError> {
        self.call(Method::GET, routes::DEVICES, Some(q), Body::None)
            .await
    }

    /// The versions a device went through, oldest first.
    pub async fn lineage(&self, device_id: &str) -> Result<Lineage, ClientError> {
        self.get(&routes::fill(routes::DEVICE_LINEAGE, &[&device_id]))
            .await
    }

    pub async fn device(&self, device_id: &str) -> Result<DeviceDetail, ClientError> {
        self.get(&routes::fill(routes::DEVICE, &[&device_id])).await
    }

    /// Accepts, rejects or decommissions a device.
    pub async fn set_standing(
        &self,
        device_id: &str,
        change: StandingChange,
    ) -> Result<DeviceRecord, ClientError> {
        self.set_standing_of_key(device_id, change, None).await
    }

    /// [`Client::set_standing`], only if the device enrolled with the key of `fingerprint`.
    pub async fn set_standing_of_key(
        &self,
        device_id: &str,
        change: StandingChange,
        fingerprint: Option<&str>,
    ) -> Result<DeviceRecord, ClientError> {
        let q = hotswap_protocol::StandingQuery {
            fingerprint: fingerprint.map(str::to_string),
        };
        self.call(
            Method::POST,
            &routes::fill(change.route(), &[&device_id]),
            Some(&q),
            Body::Json(&()),
        )
        .await
    }

    pub async fn create_group(&self, g: &GroupCreation) -> Result<ResolvedGroup, ClientError> {
        self.post(routes::GROUPS, g).await
    }

    /// `GET /api/v1/fleet`: the fleet counted by version, status and region.
    pub async fn fleet_summary(&self) -> Result<hotswap_protocol::FleetSummary, ClientError> {
        self.get(routes::FLEET).await
    }

    pub async fn groups(&self) -> Result<Vec<DeviceGroup>, ClientError> {
        self.get(routes::GROUPS).await
    }

    pub async fn group(&self, name: &str) -> Result<ResolvedGroup, ClientError> {
        self.get(&routes::fill(routes::GROUP, &[&name])).await
    }

    /// Uploads a plugin component (`POST /api/v1/plugins`, the bytes as the body).
    pub async fn upload_plugin(&self, component: &[u8]) -> Result<PluginInfo, ClientError> {
        self.upload_plugin_with(component, &Default::default())
            .await
    }

    /// Uploads a plugin that asks for limits of its own (each at most the server's ceiling).
    pub async fn upload_plugin_with(
        &self,
        component: &[u8],
        limits: &hotswap_protocol::PluginLimitOverrides,
    ) -> Result<PluginInfo, ClientError> {
        self.call(
            Method::POST,
            routes::PLUGINS,
            Some(limits),
            Body::Bytes(component),
        )
        .await
    }

    pub async fn plugins(&self) -> Result<Vec<PluginInfo>, ClientError> {
        self.get(routes::PLUGINS).await
    }

    /// `GET /api/v1/plugin-limits`: what every plugin runs under on this server.
    pub async fn plugin_limits(&self) -> Result<hotswap_protocol::PluginLimits, ClientError> {
        self.get(routes::PLUGIN_LIMITS).await
    }

    pub async fn delete_plugin(&self, name: &str, version: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &routes::fill(routes::PLUGIN, &[&name, &version]),
            None,
            Body::None,
            self.token.as_deref(),
        )
        .await
        .map(drop)
    }

    /// Makes an API token; the answer holds its secret, shown this once.
    pub async fn create_token(&self, t: &TokenRequest) -> Result<CreatedToken, ClientError> {
        self.post(routes::TOKENS, t).await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get(routes::TOKENS).await
    }

    pub async fn revoke_token(&self, id: i64) -> Result<TokenInfo, ClientError> {
        self.post(&routes::fill(routes::TOKEN_REVOKE, &[&id]), &())
            .await
    }

    /// Signs in with a name and a password; the session's token is for [`Client::with_token`].
    pub async fn login(&self, name: &str, password: &str) -> Result<Session, ClientError> {
        let body = LoginRequest {
            name: name.to_string(),
            password: password.to_string(),
        };
        self.post(routes::LOGIN, &body).await
    }

    pub async fn create_user(&self, u: &UserRequest) -> Result<UserInfo, ClientError> {
        self.post(routes::USERS, u).await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.get(routes::USERS).await
    }

    pub async fn disable_user(&self, name: &str) -> Result<UserInfo, ClientError> {
        self.disable_user_revoking(name, false).await
    }

    /// Disables a user and, with `revoke_tokens`, revokes every API token they made.
    pub async fn disable_user_revoking(
        &self,
        name: &str,
        revoke_tokens: bool,
    ) -> Result<UserInfo, ClientError> {
        let q = hotswap_protocol::DisableQuery { revoke_tokens };
        self.call(
            Method::POST,
            &routes::fill(routes::USER_DISABLE, &[&name]),
            Some(&q),
            Body::Json(&()),
        )
        .await
    }

    /// Changes a user's own password, proving the current one (no credential needed).
    pub async fn change_password(
        &self,
        change: &hotswap_protocol::PasswordChange,
    ) -> Result<(), ClientError> {
        self.send(
            Method::POST,
            routes::PASSWORD,
            None,
            Body::Json(change),
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, ClientError> {
        self.call(Method::GET, routes::AUDIT, Some(q), Body::None)
            .await
    }

    /// Starts a deployment; its status as it starts.
    pub async fn create_deployment(
        &self,
        d: &DeploymentRequest,
    ) -> Result<DeploymentStatus, ClientError> {
        self.post(routes::DEPLOYMENTS, d).await
    }

    /// The plan a deployment would follow, with nothing started.
    pub async fn dry_run(&self, d: &DeploymentRequest) -> Result<DryRun, ClientError> {
        self.call(
            Method::POST,
            routes::DEPLOYMENTS,
            Some(&[("dryRun", "true")]),
            Body::Json(d),
        )
        .await
    }

    pub async fn deployments(&self) -> Result<Vec<Deployment>, ClientError> {
        self.get(routes::DEPLOYMENTS).await
    }

    pub async fn status(&self, id: i64) -> Result<DeploymentStatus, ClientError> {
        self.get(&routes::fill(routes::DEPLOYMENT_STATUS, &[&id]))
            .await
    }

    pub async fn decisions(
        &self,
        id: i64,
        q: &DecisionsQuery,
    ) -> Result<Vec<Decision>, ClientError> {
        self.call(
            Method::GET,
            &routes::fill(routes::DEPLOYMENT_DECISIONS, &[&id]),
            Some(q),
            Body::None,
        )
        .await
    }

    /// `POST /api/v1/deployments/{id}/approve` (`approve`) or `.../deny`, with a remark kept
    /// in the deployment's events and the audit log.
    pub async fn decide(
        &self,
        id: i64,
        approve: bool,
        remark: &str,
    ) -> Result<Deployment, ClientError> {
        let route = if approve {
            routes::DEPLOYMENT_APPROVE
        } else {
            routes::DEPLOYMENT_DENY
        };
        self.post(
            &routes::fill(route, &[&id]),
            &hotswap_protocol::ApprovalRequest {
                remark: remark.to_string(),
            },
        )
        .await
    }

    pub async fn act(&self, id: i64, action: DeploymentAction) -> Result<Deployment, ClientError> {
        self.post(&routes::fill(action.route(), &[&id]), &()).await
    }

    // The device protocol.

    /// A device's check-in; with `wait` seconds (at most
    /// [`hotswap_protocol::device_protocol::MAX_WAIT_SECONDS`]) a long poll.
    pub async fn check_in(
        &self,
        device: Device<'_>,
        c: &CheckIn,
        wait: u32,
    ) -> Result<CheckInAnswer, ClientError> {
        let path = routes::fill(routes::CHECK_IN, &[&device.id]);
        let query: Option<&(dyn ErasedQuery + Sync)> = match wait {
            0 => None,
            _ => Some(&[("wait", wait)]),
        };
        self.as_device(device, Method::POST, &path, query, Body::Json(c))
            .await
    }

    pub async fn report(
        &self,
        device: Device<'_>,
        r: &Report,
    ) -> Result<ReportAnswer, ClientError> {
        let path = routes::fill(routes::REPORTS, &[&device.id]);
        self.as_device(device, Method::POST, &path, None, Body::Json(r))
            .await
    }

    /// Reports that happened together, applied in order, all or none; one answer each.
    pub async fn reports(
        &self,
        device: Device<'_>,
        batch: &ReportBatch,
    ) -> Result<Vec<ReportAnswer>, ClientError> {
        let path = routes::fill(routes::REPORTS_BATCH, &[&device.id]);
        self.as_device(device, Method::POST, &path, None, Body::Json(batch))
            .await
    }

    /// A call of the device protocol, with the device's credential.
    async fn as_device<A: DeserializeOwned>(
        &self,
        device: Device<'_>,
        method: Method,
        path: &str,
        query: Option<&(dyn ErasedQuery + Sync)>,
        body: Body<'_>,
    ) -> Result<A, ClientError> {
        let bytes = self
            .send(method, path, query, body, device.credential())
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.url(path),
            detail: e.to_string(),
        })
    }

    /// An artifact's bytes from `offset` on (`url` as an assignment gives it, the server's path),
    /// with HTTP Range when `offset` is past 0. Not retried: a device resumes where its flash
    /// says, and decides itself when to try again.
    pub async fn artifact(
        &self,
        device: Device<'_>,
        url: &str,
        offset: u64,
    ) -> Result<bytes::Bytes, ClientError> {
        let full = self.url(url);
        let mut request = self.http.get(&full);
        if let Some(token) = device.credential() {
            request = request.bearer_auth(token);
        }
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let r = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: full.clone(),
                source,
            })?;
        let whole = r.status() == StatusCode::OK && offset == 0;
        if !(whole || r.status() == StatusCode::PARTIAL_CONTENT) {
            return Err(refused(&full, r).await);
        }
        r.bytes()
            .await
            .map_err(|source| ClientError::Transport { url: full, source })
    }
}

/// Makes ring the process's TLS provider, once, unless one is installed already: reqwest builds
/// its TLS settings from it (aws-lc-rs, rustls's default, is not built here). Call it before
/// building a `reqwest::Client` of your own.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may have installed one meanwhile: theirs is as good.
            let _ = crypto_provider().install_default();
        }
    });
}

/// The TLS settings of a client: the ring provider, the given CA or the system's roots, HTTP/2
/// and HTTP/1.1 by ALPN.
fn tls(ca: Option<&std::path::Path>, server: &str) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |detail: String| ClientError::Decode {
        url: server.to_string(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                bad(format!(
                    "reading the CA certificate {}: {e}",
                    path.display()
                ))
            })? {
                let cert = cert.map_err(|e| bad(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            // Certificates the system cannot read are left out; an https server signed by one
            // of them then fails its handshake, which names the problem.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(crypto_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A request's body.
#[derive(Clone, Copy)]
enum Body<'a> {
    None,
    Json(&'a (dyn ErasedJson + Sync)),
    Bytes(&'a [u8]),
}

/// A JSON body of any type (object safe, so `call` is not generic over it).
trait ErasedJson {
    fn json(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
}

impl<T: Serialize> ErasedJson for T {
    fn json(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.json(self)
    }
}

/// A query of any type.
trait ErasedQuery {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
}

impl<T: Serialize> ErasedQuery for T {
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.query(self)
    }
}

/// The server's refusal, as it said it.
async fn refused(url: &str, r: reqwest::Response) -> ClientError {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let (message, id) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.message, body.error.id),
        Err(_) if text.is_empty() => (format!("HTTP {status}"), None),
        Err(_) => (text, None),
    };
    ClientError::Refused {
        url: url.to_string(),
        status,
        message,
        id,
    }
}

/// The TLS crypto provider: *ring*'s. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange, which aws-lc-rs has; that one needs a C toolchain and CMake in every build, a move
/// of its own to make. Until then *ring* stays, and this is the one place that says so.
#[allow(deprecated)]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
