//! End to end: devices on the device VM (the fleet simulator) talking real HTTP to the real
//! server, with strategies and health policies in the sandbox. The demo's story on a smaller
//! fleet, every built-in strategy once, and a mix of injected faults after which no device is
//! without a valid agent.

use hotswap::operator::demo::DemoConfig;
use hotswap_client::Client;
use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::release::Release;
use hotswap_protocol::DeploymentState;
use hotswap_sim::{FleetConfig, SimulatedFleet, registration, tagged};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::http::{get, message, post};
use crate::support::process::hotswap;
use crate::support::scripted::{deploy, wait_for};
use crate::support::server::{Server, data_dir};
use crate::support::{hex, release_key};

fn release(version: &str, image: &[u8]) -> Release {
    release_key().release(Version::parse(version).unwrap(), &tagged(image, version), 0)
}

fn good(version: &str) -> Release {
    release(version, hotswap_agents::THRESHOLD_ALARM)
}

async fn register(api: &Client, r: &Release) {
    api.register_firmware(&registration(r, "sensor-v1", ""))
        .await
        .unwrap();
}

fn device_config() -> DeviceConfig {
    DeviceConfig {
        keys: vec![release_key().trusted()],
        allow_downgrade: false,
    }
}

fn fleet_config(server: &Server, devices: usize) -> FleetConfig {
    let mut c = FleetConfig::new(&server.url, devices);
    c.token = Some(server.admin_token.clone());
    c.poll = std::time::Duration::from_millis(50);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_story_runs_end_to_end() {
    let mut out = Vec::new();
    let outcome = hotswap::operator::demo::run(
        DemoConfig {
            devices: 60,
            data_dir: None,
            progress_bars: false,
            soak_seconds: 0,
            keep_serving: true,
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(
        outcome.v2.deployment.state,
        DeploymentState::Completed,
        "{printed}"
    );
    assert_eq!(
        outcome.v3.deployment.state,
        DeploymentState::RolledBack,
        "{printed}"
    );
    assert_eq!(
        outcome.v3.deployment.current_wave, 0,
        "stopped in the canary wave: {printed}"
    );
    assert_eq!(outcome.fleet.bricked, 0, "{printed}");
    assert_eq!(outcome.fleet.versions.get("2.0.0"), Some(&60), "{printed}");
    assert!(
        outcome.fleet.reverted >= 1,
        "devices reverted 3.0.0 on their own: {printed}"
    );
    assert!(printed.contains("rolling back: wave 1"), "{printed}");
    // `--keep-serving`: the server goes on, and its dashboard's user signs in and sees both
    // deployments.
    let serving = outcome.serving.expect("the server kept serving");
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", serving.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let session = Client::new(&serving.url)
        .unwrap()
        .login(&serving.user, &serving.password)
        .await
        .unwrap();
    let listed = Client::new(&serving.url)
        .unwrap()
        .with_token(&session.token)
        .deployments()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    serving.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_built_in_strategy_rolls_out_to_simulated_devices() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let url = server.url.clone();
    let client = server.http();
    let api = server.client();
    let versions = ["1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0", "6.0.0"];
    for v in versions {
        register(&api, &good(v)).await;
    }
    let fleet = SimulatedFleet::start(fleet_config(&server, 30), device_config(), &good("1.0.0"))
        .await
        .unwrap();
    let gate = json!({"soakSeconds": 0});
    let rollouts = [
        ("2.0.0", "direct", json!({"gate": gate})),
        (
            "3.0.0",
            "regional",
            json!({"order": ["ap-south", "us-east", "eu-west"], "gate": gate}),
        ),
        (
            "4.0.0",
            "canary",
            json!({"initialPercentage": 10, "increments": [50, 100], "gate": gate}),
        ),
        (
            "5.0.0",
            "blue-green",
            json!({"activateIncrements": [50, 100], "stageGate": gate, "gate": gate}),
        ),
        (
            "6.0.0",
            "rolling",
            json!({"batchPercentage": 25, "gate": gate}),
        ),
    ];
    for (version, strategy, config) in rollouts {
        let done = deploy(&client, &api, &url, version, strategy, config).await;
        assert_eq!(done["state"], "completed", "{strategy}: {done:#}");
        let waves = done["waveStatus"].as_array().unwrap();
        let succeeded: u64 = waves.iter().map(|w| w["succeeded"].as_u64().unwrap()).sum();
        let expected = if strategy == "blue-green" { 60 } else { 30 };
        assert_eq!(
            succeeded, expected,
            "{strategy}: every device, stage and activate counted: {done:#}"
        );
        // The server counted the last confirmation before the device heard back: wait for it.
        let mut running = fleet.progress.versions();
        for _ in 0..500 {
            if running.get(version) == Some(&30) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            running = fleet.progress.versions();
        }
        assert_eq!(running.get(version), Some(&30), "{strategy}: {running:?}");
    }
    let summary = fleet.stop().await;
    assert_eq!(summary.bricked, 0);
    assert_eq!(summary.failed, 0, "{summary}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_leave_every_device_with_a_valid_agent() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let url = server.url.clone();
    let client = server.http();
    let api = server.client();
    for r in [
        good("1.0.0"),
        good("2.0.0"),
        release("3.0.0", hotswap_agents::FAILING_SELF_TEST),
    ] {
        register(&api, &r).await;
    }
    let mut config = fleet_config(&server, 40);
    config.power_cut_percent = 30.0;
    config.corrupt_percent = 30.0;
    config.drop_percent = 30.0;
    config.seed = 11;
    // These devices speak HTTP/1.1 and poll (the other tests' fleets wait in long polls over
    // HTTP/2): both ways of talking to the server are covered.
    config.http1 = true;
    config.wait_seconds = 0;
    let fleet = SimulatedFleet::start(config, device_config(), &good("1.0.0"))
        .await
        .unwrap();

    // Power cuts while writing, corrupted bytes, dropped connections: the devices recover, retry
    // and the rollout completes.
    let done = deploy(
        &client,
        &api,
        &url,
        "2.0.0",
        "canary",
        json!({"initialPercentage": 25, "increments": [100], "gate": {"soakSeconds": 0}}),
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    assert_eq!(fleet.progress.versions().get("2.0.0"), Some(&40));
    // A broken agent on top: the devices that try it revert; the deployment rolls back.
    let done = deploy(
        &client,
        &api,
        &url,
        "3.0.0",
        "canary",
        json!({"initialPercentage": 25, "increments": [100], "gate": {"soakSeconds": 0}}),
    )
    .await;
    assert_eq!(done["state"], "rolled-back", "{done:#}");

    let summary = fleet.stop().await;
    assert_eq!(summary.bricked, 0, "{summary}");
    assert!(summary.power_cuts > 0, "the faults happened: {summary}");
    assert!(summary.resumed > 0, "{summary}");
    assert!(summary.refetched > 0, "{summary}");
    assert_eq!(summary.versions.get("2.0.0"), Some(&40), "{summary}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_example_plugins_drive_a_rollout() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let url = server.url.clone();
    let client = server.http();
    let api = server.client();
    for plugin in [
        crate::fixtures::MAINTENANCE_WINDOW,
        crate::fixtures::ZERO_TOLERANCE,
    ] {
        let r = client
            .post(format!("{url}/api/v1/plugins"))
            .body(plugin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }
    for r in [
        good("1.0.0"),
        good("2.0.0"),
        release("3.0.0", hotswap_agents::FAILING_SELF_TEST),
    ] {
        register(&api, &r).await;
    }
    let mut config = fleet_config(&server, 20);
    config.labels = vec![
        ("maintenance-window".into(), "22-04".into()),
        ("maintenance-window".into(), "10-14".into()),
    ];
    let fleet = SimulatedFleet::start(config, device_config(), &good("1.0.0"))
        .await
        .unwrap();
    let body = |version: &str| {
        json!({
            "firmwareVersion": version, "deviceModel": "sensor-v1", "targetFilter": {},
            "strategy": "maintenance-window", "config": {"hourUtc": 23, "batchSize": 4},
            "healthPolicy": "zero-tolerance@1.0.0", "healthConfig": {"minSamples": 1},
        })
    };
    let (status, started) =
        post(&client, format!("{url}/api/v1/deployments"), &body("2.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["strategy"], "maintenance-window@1.0.0");
    assert_eq!(started["healthPolicy"], "zero-tolerance@1.0.0");
    assert_eq!(
        started["waves"], 3,
        "10 devices in their window, batches of 4: {started:#}"
    );
    let done = wait_for(
        &api,
        started["id"].as_i64().unwrap(),
        &["completed", "rolled-back", "paused"],
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let running = fleet.progress.versions();
    assert_eq!(
        running.get("2.0.0"),
        Some(&10),
        "only the devices in their window: {running:?}"
    );
    assert_eq!(running.get("1.0.0"), Some(&10), "{running:?}");

    // The broken agent: its first device's failure rolls the deployment back.
    let (status, started) =
        post(&client, format!("{url}/api/v1/deployments"), &body("3.0.0")).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused"]).await;
    assert_eq!(done["state"], "rolled-back", "{done:#}");
    assert_eq!(done["currentWave"], 0, "{done:#}");
    let decisions = get(&client, format!("{url}/api/v1/deployments/{id}/decisions")).await;
    let last = decisions.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["policy"], "zero-tolerance@1.0.0");
    assert_eq!(last["verdict"]["verdict"], "rollBack", "{last:#}");

    // A configuration the plugin refuses is refused with its message.
    let mut bad = body("2.0.0");
    bad["config"] = json!({"hourUtc": 30});
    let (status, answer) = post(
        &client,
        format!("{url}/api/v1/deployments?dryRun=true"),
        &bad,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&answer).contains("`hourUtc` must be from 0 to 23, found 30"),
        "{answer}"
    );
    let summary = fleet.stop().await;
    assert_eq!(summary.bricked, 0);
    server.stop().await;
}

/// `hotswap release` signs an agent and registers it, as an operator preparing a rollout to
/// `hotswap sim` devices does: the bytes are those the simulated devices run for that version;
/// a second registration, an untrusted key and a missing file are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_command_signs_and_registers_an_agent() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let url = server.url.clone();
    // The release key in a file, as `hotswap keys generate` writes one: never on the command line.
    let key_file = |name: &str, seed: u8| {
        let path = dir.path().join(name);
        std::fs::write(&path, hex(&[seed; 32])).unwrap();
        path.display().to_string()
    };
    let secret = key_file("trusted.key", 7);
    let token_file = dir
        .path()
        .join(hotswap_server::ADMIN_TOKEN_FILE)
        .display()
        .to_string();
    let release = |version: &str, key: &str, agent: &str| {
        [
            "release",
            agent,
            "--version",
            version,
            "--release-key-file",
            key,
            "--server",
            &url,
            "--token-file",
            &token_file,
        ]
        .map(String::from)
        .to_vec()
    };
    let (ok, out, err) = hotswap(release("2.0.0", &secret, "example:threshold-alarm")).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("registered 2.0.0 for sensor-v1"), "{out}");
    let listed = get(&server.http(), format!("{url}/api/v1/firmware")).await;
    let expected = good("2.0.0");
    let firmware = listed.as_array().unwrap();
    assert!(
        firmware.iter().any(|f| f["version"] == "2.0.0"
            && f["checksum"] == format!("sha256:{}", hex(&expected.manifest.sha256))),
        "the simulated devices' 2.0.0: {listed:#}"
    );

    let (ok, _, err) = hotswap(release("2.0.0", &secret, "example:threshold-alarm")).await;
    assert!(!ok);
    assert!(
        err.contains("registering 2.0.0 for sensor-v1: firmware 2.0.0 for model `sensor-v1` is already registered"),
        "{err}"
    );
    let other = key_file("other.key", 8);
    let (ok, _, err) = hotswap(release("3.0.0", &other, "example:threshold-alarm")).await;
    assert!(!ok);
    assert!(
        err.contains("registering 3.0.0") && err.contains("key"),
        "{err}"
    );
    let (ok, _, err) = hotswap(release("3.0.0", &secret, "/no/such/agent.wasm")).await;
    assert!(!ok);
    assert!(err.contains("/no/such/agent.wasm"), "{err}");
    let (ok, _, err) = hotswap(release("3.0", &secret, "example:threshold-alarm")).await;
    assert!(!ok);
    assert!(err.contains("is not major.minor.patch"), "{err}");

    // `--print`: the registration body, nothing sent.
    let mut print = release("4.0.0", &secret, "example:failing-self-test");
    print.push("--print".into());
    let (ok, out, err) = hotswap(print).await;
    assert!(ok, "{err}");
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["version"], "4.0.0");
    assert_eq!(body["signature"].as_str().unwrap().len(), 128);
    let listed = get(&server.http(), format!("{url}/api/v1/firmware")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    server.stop().await;
}

/// `hotswap keys generate` writes a new secret only its owner may read and prints the public key
/// to trust; it never overwrites a key. A release signed with a key the server does not trust
/// is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_generate_writes_a_secret_file_and_prints_the_key_to_trust() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let key = dir.path().join("release.key").display().to_string();
    let (ok, out, err) = hotswap(
        ["keys", "generate", "--out", &key]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(ok, "{out}{err}");
    let public = out
        .lines()
        .find_map(|l| l.split("--trusted-key`): ").nth(1))
        .unwrap_or_else(|| panic!("the public key is printed: {out}"));
    assert_eq!(public.len(), 64, "{out}");
    let secret = std::fs::read_to_string(&key).unwrap();
    assert_eq!(secret.trim().len(), 64);
    assert!(
        !out.contains(secret.trim()),
        "the secret is not printed: {out}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let (ok, _, err) = hotswap(
        ["keys", "generate", "--out", &key]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("an existing key is never overwritten"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);
    // The test server trusts another key: a release signed with this one is refused.
    let token_file = dir
        .path()
        .join(hotswap_server::ADMIN_TOKEN_FILE)
        .display()
        .to_string();
    let args = [
        "release",
        "example:threshold-alarm",
        "--version",
        "2.0.0",
        "--release-key-file",
        &key,
        "--server",
        &server.url,
        "--token-file",
        &token_file,
    ];
    let (ok, _, err) = hotswap(args.map(String::from).to_vec()).await;
    assert!(!ok);
    assert!(
        err.contains("registering 2.0.0") && err.contains("key"),
        "{err}"
    );
    // And with no key at all, the command says where one comes from.
    let args = [
        "release",
        "example:threshold-alarm",
        "--version",
        "2.0.0",
        "--print",
    ];
    let (ok, _, err) = hotswap(args.map(String::from).to_vec()).await;
    assert!(!ok);
    assert!(
        err.contains("--release-key-file") && err.contains("HOTSWAP_RELEASE_KEY"),
        "{err}"
    );
    server.stop().await;
}

/// `hotswap scale` over 200 devices comparing `what` (`authentication`, `tracing`): both runs
/// update every device, and the comparison is printed; the output.
async fn scale_compare(what: &str) -> String {
    let args = [
        "scale",
        "--devices",
        "200",
        "--canary-percent",
        "10",
        &format!("--{what}"),
        "compare",
    ];
    let (ok, out, err) = hotswap(args.map(String::from).to_vec()).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.matches("updated        200 of 200 devices").count(),
        2,
        "{out}"
    );
    assert!(out.contains(&format!("{what} end to end")), "{out}");
    out
}

/// The scale benchmark, small: a run without device credentials (the server's benchmark-only
/// mode) and one with them, each updating every device, and what authentication cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_benchmark_compares_runs_with_and_without_authentication() {
    let out = scale_compare("authentication").await;
    assert!(out.contains("devices without credentials"), "{out}");
    assert!(out.contains("devices authenticated"), "{out}");
}

/// The scale benchmark with traces, small: a run without and one with the server sending its
/// spans to the benchmark's OTLP receiver, what traces cost, and how many spans came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_benchmark_compares_runs_with_and_without_traces() {
    let out = scale_compare("tracing").await;
    assert!(out.contains("devices authenticated, traced"), "{out}");
    // Each device's four steps at least, besides the requests.
    let spans: usize = out
        .split_once("traces         ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of spans: {out}"));
    assert!(spans >= 4 * 200, "{out}");
    let (ok, _, err) = hotswap(
        [
            "scale",
            "--authentication",
            "compare",
            "--tracing",
            "compare",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(!ok);
    assert!(err.contains("compare one thing at a time"), "{err}");
}

/// The scale benchmark's rollback runs, small: the health policy rolls the last wave back when
/// injected trial crashes go over the budget, and the operator rolls back a wave most devices
/// confirmed; both report the time to the last device back, and end with none bricked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_benchmark_times_a_rollback_by_the_policy_and_by_the_operator() {
    for who in ["health", "operator"] {
        let (ok, out, err) = hotswap(
            [
                "scale",
                "--devices",
                "2000",
                "--canary-percent",
                "5",
                "--rollback",
                who,
            ]
            .map(String::from)
            .to_vec(),
        )
        .await;
        assert!(ok, "{who}: {out}{err}");
        assert!(out.contains("rollback       RolledBack"), "{who}: {out}");
        assert!(out.contains("s after the verdict"), "{who}: {out}");
        assert!(out.contains("bricked        0"), "{who}: {out}");
        assert!(
            !out.contains(" on 2.0.0"),
            "{who}: every device back: {out}"
        );
    }
}
