//! Crash safety: the real `hotswap serve` in a process of its own, killed with SIGKILL at several
//! points of a running deployment and restarted on the same data directory. Scripted devices keep
//! polling through the outages. The deployment must resume and finish with every device updated
//! once: no device state lost, none duplicated, no wave started or judged twice.

use std::time::Duration;

use hotswap_client::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, post};
use crate::support::process::{free_port, serve};
use crate::support::scripted::{Behaviour, ScriptedFleet, passed_waves, wait_for};
use crate::support::server::{bearer_client, data_dir, register_devices, register_firmware};
use hotswap_server::ADMIN_TOKEN_FILE;

/// Waits until `ready` says yes of the deployment's status.
async fn until(
    client: &reqwest::Client,
    url: &str,
    id: i64,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) {
    for _ in 0..1200 {
        let status = get(client, format!("{url}/api/v1/deployments/{id}/status")).await;
        if ready(&status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deployment {id} never reached the kill point `{what}`");
}

/// Where to kill the server: a name, and when it is reached by the deployment's status.
type KillPoint = (&'static str, fn(&Value) -> bool);

fn confirmed(status: &Value) -> u64 {
    status["states"]["confirmed"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_survives_sigkill_at_several_points() {
    let dir = data_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port).await;
    let token = std::fs::read_to_string(dir.path().join("data").join(ADMIN_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();
    let client = bearer_client(&token);
    let api = Client::new(&url).unwrap().with_token(&token);
    register_firmware(&api, "1.0.0").await;
    register_firmware(&api, "2.0.0").await;
    let devices = register_devices(&api, 24, "1.0.0").await;
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |_, _| Behaviour::Good);

    let body = json!({
        "firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetFilter": {},
        "strategy": "canary",
        "config": {"initialPercentage": 25, "increments": [50, 100], "gate": {"soakSeconds": 1}},
        "healthConfig": {"pollSeconds": 1},
    });
    let (status, started) = post(&client, format!("{url}/api/v1/deployments"), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();

    // Kill points: just after the start was acknowledged; while the first wave's devices report;
    // while the first wave soaks; in the second wave; in the last.
    let points: [KillPoint; 4] = [
        ("first wave reporting", |s| confirmed(s) >= 1),
        ("first wave soaking", |s| {
            s["waveStatus"][0]["settledAt"].is_number()
        }),
        ("second wave", |s| s["currentWave"] == 1 && confirmed(s) > 6),
        ("last wave", |s| s["currentWave"] == 2),
    ];
    drop(server);
    server = serve(dir.path(), port).await;
    for (what, ready) in points {
        until(&client, &url, id, what, ready).await;
        drop(server);
        server = serve(dir.path(), port).await;
    }

    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(
        done["states"],
        json!({"confirmed": 24}),
        "every device once: {done:#}"
    );
    let per_wave: Vec<u64> = done["waveStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["devices"].as_u64().unwrap())
        .collect();
    assert_eq!(per_wave, [6, 6, 12], "{done:#}");
    assert_eq!(
        passed_waves(&client, &url, id).await,
        [0, 1, 2],
        "each wave passed once"
    );
    let versions = fleet.stop().await;
    assert!(versions.values().all(|v| v == "2.0.0"), "{versions:?}");
    let page = get(&client, format!("{url}/api/v1/devices?limit=1000")).await;
    assert!(
        page["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["firmwareVersion"] == "2.0.0")
    );
    drop(server);
}
