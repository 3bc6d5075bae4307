//! The rollout floor on its own: a store in a temporary directory, the built-in plugins, and no
//! socket, router or handler anywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use hotswap_plugin_host::{PluginRuntime, RuntimeConfig};
use hotswap_protocol::{
    DeploymentAction, DeploymentRequest, DeploymentState, DeviceStatus, GroupFilter, StandingChange,
};
use hotswap_store::testing::TestDatabase;
use hotswap_store::{NewDevice, NewFirmware, StoreError, SystemClock};

use super::actions::Approval;
use super::actions::transition;
use super::{Rollout, RolloutError};
use crate::credentials::Credentials;
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::traces::Traces;

const MODEL: &str = "sensor-v2";

/// A floor over a fresh store whose fleet is `devices` (id, installed version, labels).
struct Floor {
    rollout: Rollout,
    _db: TestDatabase,
}

/// A device's labels, `(key, value)`.
type Labels<'a> = &'a [(&'a str, &'a str)];

fn floor(devices: &[(&str, &str, Labels<'_>)]) -> Floor {
    floor_with_limits(devices, Default::default())
}

/// A floor whose plugins run under `limits` (a small pool, say).
fn floor_with_limits(
    devices: &[(&str, &str, Labels<'_>)],
    limits: hotswap_plugin_host::Limits,
) -> Floor {
    let db = TestDatabase::sqlite();
    let store = Arc::new(db.open(Arc::new(SystemClock)).expect("a store"));
    let new: Vec<NewDevice> = devices
        .iter()
        .map(|(id, version, labels)| NewDevice {
            device_id: id.to_string(),
            device_model: MODEL.into(),
            region: "eu".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            groups: Vec::new(),
            firmware_version: version.to_string(),
            token_sha256: None,
        })
        .collect();
    store.add_devices(&new, false).expect("devices");
    for (version, over) in [("2.0.0", Some(">=1.0.0")), ("3.0.0", None)] {
        store
            .add_firmware(NewFirmware {
                device_model: MODEL.into(),
                version: version.into(),
                sha256: "ab".repeat(32),
                size: 1024,
                key_id: "release".into(),
                signature: "00".repeat(64),
                security_counter: 0,
                release_notes: String::new(),
                other_models: Vec::new(),
                installed_versions: over.map(str::to_string),
                sunset_at: None,
            })
            .expect("firmware");
    }
    let runtime = PluginRuntime::new(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })
    .expect("a plugin runtime");
    let rollout = Rollout {
        store,
        runtime,
        doorbell: Arc::new(Doorbell::default()),
        metrics: Arc::new(Metrics::default()),
        traces: Traces::off(),
        credentials: Arc::new(Credentials::default()),
        protected_labels: vec![("tier".into(), "critical".into())].into(),
    };
    Floor { rollout, _db: db }
}

fn request(version: &str, targets: &[&str]) -> DeploymentRequest {
    DeploymentRequest {
        firmware_version: version.into(),
        device_model: MODEL.into(),
        target_devices: Some(targets.iter().map(|t| t.to_string()).collect()),
        strategy: "direct".into(),
        ..DeploymentRequest::default()
    }
}

#[test]
fn starting_leaves_out_the_targets_the_firmware_may_not_go_over() {
    let f = floor(&[
        ("old-1", "0.9.0", &[]),
        ("old-2", "0.9.0", &[]),
        ("new-1", "1.2.0", &[]),
        ("new-2", "1.0.0", &[]),
    ]);
    let targets = ["old-1", "old-2", "new-1", "new-2"];
    let planned = f.rollout.plan(request("2.0.0", &targets)).unwrap();
    assert_eq!((planned.targets, planned.excluded_count), (2, 2));
    let mut excluded: Vec<&str> = planned
        .excluded
        .iter()
        .map(|e| e.device_id.as_str())
        .collect();
    excluded.sort();
    assert_eq!(excluded, ["old-1", "old-2"]);
    let planned_devices: usize = planned.waves.iter().map(|w| w.devices.len()).sum();
    assert_eq!(planned_devices, 2);
    // A dry run stores nothing.
    assert!(f.rollout.store.list_deployments(10).unwrap().is_empty());

    let started = f
        .rollout
        .start(request("2.0.0", &targets), "token:ci", None)
        .unwrap();
    assert_eq!(started.deployment.state, DeploymentState::Running);
    assert_eq!(started.excluded_count, 2);
    assert_eq!(started.deployment.created_by, "token:ci");
}

#[test]
fn a_deployment_that_would_reach_no_device_is_refused_with_the_reason() {
    let f = floor(&[("old-1", "0.9.0", &[]), ("old-2", "0.9.0", &[])]);
    let err = f
        .rollout
        .start(request("2.0.0", &["old-1", "old-2"]), "token:ci", None)
        .unwrap_err();
    assert!(matches!(err, RolloutError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("all 2 deployable targets are outside firmware 2.0.0's compatibility"),
        "{err}"
    );
    let err = f
        .rollout
        .start(request("9.9.9", &["old-1"]), "token:ci", None)
        .unwrap_err();
    assert!(matches!(err, RolloutError::NotFound(_)), "{err:?}");
    let err = f
        .rollout
        .start(request("3.0.0", &["nobody"]), "token:ci", None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`nobody`, which is not registered"),
        "{err}"
    );
    let both = DeploymentRequest {
        target_filter: Some(GroupFilter::default()),
        ..request("3.0.0", &["old-1"])
    };
    let err = f.rollout.start(both, "token:ci", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "give one of `targetDevices`, `targetFilter` and `targetGroup`"
    );
    let retried = DeploymentRequest {
        max_attempts: Some(11),
        ..request("3.0.0", &["old-1"])
    };
    let err = f.rollout.start(retried, "token:ci", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`maxAttempts` must be from 1 to 10, found 11"
    );
    let unknown = DeploymentRequest {
        strategy: "zigzag".into(),
        ..request("3.0.0", &["old-1"])
    };
    let err = f.rollout.start(unknown, "token:ci", None).unwrap_err();
    assert!(
        err.to_string().starts_with("unknown strategy `zigzag`"),
        "{err}"
    );
    // Nothing of any refusal was stored.
    assert!(f.rollout.store.list_deployments(10).unwrap().is_empty());
}

#[test]
fn a_deployment_reaching_a_protected_device_waits_for_someone_else_to_approve_it() {
    let f = floor(&[
        ("plain", "1.0.0", &[]),
        ("pump", "1.0.0", &[("tier", "critical")]),
        ("valve", "1.0.0", &[("tier", "critical")]),
    ]);
    let free = f
        .rollout
        .start(request("3.0.0", &["plain"]), "user:ana", None)
        .unwrap();
    assert_eq!(free.deployment.state, DeploymentState::Running);

    for (approval, to) in [
        (Approval::Approve, DeploymentState::Running),
        (Approval::Deny, DeploymentState::Cancelled),
    ] {
        let target = if approval == Approval::Approve {
            "pump"
        } else {
            "valve"
        };
        let held = f
            .rollout
            .start(request("3.0.0", &[target]), "user:ana", None)
            .unwrap();
        let id = held.deployment.id;
        assert_eq!(held.deployment.state, DeploymentState::WaitingForApproval);
        let err = f
            .rollout
            .decide_approval(id, "user:ana", approval, "")
            .unwrap_err();
        assert!(matches!(err, RolloutError::Forbidden(_)), "{err:?}");
        assert_eq!(
            f.rollout.store.deployment(id).unwrap().state,
            DeploymentState::WaitingForApproval
        );
        let decided = f
            .rollout
            .decide_approval(id, "user:bo", approval, "  checked the pumps ")
            .unwrap();
        assert_eq!(decided.state, to);
        let verb = if to == DeploymentState::Running {
            "approved"
        } else {
            "denied"
        };
        assert_eq!(
            decided.reason.as_deref(),
            Some(format!("{verb} by user:bo: checked the pumps").as_str())
        );
        // Decided once: a second answer finds it no longer waiting.
        let again = f.rollout.decide_approval(id, "user:cy", approval, "");
        assert!(
            matches!(again, Err(RolloutError::Store(StoreError::Conflict(_)))),
            "{again:?}"
        );
    }
}

#[test]
fn each_action_moves_a_deployment_only_from_the_states_its_row_names() {
    use DeploymentState::*;
    let f = floor(&[("a", "1.0.0", &[]), ("b", "1.0.0", &[])]);
    let id = f
        .rollout
        .start(request("3.0.0", &["a"]), "token:ci", None)
        .unwrap()
        .deployment
        .id;
    // (action, the state it is applied in, the state after; `None`: refused as a conflict).
    let steps = [
        (DeploymentAction::Resume, Running, None),
        (DeploymentAction::Pause, Running, Some(Paused)),
        (DeploymentAction::Pause, Paused, None),
        (DeploymentAction::Resume, Paused, Some(Running)),
        (DeploymentAction::Pause, Running, Some(Paused)),
        (DeploymentAction::Rollback, Paused, Some(RollingBack)),
        (DeploymentAction::Cancel, RollingBack, None),
        (DeploymentAction::Pause, RollingBack, None),
    ];
    for (action, from, to) in steps {
        let before = f.rollout.store.deployment(id).unwrap().state;
        assert_eq!(before, from, "before {action:?}");
        assert_eq!(transition(action).from.contains(&from), to.is_some());
        match (f.rollout.act(id, action), to) {
            (Ok(d), Some(to)) => {
                assert_eq!(d.state, to);
                assert_eq!(d.state, transition(action).to);
                assert_eq!(d.reason.as_deref(), Some(transition(action).reason));
            }
            (Err(RolloutError::Store(StoreError::Conflict(m))), None) => {
                let to = transition(action).to;
                assert_eq!(
                    m,
                    format!("deployment {id} is {from}, so it cannot become {to}")
                );
            }
            (other, _) => panic!("{action:?} in {from:?}: {other:?}"),
        }
    }
    let other = f
        .rollout
        .start(request("3.0.0", &["b"]), "token:ci", None)
        .unwrap()
        .deployment
        .id;
    assert_eq!(
        f.rollout
            .act(other, DeploymentAction::Cancel)
            .unwrap()
            .state,
        Cancelled
    );
    for action in [
        DeploymentAction::Pause,
        DeploymentAction::Resume,
        DeploymentAction::Cancel,
        DeploymentAction::Rollback,
    ] {
        assert!(
            f.rollout.act(other, action).is_err(),
            "{action:?} after cancel"
        );
    }
    let missing = f.rollout.act(9999, DeploymentAction::Pause).unwrap_err();
    assert!(
        matches!(missing, RolloutError::Store(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[test]
fn a_device_changes_standing_only_from_the_statuses_the_change_names() {
    let f = floor(&[]);
    let store = &f.rollout.store;
    let new = NewDevice {
        device_id: "kiosk-7".into(),
        device_model: MODEL.into(),
        region: String::new(),
        labels: BTreeMap::new(),
        groups: Vec::new(),
        firmware_version: String::new(),
        token_sha256: None,
    };
    store.enroll_device(&new, &"11".repeat(32)).unwrap();
    let steps = [
        (StandingChange::Decommission, None),
        (StandingChange::Accept, Some(DeviceStatus::Registered)),
        (StandingChange::Accept, None),
        (
            StandingChange::Decommission,
            Some(DeviceStatus::Decommissioned),
        ),
        (StandingChange::Reject, None),
        (StandingChange::Accept, None),
    ];
    for (change, to) in steps {
        match (f.rollout.set_standing("kiosk-7", change), to) {
            (Ok(d), Some(to)) => assert_eq!(d.status, to),
            (Err(RolloutError::Conflict(m)), None) => {
                assert!(m.starts_with("device `kiosk-7` is "), "{m}")
            }
            (other, _) => panic!("{change:?}: {other:?}"),
        }
    }
    let err = f
        .rollout
        .set_standing("nobody", StandingChange::Reject)
        .unwrap_err();
    assert!(
        matches!(err, RolloutError::Store(StoreError::NotFound(_))),
        "{err:?}"
    );
}

// Every judged deployment used to keep a warm health-policy instance: at the pool's size, a
// dry run answered 503 and the next judgement paused a deployment. The orchestrator keeps a
// share of the pool warm and gives the rest back.
#[test]
fn judging_many_deployments_leaves_the_plugin_pool_room() {
    let ids: Vec<String> = (0..12).map(|i| format!("d-{i:02}")).collect();
    let devices: Vec<(&str, &str, Labels<'_>)> = ids
        .iter()
        .map(|id| (id.as_str(), "1.0.0", &[][..]))
        .collect();
    let f = floor_with_limits(
        &devices,
        hotswap_plugin_host::Limits {
            pool_instances: 8,
            ..Default::default()
        },
    );
    for id in &ids {
        f.rollout
            .start(request("2.0.0", &[id.as_str()]), "token:ci", None)
            .unwrap();
    }
    let mut orchestrator = crate::orchestrator::Orchestrator::new(f.rollout.clone());
    orchestrator
        .pass(f.rollout.store.clock().now())
        .expect("a pass");
    let deployments = f.rollout.store.list_deployments(100).unwrap();
    assert_eq!(deployments.len(), ids.len());
    for d in &deployments {
        assert_eq!(d.state, DeploymentState::Running, "{:?}", d.reason);
    }
    // The pool still has room for a dry run's strategy.
    f.rollout.plan(request("2.0.0", &["d-00"])).unwrap();
}
