//! A device that stops answering: retried after a backoff, then quarantined, on a clock the
//! test moves (no test here waits for a deadline in real time).

use std::time::Duration;

use hotswap_client::Client;
use hotswap_protocol::DeviceState;
use hotswap_store::ManualClock;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::http::{get, post};
use crate::support::scripted::{Behaviour, ScriptedFleet, wait_for};
use crate::support::server::Rig;

use super::canary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_retried_with_backoff_then_quarantined() {
    let clock = ManualClock::new();
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids,
        devices,
    } = Rig::with_clock(&["1.0.0", "2.0.0"], 3, clock.clone()).await;
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |device, _| {
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
        "deviceTimeoutSeconds": 600, "maxAttempts": 2, "retryBackoffSeconds": 30,
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    // The two good devices confirm; the silent one holds its assignment and says nothing.
    until(&api, id, "the good devices confirmed", |s| {
        s.states.get(&DeviceState::Confirmed) == Some(&2)
            && s.states.get(&DeviceState::Assigned) == Some(&1)
    })
    .await;
    // Its 600 s pass: it is tried again after the 30 s backoff.
    clock.advance_ms(601_000);
    until(&api, id, "the silent device retried", |s| {
        s.recent_events
            .iter()
            .any(|e| e.message.contains("try 2 of 2 in 30 s"))
    })
    .await;
    // The backoff and its second 600 s pass: it is quarantined, and the wave is judged.
    clock.advance_ms(30_000 + 601_000);
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
    let events: Vec<&str> = done["recentEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e.contains("try 2 of 2 in 30 s")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("quarantined: no report for 600 s, 2 times")),
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
}

/// Waits until `ready` says yes of the deployment's status (the clock is the test's: this waits
/// for the orchestrator's passes, not for time to pass).
async fn until(
    api: &Client,
    id: i64,
    what: &str,
    ready: impl Fn(&hotswap_protocol::DeploymentStatus) -> bool,
) {
    for _ in 0..1200 {
        if ready(&api.status(id).await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("deployment {id} never got to: {what}");
}
