//! Plugin runtime benchmarks: a canary plan over 100,000 devices in the sandbox and natively
//! (their ratio is the price of the sandbox), a warm health verdict, a pooled instantiation.
//!
//! `cargo bench -p hotswap-plugin-host --bench plugins`; results go to BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hotswap_plugin_host::{FleetRecord, PluginRuntime, RuntimeConfig, WaveStats};

const CANARY: &str = r#"{"initialPercentage": 10, "increments": [30, 50, 100], "seed": 7}"#;

fn plugins(c: &mut Criterion) {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let fleet = FleetRecord::from(&hotswap_plan::fleet::generate(100_000, 3));
    let canary = runtime.builtin_strategy("canary").unwrap();

    let mut group = c.benchmark_group("canary plan, 100k devices");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("wasm component", |b| {
        b.iter(|| black_box(canary.plan(CANARY, black_box(&fleet)).unwrap()))
    });
    let direct = runtime.builtin_strategy("direct").unwrap();
    group.bench_function("hand-over only (direct, one wave)", |b| {
        b.iter(|| black_box(direct.plan("{}", black_box(&fleet)).unwrap()))
    });
    group.bench_function("native", |b| {
        b.iter(|| black_box(hotswap_plan::canary::plan(CANARY, black_box(&fleet)).unwrap()))
    });
    group.finish();

    let policy = runtime.builtin_health_policy("default").unwrap();
    let mut session = policy.session();
    let native = hotswap_plan::health::WaveStats {
        wave: 1,
        waves: 4,
        mode: hotswap_plan::Mode::Install,
        gate: hotswap_plan::Gate {
            soak_seconds: 60,
            min_success_percent: 95,
            failure_budget: 10,
            min_sample: 10,
        },
        targeted: 200,
        succeeded: 150,
        failed: 2,
        in_progress: 48,
        elapsed_seconds: 30,
        settled_seconds: None,
        deployment_targeted: 1000,
        deployment_succeeded: 250,
        deployment_failed: 3,
    };
    let stats = WaveStats::from(&native);
    c.bench_function("health verdict, warm session", |b| {
        b.iter(|| black_box(session.evaluate("{}", black_box(&stats), &[]).unwrap()))
    });
    c.bench_function("health verdict, native", |b| {
        b.iter(|| {
            black_box(
                hotswap_plan::health::evaluate::<hotswap_plan::health::HealthSample>(
                    "{}",
                    black_box(&native),
                    &[],
                )
                .unwrap(),
            )
        })
    });
    c.bench_function("pooled instantiation (canary)", |b| {
        b.iter(|| canary.instantiate().unwrap())
    });
}

criterion_group!(benches, plugins);
criterion_main!(benches);
