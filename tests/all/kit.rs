//! The plugin author's flow as a new author runs it, from an empty folder, with the real
//! binary: `plugin new` → `cargo test` → `plugin build` → `plugin check` → `plugin simulate` →
//! upload → a deployment that uses both plugins over a simulated fleet; then `plugin replay` of
//! the health policy over the decisions that deployment recorded, as it was configured (it
//! agrees with every verdict) and stricter (it shows the first decision it would have rolled
//! back on).

use std::path::{Path, PathBuf};

use crate::cli::Operator;
use crate::support::process::{free_port, serve, serve_with};
use crate::support::server::data_dir;

/// One target directory for every project the tests make, so wit-bindgen and serde are
/// compiled once per run, not once per project.
fn plugin_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-projects")
}

/// componentize-py from PyPI in a virtual environment of its own under `target/`, installed on
/// first use; its path. Tests that run at once wait for the one installing it, rather than
/// find a half-made environment.
fn componentize_py() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(install_componentize_py).clone()
}

fn install_componentize_py() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/componentize-venv");
    let bin = venv.join("bin/componentize-py");
    let pinned = format!("componentize-py=={}", hotswap::kit::COMPONENTIZE_PY_VERSION);
    let installed = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains(hotswap::kit::COMPONENTIZE_PY_VERSION)
        });
    if !installed {
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv));
        run(std::process::Command::new(venv.join("bin/pip")).args(["install", "--quiet", &pinned]));
    }
    bin
}

/// `hotswap args...` in `dir` (inside the operator's folder), expecting exit 0; its output.
async fn ok_in(op: &Operator, dir: &str, args: &[&str]) -> String {
    let ran = run_in(op, dir, args).await;
    assert_eq!(ran.code, Some(0), "hotswap {}: {ran:#?}", args.join(" "));
    format!("{}{}", ran.out, ran.err)
}

/// `hotswap args...` in `dir` with the author's environment: the operator's configuration,
/// the shared target directory, componentize-py.
async fn run_in(op: &Operator, dir: &str, args: &[&str]) -> crate::support::process::Ran {
    let cwd = op.path(dir);
    let env = vec![
        (
            "COMPONENTIZE_PY".to_string(),
            componentize_py().display().to_string(),
        ),
        (
            "XDG_CACHE_HOME".to_string(),
            plugin_target_dir().join("cache").display().to_string(),
        ),
        (
            "HOTSWAP_CONFIG_DIR".to_string(),
            op.path("config").display().to_string(),
        ),
        (
            "CARGO_TARGET_DIR".to_string(),
            plugin_target_dir().display().to_string(),
        ),
    ];
    crate::support::process::hotswap_with(&cwd, env, args.iter().map(|a| a.to_string()).collect())
        .await
}

/// `cargo test` in a project, as its README says.
async fn cargo_test(dir: PathBuf) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO"))
            .arg("test")
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", plugin_target_dir())
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "cargo test in {}: {text}",
            dir.display()
        );
        text
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_strategy_and_health_policy_go_from_plugin_new_to_a_deployment_and_a_replay() {
    let op = Operator::new();
    // An empty folder, as a new author starts from.
    let out = ok_in(&op, ".", &["plugin", "new", "strategy", "halves"]).await;
    assert!(out.contains("made strategy `halves`"), "{out}");
    let out = ok_in(&op, ".", &["plugin", "new", "health-policy", "strict"]).await;
    assert!(out.contains("made health-policy `strict`"), "{out}");
    for project in ["halves", "strict"] {
        let readme = std::fs::read_to_string(op.path(project).join("README.md")).unwrap();
        assert!(readme.contains("hotswap plugin build"), "{readme}");
        assert!(op.path(project).join("wit/types.wit").is_file());
        let tested = cargo_test(op.path(project)).await;
        assert!(tested.contains("2 passed"), "{tested}");
    }
    // A second project in the same folder is refused, and so is a bad name.
    let again = crate::support::process::hotswap_with(
        op.dir.path(),
        vec![],
        ["plugin", "new", "strategy", "halves"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(again.code, Some(2), "{again:#?}");
    assert!(again.err.contains("not empty"), "{again:#?}");

    let built = ok_in(&op, "halves", &["plugin", "build"]).await;
    assert!(
        built.contains("built ./dist/halves.wasm") && built.contains("strategy `halves` 0.1.0"),
        "{built}"
    );
    let built = ok_in(&op, "strict", &["plugin", "build"]).await;
    assert!(built.contains("health-policy `strict` 0.1.0"), "{built}");

    let checked = ok_in(&op, "halves", &["plugin", "check", "dist/halves.wasm"]).await;
    assert!(checked.contains("parameters (JSON Schema)"), "{checked}");
    assert!(checked.contains("firstPercent"), "{checked}");
    // Checked under a server's tighter limits, it is refused naming the key to raise.
    std::fs::write(
        op.path("tight.toml"),
        "[plugin-limits]\nmax-component-bytes = 1000\n",
    )
    .unwrap();
    let tight = crate::support::process::hotswap_with(
        &op.path("halves"),
        vec![],
        [
            "plugin",
            "check",
            "dist/halves.wasm",
            "--server-config",
            "../tight.toml",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(tight.code, Some(1), "{tight:#?}");
    assert!(
        tight.err.contains("raise `max-component-bytes`"),
        "{tight:#?}"
    );
    let planned = ok_in(
        &op,
        "halves",
        &[
            "plugin",
            "simulate",
            "dist/halves.wasm",
            "--devices",
            "200",
            "--config",
            r#"{"firstPercent": 25}"#,
        ],
    )
    .await;
    assert!(
        planned.contains("2 waves over 200 of 200 devices"),
        "{planned}"
    );
    assert!(planned.contains("first 25%"), "{planned}");
    let judged = ok_in(
        &op,
        "strict",
        &[
            "plugin",
            "simulate",
            "dist/strict.wasm",
            "--scenario",
            "scenario.json",
        ],
    )
    .await;
    assert!(judged.contains("-> wait 5 s"), "{judged}");
    assert!(judged.contains("-> roll back"), "{judged}");

    // Uploaded to a server and used by a deployment over a simulated fleet in which some
    // devices' new agent fails its trial.
    let dir = data_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = serve(dir.path(), port).await;
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    op.login(&url, admin.trim()).await;
    op.register("example:threshold-alarm", "1.0.0").await;
    op.register("example:threshold-alarm", "2.0.0").await;
    for file in ["halves/dist/halves.wasm", "strict/dist/strict.wasm"] {
        let up = op.json(&["plugins", "upload", file]).await;
        assert_eq!(up["builtin"], false, "{up}");
    }
    let _fleet = crate::cli::example_fleet(&url, admin.trim(), 20, 20.0).await;
    let started = op
        .deploy(
            "2.0.0",
            &[
                "--filter",
                "model=sensor-v1",
                "--strategy",
                "halves",
                "--config",
                r#"{"firstPercent": 25}"#,
                "--health-policy",
                "strict",
                "--health-config",
                r#"{"maxFailurePercent": 80, "pollSeconds": 1}"#,
            ],
        )
        .await;
    let id = started["id"].as_i64().unwrap().to_string();
    let ran = op
        .run(&["deployments", "watch", &id, "--interval", "0.2"])
        .await;
    assert_eq!(ran.code, Some(0), "completed: {ran:#?}");
    let status = op.json(&["deployments", "status", &id]).await;
    assert!(
        status["states"]["rolled-back"].as_u64().unwrap_or(0) > 0,
        "some trials failed: {status:#}"
    );

    // Replayed as it was configured, the policy agrees with every verdict it gave.
    let replay = ["plugin", "replay", "dist/strict.wasm", "--deployment", &id];
    let same = ok_in(&op, "strict", &replay).await;
    assert!(same.contains("strict@0.1.0 agrees with all"), "{same}");
    // Stricter, it would have rolled back at the first wave that had a failure.
    let mut stricter = replay.to_vec();
    stricter.extend(["--config", r#"{"maxFailurePercent": 0, "pollSeconds": 1}"#]);
    let differs = ok_in(&op, "strict", &stricter).await;
    assert!(differs.contains("<- differs"), "{differs}");
    assert!(
        differs.contains("the first is decision")
            && differs.contains("would have answered roll back"),
        "{differs}"
    );
}

/// What a strategy is tried with: where it comes from, a parameter its schema names, a
/// configuration and the name of the first wave it plans with it, and a configuration it
/// refuses with what the refusal says.
struct Trial<'a> {
    example: Option<&'a str>,
    parameter: &'a str,
    config: &'a str,
    first_wave: &'a str,
    /// What `simulate` says of its plan over 200 generated devices.
    planned: &'a str,
    bad_config: (&'a str, &'a str),
}

/// The template strategy of `plugin new`.
const TEMPLATE: Trial<'static> = Trial {
    example: None,
    parameter: "firstPercent",
    config: r#"{"firstPercent": 25}"#,
    first_wave: "first 25%",
    planned: "2 waves over 200 of 200 devices",
    bad_config: (r#"{"firstPercent": 0}"#, "firstPercent is 0"),
};

/// The examples of `plugins-examples/strategies`: one wave per region.
const BY_REGION: Trial<'static> = Trial {
    example: None,
    parameter: "skipOffline",
    config: r#"{"order": ["us-east"]}"#,
    first_wave: "region us-east",
    planned: "3 waves over 200 of 200 devices",
    bad_config: (r#"{"order": ["mars"]}"#, "mars"),
};

/// Copies a folder, following symbolic links (an example's `wit` is one).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if std::fs::metadata(entry.path()).unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `argv` in a project's folder, as its README says to run it, expecting success; its output.
fn in_project(project: &Path, argv: &[&str]) -> String {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(project)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{argv:?}: {text}");
    text
}

/// A strategy in an interpreted language from `plugin new --lang LANG` (or an example) to a completed
/// deployment: `setup` and `unit_test` run in the project as its README says (the unit test's
/// output must hold `passed`), the build runs the language's real tool.
async fn interpreted_strategy(
    lang: &str,
    name: &str,
    setup: &[&[&str]],
    unit_test: (&[&str], &str),
    try_it: &Trial<'_>,
) {
    let op = Operator::new();
    match try_it.example {
        // An example of this repository's, copied as an author would take it.
        Some(example) => copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(example),
            &op.path(name),
        ),
        None => {
            let out = ok_in(
                &op,
                ".",
                &["plugin", "new", "strategy", name, "--lang", lang],
            )
            .await;
            assert!(out.contains(&format!("made strategy `{name}`")), "{out}");
        }
    }
    let project = op.path(name);
    let run = |argv: &[&str]| in_project(&project, argv);
    for argv in setup {
        run(argv);
    }
    let (argv, passed) = unit_test;
    let text = run(argv);
    assert!(text.contains(passed), "{text}");

    // The language's own tool: its engine and the module in one component.
    let file = format!("dist/{name}.wasm");
    let built = ok_in(&op, name, &["plugin", "build"]).await;
    assert!(built.contains(&format!("strategy `{name}` ")), "{built}");
    assert!(
        built.contains("checking under the [plugin-limits] of"),
        "{built}"
    );
    // Under the defaults it is refused naming what to raise, before anything is compiled.
    let refused = run_in(&op, name, &["plugin", "check", &file]).await;
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(
        refused.err.contains("raise `max-component-bytes`"),
        "{refused:#?}"
    );
    let limits = ["--server-config", "hotswap.toml"];
    let mut check = vec!["plugin", "check", &file];
    check.extend(limits);
    let checked = ok_in(&op, name, &check).await;
    assert!(checked.contains(try_it.parameter), "{checked}");
    let mut simulate = vec!["plugin", "simulate", &file, "--devices", "200"];
    simulate.extend(["--config", try_it.config]);
    simulate.extend(limits);
    let planned = ok_in(&op, name, &simulate).await;
    assert!(planned.contains(try_it.planned), "{planned}");
    assert!(planned.contains(try_it.first_wave), "{planned}");
    let mut bad = vec!["plugin", "simulate", &file, "--config", try_it.bad_config.0];
    bad.extend(limits);
    let refused = run_in(&op, name, &bad).await;
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(refused.err.contains(try_it.bad_config.1), "{refused:#?}");

    // A server whose operator lets a plugin ask for what the project's [plugin-limits] says
    // (its [plugin-ceilings]), while every other plugin keeps the defaults.
    let dir = data_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let table = std::fs::read_to_string(project.join("hotswap.toml")).unwrap();
    let ceilings = table.replace("[plugin-limits]", "[plugin-ceilings]");
    let _server = serve_with(dir.path(), port, &ceilings).await;
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    op.login(&url, admin.trim()).await;
    op.register("example:threshold-alarm", "1.0.0").await;
    op.register("example:threshold-alarm", "2.0.0").await;
    let component = format!("{name}/dist/{name}.wasm");
    // Under the defaults the component is too large, and the refusal says what to ask for.
    let plain = op.run(&["plugins", "upload", &component]).await;
    assert_eq!(plain.code, Some(1), "{plain:#?}");
    assert!(plain.err.contains("`max-component-bytes`"), "{plain:#?}");
    // Asking past a ceiling is refused by name.
    let greedy = op
        .run(&[
            "plugins",
            "upload",
            &component,
            "--limits",
            &format!("{name}/hotswap.toml"),
            "--limit",
            "fuel-per-call=900000000000",
        ])
        .await;
    assert_eq!(greedy.code, Some(1), "{greedy:#?}");
    assert!(
        greedy.err.contains("`fuel-per-call` 900000000000 asked for this plugin: it must be at least 1 and at most 20000000000"),
        "{greedy:#?}"
    );
    let up = op
        .json(&[
            "plugins",
            "upload",
            &component,
            "--limits",
            &format!("{name}/hotswap.toml"),
        ])
        .await;
    assert_eq!(up["name"], name, "{up}");
    assert_eq!(up["limits"]["fuel-per-call"], 20_000_000_000u64, "{up}");
    // The operator sees the defaults, the ceilings, and what this plugin asked for.
    let listed = op.ok(&["plugins", "list"]).await;
    assert!(
        listed.contains("limits: components up to 8388608 bytes, 16 core instances"),
        "{listed}"
    );
    let cores = table
        .lines()
        .find_map(|line| line.strip_prefix("max-core-instances = "))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(hotswap_plugin_host::Limits::default().max_core_instances);
    assert!(
        listed.contains(&format!("a plugin may ask at upload for up to: max-component-bytes=33554432 max-core-instances={cores}")),
        "{listed}"
    );
    assert!(listed.contains("fuel-per-call=20000000000"), "{listed}");
    let _fleet = crate::cli::example_fleet(&url, admin.trim(), 20, 0.0).await;
    let started = op
        .deploy(
            "2.0.0",
            &[
                "--filter",
                "model=sensor-v1",
                "--strategy",
                name,
                "--config",
                try_it.config,
                "--health-config",
                r#"{"pollSeconds": 1}"#,
            ],
        )
        .await;
    let id = started["id"].as_i64().unwrap().to_string();
    let ran = op
        .run(&["deployments", "watch", &id, "--interval", "0.2"])
        .await;
    assert_eq!(ran.code, Some(0), "completed: {ran:#?}");
    assert!(ran.out.contains(try_it.first_wave), "{}", ran.out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_strategy_goes_from_plugin_new_to_a_deployment_under_raised_limits() {
    interpreted_strategy(
        "python",
        "py-halves",
        &[],
        (&["python3", "-m", "unittest", "-v"], "Ran 2 tests"),
        &TEMPLATE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_javascript_examples_build_check_and_run_a_deployment() {
    interpreted_strategy(
        "python",
        "by-region-py",
        &[],
        (&["python3", "-m", "unittest", "-v"], "Ran 3 tests"),
        &Trial {
            example: Some("plugins-examples/strategies/by-region-py"),
            ..BY_REGION
        },
    )
    .await;
    interpreted_strategy(
        "js",
        "by-region-js",
        &[&["npm", "install", "--no-audit", "--no-fund"]],
        (&["npm", "test"], "# pass 3"),
        &Trial {
            example: Some("plugins-examples/strategies/by-region-js"),
            ..BY_REGION
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_strategy_goes_from_plugin_new_to_a_deployment_under_raised_limits() {
    // componentize-js from the npm registry, into the project's own node_modules.
    interpreted_strategy(
        "js",
        "js-halves",
        &[&["npm", "install", "--no-audit", "--no-fund"]],
        (&["npm", "test"], "# pass 2"),
        &TEMPLATE,
    )
    .await;
}

/// The attacks a hostile strategy makes on request (`{"attack": ...}`), in each language.
const PY_HOSTILE: &str = r#"
import json

import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return types.Description("py-hostile", "0.1.0", "attacks on request", "{}")

    def plan(self, params, fleet):
        attack = json.loads(params).get("attack")
        if attack == "loop":
            while True:
                pass
        if attack == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if attack == "raise":
            raise RuntimeError("boom")
        gate = types.Gate(0, 95, 0, 1)
        devices = list(range(len(fleet.id_ends)))
        return types.Plan([types.Wave("all", devices, types.Mode.INSTALL, gate, None)])
"#;

const JS_HOSTILE: &str = r#"
export function describe() {
  return { name: "js-hostile", version: "0.1.0", summary: "attacks on request", paramsSchema: "{}" };
}

export function plan(params, fleet) {
  const attack = JSON.parse(params).attack;
  if (attack === "loop") for (;;) {}
  if (attack === "alloc") { const hoard = []; for (;;) hoard.push(new Uint8Array(1 << 24)); }
  if (attack === "raise") throw new Error("boom");
  const gate = { soakSeconds: 0, minSuccessPercent: 95, failureBudget: 0, minSample: 1 };
  return { waves: [{ name: "all", devices: [...fleet.idEnds.keys()], mode: "install", gate, maxInFlight: undefined }] };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_python_and_javascript_strategies_are_refused_or_stopped_by_name() {
    let op = Operator::new();
    // The limits the projects need, with a tighter fuel budget so a loop ends in seconds.
    let limits = "[plugin-limits]\nmax-component-bytes = 33554432\nmax-core-instances = 64\nfuel-per-call = 4000000000\ndeadline-ms = 15000\n";
    std::fs::write(op.path("limits.toml"), limits).unwrap();
    let check = ["--server-config", "../limits.toml"];
    ok_in(
        &op,
        ".",
        &[
            "plugin",
            "new",
            "strategy",
            "py-hostile",
            "--lang",
            "python",
        ],
    )
    .await;
    std::fs::write(op.path("py-hostile/app.py"), PY_HOSTILE).unwrap();
    ok_in(
        &op,
        ".",
        &["plugin", "new", "strategy", "js-hostile", "--lang", "js"],
    )
    .await;
    std::fs::write(op.path("js-hostile/app.js"), JS_HOSTILE).unwrap();
    let npm = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(op.path("js-hostile"))
        .output()
        .unwrap();
    assert!(
        npm.status.success(),
        "{}",
        String::from_utf8_lossy(&npm.stderr)
    );
    for name in ["py-hostile", "js-hostile"] {
        let mut build = vec!["plugin", "build"];
        build.extend(check);
        ok_in(&op, name, &build).await;
    }

    // Built without the flags that stub WASI out: refused, the WASI import named.
    let tool = |program: PathBuf, args: &[&str], dir: &str| {
        let out = std::process::Command::new(program)
            .args(args)
            .current_dir(op.path(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tool(
        componentize_py(),
        &[
            "-d",
            "wit",
            "-w",
            "strategy",
            "componentize",
            "app",
            "-o",
            "wasi.wasm",
        ],
        "py-hostile",
    );
    tool(
        op.path("js-hostile/node_modules/.bin/componentize-js"),
        &[
            "app.js",
            "--wit",
            "wit",
            "--world-name",
            "strategy",
            "-o",
            "wasi.wasm",
        ],
        "js-hostile",
    );
    for name in ["py-hostile", "js-hostile"] {
        let mut args = vec!["plugin", "check", "wasi.wasm"];
        args.extend(check);
        let refused = run_in(&op, name, &args).await;
        assert_eq!(refused.code, Some(1), "{refused:#?}");
        assert!(
            refused.err.contains("the component imports `wasi:"),
            "{name}: {refused:#?}"
        );
    }

    // Uploaded to a running server, each attack is stopped with its name, and the server
    // goes on planning.
    let dir = data_dir();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = serve_with(dir.path(), port, limits).await;
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    op.login(&url, admin.trim()).await;
    op.register("example:threshold-alarm", "2.0.0").await;
    op.ok(&[
        "devices",
        "register",
        "d-1",
        "--model",
        "sensor-v1",
        "--region",
        "eu-west",
    ])
    .await;
    for name in ["py-hostile", "js-hostile"] {
        op.json(&["plugins", "upload", &format!("{name}/dist/{name}.wasm")])
            .await;
        let dry = |config: String| {
            let op = &op;
            async move {
                let args = [
                    "deployments",
                    "create",
                    "--firmware",
                    "2.0.0",
                    "--model",
                    "sensor-v1",
                    "--devices",
                    "d-1",
                    "--strategy",
                    name,
                    "--config",
                    &config,
                    "--dry-run",
                ];
                op.run(&args).await
            }
        };
        for (attack, named) in [
            ("loop", &["ran out of fuel", "deadline"][..]),
            ("alloc", &["tried to grow its memory"][..]),
            ("raise", &["trapped in `plan`", "boom"][..]),
        ] {
            let ran = dry(format!(r#"{{"attack": "{attack}"}}"#)).await;
            assert_eq!(ran.code, Some(1), "{name} {attack}: {ran:#?}");
            assert!(
                named.iter().any(|n| ran.err.contains(n)),
                "{name} {attack}: expected one of {named:?}: {ran:#?}"
            );
            let ran = dry("{}".into()).await;
            assert_eq!(ran.code, Some(0), "{name} after {attack}: {ran:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_agent_goes_from_plugin_new_to_a_device_that_confirms_it() {
    let op = Operator::new();
    let out = ok_in(&op, ".", &["plugin", "new", "agent", "fan-control"]).await;
    assert!(out.contains("made agent `fan-control`"), "{out}");
    assert!(op.path("fan-control/wit/agent.wit").is_file());
    // Agents are Rust only, and the refusal says why.
    let refused = run_in(
        &op,
        ".",
        &["plugin", "new", "agent", "py-agent", "--lang", "python"],
    )
    .await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(
        refused.err.contains("agents are written in Rust"),
        "{refused:#?}"
    );

    let tested = cargo_test(op.path("fan-control")).await;
    assert!(tested.contains("2 passed"), "{tested}");
    let built = ok_in(&op, "fan-control", &["plugin", "build"]).await;
    assert!(built.contains("built ./dist/fan-control.wasm"), "{built}");
    assert!(built.contains("log info: fan-control ready"), "{built}");
    let file = "dist/fan-control.wasm";
    let checked = ok_in(&op, "fan-control", &["plugin", "check", file]).await;
    assert!(
        checked.contains("ok: agent,") && checked.contains("of the 14080 a slot holds"),
        "{checked}"
    );
    // Without a temperature sensor the self-test fails, as it would on such a device.
    let no_sensor = run_in(
        &op,
        "fan-control",
        &["plugin", "check", file, "--sensor", "humidity=40"],
    )
    .await;
    assert_eq!(no_sensor.code, Some(1), "{no_sensor:#?}");
    assert!(
        no_sensor.err.contains("no plausible temperature reading"),
        "{no_sensor:#?}"
    );
    let simulated = ok_in(
        &op,
        "fan-control",
        &[
            "plugin",
            "simulate",
            file,
            "--sensor",
            "temperature=20..40",
            "--steps",
            "20",
            "--config",
            r#"{"limit": 28}"#,
        ],
    )
    .await;
    assert!(
        simulated.contains("set fan=0") && simulated.contains("set fan=1"),
        "{simulated}"
    );
    assert!(simulated.contains("20 steps: 0 failed"), "{simulated}");

    // Signed as a version and pushed to a device over its pty: tried and confirmed.
    let dir = crate::device_tools::setup();
    let d = dir.path();
    let _device = crate::device_tools::start(d);
    let agent = op.path("fan-control").join(file);
    crate::device_tools::image(d, agent.to_str().unwrap(), "1.1.0");
    let (code, out) = crate::device_tools::hotswap(
        d,
        &[
            "push",
            "--device",
            "tty",
            "--agent",
            "1.1.0.img",
            "--confirm",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(crate::device_tools::status(d).contains("slot 0: 1.1.0 active, confirmed"));
}

/// A health policy from `plugin new health-policy --lang LANG`: its own tests, the real build,
/// and the verdicts over the template's scenario, the same as the Rust template's.
async fn interpreted_health_policy(lang: &str, name: &str, setup: &[&[&str]], unit_test: &[&str]) {
    let op = Operator::new();
    let out = ok_in(
        &op,
        ".",
        &["plugin", "new", "health-policy", name, "--lang", lang],
    )
    .await;
    assert!(
        out.contains(&format!("made health-policy `{name}`")),
        "{out}"
    );
    let project = op.path(name);
    for argv in setup.iter().chain([&unit_test]) {
        in_project(&project, argv);
    }
    let built = ok_in(&op, name, &["plugin", "build"]).await;
    assert!(
        built.contains(&format!("health-policy `{name}` ")),
        "{built}"
    );
    let file = format!("dist/{name}.wasm");
    let limits = ["--server-config", "hotswap.toml"];
    let mut simulate = vec!["plugin", "simulate", &file, "--scenario", "scenario.json"];
    simulate.extend(limits);
    let judged = ok_in(&op, name, &simulate).await;
    for verdict in ["-> wait 5 s", "-> proceed", "-> roll back"] {
        assert!(judged.contains(verdict), "{verdict}: {judged}");
    }
    assert!(
        judged.contains("90 of 900 devices failed, more than 5%"),
        "{judged}"
    );
    // A bad parameter is the policy's refusal, by name.
    let mut bad = simulate.clone();
    bad.extend(["--config", r#"{"maxFailurePercent": 101}"#]);
    let refused = run_in(&op, name, &bad).await;
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(
        refused.err.contains("maxFailurePercent is 101"),
        "{refused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_health_policies_judge_a_scenario_as_the_rust_template_does() {
    interpreted_health_policy(
        "python",
        "py-strict",
        &[],
        &["python3", "-m", "unittest", "-v"],
    )
    .await;
    interpreted_health_policy(
        "js",
        "js-strict",
        &[&["npm", "install", "--no-audit", "--no-fund"]],
        &["npm", "test"],
    )
    .await;
}
