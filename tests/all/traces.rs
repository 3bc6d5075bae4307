//! OpenTelemetry: the real `hotswap serve` process sends its spans over OTLP/HTTP to a receiver
//! in this test process (`hotswap::bench::otlp`, decoding with opentelemetry-proto), configured only by
//! the standard `OTEL_*` variables. After a canary rollout over simulated devices and a broken
//! version rolled back, each deployment is one trace: the operator's request, the deployment,
//! its plan, waves and verdicts, and every device's steps below its wave.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hotswap::bench::otlp::{ReceivedSpan, Receiver};
use hotswap_client::Client;
use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_sim::{FleetConfig, SimulatedFleet, registration, tagged};
use serde_json::{Value, json};

use crate::support::process::{free_port, serve_with_env};
use crate::support::release_key;
use crate::support::scripted::{deploy, wait_for};
use crate::support::server::bearer_client;

const DEVICES: usize = 20;

/// The spans of one trace, by span id.
struct Trace(BTreeMap<String, ReceivedSpan>);

impl Trace {
    fn named(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.0.values().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str) -> &ReceivedSpan {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "one `{name}` span: {found:#?}");
        found[0]
    }

    fn parent(&self, s: &ReceivedSpan) -> Option<&ReceivedSpan> {
        self.0.get(&s.parent_span_id)
    }

    /// Whether `s` is below `ancestor`.
    fn descends(&self, s: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
        let mut at = s;
        while let Some(p) = self.parent(at) {
            if p.span_id == ancestor.span_id {
                return true;
            }
            at = p;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deployment_is_one_trace_from_the_request_to_its_devices() {
    let receiver = Receiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = serve_with_env(
        dir.path(),
        port,
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
            ("OTEL_SERVICE_NAME", "hotswap-under-test"),
            // Sent within a tenth of a second rather than five.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let token = std::fs::read_to_string(
        dir.path()
            .join("data")
            .join(hotswap_server::ADMIN_TOKEN_FILE),
    )
    .unwrap()
    .trim()
    .to_string();
    let api = Client::new(&url).unwrap().with_token(&token);
    let http = bearer_client(&token);
    let release = |version: &str, image: &[u8]| {
        release_key().release(Version::parse(version).unwrap(), &tagged(image, version), 0)
    };
    let v1 = release("1.0.0", hotswap_agents::THRESHOLD_ALARM);
    for r in [
        &v1,
        &release("2.0.0", hotswap_agents::THRESHOLD_ALARM),
        &release("3.0.0", hotswap_agents::FAILING_SELF_TEST),
    ] {
        api.register_firmware(&registration(r, "sensor-v1", ""))
            .await
            .unwrap();
    }
    let mut config = FleetConfig::new(&url, DEVICES);
    config.token = Some(token.clone());
    config.poll = Duration::from_millis(50);
    let fleet = SimulatedFleet::start(
        config,
        DeviceConfig {
            keys: vec![release_key().trusted()],
            allow_downgrade: false,
        },
        &v1,
    )
    .await
    .unwrap();
    let canary =
        || json!({"initialPercentage": 10, "increments": [50, 100], "gate": {"soakSeconds": 0}});
    let good = deploy(&http, &api, &url, "2.0.0", "canary", canary()).await;
    assert_eq!(good["state"], "completed", "{good:#}");
    // Found wanting later: the operator sends every device back to 1.0.0.
    let id = good["id"].as_i64().unwrap();
    api.act(id, hotswap_protocol::DeploymentAction::Rollback)
        .await
        .unwrap();
    let sent_back = wait_for(&api, id, &["rolled-back"]).await;
    assert_eq!(
        sent_back["rollback"]["rolled-back"], DEVICES,
        "{sent_back:#}"
    );
    let broken = deploy(&http, &api, &url, "3.0.0", "canary", canary()).await;
    assert_eq!(broken["state"], "rolled-back", "{broken:#}");
    let summary = fleet.stop().await;
    assert_eq!(summary.bricked, 0, "{summary}");
    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert!(page.status().is_success());
    // SIGTERM: the server sends what it still holds before it exits.
    server.terminate();

    let trace_of = |d: &Value| -> String {
        let traceparent = d["traceparent"].as_str().expect("a traced deployment");
        traceparent.split('-').nth(1).unwrap().to_string()
    };
    let (good_trace, broken_trace) = (trace_of(&good), trace_of(&broken));
    assert_ne!(good_trace, broken_trace, "one trace per deployment");
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = receiver.spans();
        let ended = spans.iter().filter(|s| s.name == "deployment").count();
        let rollbacks = spans.iter().filter(|s| s.name == "rollback").count();
        if ended == 2 && rollbacks == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let traces: BTreeMap<String, Trace> = spans.iter().fold(BTreeMap::new(), |mut traces, s| {
        traces
            .entry(s.trace_id.clone())
            .or_insert_with(|| Trace(BTreeMap::new()))
            .0
            .insert(s.span_id.clone(), s.clone());
        traces
    });
    assert!(
        spans.iter().all(|s| s.service == "hotswap-under-test"),
        "OTEL_SERVICE_NAME names the service"
    );

    // Every HTTP request is a span with its route and status, the dashboard's too.
    let requests: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name.contains(" /")).collect();
    for route in [
        "POST /api/v1/firmware",
        "POST /api/v1/devices/{id}/check-in",
        "POST /api/v1/devices/{id}/reports/batch",
        "GET /api/v1/artifacts/{sha256}",
        "GET /api/v1/deployments/{id}/status",
        "GET /",
    ] {
        let found = requests.iter().find(|s| s.name == route);
        let s = found.unwrap_or_else(|| panic!("a `{route}` span"));
        assert_eq!(
            s.attribute("http.route"),
            route.split_once(' ').unwrap().1,
            "{s:#?}"
        );
        assert!(
            s.attribute("http.response.status_code").starts_with('2'),
            "{s:#?}"
        );
    }

    for (trace_id, version, state) in [
        // Its span ended when it completed; the operator's rollback came after.
        (&good_trace, "2.0.0", "completed"),
        (&broken_trace, "3.0.0", "rolled-back"),
    ] {
        let t = &traces[trace_id];
        // The operator's request is the root; the deployment its child.
        let request = t.one("POST /api/v1/deployments");
        assert!(request.parent_span_id.is_empty(), "{request:#?}");
        assert_eq!(request.attribute("http.response.status_code"), "201");
        let deployment = t.one("deployment");
        assert_eq!(deployment.parent_span_id, request.span_id);
        assert_eq!(deployment.attribute("hotswap.firmware.version"), version);
        assert_eq!(deployment.attribute("hotswap.deployment.state"), state);
        assert_eq!(deployment.error, state != "completed", "{deployment:#?}");
        // Every span of the trace hangs from the request.
        for s in t.0.values().filter(|s| s.span_id != request.span_id) {
            assert!(t.descends(s, request), "{s:#?} is outside the request");
        }
        let plan = t.one("plan");
        assert_eq!(plan.parent_span_id, deployment.span_id);
        assert!(
            plan.attribute("hotswap.strategy").starts_with("canary"),
            "{plan:#?}"
        );
        assert!(
            plan.attribute("hotswap.plugin.fuel_used")
                .parse::<u64>()
                .unwrap()
                > 0,
            "{plan:#?}"
        );
        let verdicts = t.named("health verdict");
        assert!(!verdicts.is_empty());
        for v in &verdicts {
            let wave = t.parent(v).expect("a verdict's wave");
            assert!(wave.name.starts_with("wave "), "{v:#?}");
            assert_eq!(wave.parent_span_id, deployment.span_id);
            assert!(!v.attribute("hotswap.verdict").is_empty(), "{v:#?}");
            assert!(
                !v.attribute("hotswap.plugin.fuel_used").is_empty(),
                "{v:#?}"
            );
        }
        // Each device's update: download, verification, trial and outcome, below a wave.
        let outcomes = t.named("device outcome");
        for step in ["device download", "device verify", "device trial"] {
            for s in t.named(step) {
                // A wave, or the rollback for a device sent back.
                let parent = t.parent(s).expect("a device step's parent");
                assert!(
                    parent.name.starts_with("wave ") || parent.name == "rollback",
                    "{s:#?}"
                );
                assert!(!s.attribute("hotswap.device.id").is_empty(), "{s:#?}");
                assert!(s.end_unix_nanos >= s.start_unix_nanos);
            }
        }
        if state == "completed" {
            let waves: BTreeSet<&str> =
                t.0.values()
                    .filter(|s| s.name.starts_with("wave "))
                    .map(|s| s.name.as_str())
                    .collect();
            assert_eq!(
                waves,
                BTreeSet::from(["wave 1", "wave 2", "wave 3"]),
                "a span per wave"
            );
            let devices: BTreeSet<&str> = outcomes
                .iter()
                .filter(|s| t.parent(s).is_some_and(|p| p.name.starts_with("wave ")))
                .map(|s| s.attribute("hotswap.device.id"))
                .collect();
            assert_eq!(devices.len(), DEVICES, "every device's outcome");
            assert_eq!(t.named("device trial").len(), DEVICES);
            assert!(outcomes.iter().all(|s| !s.error));
            // The operator's rollback, after: every device sent back is below it.
            let rollback = t.one("rollback");
            assert_eq!(rollback.parent_span_id, deployment.span_id);
            let back: BTreeSet<&str> = outcomes
                .iter()
                .filter(|s| t.parent(s).is_some_and(|p| p.span_id == rollback.span_id))
                .map(|s| s.attribute("hotswap.device.id"))
                .collect();
            assert_eq!(back.len(), DEVICES, "every device sent back: {back:?}");
        } else {
            // The canary wave ends in the rollback; the devices that tried 3.0.0 went back on
            // their own, and the rollback is a span of its own.
            let wave = t.one("wave 1");
            assert!(wave.error, "{wave:#?}");
            let rollback = t.one("rollback");
            assert_eq!(rollback.parent_span_id, deployment.span_id);
            assert!(
                outcomes
                    .iter()
                    .any(|s| s.attribute("hotswap.device.state") == "rolled-back"),
                "{outcomes:#?}"
            );
            let verdict = verdicts
                .iter()
                .find(|v| v.attribute("hotswap.verdict") == "roll-back")
                .expect("the policy's roll-back verdict");
            assert!(!verdict.attribute("hotswap.reason").is_empty());
        }
    }
}
