//! Approvals, four eyes: a deployment that reaches a group marked `requiresApproval`, or a device
//! with a protected label, hands nothing out until someone other than its creator approves it;
//! a denial cancels it.

use hotswap_client::Client;
use hotswap_protocol::{Role, TokenRequest};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::http::{get, message, post, post_as};
use crate::support::scripted::{Behaviour, ScriptedFleet, wait_for};
use crate::support::server::Rig;

use super::canary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_deployment_waits_for_someone_else_to_approve_it() {
    let Rig {
        dir: _dir,
        server,
        url,
        client,
        api,
        ids,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0", "3.0.0"], 6).await;
    let (status, group) = post(
        &client,
        format!("{url}/api/v1/device-groups"),
        &json!({"name": "production", "devices": &ids[..2], "requiresApproval": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["requiresApproval"], true);
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |_, _| Behaviour::Good);

    let (status, started) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &canary("2.0.0", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["state"], "waiting-for-approval", "{started:#}");
    assert_eq!(started["createdBy"], "token:admin");
    let id = started["id"].as_i64().unwrap();
    // Every device asks twice and is handed nothing.
    fleet.check_in_rounds(2).await;
    let status = get(&client, format!("{url}/api/v1/deployments/{id}/status")).await;
    assert_eq!(status["state"], "waiting-for-approval");
    assert_eq!(status["states"], json!({"pending": 6}), "{status:#}");

    // Not by its creator, nor by a role without the permission.
    let approve = format!("{url}/api/v1/deployments/{id}/approve");
    let (status, refused) = post(&client, approve.clone(), &json!({"remark": "mine"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(message(&refused).contains("four eyes"), "{refused}");
    let token = |role: Role| {
        let api = api.clone();
        async move {
            api.create_token(&TokenRequest {
                name: format!("{role}"),
                role,
                expires_in_days: None,
            })
            .await
            .unwrap()
            .token
        }
    };
    let deployer = token(Role::Deployer).await;
    let (status, refused) = post_as(&client, &deployer, approve.clone(), &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        message(&refused).contains("lacks the permission `approve-deployment`"),
        "{refused}"
    );
    let approver = token(Role::Approver).await;
    let (status, approved) = post_as(
        &client,
        &approver,
        approve,
        &json!({"remark": "change CHG-7 signed off"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "running");
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let events: Vec<&str> = done["recentEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.contains("approved by token:approver: change CHG-7 signed off")),
        "{events:#?}"
    );

    // A denial ends it, and frees the devices.
    let (_, second) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &canary("3.0.0", json!({})),
    )
    .await;
    let second_id = second["id"].as_i64().unwrap();
    assert_eq!(second["state"], "waiting-for-approval");
    let (status, denied) = post_as(
        &client,
        &approver,
        format!("{url}/api/v1/deployments/{second_id}/deny"),
        &json!({"remark": "not in the freeze"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(denied["state"], "cancelled");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("denied by token:approver: not in the freeze"),
        "{denied}"
    );
    // Only a waiting deployment is approved.
    let (status, refused) = post_as(
        &client,
        &approver,
        format!("{url}/api/v1/deployments/{id}/approve"),
        &json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let approvals = Client::new(&url)
        .unwrap()
        .with_token(&server.admin_token)
        .audit(&hotswap_protocol::AuditQuery {
            actor: Some("token:approver".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let on_record: Vec<(&str, u16)> = approvals
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.status))
        .collect();
    assert!(
        on_record.contains(&("POST /api/v1/deployments/{id}/approve", 200))
            && on_record.contains(&("POST /api/v1/deployments/{id}/deny", 200)),
        "{on_record:?}"
    );
    fleet.stop().await;

    // A device with a protected label (`env=production` on the test servers) needs one too.
    let (status, _) = post(
        &client,
        format!("{url}/api/v1/devices"),
        &json!({"deviceId": "p-1", "deviceModel": "sensor-v1", "firmwareVersion": "1.0.0", "labels": {"env": "production"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, third) = post(
        &client,
        format!("{url}/api/v1/deployments"),
        &json!({"firmwareVersion": "2.0.0", "deviceModel": "sensor-v1", "targetDevices": ["p-1"], "strategy": "direct"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    assert_eq!(third["state"], "waiting-for-approval", "{third:#}");
    server.stop().await;
}
