//! Plan printing: a rollout over a generated fleet planned by every built-in strategy (or one,
//! or an uploaded component) in the sandbox, wave by wave, and the default health policy asked
//! about a good and a bad wave. `hotswap plans`, `hotswap plan` and `hotswap plugin check`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::Result;

use hotswap_plugin_host::{Fleet, PluginRuntime, StrategyPlugin, WaveStats};

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
    let wit_fleet = Fleet::from(&hotswap_plan::fleet::generate(devices, regions));
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
    fleet: &Fleet,
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
    let fleet = Fleet::from(&hotswap_plan::fleet::generate(devices, regions));
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
