//! Plan printing: a rollout over a generated fleet planned by every built-in strategy (or one,
//! or an uploaded component) in the sandbox, wave by wave, and the default health policy asked
//! about a good and a bad wave. `hotswap plans`, `hotswap plan` and `hotswap plugin check`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use hotswap_plugin_host::{
    FleetRecord, Plugin, PluginRuntime, RuntimeConfig, StrategyPlugin, WaveStats,
};

/// Each built-in strategy with a configuration that shows what it does.
pub const EXAMPLES: [(&str, &str); 5] = [
    (
        "direct",
        r#"{"devices": ["dev-000001", "dev-000002", "dev-000003"]}"#,
    ),
    (
        "regional",
        r#"{"order": ["ap-south", "us-east", "eu-west"], "gate": {"soakSeconds": 300}}"#,
    ),
    (
        "canary",
        r#"{"initialPercentage": 10, "increments": [30, 50, 100], "seed": 7}"#,
    ),
    ("blue-green", r#"{"activateIncrements": [50, 100]}"#),
    (
        "rolling",
        r#"{"batchPercentage": 25, "maxConcurrency": 50}"#,
    ),
];

/// Runs the demonstration over `devices` generated devices in `regions` regions.
pub fn run(
    runtime: &PluginRuntime,
    devices: usize,
    regions: usize,
    out: &mut impl Write,
) -> Result<()> {
    let wit_fleet = FleetRecord::from(&hotswap_plan::fleet::generate(devices, regions));
    writeln!(
        out,
        "HotSwap: planning a rollout over {devices} generated devices in {regions} regions"
    )?;
    writeln!(
        out,
        "each strategy is a WebAssembly component running in the sandbox\n"
    )?;
    for (name, config) in EXAMPLES {
        let strategy = runtime.builtin_strategy(name)?;
        let started = Instant::now();
        let plan = strategy.plan(config, &wit_fleet)?;
        let took = started.elapsed();
        writeln!(
            out,
            "== {} ({})",
            strategy.name(),
            strategy.description().summary
        )?;
        writeln!(out, "   config {config}")?;
        print_plan(out, &plan, &wit_fleet)?;
        writeln!(out, "   planned in {:.2} ms\n", took.as_secs_f64() * 1e3)?;
    }

    let policy = runtime.builtin_health_policy("default")?;
    writeln!(
        out,
        "== {} ({})",
        policy.name(),
        policy.description().summary
    )?;
    let gate = hotswap_plan::Gate {
        soak_seconds: 60,
        min_success_percent: 95,
        failure_budget: 5,
        min_sample: 10,
    };
    let wave = |succeeded, failed| {
        WaveStats::from(&hotswap_plan::health::WaveStats {
            wave: 0,
            waves: 4,
            mode: hotswap_plan::Mode::Install,
            gate,
            targeted: 100,
            succeeded,
            failed,
            in_progress: 100 - succeeded - failed,
            elapsed_seconds: 120,
            settled_seconds: (succeeded + failed == 100).then_some(90),
            deployment_targeted: 1000,
            deployment_succeeded: succeeded,
            deployment_failed: failed,
        })
    };
    for (label, stats) in [
        ("healthy canary", wave(99, 1)),
        ("still running", wave(40, 1)),
        ("failing canary", wave(70, 30)),
    ] {
        let verdict = policy.evaluate("{}", &stats, &[])?;
        writeln!(
            out,
            "   {label:<15} {} ok, {} failed -> {verdict}",
            stats.succeeded, stats.failed
        )?;
    }
    Ok(())
}

/// Prints one line per wave: name, mode, size, devices per region, gate.
pub fn print_plan(
    out: &mut (impl Write + ?Sized),
    plan: &hotswap_plan::Plan,
    fleet: &FleetRecord,
) -> Result<()> {
    for (i, wave) in plan.waves.iter().enumerate() {
        let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
        for &d in &wave.devices {
            let region = fleet.region[d as usize] as usize;
            *per_region
                .entry(fleet.regions[region].as_str())
                .or_default() += 1;
        }
        let regions: Vec<String> = per_region.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let in_flight = wave
            .max_in_flight
            .map_or(String::new(), |m| format!(", at most {m} at once"));
        writeln!(
            out,
            "   wave {:>2} {:<14} {:<8} {:>6} devices  [{}]  soak {}s, >= {}% ok, <= {} failures{in_flight}",
            i + 1,
            wave.name,
            wave.mode.to_string(),
            wave.devices.len(),
            regions.join(", "),
            wave.gate.soak_seconds,
            wave.gate.min_success_percent,
            wave.gate.failure_budget,
        )?;
    }
    Ok(())
}

/// Plans with `strategy` over a generated fleet and prints it; used by `hotswap plan` and
/// `hotswap plugin check`.
pub fn plan_generated(
    strategy: &StrategyPlugin,
    config: &str,
    devices: usize,
    regions: usize,
    out: &mut impl Write,
) -> Result<()> {
    let fleet = FleetRecord::from(&hotswap_plan::fleet::generate(devices, regions));
    let started = Instant::now();
    let plan = strategy.plan(config, &fleet)?;
    let took = started.elapsed();
    writeln!(
        out,
        "{}: {} waves over {} of {devices} devices, planned in {:.2} ms",
        strategy.name(),
        plan.waves.len(),
        plan.device_count(),
        took.as_secs_f64() * 1e3
    )?;
    print_plan(out, &plan, &fleet)
}

/// A generated fleet to plan over.
#[derive(Args)]
pub struct FleetArgs {
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    #[arg(long, default_value_t = 3)]
    pub regions: usize,
}

#[derive(Args)]
pub struct PlanArgs {
    /// A built-in strategy: direct, regional, canary, blue-green, rolling.
    #[arg(long)]
    pub strategy: String,
    /// The strategy's configuration, a JSON object.
    #[arg(long, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Make a plugin (or device agent) project that builds and passes its own tests out of the
    /// box.
    New(super::NewArgs),
    /// Build the project in this folder (or DIR) into a component of its world.
    Build(super::BuildArgs),
    /// Check a component the way an upload is checked, print its description and parameter
    /// schema, then run it once on a generated fleet; or an agent (a core module) the way a
    /// device checks it, then try it.
    Check(CheckArgs),
    /// Run a strategy over a fleet, a health policy over a scenario of waves, or an agent over
    /// steps of sensor readings.
    Simulate(super::SimulateArgs),
    /// Run a health policy over every decision a deployment recorded, and show where it would
    /// have decided otherwise.
    Replay(super::ReplayArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// Parameters to run it with, a JSON object.
    #[arg(long, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// An agent: a sensor reading its trial sees, `NAME=VALUE` (repeatable)
    /// [default: temperature=21.5].
    #[arg(long)]
    pub sensor: Vec<String>,
    #[command(flatten)]
    pub limits: super::LimitsArgs,
}

/// `hotswap plan`.
pub fn plan(a: PlanArgs, out: &mut impl Write) -> Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let strategy = runtime.builtin_strategy(&a.strategy)?;
    plan_generated(&strategy, &a.config, a.fleet.devices, a.fleet.regions, out)
}

/// `hotswap plugin check`.
pub fn check(a: CheckArgs, out: &mut impl Write) -> Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    // An agent runs in the device VM: no plugin engine is started for it.
    if super::agent::is_core_module(&bytes) {
        let sensors = super::agent::sensors(&a.sensor)?;
        return super::agent::check(&bytes, &a.config, &sensors, out);
    }
    let plugin = a.limits.runtime()?.load(&bytes)?;
    let d = plugin.description();
    writeln!(
        out,
        "ok: {} plugin `{}` version {}: {}",
        plugin.kind(),
        d.name,
        d.version,
        d.summary
    )?;
    writeln!(out, "sha256 {}", plugin.content_hash())?;
    // The schema as the plugin wrote it, indented when it is JSON.
    let schema = serde_json::from_str::<serde_json::Value>(&d.params_schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| d.params_schema.clone());
    writeln!(out, "parameters (JSON Schema):\n{schema}")?;
    match plugin {
        Plugin::Strategy(s) => plan_generated(&s, &a.config, a.fleet.devices, a.fleet.regions, out),
        Plugin::HealthPolicy(h) => {
            let stats = WaveStats::from(&hotswap_plan::health::WaveStats {
                wave: 0,
                waves: 2,
                mode: hotswap_plan::Mode::Install,
                gate: hotswap_plan::Gate {
                    soak_seconds: 0,
                    min_success_percent: 95,
                    failure_budget: 10,
                    min_sample: 10,
                },
                targeted: 100,
                succeeded: 97,
                failed: 3,
                in_progress: 0,
                elapsed_seconds: 60,
                settled_seconds: Some(30),
                deployment_targeted: 1000,
                deployment_succeeded: 97,
                deployment_failed: 3,
            });
            let verdict = h.evaluate(&a.config, &stats, &[])?;
            writeln!(out, "a wave of 100 with 97 ok and 3 failed -> {verdict}")?;
            Ok(())
        }
    }
}
