//! Scripted device clients: the device protocol spoken through the typed client, each report
//! sent twice to prove a retry changes nothing, each download resumed halfway as a device whose
//! connection dropped does. A request that does not get through is tried again (the server may
//! be restarting); one the server refuses fails the test with the server's message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hotswap_client::{Client, ClientConfig, Device, Retry};
use hotswap_device_vm::Version;
use hotswap_device_vm::image::Manifest;
use hotswap_protocol::{
    Assignment, AssignmentMode, CheckIn, DeviceState, Health, Report, Spelling,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::hex;
use super::http::post;

/// What a scripted device does with the version it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Installs, passes its trial, stays healthy.
    Good,
    /// Installs, fails its self-test, reverts on its own.
    FailsSelfTest,
    /// Installs and confirms, then reports traps at every check-in.
    Unhealthy,
    /// Never answers its assignment.
    Silent,
}

/// A client that rides out a server restart (the crash test kills it): 200 tries, 50 ms apart.
fn patient(url: &str) -> Client {
    Client::with_config(ClientConfig {
        retry: Retry {
            attempts: 200,
            step: Duration::from_millis(50),
            max_pause: Duration::from_millis(50),
        },
        ..ClientConfig::new(url)
    })
    .unwrap()
}

/// Reports `state`, twice: the second, a retry, must change nothing. True when the device
/// carries on; false when the answer says the assignment was called off.
async fn report(
    client: &Client,
    me: Device<'_>,
    a: &Assignment,
    state: DeviceState,
    reason: &str,
) -> bool {
    let r = Report {
        assignment_id: a.assignment_id,
        state,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        health: None,
        traceparent: a.traceparent.clone(),
        took_ms: None,
    };
    let first = client.report(me, &r).await.unwrap();
    let again = client.report(me, &r).await.unwrap();
    assert!(
        !again.applied,
        "a retried {state} report changed something: {first:?} then {again:?}"
    );
    first.state != DeviceState::Cancelled
}

/// Downloads an artifact in two pieces, the second from where the first stopped, as a device
/// resuming a broken download does.
async fn download(client: &Client, me: Device<'_>, url: &str, size: usize) -> Vec<u8> {
    let half = size / 2;
    let mut bytes = fetch(client, me, url, 0).await;
    assert_eq!(bytes.len(), size);
    bytes.truncate(half);
    bytes.extend_from_slice(&fetch(client, me, url, half as u64).await);
    bytes
}

/// An artifact from `offset` on; a download that does not get through (the server restarting)
/// is tried again, one the server refuses fails the test.
async fn fetch(client: &Client, me: Device<'_>, url: &str, offset: u64) -> Vec<u8> {
    for _ in 0..200 {
        match client.artifact(me, url, offset).await {
            Ok(bytes) => return bytes.to_vec(),
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{url}: {e}"),
        }
    }
    panic!("{url}: no answer in 10 s")
}

/// A device client following a script until `stop` is set. Returns the version it ends on.
/// `rounds` counts the device's check-ins whose assignment, if any, it finished working on.
pub async fn scripted_device(
    url: String,
    (id, token): (String, String),
    mut version: String,
    behaviour: impl Fn(&str) -> Behaviour,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> String {
    let client = patient(&url);
    let me = Device {
        id: &id,
        token: &token,
    };
    let mut traps = 0;
    while !stop.load(Ordering::Relaxed) {
        let check_in = CheckIn {
            firmware_version: Some(version.clone()),
            slots: None,
            health: Some(Health {
                healthy: traps == 0,
                self_test_passed: true,
                traps,
                fuel_exhausted: 0,
                metrics: BTreeMap::new(),
            }),
        };
        let answer = client.check_in(me, &check_in, 0).await.unwrap();
        if let Some(a) = &answer.assignment {
            let target = a.version.clone();
            let b = behaviour(&target);
            // Each report's answer may call the job off: the device stops before it activates.
            if b != Behaviour::Silent && report(&client, me, a, DeviceState::Downloading, "").await
            {
                let bytes = download(&client, me, &a.url, a.size as usize).await;
                let sha = Manifest::for_image(Version::parse(&target).unwrap(), &bytes, 0).sha256;
                assert_eq!(
                    a.checksum,
                    format!("sha256:{}", hex(&sha)),
                    "{id}: the bytes match the checksum"
                );
                let mut go = report(&client, me, a, DeviceState::Downloaded, "").await;
                go = go && report(&client, me, a, DeviceState::Verifying, "").await;
                go = go && report(&client, me, a, DeviceState::Installed, "").await;
                if a.mode == AssignmentMode::Rollback {
                    version = target;
                    traps = 0;
                    report(&client, me, a, DeviceState::RolledBack, "").await;
                } else if go && report(&client, me, a, DeviceState::Trial, "").await {
                    match b {
                        Behaviour::FailsSelfTest => {
                            report(
                                &client,
                                me,
                                a,
                                DeviceState::RolledBack,
                                "self-test failed: sensor read out of range",
                            )
                            .await;
                        }
                        Behaviour::Unhealthy => {
                            version = target;
                            traps = 3;
                            report(&client, me, a, DeviceState::Confirmed, "").await;
                        }
                        Behaviour::Good | Behaviour::Silent => {
                            version = target;
                            traps = 0;
                            report(&client, me, a, DeviceState::Confirmed, "").await;
                        }
                    }
                }
            }
        }
        rounds.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    version
}

/// A fleet of scripted devices running in the background.
pub struct ScriptedFleet {
    stop: Arc<AtomicBool>,
    devices: Vec<(String, tokio::task::JoinHandle<String>, Arc<AtomicU64>)>,
}

impl ScriptedFleet {
    pub fn start(
        url: &str,
        devices: &[(String, String)],
        version: &str,
        behaviour: impl Fn(&str, &str) -> Behaviour + Clone + Send + Sync + 'static,
    ) -> ScriptedFleet {
        let stop = Arc::new(AtomicBool::new(false));
        let devices = devices
            .iter()
            .map(|(id, token)| {
                let b = behaviour.clone();
                let device = id.clone();
                let rounds = Arc::new(AtomicU64::new(0));
                let task = tokio::spawn(scripted_device(
                    url.to_string(),
                    (id.clone(), token.clone()),
                    version.to_string(),
                    move |v| b(&device, v),
                    stop.clone(),
                    rounds.clone(),
                ));
                (id.clone(), task, rounds)
            })
            .collect();
        ScriptedFleet { stop, devices }
    }

    /// Waits until every device has checked in `n` more times from now and finished whatever
    /// those check-ins handed it (at most a minute).
    pub async fn check_in_rounds(&self, n: u64) {
        let from: Vec<u64> = self
            .devices
            .iter()
            .map(|(_, _, r)| r.load(Ordering::Relaxed))
            .collect();
        for _ in 0..3000 {
            if self
                .devices
                .iter()
                .zip(&from)
                .all(|((_, _, r), from)| r.load(Ordering::Relaxed) >= from + n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the devices did not check in {n} more times within a minute");
    }

    /// Stops every device; returns the version each ended on.
    pub async fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut versions = BTreeMap::new();
        for (id, task, _) in self.devices {
            versions.insert(id, task.await.unwrap());
        }
        versions
    }
}

/// Starts a rollout of `version` to every `sensor-v1` device with `strategy` and `config`
/// (the default health policy, judging every second), and waits until it ends.
pub async fn deploy(
    client: &reqwest::Client,
    api: &Client,
    url: &str,
    version: &str,
    strategy: &str,
    config: Value,
) -> Value {
    let body = json!({
        "firmwareVersion": version, "deviceModel": "sensor-v1", "targetFilter": {},
        "strategy": strategy, "config": config, "healthConfig": {"pollSeconds": 1},
    });
    let (status, started) = post(client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{strategy}: {started}");
    wait_for(
        api,
        started["id"].as_i64().unwrap(),
        &["completed", "rolled-back", "paused", "cancelled"],
    )
    .await
}

/// Polls the deployment's status until it is in one of `states` (at most a minute); the status
/// as the API's JSON, for assertions on what operators read.
pub async fn wait_for(client: &Client, id: i64, states: &[&str]) -> Value {
    for _ in 0..1200 {
        let status = client.status(id).await.unwrap();
        if states.contains(&status.deployment.state.as_str()) {
            return serde_json::to_value(status).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = client.status(id).await.unwrap();
    panic!("deployment {id} never reached {states:?}: {status:#?}");
}

/// The waves the health policy passed (said `proceed` of), in the order it did.
pub async fn passed_waves(client: &reqwest::Client, url: &str, id: i64) -> Vec<u64> {
    let decisions =
        super::http::get(client, format!("{url}/api/v1/deployments/{id}/decisions")).await;
    decisions
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"]["verdict"] == "proceed")
        .map(|d| d["wave"].as_u64().unwrap())
        .collect()
}

/// The version each registered device runs, as the server has it.
pub async fn versions_on_server(client: &Client) -> BTreeMap<String, String> {
    let page = client
        .devices(&hotswap_protocol::DeviceQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    page.devices
        .into_iter()
        .map(|d| (d.device_id, d.firmware_version))
        .collect()
}
