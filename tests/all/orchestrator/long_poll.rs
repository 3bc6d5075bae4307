//! Long-poll check-ins: answered when the device is handed an assignment.

use std::time::Duration;

use hotswap_client::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, message, post, post_as};
use crate::support::server::Rig;

use super::check_ins_counted;

/// Long-poll check-ins (`?wait=`), over HTTP/2: a device waiting with nothing to do is answered
/// when the wave reaches it, and again when the rollback sends it back; one that nothing comes
/// for is answered with no assignment when its wait runs out; a bad `wait` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_check_in_is_answered_when_its_device_is_handed_an_assignment() {
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0"], 3).await;
    let h2 = {
        hotswap_client::install_crypto_provider();
        reqwest::Client::builder()
    }
    .http2_prior_knowledge()
    .build()
    .unwrap();
    let check_in_url =
        |device: &str, query: &str| format!("{url}/api/v1/devices/{device}/check-in{query}");
    let token = |device: &str| -> String {
        devices
            .iter()
            .find(|(id, _)| id == device)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    for (query, expected) in [
        ("?wait=61", "`wait` is at most 60 seconds, found 61"),
        ("?wait=soon", "wait"),
        ("?sleep=5", "unknown field `sleep`"),
    ] {
        let (status, answer) = post_as(
            &h2,
            &token("d-000"),
            check_in_url("d-000", query),
            &json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(message(&answer).contains(expected), "{query}: {answer}");
    }
    // Waits on a connection of its own until something comes.
    let waiting = |device: &str, version: &str| {
        let h2 = h2.clone();
        let url = check_in_url(device, "?wait=60");
        let body = json!({"firmwareVersion": version});
        let token = token(device);
        tokio::spawn(async move {
            let (status, answer) = post_as(&h2, &token, url, &body).await;
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
    let (status, answer) = post_as(
        &client,
        &token("d-002"),
        check_in_url("d-002", "?wait=1"),
        &json!({}),
    )
    .await;
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
    for state in [
        "downloading",
        "downloaded",
        "verifying",
        "installed",
        "trial",
        "confirmed",
    ] {
        report(&api, ("d-000", &token("d-000")), assignment, state, "").await;
    }

    // d-000 runs 2.0.0 and waits again; d-001 fails, and the rollback sends d-000 back.
    let counted = check_ins_counted(&client, &url).await;
    let d0 = waiting("d-000", "2.0.0");
    until_waiting(counted).await;
    let (_, answer) = post_as(
        &client,
        &token("d-001"),
        check_in_url("d-001", ""),
        &json!({}),
    )
    .await;
    let failing = &answer["assignment"];
    assert_eq!(failing["version"], "2.0.0", "{answer}");
    report(
        &api,
        ("d-001", &token("d-001")),
        failing,
        "failed",
        "self-test failed",
    )
    .await;
    let answer = d0.await.unwrap();
    let back = &answer["assignment"];
    assert_eq!(back["mode"], "rollback", "{answer}");
    assert_eq!(back["version"], "1.0.0", "{answer}");
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(status["state"], "rolling-back", "{status:#}");
    server.stop().await;
}

/// Reports `state` for the assignment of a check-in's JSON answer.
async fn report(
    api: &Client,
    (id, token): (&str, &str),
    assignment: &Value,
    state: &str,
    reason: &str,
) {
    let r: hotswap_protocol::Report = serde_json::from_value(json!({
        "assignmentId": assignment["assignmentId"],
        "state": state,
        "reason": (!reason.is_empty()).then_some(reason),
    }))
    .unwrap();
    api.report(hotswap_client::Device { id, token }, &r)
        .await
        .unwrap();
}
