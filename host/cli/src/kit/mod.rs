//! The plugin author's kit: `hotswap plugin new` writes a project that builds and passes its
//! own tests out of the box (the WIT it needs copied in from the binary), `plugin build` turns
//! it into a component of the right world, `plugin simulate` runs a strategy over a fleet or a
//! health policy over a scenario, and `plugin replay` runs a health policy over every decision a
//! real deployment recorded and shows where it would have decided otherwise.
//!
//! - [`agent`]: the same for device agents (core modules), run in the device VM itself.
//! - [`plans`]: plans printed wave by wave; `hotswap plans`, `plan` and `plugin check`.

pub mod agent;
pub mod plans;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use hotswap_plugin_host::{
    FleetRecord, HealthSample, Plugin, PluginRuntime, RuntimeConfig, WaveStats,
};
use serde::{Deserialize, Serialize};

use crate::usage::UsageError;

/// The WIT of the plugin worlds, as this binary links them: written into every new project.
pub const PLUGIN_WIT: [(&str, &str); 3] = [
    (
        "types.wit",
        include_str!("../../../../wit/plugin/types.wit"),
    ),
    (
        "strategy.wit",
        include_str!("../../../../wit/plugin/strategy.wit"),
    ),
    (
        "health.wit",
        include_str!("../../../../wit/plugin/health.wit"),
    ),
];

/// The WIT of the agent world, as devices run it: written into every new agent project.
pub const AGENT_WIT: [(&str, &str); 1] =
    [("agent.wit", include_str!("../../../../wit/agent/agent.wit"))];

/// The wit-bindgen a new Rust project uses: the version this workspace builds its own plugins
/// with (a test holds the two together).
pub const WIT_BINDGEN_VERSION: &str = "0.61.1";

/// The componentize-py a new Python project is built with (`plugin build` runs the one on
/// PATH, or `COMPONENTIZE_PY`).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The componentize-js a new JavaScript project installs (`npm install`, into its own
/// `node_modules`).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// A project's own description, read by `plugin build`.
pub const MANIFEST: &str = "hotswap-plugin.toml";

/// Where `plugin build` writes the component, inside the project.
pub const DIST: &str = "dist";

/// What a plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Strategy,
    HealthPolicy,
    /// A device agent: a core module for the device's interpreter, not a component.
    Agent,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

impl Kind {
    fn world(self) -> &'static str {
        match self {
            Kind::Strategy => "strategy",
            Kind::HealthPolicy => "health-policy",
            Kind::Agent => "agent",
        }
    }
}

/// The language a plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// `hotswap-plugin.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub kind: Kind,
    pub lang: Lang,
}

#[derive(clap::Args)]
pub struct NewArgs {
    pub kind: Kind,
    /// The plugin's name: lowercase letters, digits and dashes; also the project's folder.
    pub name: String,
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// Where to make the project [default: ./NAME].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The project (the folder with `hotswap-plugin.toml`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

/// The limits a plugin is checked and run under here: the server's.
#[derive(clap::Args)]
pub struct LimitsArgs {
    /// Check and run under the `[plugin-limits]` of this server configuration (`hotswap.toml`)
    /// instead of the defaults.
    #[arg(long)]
    pub server_config: Option<PathBuf>,
}

/// Where the author's tools keep compiled components between runs (a Python component takes
/// seconds to compile): `$XDG_CACHE_HOME/hotswap/compiled`, or `~/.cache/hotswap/compiled`.
/// The cache signs what it writes with a key of its own (see `hotswap_plugin_host`'s cache).
fn compiled_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("hotswap").join("compiled"))
}

impl LimitsArgs {
    /// A plugin runtime under these limits.
    pub fn runtime(&self) -> Result<PluginRuntime> {
        let limits = match &self.server_config {
            Some(path) => hotswap_server::FileConfig::load(path)?.plugin_limits,
            None => Default::default(),
        };
        Ok(PluginRuntime::new(RuntimeConfig {
            limits,
            ceilings: None,
            cache_dir: compiled_cache(),
            // Beside the directory, in the user's own cache directory.
            cache_key_file: None,
        })?)
    }
}

/// A plugin name: what `describe` returns and operators type.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        anyhow::bail!(UsageError(format!(
            "{name:?} is not a plugin name: lowercase letters, digits and dashes, starting with a letter, at most 64"
        )));
    }
    Ok(())
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// `hotswap plugin new`.
pub fn new(a: NewArgs, out: &mut dyn Write) -> Result<()> {
    check_name(&a.name)?;
    match (a.lang, a.kind) {
        (_, Kind::Strategy | Kind::HealthPolicy) | (Lang::Rust, Kind::Agent) => {}
        (lang, Kind::Agent) => anyhow::bail!(UsageError(format!(
            "--lang {}: agents are written in Rust, as they must fit a {}-byte device slot with the code that runs them (an interpreter of {} does not)",
            lang.name(),
            agent::MAX_AGENT_BYTES,
            if lang == Lang::Python {
                "Python"
            } else {
                "JavaScript"
            }
        ))),
    }
    let dir = a.dir.unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some())? {
        anyhow::bail!(UsageError(format!(
            "{} exists and is not empty: nothing written",
            dir.display()
        )));
    }
    let file = format!("{DIST}/{}.wasm", a.name);
    let (source, simulate, use_flag) = match a.kind {
        Kind::Strategy => (
            include_str!("../../templates/rust/strategy.rs"),
            "--devices 1000 --regions 3",
            "strategy",
        ),
        Kind::HealthPolicy => (
            include_str!("../../templates/rust/health-policy.rs"),
            "--scenario scenario.json",
            "health-policy",
        ),
        Kind::Agent => (include_str!("../../templates/agent/lib.rs"), "", ""),
    };
    let (limits, needs) = match a.lang {
        Lang::Python => (
            " --server-config hotswap.toml",
            format!(
                "\nThe build needs componentize-py ({COMPONENTIZE_PY_VERSION}): `pip install componentize-py=={COMPONENTIZE_PY_VERSION}`.\nA Python component bundles the interpreter, so the server must allow it: `hotswap.toml`\nholds the `[plugin-limits]` it needs: the commands below check it under them, and the upload\nasks the server for them (within its `[plugin-ceilings]`).\n"
            ),
        ),
        Lang::Js => (
            " --server-config hotswap.toml",
            format!(
                "\nThe build needs componentize-js ({COMPONENTIZE_JS_VERSION}): `npm install` here installs it.\nA JavaScript component bundles its engine, so the server must allow it: `hotswap.toml`\nholds the `[plugin-limits]` it needs: the commands below check it under them, and the upload\nasks the server for them (within its `[plugin-ceilings]`).\n"
            ),
        ),
        Lang::Rust => ("", String::new()),
    };
    let (lang, test) = match a.lang {
        Lang::Rust => ("Rust", "cargo test"),
        Lang::Python => ("Python", "python3 -m unittest"),
        Lang::Js => ("JavaScript", "npm test"),
    };
    let values = [
        ("name", a.name.as_str()),
        ("kind", a.kind.world()),
        ("lang", lang),
        ("file", file.as_str()),
        ("simulate", simulate),
        ("use", use_flag),
        ("test", test),
        ("wit_bindgen", WIT_BINDGEN_VERSION),
        ("limits", limits),
        (
            "upload_limits",
            if limits.is_empty() {
                ""
            } else {
                " --limits hotswap.toml"
            },
        ),
        ("needs", needs.as_str()),
        ("componentize_js", COMPONENTIZE_JS_VERSION),
    ];
    let readme = match a.kind {
        Kind::Agent => include_str!("../../templates/agent/README.md.tmpl"),
        _ => include_str!("../../templates/README.md.tmpl"),
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (PathBuf::from("README.md"), fill(readme, &values)),
        (
            PathBuf::from(".gitignore"),
            "/target\n/dist\n__pycache__/\nnode_modules/\n".into(),
        ),
        (
            PathBuf::from(MANIFEST),
            toml::to_string(&Manifest {
                name: a.name.clone(),
                kind: a.kind,
                lang: a.lang,
            })?,
        ),
    ];
    match a.lang {
        Lang::Python => {
            let code = match a.kind {
                Kind::HealthPolicy => [
                    include_str!("../../templates/python/health/app.py"),
                    include_str!("../../templates/python/health/logic.py"),
                    include_str!("../../templates/python/health/test_logic.py"),
                ],
                _ => [
                    include_str!("../../templates/python/app.py"),
                    include_str!("../../templates/python/logic.py"),
                    include_str!("../../templates/python/test_logic.py"),
                ],
            };
            for (name, text) in [
                ("app.py", code[0]),
                ("logic.py", code[1]),
                ("test_logic.py", code[2]),
                (
                    "hotswap.toml",
                    include_str!("../../templates/python/hotswap.toml"),
                ),
            ] {
                files.push((PathBuf::from(name), fill(text, &values)));
            }
        }
        Lang::Js => {
            let code = match a.kind {
                Kind::HealthPolicy => [
                    include_str!("../../templates/js/health/app.js"),
                    include_str!("../../templates/js/health/logic.js"),
                    include_str!("../../templates/js/health/logic.test.js"),
                ],
                _ => [
                    include_str!("../../templates/js/app.js"),
                    include_str!("../../templates/js/logic.js"),
                    include_str!("../../templates/js/logic.test.js"),
                ],
            };
            for (name, text) in [
                ("app.js", code[0]),
                ("logic.js", code[1]),
                ("logic.test.js", code[2]),
                (
                    "package.json",
                    include_str!("../../templates/js/package.json"),
                ),
                (
                    "hotswap.toml",
                    include_str!("../../templates/js/hotswap.toml"),
                ),
            ] {
                files.push((PathBuf::from(name), fill(text, &values)));
            }
        }
        Lang::Rust if a.kind == Kind::Agent => {
            files.push((
                PathBuf::from("Cargo.toml"),
                fill(
                    include_str!("../../templates/agent/Cargo.toml.tmpl"),
                    &values,
                ),
            ));
            files.push((
                PathBuf::from(".cargo/config.toml"),
                include_str!("../../templates/agent/config.toml").into(),
            ));
            files.push((PathBuf::from("src/lib.rs"), fill(source, &values)));
        }
        Lang::Rust => {
            files.push((
                PathBuf::from("Cargo.toml"),
                fill(
                    include_str!("../../templates/rust/Cargo.toml.tmpl"),
                    &values,
                ),
            ));
            files.push((PathBuf::from("src/lib.rs"), fill(source, &values)));
        }
    }
    let wit: &[(&str, &str)] = match a.kind {
        Kind::Agent => &AGENT_WIT,
        _ => &PLUGIN_WIT,
    };
    for (name, text) in wit {
        files.push((Path::new("wit").join(name), text.to_string()));
    }
    if a.kind == Kind::HealthPolicy {
        files.push((
            PathBuf::from("scenario.json"),
            include_str!("../../templates/scenario.json").into(),
        ));
    }
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("making {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    writeln!(
        out,
        "made {} `{}` in {} ({} files)\nnext: cd {} && hotswap plugin build && hotswap plugin check {file}",
        a.kind.world(),
        a.name,
        dir.display(),
        files.len(),
        dir.display()
    )?;
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "{}: {e}; a plugin project made by `hotswap plugin new` has one",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// `hotswap plugin build`: the project's own build, then the module as a component of its
/// world, checked as an upload is.
pub fn build(a: BuildArgs, out: &mut dyn Write) -> Result<()> {
    let manifest = read_manifest(&a.dir)?;
    let dist = a.dir.join(DIST);
    std::fs::create_dir_all(&dist).with_context(|| format!("making {}", dist.display()))?;
    let path = dist.join(format!("{}.wasm", manifest.name));
    if manifest.kind == Kind::Agent {
        let module = build_rust(&a.dir, &manifest)?;
        let sensors = agent::sensors(&[])?;
        agent::check(&module, "{}", &sensors, out)
            .context("the built agent, checked as a device checks it")?;
        std::fs::write(&path, &module).with_context(|| format!("writing {}", path.display()))?;
        writeln!(
            out,
            "built {} ({} bytes): agent `{}`",
            path.display(),
            module.len(),
            manifest.name
        )?;
        return Ok(());
    }
    let component = match manifest.lang {
        Lang::Rust => build_rust(&a.dir, &manifest)?,
        Lang::Python => build_python(&a.dir, &manifest, &path)?,
        Lang::Js => build_js(&a.dir, &manifest, &path)?,
    };
    // A project may say what its plugin needs of a server (a Python one does): checked under
    // that, unless told which server's limits to use.
    let own = a.dir.join("hotswap.toml");
    let mut limits = a.limits;
    if limits.server_config.is_none() && own.is_file() {
        writeln!(
            out,
            "checking under the [plugin-limits] of {}",
            own.display()
        )?;
        limits.server_config = Some(own);
    }
    let runtime = limits.runtime()?;
    let plugin = runtime
        .load(&component)
        .context("the built component, checked as an upload is")?;
    let expected = match manifest.kind {
        Kind::Strategy => matches!(plugin, Plugin::Strategy(_)),
        Kind::HealthPolicy => matches!(plugin, Plugin::HealthPolicy(_)),
        Kind::Agent => false,
    };
    if !expected {
        anyhow::bail!(
            "{MANIFEST} says a {}, but the component is a {}",
            manifest.kind.world(),
            plugin.kind()
        );
    }
    let d = plugin.description();
    if d.name != manifest.name {
        writeln!(
            out,
            "note: the component describes itself as `{}`, {MANIFEST} names it `{}`; operators see `{}`",
            d.name, manifest.name, d.name
        )?;
    }
    std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
    writeln!(
        out,
        "built {} ({} bytes): {} `{}` {}",
        path.display(),
        component.len(),
        plugin.kind(),
        d.name,
        d.version
    )?;
    Ok(())
}

/// A tool a build needs, or an error that says how to install it.
fn tool(program: &str, how: &str) -> Result<Command> {
    match Command::new(program).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(Command::new(program)),
        _ => anyhow::bail!("`{program}` is not installed or does not run: {how}"),
    }
}

fn build_rust(dir: &Path, manifest: &Manifest) -> Result<Vec<u8>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = tool(
        &cargo,
        "install Rust with rustup (https://rustup.rs); the build adds the wasm32-unknown-unknown target itself",
    )?;
    hotswap_guest_build::ensure_target_installed(&|note| {
        eprintln!("hotswap plugin build: {note}")
    })?;
    let target = hotswap_guest_build::TARGET;
    // From the project's folder, so that its `.cargo/config.toml` (an agent's stack size)
    // applies.
    let status = cmd
        .current_dir(dir)
        .args(["build", "--release", "--target", target])
        .args(["--manifest-path", "Cargo.toml"])
        // Flags and wrappers meant for a host build are not the plugin's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .context("running cargo")?;
    if !status.success() {
        anyhow::bail!("cargo build for {target} failed ({status}); its output is above");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let module = target_dir
        .join(target)
        .join("release")
        .join(format!("{}.wasm", manifest.name.replace('-', "_")));
    let core = std::fs::read(&module).with_context(|| {
        format!(
            "reading {}: does Cargo.toml's package name match `name` in {MANIFEST}?",
            module.display()
        )
    })?;
    if manifest.kind == Kind::Agent {
        return Ok(core);
    }
    hotswap_guest_build::componentize(&core).with_context(|| {
        format!(
            "turning {} into a component of the `{}` world",
            module.display(),
            manifest.kind.world()
        )
    })
}

fn build_python(dir: &Path, manifest: &Manifest, out: &Path) -> Result<Vec<u8>> {
    let program = std::env::var("COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
    let mut cmd = tool(
        &program,
        &format!(
            "install it with `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` (in a virtual environment), or set COMPONENTIZE_PY to its path"
        ),
    )?;
    let out = std::path::absolute(out)?;
    // `--stub-wasi`: the interpreter's own WASI imports are stubbed, so the component imports
    // only what the world offers.
    let status = cmd
        .current_dir(dir)
        .args([
            "-d",
            "wit",
            "-w",
            manifest.kind.world(),
            "componentize",
            "app",
            "-o",
        ])
        .arg(&out)
        .arg("--stub-wasi")
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        anyhow::bail!("componentize-py failed ({status}); its output is above");
    }
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

fn build_js(dir: &Path, manifest: &Manifest, out: &Path) -> Result<Vec<u8>> {
    let local = std::path::absolute(dir.join("node_modules/.bin/componentize-js"))?;
    let program = std::env::var("COMPONENTIZE_JS")
        .ok()
        .map(PathBuf::from)
        .unwrap_or(local);
    let mut cmd = tool(
        &program.display().to_string(),
        &format!(
            "run `npm install` in {} (it installs componentize-js {COMPONENTIZE_JS_VERSION}), or set COMPONENTIZE_JS to its path",
            dir.display()
        ),
    )?;
    let out = std::path::absolute(out)?;
    // Every WASI feature off: the component imports only what the world offers.
    let status = cmd
        .current_dir(dir)
        .args([
            "app.js",
            "--wit",
            "wit",
            "--world-name",
            manifest.kind.world(),
        ])
        .args([
            "-d",
            "stdio",
            "random",
            "clocks",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(&out)
        .status()
        .with_context(|| format!("running {}", program.display()))?;
    if !status.success() {
        anyhow::bail!("componentize-js failed ({status}); its output is above");
    }
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// Parameters, a JSON object (a health policy's: the scenario's `config` if not given).
    #[arg(long)]
    pub config: Option<String>,
    /// A strategy: the fleet from a JSON file (`{"devices": [{"id": ..., "region": ...,
    /// "version": ..., "groups": [...], "labels": {"key": "value"}, "online": true}]}`).
    #[arg(long, conflicts_with_all = ["devices", "regions", "label"])]
    pub fleet: Option<PathBuf>,
    /// A strategy: this many generated devices.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// A strategy: spread over this many regions (1 to 3).
    #[arg(long, default_value_t = 3)]
    pub regions: usize,
    /// A strategy: `key=value:percent` labels that share of the generated devices (repeatable).
    #[arg(long)]
    pub label: Vec<String>,
    /// A health policy: the scenario, a JSON file of steps, each a wave's `stats` and `samples`
    /// in the form `deployments decisions --json` prints them.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// An agent: a sensor reading, `NAME=VALUE` or `NAME=FROM..TO` moving over the steps
    /// (repeatable) [default: temperature=21.5].
    #[arg(long)]
    pub sensor: Vec<String>,
    /// An agent: how many steps to run after its trial.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    /// Print the plan or the verdicts as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

/// A device of a fleet file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileDevice {
    id: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "yes")]
    online: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    devices: Vec<FileDevice>,
}

/// A health policy's scenario: the steps it is asked about, in order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[serde(default)]
    config: Option<serde_json::Value>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    note: Option<String>,
    stats: hotswap_plan::health::WaveStats,
    #[serde(default)]
    samples: Vec<hotswap_plan::health::HealthSample>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{} is not a {what}: {e}", path.display())).into())
}

fn read(file: &Path) -> Result<Vec<u8>> {
    Ok(std::fs::read(file).map_err(|e| UsageError(format!("reading {}: {e}", file.display())))?)
}

fn load(file: &Path, limits: &LimitsArgs) -> Result<Plugin> {
    Ok(limits.runtime()?.load(&read(file)?)?)
}

/// The generated fleet with `key=value:percent` labels spread over it.
fn generated(a: &SimulateArgs) -> Result<Vec<hotswap_plan::fleet::Device>> {
    let mut devices = hotswap_plan::fleet::generate_devices(a.devices, a.regions);
    for spec in &a.label {
        let bad = || UsageError(format!("--label {spec:?}: expected key=value:percent"));
        let (kv, percent) = spec.rsplit_once(':').ok_or_else(bad)?;
        let (key, value) = kv.split_once('=').ok_or_else(bad)?;
        let percent: u64 = percent.parse().map_err(|_| bad())?;
        if percent > 100 {
            anyhow::bail!(bad());
        }
        for (i, d) in devices.iter_mut().enumerate() {
            // A fixed spread, so the same flags give the same fleet.
            if (i as u64 * 7919 + key.len() as u64) % 100 < percent {
                d.labels.push((key.to_string(), value.to_string()));
            }
        }
    }
    Ok(devices)
}

/// `hotswap plugin simulate`.
pub fn simulate(a: SimulateArgs, out: &mut dyn Write) -> Result<()> {
    let bytes = read(&a.file)?;
    if agent::is_core_module(&bytes) {
        let sensors = agent::sensors(&a.sensor)?;
        let config = a.config.as_deref().unwrap_or("{}");
        return agent::simulate(&bytes, config, &sensors, a.steps, out);
    }
    match a.limits.runtime()?.load(&bytes)? {
        Plugin::Strategy(strategy) => {
            let devices = match &a.fleet {
                Some(path) => {
                    let file: FleetFile = read_json(path, "fleet file")?;
                    file.devices
                        .into_iter()
                        .map(|d| hotswap_plan::fleet::Device {
                            id: d.id,
                            region: d.region,
                            groups: d.groups,
                            labels: d.labels.into_iter().collect(),
                            version: d.version,
                            online: d.online,
                        })
                        .collect()
                }
                None => generated(&a)?,
            };
            let fleet = FleetRecord::from(&hotswap_plan::Fleet::from_devices(&devices));
            let config = a.config.as_deref().unwrap_or("{}");
            let started = std::time::Instant::now();
            let plan = strategy.plan(config, &fleet)?;
            let took = started.elapsed();
            if a.json {
                let waves: Vec<serde_json::Value> = plan
                    .waves
                    .iter()
                    .map(|w| {
                        serde_json::json!({
                            "name": w.name,
                            "mode": w.mode,
                            "gate": w.gate,
                            "maxInFlight": w.max_in_flight,
                            "devices": w.devices.iter().map(|&d| devices[d as usize].id.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "waves": waves }))?
                )?;
                return Ok(());
            }
            writeln!(
                out,
                "{}: {} waves over {} of {} devices, planned in {:.2} ms",
                strategy.name(),
                plan.waves.len(),
                plan.device_count(),
                devices.len(),
                took.as_secs_f64() * 1e3
            )?;
            plans::print_plan(out, &plan, &fleet)
        }
        Plugin::HealthPolicy(policy) => {
            let Some(path) = &a.scenario else {
                anyhow::bail!(UsageError(
                    "a health policy is simulated over a scenario: give --scenario FILE (`plugin new health-policy` writes an example)".into()
                ));
            };
            let scenario: Scenario = read_json(path, "scenario")?;
            let config = match (&a.config, &scenario.config) {
                (Some(c), _) => c.clone(),
                (None, Some(c)) => c.to_string(),
                (None, None) => "{}".into(),
            };
            let mut session = policy.session();
            let mut verdicts = Vec::new();
            for (i, step) in scenario.steps.iter().enumerate() {
                let samples: Vec<HealthSample> = step.samples.iter().map(Into::into).collect();
                let verdict = session.evaluate(&config, &WaveStats::from(&step.stats), &samples)?;
                let s = &step.stats;
                if !a.json {
                    writeln!(
                        out,
                        "step {}{}: wave {}/{}, {} ok, {} failed, {} working -> {verdict}",
                        i + 1,
                        step.note
                            .as_deref()
                            .map(|n| format!(" ({n})"))
                            .unwrap_or_default(),
                        s.wave + 1,
                        s.waves,
                        s.succeeded,
                        s.failed,
                        s.in_progress,
                    )?;
                }
                verdicts.push(verdict);
            }
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&verdicts)?)?;
            }
            Ok(())
        }
    }
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The health policy component (.wasm) to replay.
    pub file: PathBuf,
    /// The deployment whose recorded decisions to replay.
    #[arg(long)]
    pub deployment: i64,
    /// The policy's parameters, a JSON object [default: each decision's own].
    #[arg(long)]
    pub config: Option<String>,
    /// Print each decision, recorded and replayed, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: crate::connection::ServerArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

/// The kind of a verdict: two verdicts of a kind agree, whatever their seconds or reasons.
fn kind(v: &hotswap_plan::health::Verdict) -> &'static str {
    use hotswap_plan::health::Verdict;
    match v {
        Verdict::Proceed => "proceed",
        Verdict::Wait { .. } => "wait",
        Verdict::Pause { .. } => "pause",
        Verdict::RollBack { .. } => "roll back",
    }
}

/// `hotswap plugin replay`: the policy over every decision the deployment recorded, with the
/// inputs recorded beside each.
pub async fn replay(a: ReplayArgs, out: &mut dyn Write) -> Result<()> {
    let policy = match load(&a.file, &a.limits)? {
        Plugin::HealthPolicy(p) => p,
        Plugin::Strategy(_) => anyhow::bail!(UsageError(format!(
            "{} is a strategy: replay runs a health policy over a deployment's decisions",
            a.file.display()
        ))),
    };
    let client = a.server.client()?;
    let mut decisions = client
        .decisions(
            a.deployment,
            &hotswap_protocol::DecisionsQuery {
                limit: hotswap_protocol::deployments::MAX_DECISIONS,
                samples: true,
            },
        )
        .await?;
    decisions.sort_by_key(|d| d.id);
    let mut session = policy.session();
    let (mut differ, mut first) = (0usize, None);
    let mut rows = Vec::new();
    for d in &decisions {
        let samples: Vec<HealthSample> = d.samples.iter().flatten().map(Into::into).collect();
        let config = a.config.as_deref().unwrap_or(&d.config);
        let replayed = session.evaluate(config, &WaveStats::from(&d.stats), &samples);
        let (text, same) = match &replayed {
            Ok(v) => (v.to_string(), kind(v) == kind(&d.verdict)),
            Err(e) => (format!("error: {e}"), false),
        };
        if !same {
            differ += 1;
            first.get_or_insert((d.id, d.wave, text.clone()));
        }
        if a.json {
            rows.push(serde_json::json!({
                "decision": d.id,
                "wave": d.wave,
                "recorded": d.verdict,
                "recordedPolicy": d.policy,
                "replayed": replayed.as_ref().ok(),
                "error": replayed.as_ref().err().map(|e| e.to_string()),
                "agrees": same,
            }));
        } else {
            writeln!(
                out,
                "decision {:>5} wave {:>2} ({} ok, {} failed, {} working): recorded {} by {}; replayed {}{}",
                d.id,
                d.wave + 1,
                d.stats.succeeded,
                d.stats.failed,
                d.stats.in_progress,
                d.verdict,
                d.policy,
                text,
                if same { "" } else { "   <- differs" }
            )?;
        }
    }
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    match first {
        None => writeln!(
            out,
            "{} agrees with all {} decisions deployment {} recorded",
            policy.name(),
            decisions.len(),
            a.deployment
        )?,
        Some((id, wave, verdict)) => writeln!(
            out,
            "{} differs on {differ} of {} decisions; the first is decision {id} (wave {}): it would have answered {verdict}",
            policy.name(),
            decisions.len(),
            wave + 1
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_projects_use_the_wit_bindgen_this_workspace_builds_with() {
        let workspace = include_str!("../../../../Cargo.toml");
        let line = workspace
            .lines()
            .find(|l| l.starts_with("wit-bindgen ="))
            .expect("the workspace names wit-bindgen");
        assert!(
            line.contains(&format!("version = \"{}\"", super::WIT_BINDGEN_VERSION)),
            "{line}"
        );
    }
}
