//! Several `hotswap serve` replicas on one PostgreSQL database, behind a load balancer, with a
//! simulated fleet spread over them. The replica orchestrating a rollout is killed with SIGKILL
//! in the middle of a wave, or every replica is restarted in turn: the rollout completes, every
//! device updated once, none ever handed two assignments, and the takeover is measured.
//! These run on PostgreSQL whatever `HOTSWAP_TEST_DATABASE` says: replicas need it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotswap_client::Client;
use hotswap_store::testing::CreatedDatabase;
use hotswap_store::{Database, Store, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::balancer::Balancer;
use crate::support::http::{get, post};
use crate::support::process::{Process, free_port, serve_with_env};
use crate::support::scripted::{Behaviour, ScriptedFleet, passed_waves, wait_for};
use crate::support::server::{bearer_client, data_dir, register_devices, register_firmware};
use hotswap_server::ADMIN_TOKEN_FILE;

/// How many devices the fleet has.
const DEVICES: usize = 60;

/// Three replicas on one new database, and a balancer in front of them.
struct Cluster {
    db: CreatedDatabase,
    dirs: Vec<TempDir>,
    ports: Vec<u16>,
    replicas: Vec<Option<Process>>,
    balancer: Balancer,
    /// The fleet's state, read as the database has it (not through any replica).
    store: Store,
    _store_dir: TempDir,
}

async fn replica(dir: &Path, port: u16, url: &str) -> Process {
    serve_with_env(dir, port, "", &[("HOTSWAP_DATABASE_URL", url)]).await
}

impl Cluster {
    async fn start() -> Cluster {
        let db = CreatedDatabase::new();
        let dirs: Vec<TempDir> = (0..3).map(|_| data_dir()).collect();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut replicas = Vec::new();
        // One after the other: the first makes the administrator token, into its directory.
        for (dir, port) in dirs.iter().zip(&ports) {
            replicas.push(Some(replica(dir.path(), *port, &db.url).await));
        }
        let balancer = Balancer::start(
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
                .collect(),
        )
        .await;
        let store_dir = data_dir();
        let store = Store::open_in(
            &Database::Postgres(db.url.clone()),
            store_dir.path(),
            Arc::new(SystemClock),
        )
        .unwrap();
        Cluster {
            db,
            dirs,
            ports,
            replicas,
            balancer,
            store,
            _store_dir: store_dir,
        }
    }

    fn token(&self) -> String {
        let file = self.dirs[0].path().join("data").join(ADMIN_TOKEN_FILE);
        std::fs::read_to_string(file).unwrap().trim().to_string()
    }

    /// The replica holding deployment `id`'s lease, by its place in `replicas`.
    fn owner(&self, id: i64) -> Option<usize> {
        let lease = self.store.lease(id).unwrap()?;
        let pid = lease.owner.split('/').nth(1)?.to_string();
        self.replicas
            .iter()
            .position(|r| r.as_ref().is_some_and(|p| p.id().to_string() == pid))
    }

    async fn restart(&mut self, i: usize) {
        let running = self.replicas[i].take().expect("the replica runs");
        running.terminate();
        self.replicas[i] = Some(replica(self.dirs[i].path(), self.ports[i], &self.db.url).await);
    }
}

/// Registers the versions and the fleet through the balancer, starts the devices and a canary
/// rollout of 2.0.0 to all of them; the deployment's id.
async fn rollout(cluster: &Cluster) -> (reqwest::Client, Client, ScriptedFleet, i64) {
    let token = cluster.token();
    let client = bearer_client(&token);
    let api = Client::new(&cluster.balancer.url)
        .unwrap()
        .with_token(&token);
    register_firmware(&api, "1.0.0").await;
    register_firmware(&api, "2.0.0").await;
    let devices = register_devices(&api, DEVICES, "1.0.0").await;
    let fleet = ScriptedFleet::start(&cluster.balancer.url, &devices, "1.0.0", |_, _| {
        Behaviour::Good
    });
    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetFilter": {},
        "strategy": "canary",
        "config": {"initialPercentage": 10, "increments": [50, 100], "gate": {"soakSeconds": 1}},
        "healthConfig": {"pollSeconds": 1},
    });
    let url = &cluster.balancer.url;
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    (client, api, fleet, started["id"].as_i64().unwrap())
}

/// Polls the deployment's status (through the balancer) until `ready`, checking at every look
/// that no device holds two open assignments.
async fn until(
    cluster: &Cluster,
    client: &reqwest::Client,
    id: i64,
    ready: impl Fn(&Value) -> bool,
) {
    let url = &cluster.balancer.url;
    for _ in 0..3000 {
        assert_eq!(
            cluster.store.doubly_assigned().unwrap(),
            Vec::<String>::new()
        );
        let status = get(client, format!("{url}/api/v1/deployments/{id}/status")).await;
        if ready(&status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deployment {id} never got where the test waits for it");
}

/// The wave in progress: started, some of its devices confirmed, not all.
fn mid_wave(wave: usize) -> impl Fn(&Value) -> bool {
    move |s: &Value| {
        let w = &s["waveStatus"][wave];
        w["startedAt"].is_number()
            && w["succeeded"].as_u64().unwrap_or(0) >= 1
            && w["succeeded"].as_u64() < w["devices"].as_u64()
    }
}

/// The rollout completed with every device updated once, each wave passed once, and every
/// device on 2.0.0 by its own account and the database's.
async fn completed(
    cluster: &Cluster,
    client: &reqwest::Client,
    api: &Client,
    fleet: ScriptedFleet,
    id: i64,
) {
    let done = wait_for(api, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(
        done["states"],
        json!({"confirmed": DEVICES}),
        "every device once: {done:#}"
    );
    let per_wave: u64 = done["waveStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["devices"].as_u64().unwrap())
        .sum();
    assert_eq!(per_wave, DEVICES as u64, "no device in two waves: {done:#}");
    let url = &cluster.balancer.url;
    assert_eq!(
        passed_waves(client, url, id).await,
        [0, 1, 2],
        "each wave passed once"
    );
    assert_eq!(
        cluster.store.doubly_assigned().unwrap(),
        Vec::<String>::new()
    );
    let versions = fleet.stop().await;
    assert_eq!(versions.len(), DEVICES);
    assert!(versions.values().all(|v| v == "2.0.0"), "{versions:?}");
    let page = get(client, format!("{url}/api/v1/devices?limit=1000")).await;
    let devices = page["devices"].as_array().unwrap();
    assert_eq!(devices.len(), DEVICES);
    assert!(devices.iter().all(|d| d["firmwareVersion"] == "2.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_that_orchestrates_hands_its_rollout_to_another() {
    let mut cluster = Cluster::start().await;
    let (client, api, fleet, id) = rollout(&cluster).await;
    until(&cluster, &client, id, mid_wave(1)).await;
    let owner = cluster.owner(id).expect("a replica holds the lease");
    let killed_at = Instant::now();
    drop(cluster.replicas[owner].take());
    let took_over = loop {
        if let Some(new) = cluster.owner(id)
            && new != owner
        {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no replica took the rollout over within a minute"
        );
        assert_eq!(
            cluster.store.doubly_assigned().unwrap(),
            Vec::<String>::new()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "replica {owner} killed in wave 2; another took the rollout over {} ms later (lease {} ms)",
        took_over.as_millis(),
        hotswap_store::LEASE_MS
    );
    let url = &cluster.balancer.url;
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert!(
        status["recentEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("taken over from")),
        "the takeover is in the deployment's events: {status:#}"
    );
    completed(&cluster, &client, &api, fleet, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_during_a_rollout_loses_nothing() {
    let mut cluster = Cluster::start().await;
    let (client, api, fleet, id) = rollout(&cluster).await;
    // One replica after another, each while a wave is under way.
    for (replica, wave) in [(0, 0), (1, 1), (2, 1)] {
        until(&cluster, &client, id, |s| {
            s["currentWave"].as_u64() >= Some(wave) && s["states"]["confirmed"].as_u64() >= Some(1)
        })
        .await;
        cluster.restart(replica).await;
    }
    completed(&cluster, &client, &api, fleet, id).await;
}

/// How long a change of credential may take to reach another replica in the tests: the
/// notification normally arrives in milliseconds; this is room for a loaded machine.
const REACHES_WITHIN: Duration = Duration::from_secs(10);

/// Polls `status` until it gives `wanted`, for at most [`REACHES_WITHIN`]; what it gave last.
async fn becomes<F, Fut>(wanted: u16, status: F) -> u16
where
    F: Fn() -> Fut,
    Fut: Future<Output = u16>,
{
    let began = Instant::now();
    loop {
        let s = status().await;
        if s == wanted || began.elapsed() > REACHES_WITHIN {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Credentials are cached per replica: a token revoked on one, a device's credential replaced
// or taken away on one, must stop working on the other that cached it, and a new credential
// must work there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_changed_on_one_replica_changes_on_every_replica() {
    use hotswap_protocol::{
        CheckIn, DeviceBatch, DeviceRegistration, IfRegistered, Role, StandingChange, TokenRequest,
    };
    let db = CreatedDatabase::new();
    let (dir_a, dir_b) = (data_dir(), data_dir());
    let (port_a, port_b) = (free_port(), free_port());
    let _a = replica(dir_a.path(), port_a, &db.url).await;
    let _b = replica(dir_b.path(), port_b, &db.url).await;
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let admin = std::fs::read_to_string(dir_a.path().join("data").join(ADMIN_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();
    let on_a = Client::new(&url_a).unwrap().with_token(&admin);

    // A token used on B, revoked on A: refused on B.
    let made = on_a
        .create_token(&TokenRequest {
            name: "script".into(),
            role: Role::Viewer,
            expires_in_days: None,
        })
        .await
        .unwrap();
    let viewer = bearer_client(&made.token);
    let list_on_b = || async {
        viewer
            .get(format!("{url_b}/api/v1/devices"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(list_on_b().await, 200);
    on_a.revoke_token(made.info.id).await.unwrap();
    assert_eq!(
        becomes(401, list_on_b).await,
        401,
        "revoked on A, still good on B"
    );

    // A device's credential used on B, replaced on A: the old one refused on B, the new one
    // taken there.
    let registration = DeviceRegistration {
        device_id: "d-1".into(),
        device_model: "sensor-v1".into(),
        firmware_version: "1.0.0".into(),
        ..Default::default()
    };
    register_firmware(&on_a, "1.0.0").await;
    let first = on_a.register_device(&registration).await.unwrap().token;
    let check_in_on_b = |token: String| {
        let url = url_b.clone();
        async move {
            let device = hotswap_client::Device {
                id: "d-1",
                token: &token,
            };
            match Client::new(&url)
                .unwrap()
                .check_in(device, &CheckIn::default(), 0)
                .await
            {
                Ok(_) => 200,
                Err(e) => e.status().unwrap_or(0),
            }
        }
    };
    assert_eq!(check_in_on_b(first.clone()).await, 200);
    let reissued = on_a
        .register_devices(&DeviceBatch {
            devices: vec![registration],
            if_registered: IfRegistered::Reissue,
        })
        .await
        .unwrap();
    let second = reissued.tokens[0].token.clone();
    assert_eq!(
        becomes(403, || check_in_on_b(first.clone())).await,
        403,
        "replaced on A, the old credential still good on B"
    );
    assert_eq!(
        becomes(200, || check_in_on_b(second.clone())).await,
        200,
        "the new credential refused on B"
    );

    // Decommissioned on A: refused on B.
    on_a.set_standing("d-1", StandingChange::Decommission)
        .await
        .unwrap();
    assert_ne!(
        becomes(403, || check_in_on_b(second.clone())).await,
        200,
        "decommissioned on A, still good on B"
    );
}
