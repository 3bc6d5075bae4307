//! Rollouts wave by wave: a canary completes, a failing rollout rolls back by itself, and a
//! rollback stops devices still downloading and waits for those that installed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, message, post, post_as};
use crate::support::scripted::{Behaviour, ScriptedFleet, versions_on_server, wait_for};
use crate::support::server::Rig;

use super::{canary, metrics_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rollout_completes_wave_by_wave() {
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids: _,
        devices,
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
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |_, _| Behaviour::Good);
    // Every device has asked twice while paused, and finished what it was given: nothing.
    fleet.check_in_rounds(2).await;
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(status["state"], "paused");
    let states = status["states"].as_object().unwrap();
    assert!(
        states.keys().all(|s| s == "pending" || s == "assigned"),
        "nothing went past handed out while paused: {status:#}"
    );
    let versions = versions_on_server(&api).await;
    assert!(versions.values().all(|v| v == "1.0.0"), "{versions:?}");
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/deployments/{id}/resume"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
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
        versions_on_server(&api)
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
        assert!(message(&body).contains(expected), "{query}: {body}");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollout_rolls_back_and_every_device_ends_on_its_previous_version() {
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids: _,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0", "3.0.0", "4.0.0"], 20).await;
    // 3.0.0 fails its self-test on half the devices; the others take it and then trap. Which
    // device of the canary wave gets how far before the first failure stops the rollout is up
    // to timing: whichever way it goes, no device keeps 3.0.0.
    // 4.0.0 installs and confirms everywhere, then traps: its health samples stop it, and every
    // device of the canary wave is sent back.
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |device, version| {
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
        &api,
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
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
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
    let on_server = versions_on_server(&api).await;
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
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
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
        versions_on_server(&api)
            .await
            .values()
            .all(|v| v == "2.0.0")
    );
    server.stop().await;
}

/// Step by step, with no timing left to chance: when a rollout is called off, a device that
/// was still downloading is told to stop by the answer to its next report; a device that had
/// already installed the new version cannot be stopped, so the rollback waits for it and sends
/// it back once it confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_stops_devices_still_downloading_and_waits_for_those_that_installed() {
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0"], 3).await;
    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ids,
        "strategy": "direct", "config": {"gate": {"soakSeconds": 0, "failureBudget": 0}},
        "healthConfig": {"pollSeconds": 1},
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();

    let token = |device: &str| -> String {
        devices
            .iter()
            .find(|(id, _)| id == device)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let check_in = |device: &str, version: &str| {
        let api = api.clone();
        let token = token(device);
        let device = device.to_string();
        let body = hotswap_protocol::CheckIn {
            firmware_version: Some(version.to_string()),
            ..Default::default()
        };
        async move {
            for _ in 0..600 {
                let me = hotswap_client::Device {
                    id: &device,
                    token: &token,
                };
                let answer = api.check_in(me, &body, 0).await.unwrap();
                if let Some(a) = answer.assignment {
                    return serde_json::to_value(a).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no assignment for {device}");
        }
    };
    let report = |device: &str, assignment: &Value, state: &str, reason: &str| {
        let client = client.clone();
        let token = token(device);
        let url = format!("{url}/api/v1/devices/{device}/reports");
        let body =
            json!({"assignmentId": assignment["assignmentId"], "state": state, "reason": reason});
        let state = state.to_string();
        async move {
            let (status, answer) = post_as(&client, &token, url, &body).await;
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
    let status = wait_for(&api, id, &["rolling-back", "rolled-back"]).await;
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
    let (status, refused) = post_as(
        &client,
        &token("d-000"),
        reports.clone(),
        &json!({"assignmentId": installed["assignmentId"], "state": "trial", "health": health}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        message(&refused).contains("`health` comes with a report that ends the assignment"),
        "{refused}"
    );
    let answer = report("d-000", &installed, "trial", "").await;
    assert_eq!(answer["state"], "trial", "{answer}");
    let (status, answer) = post_as(
        &client,
        &token("d-000"),
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
    let done = wait_for(&api, id, &["rolled-back"]).await;
    assert_eq!(done["rollback"]["rolled-back"], 1, "{done:#}");
    assert!(
        versions_on_server(&api)
            .await
            .values()
            .all(|v| v == "1.0.0"),
        "{done:#}"
    );
    server.stop().await;
}

/// The metric series a Grafana dashboard's queries name (`hotswap_...`).
fn queried_series(dashboard: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dashboard];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(expr)) = m.get("expr") {
                    for (at, _) in expr.match_indices("hotswap_") {
                        let name: String = expr[at..]
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect();
                        out.insert(name);
                    }
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// The series of a `/metrics` text that have at least one sample.
fn sampled_series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_series_a_rollout_exports() {
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../host/server/grafana/hotswap.json")).unwrap();
    let queried = queried_series(&dashboard);
    assert!(queried.len() >= 15, "{queried:?}");
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids: _,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0"], 20).await;
    let (status, started) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &canary("2.0.0", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    // While it runs: its progress gauges. Paused, so that it is still running when scraped.
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/deployments/{id}/pause"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |_, _| Behaviour::Good);
    fleet.check_in_rounds(1).await;
    let running = metrics_text(&client, &url).await;
    assert!(
        running.contains(&format!(
            "hotswap_deployment_waves{{deployment=\"{id}\"}} 3"
        )),
        "{running}"
    );
    assert!(
        running.contains(&format!("hotswap_deployment_wave{{deployment=\"{id}\"}} 1")),
        "{running}"
    );
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/deployments/{id}/resume"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    fleet.stop().await;
    let after = metrics_text(&client, &url).await;
    // Every device's confirmation was timed; the plan and the verdicts too.
    assert!(
        after.contains("hotswap_device_update_duration_seconds_count 20"),
        "{after}"
    );
    assert!(
        after.contains(
            "hotswap_plugin_call_duration_seconds_count{kind=\"strategy\",function=\"plan\"} 1"
        ),
        "{after}"
    );
    assert!(
        after.contains("hotswap_plugin_call_duration_seconds_count{kind=\"health-policy\",function=\"evaluate\"}"),
        "{after}"
    );
    assert!(
        after.contains("hotswap_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/deployments\"}"),
        "{after}"
    );
    let mut exported = sampled_series(&running);
    exported.extend(sampled_series(&after));
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not export: {after}"
    );
    server.stop().await;
}
