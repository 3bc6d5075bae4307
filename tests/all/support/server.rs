//! A server in the test process on a loopback port and a temporary data directory, removed when
//! the test ends however it ends; optionally on a clock the test moves by hand.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hotswap_client::Client;
use hotswap_server::credentials::Rate;
use hotswap_server::{ADMIN_TOKEN_FILE, ServerConfig, ServerLimits, serve, state_with_store};
use hotswap_store::{Clock, ManualClock, Store, SystemClock};
use tempfile::TempDir;

use super::{image, registration, release_key};

/// A fresh temporary data directory.
pub fn data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("hotswap-test-")
        .tempdir()
        .unwrap()
}

/// The fleet's enrollment secret on the test servers.
pub const ENROLLMENT_SECRET: &str = "the fleet's enrollment secret";

/// How often the test servers' orchestrator looks at its deployments.
pub const TICK: Duration = Duration::from_millis(50);

/// A running server; stops when [`Server::stop`] is called or the runtime ends.
pub struct Server {
    pub url: String,
    /// The administrator token the first start made.
    pub admin_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(dir: impl AsRef<Path>) -> Server {
        Server::with(dir, 256 << 10, Arc::new(SystemClock)).await
    }

    /// A server whose request bodies may be up to `max_body_bytes`.
    pub async fn with_body_limit(dir: impl AsRef<Path>, max_body_bytes: usize) -> Server {
        Server::with(dir, max_body_bytes, Arc::new(SystemClock)).await
    }

    /// A server whose time is `clock`'s: deadlines and backoff pass when the test says.
    pub async fn with_clock(dir: impl AsRef<Path>, clock: ManualClock) -> Server {
        Server::with(dir, 256 << 10, Arc::new(clock)).await
    }

    async fn with(dir: impl AsRef<Path>, max_body_bytes: usize, clock: Arc<dyn Clock>) -> Server {
        // Scripted devices check in every 20 ms and send each report twice: far above what a
        // device may (`DEVICE_RATE`), so the tests that are not about rate limits lift them.
        let unlimited = Rate {
            per_second: 1_000_000,
            burst: 1_000_000,
        };
        let limits = ServerLimits {
            max_body_bytes,
            max_firmware_bytes: 64 << 10,
            token_rate: unlimited,
            device_rate: unlimited,
            address_rate: unlimited,
            ..ServerLimits::default()
        };
        Server::with_limits(dir, limits, clock).await
    }

    /// A server with these limits.
    pub async fn with_limits(
        dir: impl AsRef<Path>,
        limits: ServerLimits,
        clock: Arc<dyn Clock>,
    ) -> Server {
        let config = ServerConfig {
            data_dir: dir.as_ref().to_path_buf(),
            database: super::database::for_dir(dir.as_ref()),
            trusted_keys: vec![release_key().trusted()],
            limits,
            tick: TICK,
            protected_labels: vec![("env".into(), "production".into())],
            tls: None,
            enrollment: Some(hotswap_server::EnrollmentConfig {
                secret: ENROLLMENT_SECRET.into(),
                auto_accept: false,
            }),
            unchecked_devices: false,
            plugin_limits: Default::default(),
            plugin_ceilings: Default::default(),
            traces: Default::default(),
        };
        let store = Store::open_in(&config.database, &config.data_dir, clock).unwrap();
        let state = state_with_store(&config, store).unwrap();
        let admin_token = std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            serve(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap()
        });
        Server {
            url,
            admin_token,
            stop: Some(tx),
            task,
        }
    }

    /// A typed client of this server, with the administrator token.
    pub fn client(&self) -> Client {
        Client::new(&self.url)
            .unwrap()
            .with_token(&self.admin_token)
    }

    /// A raw HTTP client that sends the administrator token with every request.
    pub fn http(&self) -> reqwest::Client {
        bearer_client(&self.admin_token)
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = (&mut self.task).await;
    }
}

/// A server on a fresh data directory with `versions` registered for `sensor-v1` and `devices`
/// devices on 1.0.0 (`d-000`, `d-001`, ...).
pub struct Rig {
    pub dir: TempDir,
    pub server: Server,
    pub url: String,
    /// For raw requests (what the server says to bad input).
    pub client: reqwest::Client,
    /// The typed client.
    pub api: Client,
    pub ids: Vec<String>,
    /// Each device's id and credential.
    pub devices: Vec<(String, String)>,
}

impl Rig {
    pub async fn start(versions: &[&str], devices: usize) -> Rig {
        let dir = data_dir();
        let server = Server::start(&dir).await;
        Rig::on(dir, server, versions, devices).await
    }

    /// The same on a clock the test moves by hand.
    pub async fn with_clock(versions: &[&str], devices: usize, clock: ManualClock) -> Rig {
        let dir = data_dir();
        let server = Server::with_clock(&dir, clock).await;
        Rig::on(dir, server, versions, devices).await
    }

    async fn on(dir: TempDir, server: Server, versions: &[&str], devices: usize) -> Rig {
        let url = server.url.clone();
        let api = server.client();
        for v in versions {
            register_firmware(&api, v).await;
        }
        let registered = register_devices(&api, devices, "1.0.0").await;
        Rig {
            dir,
            client: server.http(),
            server,
            url,
            api,
            ids: registered.iter().map(|(id, _)| id.clone()).collect(),
            devices: registered,
        }
    }
}

/// Registers `version` of the registry image for `sensor-v1`.
pub async fn register_firmware(client: &Client, version: &str) {
    client
        .register_firmware(&registration(&release_key(), version, &image(version)))
        .await
        .unwrap();
}

/// Registers `n` devices on `version`, in three regions; each one's id and credential.
pub async fn register_devices(client: &Client, n: usize, version: &str) -> Vec<(String, String)> {
    let regions = ["eu-west", "us-east", "ap-south"];
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("d-{i:03}");
        let registered = client
            .register_device(&hotswap_protocol::DeviceRegistration {
                device_id: id.clone(),
                device_model: "sensor-v1".into(),
                region: regions[i % 3].into(),
                firmware_version: version.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push((id, registered.token));
    }
    ids
}

/// A raw HTTP client that sends `token` with every request.
pub fn bearer_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    {
        hotswap_client::install_crypto_provider();
        reqwest::Client::builder()
    }
    .default_headers(headers)
    .build()
    .unwrap()
}
