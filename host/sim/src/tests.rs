//! A simulated device's update logic over a transport in memory: no server, no HTTP. What it
//! reports, in which requests, and how each kind of update ends.

use std::cell::RefCell;

use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::release::{Release, ReleaseKey};
use hotswap_protocol::{
    Assignment, AssignmentMode, CheckIn, CheckInAnswer, DeviceState, Report, ReportAnswer,
};

use crate::release::tagged;
use crate::sim_device::{Modules, Outcome, SimDevice, UpdateError};
use crate::transport::{Transport, TransportError};

/// Serves one artifact and records every report request; answers each report `answer` (or as
/// applied).
struct Memory {
    artifact: Option<Vec<u8>>,
    /// Reports whose state is this are answered `cancelled`: the server called the job off.
    cancel_at: Option<DeviceState>,
    requests: RefCell<Vec<Vec<Report>>>,
}

impl Memory {
    fn serving(release: &Release) -> Memory {
        Memory {
            artifact: Some(release.image.clone()),
            cancel_at: None,
            requests: RefCell::default(),
        }
    }

    /// The states reported, request by request.
    fn reported(&self) -> Vec<Vec<DeviceState>> {
        self.requests
            .borrow()
            .iter()
            .map(|r| r.iter().map(|r| r.state).collect())
            .collect()
    }
}

impl Transport for Memory {
    async fn check_in(
        &self,
        _: hotswap_client::Device<'_>,
        _: &CheckIn,
        _: u32,
    ) -> Result<CheckInAnswer, TransportError> {
        Ok(CheckInAnswer {
            assignment: None,
            poll_seconds: 30,
        })
    }

    async fn report(
        &self,
        _: hotswap_client::Device<'_>,
        reports: Vec<Report>,
    ) -> Result<Vec<ReportAnswer>, TransportError> {
        let answers = reports
            .iter()
            .map(|r| ReportAnswer {
                applied: true,
                state: if Some(r.state) == self.cancel_at {
                    DeviceState::Cancelled
                } else {
                    r.state
                },
            })
            .collect();
        self.requests.borrow_mut().push(reports);
        Ok(answers)
    }

    async fn download(
        &self,
        _: hotswap_client::Device<'_>,
        _: &str,
        offset: u64,
    ) -> Result<Vec<u8>, TransportError> {
        match &self.artifact {
            Some(bytes) => Ok(bytes[offset as usize..].to_vec()),
            None => Err(TransportError::Refused {
                status: 404,
                message: "no artifact".into(),
            }),
        }
    }
}

fn key() -> ReleaseKey {
    ReleaseKey::from_seed([3; 32])
}

fn release(version: &str, agent: &[u8]) -> Release {
    key().release(Version::parse(version).unwrap(), &tagged(agent, version), 0)
}

fn device() -> SimDevice {
    let config = DeviceConfig {
        keys: vec![key().trusted()],
        allow_downgrade: false,
    };
    let modules = Modules::new(hotswap_device_vm::agent::AgentLimits::default());
    SimDevice::factory(
        "d-1".into(),
        config,
        &release("1.0.0", hotswap_agents::THRESHOLD_ALARM),
        modules,
    )
    .unwrap()
}

fn assignment(r: &Release, mode: AssignmentMode) -> Assignment {
    Assignment {
        assignment_id: 7,
        deployment_id: 1,
        mode,
        version: r.manifest.version.to_string(),
        size: r.image.len() as u64,
        checksum: format!("sha256:{}", hex::encode(r.manifest.sha256)),
        security_counter: 0,
        key_id: hex::encode(r.key_id.0),
        signature: hex::encode(r.signature),
        url: "/api/v1/artifacts/x".into(),
        state: DeviceState::Assigned,
        attempt: 1,
        traceparent: None,
    }
}

const INSTALLED: [DeviceState; 4] = [
    DeviceState::Downloading,
    DeviceState::Downloaded,
    DeviceState::Verifying,
    DeviceState::Installed,
];

#[tokio::test]
async fn an_install_is_downloaded_verified_tried_and_confirmed_in_two_requests() {
    let v2 = release("2.0.0", hotswap_agents::THRESHOLD_ALARM);
    let server = Memory::serving(&v2);
    let mut d = device();
    let outcome = d
        .work(&server, &assignment(&v2, AssignmentMode::Install))
        .await;
    assert_eq!(outcome, Outcome::Confirmed("2.0.0".into()));
    assert_eq!(d.version(), "2.0.0");
    assert_eq!(
        server.reported(),
        [
            INSTALLED.to_vec(),
            vec![DeviceState::Trial, DeviceState::Confirmed]
        ]
    );
    // The report that ends the job carries the device's health on what it now runs.
    let requests = server.requests.borrow();
    assert!(requests[1][1].health.as_ref().is_some_and(|h| h.healthy));
}

#[tokio::test]
async fn a_corrupted_download_is_fetched_again_and_then_confirmed() {
    let v2 = release("2.0.0", hotswap_agents::THRESHOLD_ALARM);
    let server = Memory::serving(&v2);
    let mut d = device();
    d.faults.corrupt_download = true;
    let outcome = d
        .work(&server, &assignment(&v2, AssignmentMode::Install))
        .await;
    assert_eq!(outcome, Outcome::Confirmed("2.0.0".into()));
    assert_eq!(d.refetched, 1);
    assert_eq!(
        server.reported()[0],
        INSTALLED[..3],
        "verification failed once"
    );
}

#[tokio::test]
async fn a_failing_self_test_reverts_on_the_device() {
    let broken = release("3.0.0", hotswap_agents::FAILING_SELF_TEST);
    let server = Memory::serving(&broken);
    let mut d = device();
    let outcome = d
        .work(&server, &assignment(&broken, AssignmentMode::Install))
        .await;
    assert!(
        matches!(&outcome, Outcome::Reverted { failed, .. } if failed == "3.0.0"),
        "{outcome:?}"
    );
    assert_eq!(d.version(), "1.0.0");
    assert_eq!(
        server.reported()[1],
        [DeviceState::Trial, DeviceState::RolledBack]
    );
}

#[tokio::test]
async fn a_job_called_off_before_activation_leaves_the_running_agent() {
    let v2 = release("2.0.0", hotswap_agents::THRESHOLD_ALARM);
    let server = Memory {
        cancel_at: Some(DeviceState::Installed),
        ..Memory::serving(&v2)
    };
    let mut d = device();
    let outcome = d
        .work(&server, &assignment(&v2, AssignmentMode::Install))
        .await;
    assert_eq!(outcome, Outcome::CalledOff);
    assert_eq!(d.version(), "1.0.0");
    assert_eq!(server.reported(), [INSTALLED.to_vec()], "no trial after it");
}

#[tokio::test]
async fn a_refused_download_fails_the_job_with_the_server_reason() {
    let v2 = release("2.0.0", hotswap_agents::THRESHOLD_ALARM);
    let server = Memory {
        artifact: None,
        ..Memory::serving(&v2)
    };
    let mut d = device();
    let outcome = d
        .work(&server, &assignment(&v2, AssignmentMode::Install))
        .await;
    assert_eq!(
        outcome,
        Outcome::Failed(UpdateError::Download(
            "the server answered 404: no artifact".into()
        ))
    );
    let requests = server.requests.borrow();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0][0].state, DeviceState::Failed);
    assert_eq!(
        requests[0][0].reason.as_deref(),
        Some("download: the server answered 404: no artifact")
    );
}

#[tokio::test]
async fn a_signature_the_device_does_not_trust_is_refused_before_any_byte() {
    let stranger = ReleaseKey::from_seed([4; 32]).release(
        Version::new(2, 0, 0),
        &tagged(hotswap_agents::THRESHOLD_ALARM, "2.0.0"),
        0,
    );
    let server = Memory::serving(&stranger);
    let mut d = device();
    let outcome = d
        .work(&server, &assignment(&stranger, AssignmentMode::Install))
        .await;
    assert!(
        matches!(&outcome, Outcome::Failed(UpdateError::Refused(_))),
        "{outcome:?}"
    );
    assert_eq!(d.version(), "1.0.0");
}
