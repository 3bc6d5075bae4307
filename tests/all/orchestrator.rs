//! The orchestrator over real HTTP: a real server, and scripted device clients speaking the
//! device protocol (check-in, Range download, reports, each report sent twice to prove a retry
//! changes nothing). A canary rollout completes; a rollout whose devices fail rolls back by
//! itself and every device ends on the version it had (devices still downloading are told to
//! stop, devices that installed it are waited for and sent back); a device that stops answering
//! is retried with backoff, then quarantined.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hotswap_device_vm::Version;
use hotswap_device_vm::image::Manifest;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api::{Server, data_dir, get, hex, post, registration, release_key};

/// What a scripted device does with the version it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Installs, passes its trial, stays healthy.
    Good,
    /// Installs, fails its self-test, reverts on its own.
    FailsSelfTest,
    /// Installs and confirms, then reports traps at every check-in.
    Unhealthy,
    /// Never answers its assignment.
    Silent,
}

/// A distinct image per version.
pub(crate) fn image(version: &str) -> Vec<u8> {
    let mut image = crate::api::hotswap_agents_image();
    image.extend_from_slice(version.as_bytes());
    image
}

pub(crate) async fn register_firmware(client: &reqwest::Client, url: &str, version: &str) {
    let (status, body) = post(
        client,
        format!("{url}/api/v1/firmware"),
        &registration(&release_key(), version, &image(version)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

pub(crate) async fn register_devices(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    version: &str,
) -> Vec<String> {
    let regions = ["eu-west", "us-east", "ap-south"];
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("d-{i:03}");
        let body = json!({"deviceId": id, "deviceModel": "sensor-v1", "region": regions[i % 3], "firmwareVersion": version});
        let (status, answer) = post(client, format!("{url}/api/v1/devices"), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        ids.push(id);
    }
    ids
}

/// A server on a fresh data directory with `versions` registered for `sensor-v1` and `devices`
/// devices on 1.0.0.
struct Rig {
    dir: std::path::PathBuf,
    server: Server,
    url: String,
    client: reqwest::Client,
    ids: Vec<String>,
}

impl Rig {
    async fn start(versions: &[&str], devices: usize) -> Rig {
        let dir = data_dir();
        let server = Server::start(&dir).await;
        let url = server.url.clone();
        let client = reqwest::Client::new();
        for v in versions {
            register_firmware(&client, &url, v).await;
        }
        let ids = register_devices(&client, &url, devices, "1.0.0").await;
        Rig {
            dir,
            server,
            url,
            client,
            ids,
        }
    }
}

/// A POST that survives a server that is down for a while (the crash test restarts it).
async fn send(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    loop {
        if let Ok(r) = client.post(url).json(body).send().await
            && r.status().is_success()
            && let Ok(v) = r.json::<Value>().await
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reports `state`, twice: the second, a retry, must change nothing. True when the device
/// carries on; false when the answer says the assignment was called off.
async fn report(
    client: &reqwest::Client,
    url: &str,
    assignment: &Value,
    state: &str,
    reason: &str,
) -> bool {
    let body =
        json!({"assignmentId": assignment["assignmentId"], "state": state, "reason": reason});
    let first = send(client, url, &body).await;
    let again = send(client, url, &body).await;
    assert_eq!(
        again["applied"], false,
        "a retried {state} report changed something: {first} then {again}"
    );
    first["state"] != "cancelled"
}

/// Downloads an artifact in two HTTP ranges, as a device resuming a broken download does.
async fn download(client: &reqwest::Client, url: &str, size: usize) -> Vec<u8> {
    let half = size / 2;
    let mut bytes = Vec::with_capacity(size);
    for range in [format!("bytes=0-{}", half - 1), format!("bytes={half}-")] {
        let r = loop {
            match client.get(url).header("Range", &range).send().await {
                Ok(r) => break r,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        bytes.extend_from_slice(&r.bytes().await.unwrap());
    }
    bytes
}

/// A device client following a script until `stop` is set. Returns the version it ends on.
pub(crate) async fn scripted_device(
    url: String,
    id: String,
    mut version: String,
    behaviour: impl Fn(&str) -> Behaviour,
    stop: Arc<AtomicBool>,
) -> String {
    let client = reqwest::Client::new();
    let check_in = format!("{url}/api/v1/devices/{id}/check-in");
    let reports = format!("{url}/api/v1/devices/{id}/reports");
    let mut traps = 0;
    while !stop.load(Ordering::Relaxed) {
        let health = json!({"healthy": traps == 0, "traps": traps});
        let answer = send(
            &client,
            &check_in,
            &json!({"firmwareVersion": version, "health": health}),
        )
        .await;
        let a = &answer["assignment"];
        if a.is_object() {
            let target = a["version"].as_str().unwrap().to_string();
            let b = behaviour(&target);
            // Each report's answer may call the job off: the device stops before it activates.
            if b != Behaviour::Silent && report(&client, &reports, a, "downloading", "").await {
                let size = a["size"].as_u64().unwrap() as usize;
                let bytes = download(
                    &client,
                    &format!("{url}{}", a["url"].as_str().unwrap()),
                    size,
                )
                .await;
                let sha = Manifest::for_image(Version::parse(&target).unwrap(), &bytes, 0).sha256;
                assert_eq!(
                    a["checksum"],
                    format!("sha256:{}", hex(&sha)),
                    "{id}: the bytes match the checksum"
                );
                let mut go = report(&client, &reports, a, "downloaded", "").await;
                go = go && report(&client, &reports, a, "verifying", "").await;
                go = go && report(&client, &reports, a, "installed", "").await;
                if a["mode"] == "rollback" {
                    version = target;
                    traps = 0;
                    report(&client, &reports, a, "rolled-back", "").await;
                } else if go && report(&client, &reports, a, "trial", "").await {
                    match b {
                        Behaviour::FailsSelfTest => {
                            report(
                                &client,
                                &reports,
                                a,
                                "rolled-back",
                                "self-test failed: sensor read out of range",
                            )
                            .await;
                        }
                        Behaviour::Unhealthy => {
                            version = target;
                            traps = 3;
                            report(&client, &reports, a, "confirmed", "").await;
                        }
                        Behaviour::Good | Behaviour::Silent => {
                            version = target;
                            traps = 0;
                            report(&client, &reports, a, "confirmed", "").await;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    version
}

/// Polls the deployment's status until it is in one of `states`.
pub(crate) async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    id: i64,
    states: &[&str],
) -> Value {
    for _ in 0..1200 {
        let status = get(client, format!("{url}/api/v1/deployments/{id}/status")).await;
        if states.iter().any(|s| status["state"] == *s) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = get(client, format!("{url}/api/v1/deployments/{id}/status")).await;
    panic!("deployment {id} never reached {states:?}: {status:#}");
}

/// A fleet of scripted devices running in the background.
pub(crate) struct Fleet {
    stop: Arc<AtomicBool>,
    devices: Vec<(String, tokio::task::JoinHandle<String>)>,
}

impl Fleet {
    pub(crate) fn start(
        url: &str,
        ids: &[String],
        version: &str,
        behaviour: impl Fn(&str, &str) -> Behaviour + Clone + Send + Sync + 'static,
    ) -> Fleet {
        let stop = Arc::new(AtomicBool::new(false));
        let devices = ids
            .iter()
            .map(|id| {
                let b = behaviour.clone();
                let device = id.clone();
                let task = tokio::spawn(scripted_device(
                    url.to_string(),
                    id.clone(),
                    version.to_string(),
                    move |v| b(&device, v),
                    stop.clone(),
                ));
                (id.clone(), task)
            })
            .collect();
        Fleet { stop, devices }
    }

    /// Stops every device; returns the version each ended on.
    pub(crate) async fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut versions = BTreeMap::new();
        for (id, task) in self.devices {
            versions.insert(id, task.await.unwrap());
        }
        versions
    }
}

async fn versions_on_server(client: &reqwest::Client, url: &str) -> BTreeMap<String, String> {
    let page = get(client, format!("{url}/api/v1/devices?limit=1000")).await;
    page["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deviceId"].as_str().unwrap().to_string(),
                d["firmwareVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn canary(version: &str, extra: Value) -> Value {
    let mut body = json!({
        "firmwareVersion": version,
        "deviceModel": "sensor-v1",
        "targetFilter": {},
        "strategy": "Canary",
        "config": {"initialPercentage": 10, "increments": [50, 100], "gate": {"soakSeconds": 0}},
        "healthConfig": {"pollSeconds": 1},
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rollout_completes_wave_by_wave() {
    let Rig {
        dir,
        server,
        url,
        client,
        ids,
    } = Rig::start(&["1.0.0", "2.0.0"], 30).await;

    let (status, started) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &canary("2.0.0", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    // Paused before any device has been seen: nothing is handed out until it is resumed.
    let (status, paused) = post(
        &client,
        format!("{url}/api/v1/deployments/{id}/pause"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let fleet = Fleet::start(&url, &ids, "1.0.0", |_, _| Behaviour::Good);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(status["state"], "paused");
    assert_eq!(status["states"].get("confirmed"), None, "{status:#}");
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/deployments/{id}/resume"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let done = wait_for(&client, &url, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let sizes: Vec<u64> = done["waveStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["succeeded"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [3, 12, 15], "{done:#}");
    assert_eq!(done["states"], json!({"confirmed": 30}));
    let versions = fleet.stop().await;
    assert!(versions.values().all(|v| v == "2.0.0"), "{versions:?}");
    assert!(
        versions_on_server(&client, &url)
            .await
            .values()
            .all(|v| v == "2.0.0")
    );

    // Every verdict is on record with its inputs; the last wave's is `proceed`.
    let decisions = get(&client, format!("{url}/api/v1/deployments/{id}/decisions")).await;
    let decisions = decisions.as_array().unwrap();
    let proceeds: Vec<u64> = decisions
        .iter()
        .filter(|d| d["verdict"]["verdict"] == "proceed")
        .map(|d| d["wave"].as_u64().unwrap())
        .collect();
    assert_eq!(proceeds, [0, 1, 2], "{decisions:#?}");
    let last = decisions.last().unwrap();
    assert_eq!(last["stats"]["succeeded"], 15);
    assert_eq!(last["stats"]["deploymentSucceeded"], 30);
    assert_eq!(last["policy"], "default@0.1.0");
    // The samples are what the wave's devices on 2.0.0 had sent by then (a device sends its
    // health at check-in, after it confirmed); none from another wave or version.
    let samples = last["samples"].as_array().unwrap();
    assert!(samples.len() <= 15, "{last:#}");
    assert!(samples.iter().all(|s| s["healthy"] == true), "{last:#}");
    // The newest only, without samples (a large wave's are megabytes per decision); the
    // status shows recent verdicts without them too.
    let newest = get(
        &client,
        format!("{url}/api/v1/deployments/{id}/decisions?limit=1&samples=false"),
    )
    .await;
    let newest = newest.as_array().unwrap();
    assert_eq!(newest.len(), 1, "{newest:#?}");
    assert_eq!(newest[0]["id"], last["id"], "{newest:#?}");
    assert!(newest[0].get("samples").is_none(), "{newest:#?}");
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    let recent = status["recentDecisions"].as_array().unwrap();
    assert!(!recent.is_empty(), "{status:#}");
    assert!(
        recent.iter().all(|d| d.get("samples").is_none()),
        "{status:#}"
    );
    for (query, expected) in [
        ("limit=0", "`limit` is 1 to 1000, found 0"),
        ("limit=1001", "`limit` is 1 to 1000, found 1001"),
        ("samples=maybe", "samples"),
        ("page=2", "unknown field `page`"),
    ] {
        let r = client
            .get(format!("{url}/api/v1/deployments/{id}/decisions?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(
            crate::api::message(&body).contains(expected),
            "{query}: {body}"
        );
    }

    // A device's inventory shows what it runs, its health and its history.
    let device = get(&client, format!("{url}/api/v1/devices/d-000")).await;
    assert_eq!(device["firmwareVersion"], "2.0.0", "{device:#}");
    assert!(device["health"]["healthy"].as_bool().unwrap(), "{device:#}");
    assert_eq!(device["history"][0]["version"], "2.0.0", "{device:#}");
    assert_eq!(device["history"][0]["fromVersion"], "1.0.0", "{device:#}");
    assert_eq!(device["history"][0]["state"], "confirmed", "{device:#}");

    // The devices are free again for the next deployment; metrics count the reports.
    let (status, next) = post(
        &client,
        format!("{url}/api/v1/deployments?dryRun=true"),
        &canary("1.0.0", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let metrics = metrics_text(&client, &url).await;
    assert!(
        metrics.contains("hotswap_device_reports_total{state=\"confirmed\"} 30"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hotswap_deployments{state=\"completed\"} 1"),
        "{metrics}"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollout_rolls_back_and_every_device_ends_on_its_previous_version() {
    let Rig {
        dir,
        server,
        url,
        client,
        ids,
    } = Rig::start(&["1.0.0", "2.0.0", "3.0.0", "4.0.0"], 20).await;
    // 3.0.0 fails its self-test on half the devices; the others take it and then trap. Which
    // device of the canary wave gets how far before the first failure stops the rollout is up
    // to timing: whichever way it goes, no device keeps 3.0.0.
    // 4.0.0 installs and confirms everywhere, then traps: its health samples stop it, and every
    // device of the canary wave is sent back.
    let fleet = Fleet::start(&url, &ids, "1.0.0", |device, version| {
        let n: usize = device[2..].parse().unwrap();
        match (version, n % 2) {
            ("3.0.0", 0) | ("4.0.0", _) => Behaviour::Unhealthy,
            ("3.0.0", _) => Behaviour::FailsSelfTest,
            _ => Behaviour::Good,
        }
    });
    let deploy = |version: &str, initial: u32, soak: u32| {
        let mut body = canary(version, json!({}));
        body["config"]["initialPercentage"] = json!(initial);
        body["config"]["gate"]["soakSeconds"] = json!(soak);
        body
    };
    let (status, v2) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &deploy("2.0.0", 10, 0),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let done = wait_for(
        &client,
        &url,
        v2["id"].as_i64().unwrap(),
        &["completed", "rolled-back", "paused"],
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");

    let (status, v3) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &deploy("3.0.0", 20, 0),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v3}");
    let id = v3["id"].as_i64().unwrap();
    let done = wait_for(&client, &url, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "rolled-back", "{done:#}");
    assert_eq!(
        done["currentWave"], 0,
        "stopped in the canary wave: {done:#}"
    );
    assert!(
        done["reason"].as_str().unwrap().contains("wave 1"),
        "{done:#}"
    );
    assert_eq!(
        done["rollback"]["rolled-back"].as_u64().unwrap_or(0),
        done["states"]["confirmed"].as_u64().unwrap_or(0),
        "every device that confirmed 3.0.0 was sent back: {done:#}"
    );
    assert!(
        done["recentEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("self-test failed")),
        "{done:#}"
    );
    // The rollback ends only once every device that installed 3.0.0 is done with it.
    let on_server = versions_on_server(&client, &url).await;
    assert!(
        on_server.values().all(|v| v == "2.0.0"),
        "every device on the previous version when the rollback ends: {on_server:?}"
    );
    let decisions = get(&client, format!("{url}/api/v1/deployments/{id}/decisions")).await;
    let last = decisions.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["verdict"]["verdict"], "rollBack", "{last:#}");
    assert_eq!(last["stats"]["wave"], 0);
    assert!(last["stats"]["failed"].as_u64().unwrap() > 0, "{last:#}");

    // The gate's soak keeps the wave open long enough for the traps to be reported.
    let (status, v4) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &deploy("4.0.0", 20, 60),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v4}");
    let id = v4["id"].as_i64().unwrap();
    let done = wait_for(&client, &url, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "rolled-back", "{done:#}");
    assert_eq!(done["currentWave"], 0, "{done:#}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("health samples are unhealthy"),
        "{done:#}"
    );
    assert_eq!(done["states"]["confirmed"], 4, "{done:#}");
    assert_eq!(
        done["rollback"]["rolled-back"], 4,
        "the canary wave was sent back: {done:#}"
    );

    let versions = fleet.stop().await;
    assert!(
        versions.values().all(|v| v == "2.0.0"),
        "every device on the previous version: {versions:?}"
    );
    assert!(
        versions_on_server(&client, &url)
            .await
            .values()
            .all(|v| v == "2.0.0")
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Step by step, with no timing left to chance: when a rollout is called off, a device that
/// was still downloading is told to stop by the answer to its next report; a device that had
/// already installed the new version cannot be stopped, so the rollback waits for it and sends
/// it back once it confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_stops_devices_still_downloading_and_waits_for_those_that_installed() {
    let Rig {
        dir,
        server,
        url,
        client,
        ids,
    } = Rig::start(&["1.0.0", "2.0.0"], 3).await;
    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ids,
        "strategy": "direct", "config": {"gate": {"soakSeconds": 0, "failureBudget": 0}},
        "healthConfig": {"pollSeconds": 1},
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();

    let check_in = |device: &str, version: &str| {
        let client = client.clone();
        let url = format!("{url}/api/v1/devices/{device}/check-in");
        let body = json!({"firmwareVersion": version});
        async move {
            for _ in 0..600 {
                let answer = send(&client, &url, &body).await;
                if answer["assignment"].is_object() {
                    return answer["assignment"].clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no assignment for {url}");
        }
    };
    let report = |device: &str, assignment: &Value, state: &str, reason: &str| {
        let client = client.clone();
        let url = format!("{url}/api/v1/devices/{device}/reports");
        let body =
            json!({"assignmentId": assignment["assignmentId"], "state": state, "reason": reason});
        let state = state.to_string();
        async move {
            let (status, answer) = post(&client, url, &body).await;
            assert_eq!(status, StatusCode::OK, "{state}: {answer}");
            answer
        }
    };

    let installed = check_in("d-000", "1.0.0").await;
    let downloading = check_in("d-001", "1.0.0").await;
    let failing = check_in("d-002", "1.0.0").await;
    for state in ["downloading", "downloaded", "verifying", "installed"] {
        report("d-000", &installed, state, "").await;
    }
    report("d-001", &downloading, "downloading", "").await;
    report("d-002", &failing, "downloading", "").await;
    report("d-002", &failing, "failed", "self-test failed").await;

    // d-000 installed 2.0.0: the rollback stays open for it.
    let status = wait_for(&client, &url, id, &["rolling-back", "rolled-back"]).await;
    assert_eq!(status["state"], "rolling-back", "{status:#}");
    assert!(
        status["recentEvents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"]
                .as_str()
                .unwrap()
                .contains("1 devices already installed it and are sent back if they keep it")),
        "{status:#}"
    );

    // d-001 learns from the answer to its next report that its job is called off.
    let answer = report("d-001", &downloading, "downloaded", "").await;
    assert_eq!(answer["state"], "cancelled", "{answer}");
    assert_eq!(answer["applied"], false, "{answer}");

    // d-000 tries 2.0.0 and keeps it: it is sent back. Its health comes with the report that
    // ends the assignment, not with one that does not.
    let reports = format!("{url}/api/v1/devices/d-000/reports");
    let health = json!({"healthy": false, "traps": 2});
    let (status, refused) = post(
        &client,
        reports.clone(),
        &json!({"assignmentId": installed["assignmentId"], "state": "trial", "health": health}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        crate::api::message(&refused)
            .contains("`health` comes with a report that ends the assignment"),
        "{refused}"
    );
    let answer = report("d-000", &installed, "trial", "").await;
    assert_eq!(answer["state"], "trial", "{answer}");
    let (status, answer) = post(
        &client,
        reports.clone(),
        &json!({"assignmentId": installed["assignmentId"], "state": "confirmed", "health": health}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let shown = get(&client, format!("{url}/api/v1/devices/d-000")).await;
    assert_eq!(shown["health"]["version"], "2.0.0", "{shown:#}");
    assert_eq!(shown["health"]["traps"], 2, "{shown:#}");
    let back = check_in("d-000", "2.0.0").await;
    assert_eq!(back["mode"], "rollback", "{back}");
    assert_eq!(back["version"], "1.0.0", "{back}");
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(
        status["state"], "rolling-back",
        "not over while d-000 is on its way back: {status:#}"
    );
    report("d-000", &back, "rolled-back", "").await;
    let done = wait_for(&client, &url, id, &["rolled-back"]).await;
    assert_eq!(done["rollback"]["rolled-back"], 1, "{done:#}");
    assert!(
        versions_on_server(&client, &url)
            .await
            .values()
            .all(|v| v == "1.0.0"),
        "{done:#}"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server's `/metrics` text.
async fn metrics_text(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(format!("{url}/metrics")).send().await.unwrap();
    r.text().await.unwrap()
}

/// Check-ins counted by the server so far (`/metrics`): a waiting check-in is counted when it
/// has been looked at, before it waits.
async fn check_ins_counted(client: &reqwest::Client, url: &str) -> u64 {
    let text = metrics_text(client, url).await;
    text.lines()
        .find_map(|l| l.strip_prefix("hotswap_device_check_ins_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no check-in counter in {text}"))
}

/// Long-poll check-ins (`?wait=`), over HTTP/2: a device waiting with nothing to do is answered
/// when the wave reaches it, and again when the rollback sends it back; one that nothing comes
/// for is answered with no assignment when its wait runs out; a bad `wait` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_check_in_is_answered_when_its_device_is_handed_an_assignment() {
    let Rig {
        dir,
        server,
        url,
        client,
        ids,
    } = Rig::start(&["1.0.0", "2.0.0"], 3).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let check_in_url =
        |device: &str, query: &str| format!("{url}/api/v1/devices/{device}/check-in{query}");
    for (query, expected) in [
        ("?wait=61", "`wait` is at most 60 seconds, found 61"),
        ("?wait=soon", "wait"),
        ("?sleep=5", "unknown field `sleep`"),
    ] {
        let (status, answer) = post(&h2, check_in_url("d-000", query), &json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(
            crate::api::message(&answer).contains(expected),
            "{query}: {answer}"
        );
    }
    // Waits on a connection of its own until something comes.
    let waiting = |device: &str, version: &str| {
        let h2 = h2.clone();
        let url = check_in_url(device, "?wait=60");
        let body = json!({"firmwareVersion": version});
        tokio::spawn(async move {
            let (status, answer) = post(&h2, url, &body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer
        })
    };
    let until_waiting = |counted: u64| {
        let client = client.clone();
        let url = url.clone();
        async move {
            for _ in 0..600 {
                if check_ins_counted(&client, &url).await > counted {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the check-in never reached the server");
        }
    };

    let counted = check_ins_counted(&client, &url).await;
    let d0 = waiting("d-000", "1.0.0");
    until_waiting(counted).await;
    // Nothing comes for d-002 (over HTTP/1.1): its wait runs out and it is answered with no
    // assignment.
    let (status, answer) = post(&client, check_in_url("d-002", "?wait=1"), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["assignment"].is_null(), "{answer}");

    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": &ids[..2],
        "strategy": "direct", "config": {"gate": {"soakSeconds": 0, "failureBudget": 0}},
        "healthConfig": {"pollSeconds": 1},
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    // The wave reaches d-000 while it waits: its check-in is answered with it.
    let answer = d0.await.unwrap();
    let assignment = &answer["assignment"];
    assert_eq!(assignment["version"], "2.0.0", "{answer}");
    let reports = format!("{url}/api/v1/devices/d-000/reports");
    for state in [
        "downloading",
        "downloaded",
        "verifying",
        "installed",
        "trial",
        "confirmed",
    ] {
        report(&client, &reports, assignment, state, "").await;
    }

    // d-000 runs 2.0.0 and waits again; d-001 fails, and the rollback sends d-000 back.
    let counted = check_ins_counted(&client, &url).await;
    let d0 = waiting("d-000", "2.0.0");
    until_waiting(counted).await;
    let (_, answer) = post(&client, check_in_url("d-001", ""), &json!({})).await;
    let failing = &answer["assignment"];
    assert_eq!(failing["version"], "2.0.0", "{answer}");
    let reports = format!("{url}/api/v1/devices/d-001/reports");
    report(&client, &reports, failing, "failed", "self-test failed").await;
    let answer = d0.await.unwrap();
    let back = &answer["assignment"];
    assert_eq!(back["mode"], "rollback", "{answer}");
    assert_eq!(back["version"], "1.0.0", "{answer}");
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(status["state"], "rolling-back", "{status:#}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_retried_with_backoff_then_quarantined() {
    let Rig {
        dir,
        server,
        url,
        client,
        ids,
    } = Rig::start(&["1.0.0", "2.0.0"], 3).await;
    let fleet = Fleet::start(&url, &ids, "1.0.0", |device, _| {
        if device == "d-002" {
            Behaviour::Silent
        } else {
            Behaviour::Good
        }
    });
    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ids,
        "strategy": "direct", "config": {"gate": {"soakSeconds": 0, "minSuccessPercent": 60}},
        "healthConfig": {"failureThresholdPercent": 50, "pollSeconds": 1},
        "deviceTimeoutSeconds": 1, "maxAttempts": 2, "retryBackoffSeconds": 1,
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    let done = wait_for(&client, &url, id, &["completed", "rolled-back", "paused"]).await;
    let events: Vec<&str> = done["recentEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e.contains("try 2 of 2 in 1 s")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("quarantined: no report for 1 s, 2 times")),
        "{events:#?}"
    );
    assert_eq!(done["waveStatus"][0]["failed"], 1, "{done:#}");
    assert_eq!(
        done["state"], "completed",
        "two of three is within the 60% gate: {done:#}"
    );
    let silent = get(&client, format!("{url}/api/v1/devices/d-002")).await;
    assert_eq!(silent["status"], "quarantined");
    // A quarantined device is left out of the next plan.
    let (status, plan) = post(
        &client,
        format!("{url}/api/v1/deployments?dryRun=true"),
        &canary("1.0.0", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["targets"], 2);
    assert_eq!(plan["quarantinedSkipped"], 1);
    fleet.stop().await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_protocol_refuses_bad_input_with_clear_messages() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let url = server.url.clone();
    let client = reqwest::Client::new();
    register_firmware(&client, &url, "1.0.0").await;
    register_devices(&client, &url, 1, "").await;
    let devices = format!("{url}/api/v1/devices");
    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "unknown device",
            format!("{devices}/nope/check-in"),
            json!({}),
            StatusCode::NOT_FOUND,
            "no device `nope`: register it first",
        ),
        (
            "unknown field",
            format!("{devices}/d-000/check-in"),
            json!({"battery": 3}),
            StatusCode::BAD_REQUEST,
            "unknown field `battery`",
        ),
        (
            "health without `healthy`",
            format!("{devices}/d-000/check-in"),
            json!({"health": {"traps": 1}}),
            StatusCode::BAD_REQUEST,
            "missing field `healthy`",
        ),
        (
            "unknown assignment",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "downloading"}),
            StatusCode::NOT_FOUND,
            "no assignment 42 for device `d-000`",
        ),
        (
            "a state devices do not report",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "pending"}),
            StatusCode::BAD_REQUEST,
            "a device cannot report `pending`",
        ),
        (
            "empty batch",
            format!("{devices}/d-000/reports/batch"),
            json!({"reports": []}),
            StatusCode::BAD_REQUEST,
            "a batch carries 1 to 16 reports, found 0",
        ),
        (
            "a batch naming an unknown assignment",
            format!("{devices}/d-000/reports/batch"),
            json!({"reports": [{"assignmentId": 42, "state": "downloading"}]}),
            StatusCode::NOT_FOUND,
            "report 0: no assignment 42 for device `d-000`",
        ),
        (
            "no such state",
            format!("{devices}/d-000/reports"),
            json!({"assignmentId": 42, "state": "exploded"}),
            StatusCode::BAD_REQUEST,
            "unknown variant `exploded`",
        ),
    ];
    for (what, at, body, status, expected) in cases {
        let (got, answer) = post(&client, at, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            crate::api::message(&answer).contains(expected),
            "{what}: {answer}"
        );
    }
    // Nothing to do: no assignment; the check-in is recorded.
    let (status, answer) = post(
        &client,
        format!("{devices}/d-000/check-in"),
        &json!({"firmwareVersion": "1.0.0", "slots": [{"slot": "a", "version": "1.0.0", "state": "active"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"assignment": null, "pollSeconds": 30}));
    let device = get(&client, format!("{devices}/d-000")).await;
    assert_eq!(device["status"], "online");
    assert_eq!(device["firmwareVersion"], "1.0.0");
    assert_eq!(device["slots"][0]["slot"], "a");
    // Repeated check-ins that tell nothing new are not written again, but anything new is kept
    // at once: health, then the version.
    for (body, health_traps, version) in [
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": true}}),
            0,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": true}}),
            0,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.0", "health": {"healthy": false, "traps": 3}}),
            3,
            "1.0.0",
        ),
        (
            json!({"firmwareVersion": "1.0.1", "health": {"healthy": false, "traps": 3}}),
            3,
            "1.0.1",
        ),
    ] {
        let (status, answer) = post(&client, format!("{devices}/d-000/check-in"), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let device = get(&client, format!("{devices}/d-000")).await;
        assert_eq!(
            device["health"]["traps"], health_traps,
            "{body}: {device:#}"
        );
        assert_eq!(device["health"]["version"], version, "{body}: {device:#}");
        assert_eq!(device["firmwareVersion"], version, "{body}: {device:#}");
    }

    // Artifacts: a whole download, a resumed one, and unknown or malformed names.
    let bytes = image("1.0.0");
    let sha = hex(&Manifest::for_image(Version::parse("1.0.0").unwrap(), &bytes, 0).sha256);
    let artifact = format!("{url}/api/v1/artifacts/{sha}");
    let whole = client.get(&artifact).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let rest = client
        .get(&artifact)
        .header("Range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        rest.headers()["content-range"],
        format!("bytes 100-{}/{}", bytes.len() - 1, bytes.len()).as_str()
    );
    assert_eq!(rest.bytes().await.unwrap().as_ref(), &bytes[100..]);
    let ranged = |range: String| {
        let request = client.get(&artifact).header("Range", range);
        async move { request.send().await.unwrap() }
    };
    let middle = ranged("bytes=10-19".into()).await;
    assert_eq!(middle.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(middle.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let tail = ranged("bytes=-16".into()).await;
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 16..]
    );
    for (range, expected) in [
        (format!("bytes={}-", bytes.len()), "the Range header"),
        ("bytes=0-1,5-6".to_string(), "one range at a time"),
        ("pages=0-1".to_string(), "the Range header"),
    ] {
        let r = ranged(range.clone()).await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes */{}", bytes.len()).as_str(),
            "{range}"
        );
        let answer: Value = r.json().await.unwrap();
        assert!(
            crate::api::message(&answer).contains(expected),
            "{range}: {answer}"
        );
    }
    // A blob damaged on disk is an error, never served.
    register_firmware(&client, &url, "2.0.0").await;
    let two = image("2.0.0");
    let sha2 = hex(&Manifest::for_image(Version::parse("2.0.0").unwrap(), &two, 0).sha256);
    let blob = dir.join("blobs").join(&sha2);
    let mut damaged = std::fs::read(&blob).unwrap();
    damaged[7] ^= 1;
    std::fs::write(&blob, damaged).unwrap();
    let r = client
        .get(format!("{url}/api/v1/artifacts/{sha2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let answer: Value = r.json().await.unwrap();
    assert!(
        crate::api::message(&answer).contains("is damaged"),
        "{answer}"
    );
    for name in ["00".repeat(32), "../hotswap.db".to_string()] {
        let r = client
            .get(format!("{url}/api/v1/artifacts/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
