//! Firmware lifecycle: compatibility (the models a version runs on, the installed versions it
//! may go over), sunset and deprecation with who is left behind, and each device's lineage.

use hotswap_client::{Client, Device};
use hotswap_protocol::DeploymentAction;
use hotswap_protocol::{
    CheckIn, Compatibility, DeploymentRequest, DeviceQuery, DeviceRegistration, FirmwareQuery,
    FirmwareRegistration, FirmwareStatus, LineageHow, UnixMillis,
};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::http::{message, post};
use crate::support::scripted::{Behaviour, ScriptedFleet, wait_for};
use crate::support::server::{Rig, Server, data_dir, register_firmware};
use crate::support::{image, registration, release_key};

/// `version` of the registry image for `sensor-v1`, with `compatibility`.
fn compatible(version: &str, compatibility: Compatibility) -> FirmwareRegistration {
    FirmwareRegistration {
        compatibility,
        ..registration(&release_key(), version, &image(version))
    }
}

/// Registers a device of `model` running `version`; its id and credential.
async fn device(api: &Client, id: &str, model: &str, version: &str) -> (String, String) {
    let registered = api
        .register_device(&DeviceRegistration {
            device_id: id.into(),
            device_model: model.into(),
            region: "eu-west".into(),
            firmware_version: version.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    (id.to_string(), registered.token)
}

fn direct(version: &str, model: &str, targets: &[&str]) -> DeploymentRequest {
    DeploymentRequest {
        firmware_version: version.into(),
        device_model: model.into(),
        target_devices: Some(targets.iter().map(|t| t.to_string()).collect()),
        strategy: "direct".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_outside_a_versions_range_are_left_out_and_named() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let api = server.client();
    register_firmware(&api, "1.0.0").await;
    register_firmware(&api, "1.5.0").await;
    let two = api
        .register_firmware(&compatible(
            "2.0.0",
            Compatibility {
                device_models: vec!["sensor-v1".into(), "sensor-v2".into()],
                installed_versions: Some(">=1.4.0, <3.0.0".into()),
            },
        ))
        .await
        .unwrap();
    // Shown with the version, and found under either model.
    let shown = api.firmware(two.id).await.unwrap();
    assert_eq!(
        shown.firmware.compatibility.device_models,
        ["sensor-v1", "sensor-v2"]
    );
    assert_eq!(
        shown.firmware.compatibility.installed_versions.as_deref(),
        Some(">=1.4.0, <3.0.0")
    );
    let for_v2 = api
        .list_firmware(&FirmwareQuery {
            device_model: Some("sensor-v2".into()),
            include_deprecated: false,
        })
        .await
        .unwrap();
    assert_eq!(for_v2.len(), 1, "{for_v2:?}");
    assert_eq!(for_v2[0].version, "2.0.0");

    device(&api, "old", "sensor-v1", "1.0.0").await;
    device(&api, "new-1", "sensor-v1", "1.5.0").await;
    device(&api, "new-2", "sensor-v2", "1.5.0").await;

    // The dry run names the device below the range, and why; it is in no wave.
    let plan = api
        .dry_run(&direct("2.0.0", "sensor-v1", &["old", "new-1", "new-2"]))
        .await
        .unwrap();
    assert_eq!(plan.targets, 2);
    assert_eq!(plan.excluded_count, 1);
    assert_eq!(plan.excluded[0].device_id, "old");
    assert!(
        plan.excluded[0]
            .reason
            .contains("runs 1.0.0, and 2.0.0 installs only over `>=1.4.0, <3.0.0`"),
        "{}",
        plan.excluded[0].reason
    );
    assert!(
        plan.waves
            .iter()
            .all(|w| !w.devices.contains(&"old".into()))
    );

    // Every target outside it: refused, nothing started.
    let refused = api
        .create_deployment(&direct("2.0.0", "sensor-v1", &["old"]))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(
        refused
            .to_string()
            .contains("outside firmware 2.0.0's compatibility"),
        "{refused}"
    );
    assert!(api.deployments().await.unwrap().is_empty());

    // Started: the status says who was left out, and why.
    let started = api
        .create_deployment(&direct("2.0.0", "sensor-v1", &["old", "new-1", "new-2"]))
        .await
        .unwrap();
    assert_eq!(started.excluded_count, 1);
    assert_eq!(started.excluded[0].device_id, "old");
    let status = api.status(started.deployment.id).await.unwrap();
    assert_eq!(status.excluded[0].device_id, "old");
    assert!(
        status
            .recent_events
            .iter()
            .any(|e| e.message.contains("1 targets left out as incompatible"))
    );

    // A model it does not run on is refused, naming the models it does.
    device(&api, "gw", "gateway", "1.5.0").await;
    let refused = api
        .create_deployment(&direct("1.5.0", "sensor-v1", &["gw"]))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("runs on `sensor-v1`"),
        "{refused}"
    );

    // A range that is not semver is refused at registration, naming the field.
    let (status, body) = post(
        &server.http(),
        format!("{}/api/v1/firmware", server.url),
        &serde_json::to_value(compatible(
            "3.0.0",
            Compatibility {
                device_models: Vec::new(),
                installed_versions: Some("after 1.4".into()),
            },
        ))
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).contains("`compatibility.installedVersions` must be a semver range"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_says_it_runs_a_version_outside_the_range_is_refused_before_download() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let api = server.client();
    register_firmware(&api, "1.5.0").await;
    api.register_firmware(&compatible(
        "2.0.0",
        Compatibility {
            device_models: Vec::new(),
            installed_versions: Some(">=1.4.0".into()),
        },
    ))
    .await
    .unwrap();
    let (id, token) = device(&api, "d-1", "sensor-v1", "1.5.0").await;
    let started = api
        .create_deployment(&direct("2.0.0", "sensor-v1", &["d-1"]))
        .await
        .unwrap();
    // Handed out once its wave starts.
    for _ in 0..400 {
        let status = api.status(started.deployment.id).await.unwrap();
        if status
            .states
            .contains_key(&hotswap_protocol::DeviceState::Assigned)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // It was on 1.5.0 when planned; it checks in saying it runs 1.0.0 (flashed by hand).
    let me = Device {
        id: &id,
        token: &token,
    };
    let answer = api
        .check_in(
            me,
            &CheckIn {
                firmware_version: Some("1.0.0".into()),
                ..CheckIn::default()
            },
            0,
        )
        .await
        .unwrap();
    assert!(answer.assignment.is_none(), "{answer:?}");
    let detail = api.device("d-1").await.unwrap();
    let last = &detail.inventory.history[0];
    assert_eq!(last.state.to_string(), "failed");
    let reason = last.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(
            "refused before download: runs 1.0.0, and 2.0.0 installs only over `>=1.4.0`"
        ),
        "{reason}"
    );
    let status = api.status(started.deployment.id).await.unwrap();
    assert!(
        status
            .recent_events
            .iter()
            .any(|e| e.message.contains("refused before download")),
        "{status:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sunset_and_deprecated_versions_are_not_deployed_and_their_devices_are_listed() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let api = server.client();
    register_firmware(&api, "1.0.0").await;
    register_firmware(&api, "2.0.0").await;
    let all = api.list_firmware(&FirmwareQuery::default()).await.unwrap();
    let (one, two) = (all[0].id, all[1].id);
    for i in 0..3 {
        device(&api, &format!("d-{i}"), "sensor-v1", "1.0.0").await;
    }
    device(&api, "d-9", "sensor-v1", "2.0.0").await;

    // A running deployment uses 2.0.0: it can be neither deprecated nor sunset, and the
    // refusal names the deployment.
    let running = api
        .create_deployment(&direct("2.0.0", "sensor-v1", &["d-0"]))
        .await
        .unwrap()
        .deployment
        .id;
    let refused = api.deprecate_firmware(two).await.unwrap_err();
    assert_eq!(refused.status(), Some(409));
    assert!(
        refused
            .to_string()
            .contains(&format!("deployment {running} (running) uses it")),
        "{refused}"
    );
    let now = UnixMillis::now().seconds();
    let refused = api.sunset_firmware(two, now).await.unwrap_err();
    assert_eq!(refused.status(), Some(409));
    api.act(running, DeploymentAction::Cancel).await.unwrap();

    // 1.0.0 sunset yesterday: refused with its date; its devices are left behind, and counted.
    let yesterday = hotswap_protocol::UnixSeconds(now.0 - 86_400);
    let sunset = api.sunset_firmware(one, yesterday).await.unwrap();
    assert_eq!(sunset.sunset_at, Some(yesterday));
    let refused = api
        .create_deployment(&direct("1.0.0", "sensor-v1", &["d-9"]))
        .await
        .unwrap_err();
    let said = refused.to_string();
    assert!(said.contains("was sunset on 20"), "{said}");
    assert!(said.contains(&format!("(at {yesterday})")), "{said}");
    let behind = api
        .devices(&DeviceQuery {
            firmware_status: Some(FirmwareStatus::Sunset),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = behind
        .devices
        .iter()
        .map(|d| d.device_id.as_str())
        .collect();
    assert_eq!(ids, ["d-0", "d-1", "d-2"]);
    // 2.0.0 deprecated: its device is listed as such.
    api.deprecate_firmware(two).await.unwrap();
    let deprecated = api
        .devices(&DeviceQuery {
            firmware_status: Some(FirmwareStatus::Deprecated),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deprecated.devices.len(), 1);
    assert_eq!(deprecated.devices[0].device_id, "d-9");
    let metrics = server
        .http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hotswap_devices_by_firmware_status{state=\"sunset\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hotswap_devices_by_firmware_status{state=\"deprecated\"} 1"),
        "{metrics}"
    );
    // A bad status in the query is refused, naming the field's values.
    let r = server
        .http()
        .get(format!("{}/api/v1/devices?firmwareStatus=old", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop().await;
}

/// d-0 goes 1.0.0 → 2.0.0; fails 3.0.0 and reverts on its own; then the completed 2.0.0
/// deployment is rolled back and it goes back to 1.0.0. Its lineage reads exactly that, and
/// 2.0.0's page says who came to it from where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_lineage_reads_back_every_step() {
    let Rig {
        dir: _dir,
        server,
        url,
        client: _,
        api,
        ids: _,
        devices,
    } = Rig::start(&["1.0.0", "2.0.0", "3.0.0"], 2).await;
    let fleet = ScriptedFleet::start(&url, &devices, "1.0.0", |_, v| {
        if v == "3.0.0" {
            Behaviour::FailsSelfTest
        } else {
            Behaviour::Good
        }
    });
    let to_two = api
        .create_deployment(&direct("2.0.0", "sensor-v1", &["d-000", "d-001"]))
        .await
        .unwrap()
        .deployment
        .id;
    wait_for(&api, to_two, &["completed"]).await;
    let to_three = api
        .create_deployment(&DeploymentRequest {
            max_attempts: Some(1),
            ..direct("3.0.0", "sensor-v1", &["d-000"])
        })
        .await
        .unwrap()
        .deployment
        .id;
    wait_for(&api, to_three, &["rolled-back", "failed"]).await;
    // The 2.0.0 rollout, completed, is rolled back: both devices still run 2.0.0.
    api.act(to_two, DeploymentAction::Rollback).await.unwrap();
    wait_for(&api, to_two, &["rolled-back"]).await;
    let versions = fleet.stop().await;
    assert_eq!(versions["d-000"], "1.0.0");

    let lineage = api.lineage("d-000").await.unwrap();
    assert_eq!(lineage.firmware_version, "1.0.0");
    let steps: Vec<(i64, &str, &str, &str, LineageHow, String)> = lineage
        .steps
        .iter()
        .map(|s| {
            (
                s.deployment_id,
                s.from_version.as_str(),
                s.version.as_str(),
                s.to_version.as_str(),
                s.how,
                s.state.to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                to_two,
                "1.0.0",
                "2.0.0",
                "2.0.0",
                LineageHow::Install,
                "confirmed".into()
            ),
            (
                to_three,
                "2.0.0",
                "3.0.0",
                "2.0.0",
                LineageHow::DeviceRevert,
                "rolled-back".into()
            ),
            (
                to_two,
                "2.0.0",
                "1.0.0",
                "1.0.0",
                LineageHow::Rollback,
                "rolled-back".into()
            ),
        ]
    );
    assert!(
        lineage.steps[1]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("self-test failed")
    );
    assert!(lineage.steps.windows(2).all(|w| w[0].at <= w[1].at));

    let two = api
        .list_firmware(&FirmwareQuery::default())
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.version == "2.0.0")
        .unwrap();
    let shown = api.firmware(two.id).await.unwrap();
    assert_eq!(shown.came_from.len(), 1, "{:?}", shown.came_from);
    assert_eq!(shown.came_from[0].from_version, "1.0.0");
    assert_eq!(shown.came_from[0].devices, 2);
    let one = api
        .list_firmware(&FirmwareQuery::default())
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.version == "1.0.0")
        .unwrap();
    let back = api.firmware(one.id).await.unwrap();
    assert_eq!(back.came_from[0].from_version, "2.0.0");
    assert_eq!(back.came_from[0].devices, 2);
    // Unknown device: 404 naming it.
    let missing = api.lineage("nobody").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert!(json!(missing.to_string()).to_string().contains("nobody"));
    server.stop().await;
}
