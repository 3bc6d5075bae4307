//! The `hotswap` command as an operator runs it: the real binary, as a process, against a
//! running server. Each command's happy path and its `--json`, a refusal printed as the server
//! said it (exit 1), a usage error (exit 2), `login` then commands without a token, and `watch`
//! over a rollout that completes across a server restart (exit 0) and one the health policy
//! rolls back (exit 3).

use std::path::{Path, PathBuf};

use hotswap_device_vm::device::DeviceConfig;
use hotswap_sim::{FleetConfig, SimulatedFleet, tagged};
use serde_json::Value;

use crate::support::process::{Ran, free_port, hotswap_with, serve};
use crate::support::server::{Server, data_dir};
use crate::support::{hex, release_key};

/// `devices` simulated devices on the example agent 1.0.0 checking in with `url` every 50 ms
/// (registered with the `admin` token), `failing_trial_percent` of whose new agents crash in
/// their trial.
pub(crate) async fn example_fleet(
    url: &str,
    admin: &str,
    devices: usize,
    failing_trial_percent: f64,
) -> SimulatedFleet {
    let mut config = FleetConfig::new(url, devices);
    config.token = Some(admin.to_string());
    config.poll = std::time::Duration::from_millis(50);
    config.failing_trial_percent = failing_trial_percent;
    let factory = release_key().release(
        hotswap_device_vm::Version::parse("1.0.0").unwrap(),
        &tagged(hotswap_agents::THRESHOLD_ALARM, "1.0.0"),
        0,
    );
    let device_config = DeviceConfig {
        keys: vec![release_key().trusted()],
        allow_downgrade: false,
    };
    SimulatedFleet::start(config, device_config, &factory)
        .await
        .unwrap()
}

/// An operator's own configuration directory and working directory.
pub(crate) struct Operator {
    pub(crate) dir: tempfile::TempDir,
}

impl Operator {
    pub(crate) fn new() -> Operator {
        let op = Operator {
            dir: tempfile::tempdir().unwrap(),
        };
        // The release key the test servers trust, as `hotswap keys generate` writes one.
        std::fs::write(op.key(), hex(&[7; 32])).unwrap();
        op
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.path().join("release.key")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `hotswap args...` with this operator's configuration and `env`.
    pub(crate) async fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        let mut vars = vec![(
            "HOTSWAP_CONFIG_DIR".to_string(),
            self.path("config").display().to_string(),
        )];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        hotswap_with(
            self.dir.path(),
            vars,
            args.iter().map(|a| a.to_string()).collect(),
        )
        .await
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Ran {
        self.run_with(&[], args).await
    }

    /// Runs and expects exit code 0; standard output.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args).await;
        assert_eq!(ran.code, Some(0), "hotswap {}: {ran:#?}", args.join(" "));
        ran.out
    }

    /// Runs with `--json` and expects exit code 0; the JSON printed.
    pub(crate) async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("hotswap {}: {e}: {out}", args.join(" ")))
    }

    pub(crate) async fn login(&self, url: &str, token: &str) {
        std::fs::write(self.path("admin.token"), token).unwrap();
        let token_file = self.path("admin.token").display().to_string();
        let out = self
            .ok(&["login", "--server", url, "--token-file", &token_file])
            .await;
        assert!(out.contains(&format!("logged in to {url}")), "{out}");
    }

    /// `deployments create` of `version` for `sensor-v1` with `args` (targets, strategy,
    /// configuration); the deployment as the API answered it.
    pub(crate) async fn deploy(&self, version: &str, args: &[&str]) -> Value {
        let mut all = vec![
            "deployments",
            "create",
            "--firmware",
            version,
            "--model",
            "sensor-v1",
        ];
        all.extend(args);
        self.json(&all).await
    }

    pub(crate) async fn register(&self, agent: &str, version: &str) -> Value {
        let key = self.key().display().to_string();
        self.json(&[
            "firmware",
            "register",
            agent,
            "--version",
            version,
            "--release-key-file",
            &key,
        ])
        .await
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drives_every_part_of_the_api_with_the_hotswap_command() {
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let op = Operator::new();

    // Before login there is no credential: the command says how to get one.
    let ran = op.run(&["firmware", "list", "--server", &server.url]).await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.err.contains("hotswap login"), "{ran:#?}");

    op.login(&server.url, &server.admin_token).await;
    assert_eq!(mode(&op.path("config/config.toml")), 0o600);

    // Firmware, signed here and registered; every later command finds the server and the token
    // in the context `login` wrote.
    let key = op.key().display().to_string();
    let out = op
        .ok(&[
            "firmware",
            "register",
            "example:threshold-alarm",
            "--version",
            "1.0.0",
            "--release-key-file",
            &key,
        ])
        .await;
    assert!(out.contains("registered 1.0.0 for sensor-v1"), "{out}");
    let two = op.register("example:threshold-alarm", "2.0.0").await;
    assert_eq!(two["version"], "2.0.0");
    let two_id = two["id"].as_i64().unwrap().to_string();
    let out = op.ok(&["firmware", "list"]).await;
    assert!(out.starts_with("ID"), "a table: {out}");
    assert!(out.contains("2.0.0") && out.contains("current"), "{out}");
    assert_eq!(
        op.json(&["firmware", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let out = op.ok(&["firmware", "show", &two_id]).await;
    assert!(
        out.contains(&format!("firmware {two_id}: 2.0.0 for sensor-v1")),
        "{out}"
    );
    assert_eq!(
        op.json(&["firmware", "show", &two_id]).await["cameFrom"],
        Value::Array(vec![])
    );

    // Devices: one by hand, the rest imported from a CSV file in batches.
    let out = op
        .ok(&[
            "devices",
            "register",
            "lyon-1",
            "--model",
            "sensor-v1",
            "--region",
            "eu-west",
            "--label",
            "site=lyon",
        ])
        .await;
    assert!(out.contains("token (shown this once): hsw_dev_"), "{out}");
    let mut csv = String::from("deviceId,deviceModel,region,labels,groups,firmwareVersion\n");
    for i in 2..=6 {
        let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
        csv.push_str(&format!(
            "lyon-{i},sensor-v1,{region},site=lyon,pilot,1.0.0\n"
        ));
    }
    std::fs::write(op.path("fleet.csv"), csv).unwrap();
    let out = op
        .ok(&[
            "devices",
            "import",
            "fleet.csv",
            "--batch-size",
            "2",
            "--tokens-out",
            "tokens.csv",
        ])
        .await;
    assert!(out.contains("imported 5 devices"), "{out}");
    let tokens = std::fs::read_to_string(op.path("tokens.csv")).unwrap();
    assert_eq!(
        tokens.lines().count(),
        6,
        "a header and a token per device: {tokens}"
    );
    assert_eq!(mode(&op.path("tokens.csv")), 0o600);
    // Importing the same file again is refused whole, naming the device, and keeps nothing.
    let ran = op.run(&["devices", "import", "fleet.csv", "--json"]).await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(ran.err.contains("lyon-2"), "{ran:#?}");
    let page = op.json(&["devices", "list", "--region", "eu-west"]).await;
    assert_eq!(page["devices"].as_array().unwrap().len(), 4, "{page}");
    let out = op.ok(&["devices", "list", "--limit", "2"]).await;
    assert!(out.contains("more: --after"), "{out}");
    assert_eq!(
        op.json(&["devices", "list", "--limit", "2", "--all"]).await["devices"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let out = op.ok(&["devices", "show", "lyon-1"]).await;
    assert!(out.contains("site=lyon"), "{out}");
    // The fleet counted: six devices, four of them in eu-west, none listed.
    let summary = op.json(&["devices", "summary"]).await;
    assert_eq!(summary["devices"], 6, "{summary}");
    assert_eq!(summary["byRegion"]["eu-west"], 4, "{summary}");
    let out = op.ok(&["devices", "summary"]).await;
    assert!(out.starts_with("6 devices\n  by version: "), "{out}");
    assert_eq!(
        op.json(&["devices", "lineage", "lyon-1"]).await["deviceId"],
        "lyon-1"
    );

    // Groups.
    let out = op
        .ok(&[
            "groups",
            "create",
            "lyon-west",
            "--filter",
            "region=eu-west,label=site=lyon",
        ])
        .await;
    assert!(
        out.contains("created group lyon-west with 4 devices"),
        "{out}"
    );
    assert!(op.ok(&["groups", "list"]).await.contains("lyon-west"));
    let group = op.json(&["groups", "show", "lyon-west"]).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 4, "{group}");

    // Plugins: an example strategy uploaded, shown, deleted; the built-ins listed beside it.
    std::fs::write(op.path("window.wasm"), crate::fixtures::MAINTENANCE_WINDOW).unwrap();
    let uploaded = op.json(&["plugins", "upload", "window.wasm"]).await;
    let (name, version) = (
        uploaded["name"].as_str().unwrap().to_string(),
        uploaded["version"].as_str().unwrap().to_string(),
    );
    assert_eq!(uploaded["builtin"], false, "{uploaded}");
    let out = op.ok(&["plugins", "show", &name]).await;
    assert!(
        out.contains("uploaded") && out.contains("parameters"),
        "{out}"
    );
    assert!(
        op.ok(&["plugins", "delete", &name, &version])
            .await
            .contains("deleted plugin")
    );
    let ran = op.run(&["plugins", "show", &name]).await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    // Plugins: the built-ins are listed and described.
    assert!(op.ok(&["plugins", "list"]).await.contains("canary"));
    let canary = op.json(&["plugins", "show", "canary"]).await;
    assert_eq!(canary["kind"], "strategy");

    // A dry run shows the waves and starts nothing.
    let out = op
        .ok(&[
            "deployments",
            "create",
            "--firmware",
            "2.0.0",
            "--model",
            "sensor-v1",
            "--group",
            "lyon-west",
            "--strategy",
            "canary",
            "--config",
            r#"{"initialPercentage": 25, "increments": [100]}"#,
            "--dry-run",
        ])
        .await;
    assert!(out.contains("dry run: 2.0.0 for sensor-v1"), "{out}");
    assert!(
        out.contains("WAVE") && out.contains("1 canary") && out.contains("2 "),
        "{out}"
    );
    assert!(
        op.json(&["deployments", "list"])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A deployment, paused, resumed, cancelled.
    let out = op
        .ok(&[
            "deployments",
            "create",
            "--firmware",
            "2.0.0",
            "--model",
            "sensor-v1",
            "--devices",
            "lyon-1,lyon-2",
            "--strategy",
            "direct",
        ])
        .await;
    assert!(out.contains("started deployment"), "{out}");
    let listed = op.json(&["deployments", "list"]).await;
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    assert!(
        op.ok(&["deployments", "status", &id])
            .await
            .contains("WAVE")
    );
    assert_eq!(
        op.json(&["deployments", "status", &id]).await["waveStatus"][0]["devices"],
        2
    );
    assert!(
        op.ok(&["deployments", "pause", &id])
            .await
            .contains("paused")
    );
    assert_eq!(
        op.json(&["deployments", "resume", &id]).await["state"],
        "running"
    );
    assert!(op.json(&["deployments", "decisions", &id]).await.is_array());

    // Tokens; a viewer's token is refused an action, with the server's own words.
    let viewer = op
        .json(&["tokens", "create", "ci-viewer", "--role", "viewer"])
        .await;
    let secret = viewer["token"].as_str().unwrap().to_string();
    assert!(op.ok(&["tokens", "list"]).await.contains("ci-viewer"));
    let ran = op
        .run_with(
            &[("HOTSWAP_TOKEN", &secret)],
            &["deployments", "cancel", &id],
        )
        .await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    let refused = server
        .client()
        .with_token(&secret)
        .act(
            id.parse().unwrap(),
            hotswap_protocol::DeploymentAction::Cancel,
        )
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        ran.err.trim(),
        format!("error: {refused}"),
        "as the server said it"
    );
    let token_id = viewer["id"].as_i64().unwrap().to_string();
    assert!(
        op.ok(&["tokens", "revoke", &token_id])
            .await
            .contains("revoked token")
    );
    assert!(
        op.ok(&["deployments", "cancel", &id])
            .await
            .contains("cancelled")
    );
    let audit = op
        .json(&["audit", "--action", "POST", "--limit", "5"])
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 5, "{audit}");
    assert!(op.ok(&["audit"]).await.contains("token:admin"));

    // The server's refusal, as it said it, exit code 1.
    let ran = op
        .run(&[
            "deployments",
            "create",
            "--firmware",
            "9.9.9",
            "--model",
            "sensor-v1",
            "--devices",
            "lyon-1",
        ])
        .await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert_eq!(
        ran.err.trim(),
        "error: unknown firmware 9.9.9 for model `sensor-v1`: register it first"
    );
    // A usage error, exit code 2, the server never asked.
    let ran = op
        .run(&[
            "deployments",
            "create",
            "--firmware",
            "2.0.0",
            "--model",
            "sensor-v1",
            "--config",
            "[1]",
        ])
        .await;
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.err.contains("--config must be a JSON object"),
        "{ran:#?}"
    );
    let ran = op.run(&["deployments", "watch"]).await;
    assert_eq!(ran.code, Some(2), "clap's own: {ran:#?}");

    assert!(op.ok(&["completions", "bash"]).await.contains("_hotswap"));
    assert!(
        op.ok(&["completions", "zsh"])
            .await
            .contains("#compdef hotswap")
    );

    // A user, who signs in with a password into a context of her own.
    let password = ("HOTSWAP_PASSWORD", "correct horse battery");
    let ran = op
        .run_with(&[password], &["users", "create", "ana", "--role", "viewer"])
        .await;
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(op.ok(&["users", "list"]).await.contains("ana"));
    let ran = op
        .run_with(
            &[password],
            &[
                "login",
                "--server",
                &server.url,
                "--user",
                "ana",
                "--context",
                "ana",
            ],
        )
        .await;
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(ran.out.contains("as user:ana (viewer)"), "{ran:#?}");
    assert!(op.ok(&["deployments", "list"]).await.contains("cancelled"));
    let ran = op.run(&["tokens", "list"]).await;
    assert_eq!(ran.code, Some(1), "a viewer's session may not: {ran:#?}");
    let ran = op
        .run_with(
            &[("HOTSWAP_PASSWORD", "wrong password!!")],
            &["login", "--server", &server.url, "--user", "ana"],
        )
        .await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        op.ok(&["logout", "--context", "ana"])
            .await
            .contains("session ends")
    );
    let ran = op.run(&["firmware", "list"]).await;
    assert_eq!(
        ran.code,
        Some(1),
        "no current context after its logout: {ran:#?}"
    );
    op.login(&server.url, &server.admin_token).await;

    // Logged out, the context is gone and commands have no credential again.
    assert!(op.ok(&["logout"]).await.contains("logged out"));
    let ran = op.run(&["firmware", "list"]).await;
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_a_rollout_across_a_server_restart_and_exits_with_the_outcome() {
    let dir = data_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = serve(dir.path(), port).await;
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let op = Operator::new();
    op.login(&url, admin.trim()).await;
    op.register("example:threshold-alarm", "1.0.0").await;
    op.register("example:threshold-alarm", "2.0.0").await;
    op.register("example:failing-self-test", "3.0.0").await;

    let fleet = example_fleet(&url, admin.trim(), 20, 0.0).await;

    let deploy = |version: &'static str, soak: u32| {
        let op = &op;
        async move {
            let config = format!(
                r#"{{"initialPercentage": 25, "increments": [100], "gate": {{"soakSeconds": {soak}}}}}"#
            );
            let started = op
                .json(&[
                    "deployments",
                    "create",
                    "--firmware",
                    version,
                    "--model",
                    "sensor-v1",
                    "--filter",
                    "model=sensor-v1",
                    "--strategy",
                    "canary",
                    "--config",
                    &config,
                    "--health-config",
                    r#"{"pollSeconds": 1}"#,
                ])
                .await;
            started["id"].as_i64().unwrap().to_string()
        }
    };

    // 2.0.0 completes; the server is killed and started again while it goes out, and the watch
    // rides it out.
    let id = deploy("2.0.0", 3).await;
    let watch = {
        let env = vec![(
            "HOTSWAP_CONFIG_DIR".to_string(),
            op.path("config").display().to_string(),
        )];
        let args = ["deployments", "watch", &id, "--interval", "0.2"]
            .map(String::from)
            .to_vec();
        let cwd = op.dir.path().to_path_buf();
        tokio::spawn(async move { hotswap_with(&cwd, env, args).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server = serve(dir.path(), port).await;
    let ran = watch.await.unwrap();
    assert_eq!(ran.code, Some(0), "completed: {ran:#?}");
    assert!(ran.out.contains("lost the server"), "{}", ran.out);
    assert!(ran.out.contains("reconnected"), "{}", ran.out);
    assert!(ran.out.contains("wave 2"), "one line per wave: {}", ran.out);
    assert!(
        ran.out.contains("verdict on wave 1: proceed"),
        "{}",
        ran.out
    );
    assert!(
        ran.out
            .lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("deployment {id} completed"))),
        "{}",
        ran.out
    );

    // 3.0.0 fails its self-test on the devices; the health policy rolls it back: exit 3.
    let id = deploy("3.0.0", 0).await;
    let ran = op
        .run(&["deployments", "watch", &id, "--interval", "0.2"])
        .await;
    assert_eq!(ran.code, Some(3), "rolled back: {ran:#?}");
    assert!(
        ran.out.contains("roll back"),
        "the verdict and its reason: {}",
        ran.out
    );
    assert!(
        ran.out.contains(&format!("deployment {id} rolled-back")),
        "{}",
        ran.out
    );

    let summary = fleet.stop().await;
    assert_eq!(summary.bricked, 0, "{summary}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_commands_stop_on_sigterm_with_their_summary() {
    use std::process::{Command, Stdio};
    let dir = data_dir();
    let server = Server::start(&dir).await;
    let op = Operator::new();
    op.login(&server.url, &server.admin_token).await;
    op.register("example:threshold-alarm", "2.0.0").await;
    let key = op.key().display().to_string();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"))
            .args(args)
            .env("HOTSWAP_CONFIG_DIR", op.path("config"))
            .current_dir(op.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let sim = spawn(&[
        "sim",
        "--devices",
        "3",
        "--release-key-file",
        &key,
        "--poll-ms",
        "100",
    ]);
    let api = server.client();
    for _ in 0..200 {
        let page = api.devices(&Default::default()).await.unwrap();
        if page
            .devices
            .iter()
            .filter(|d| d.last_seen.is_some())
            .count()
            == 3
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A deployment that waits for an approval never ends by itself: only a signal stops its
    // watch, which says so.
    op.ok(&[
        "groups",
        "create",
        "gated",
        "--filter",
        "model=sensor-v1",
        "--requires-approval",
    ])
    .await;
    let started = op
        .deploy("2.0.0", &["--group", "gated", "--strategy", "direct"])
        .await;
    assert_eq!(started["state"], "waiting-for-approval", "{started}");
    let id = started["id"].as_i64().unwrap().to_string();
    let watch = spawn(&["deployments", "watch", &id]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let term = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
    };
    term(watch.id());
    let watched = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(watched.status.code(), Some(130), "{watched:?}");
    assert!(stdout.contains("waiting-for-approval"), "{stdout}");
    assert!(
        stdout.contains(&format!("stopped watching deployment {id}")),
        "{stdout}"
    );
    term(sim.id());
    let out = tokio::task::spawn_blocking(move || sim.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("devices        3"), "the summary: {stdout}");
    assert!(stdout.contains("bricked"), "the summary: {stdout}");
    op.ok(&["deployments", "cancel", &id]).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_json_log_lines_with_log_format_json() {
    let dir = data_dir();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    // No trusted key: the server warns at start, the line to read back.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"))
        .args(["serve", "--log-format", "json", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .stderr(log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    hotswap_client::Client::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .wait_until_up(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let warning = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no trusted release keys"))
        })
        .unwrap_or_else(|| panic!("no JSON warning in {text}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(warning["timestamp"].is_string(), "{warning}");
    assert!(warning["target"].is_string(), "{warning}");
    // A value that is not a format is refused as a usage error.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"))
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("xml"));
}
