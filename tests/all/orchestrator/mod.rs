//! The orchestrator over real HTTP: a real server, and scripted device clients speaking the
//! device protocol (check-in, Range download, reports, each report sent twice to prove a retry
//! changes nothing). A canary rollout completes; a rollout whose devices fail rolls back by
//! itself and every device ends on the version it had (devices still downloading are told to
//! stop, devices that installed it are waited for and sent back); a device that stops answering
//! is retried with backoff, then quarantined; long polls are answered when an assignment comes.

mod approvals;
mod long_poll;
mod protocol;
mod retries;
mod rollout;

use serde_json::{Value, json};

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
