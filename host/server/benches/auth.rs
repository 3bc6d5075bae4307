//! What checking a credential costs a request: `authenticate` for a device's check-in and for an
//! operator's request, each next to an empty task on the same runtime in the same run (the
//! difference is the check). The credentials are in memory after their first use, as they are
//! for a fleet at work.
//!
//! `cargo bench -p hotswap-server --bench auth`; results go to BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use hotswap_protocol::Permission;
use hotswap_server::api::auth::{Rule, authenticate};
use hotswap_server::credentials::{digest, new_secret};
use hotswap_server::{ServerConfig, ServerLimits};
use hotswap_store::NewDevice;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        database: hotswap_store::Database::Sqlite,
        trusted_keys: Vec::new(),
        limits: ServerLimits::default(),
        tick: std::time::Duration::from_secs(1),
        protected_labels: Vec::new(),
        tls: None,
        enrollment: None,
        unchecked_devices: false,
        plugin_limits: Default::default(),
        plugin_ceilings: Default::default(),
        traces: Default::default(),
    };
    let state = hotswap_server::state(&config).unwrap();
    let device_token = new_secret("hsw_dev_").unwrap();
    state
        .store
        .add_device(NewDevice {
            device_id: "d-1".into(),
            device_model: "sensor-v1".into(),
            region: String::new(),
            labels: Default::default(),
            groups: Vec::new(),
            firmware_version: "1.0.0".into(),
            token_sha256: Some(digest(&device_token)),
        })
        .unwrap();
    let admin = std::fs::read_to_string(dir.path().join(hotswap_server::ADMIN_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let device = format!("Bearer {device_token}");
    let operator = format!("Bearer {admin}");
    let path = "/api/v1/devices/d-1/check-in";
    // First uses fill the caches.
    runtime
        .block_on(authenticate(
            &state,
            Rule::Device,
            Some(&device),
            None,
            path,
        ))
        .unwrap();
    runtime
        .block_on(authenticate(
            &state,
            Rule::Operator(Permission::Read),
            Some(&operator),
            None,
            "/api/v1/firmware",
        ))
        .unwrap();
    let mut group = c.benchmark_group("credential check");
    group.bench_function("empty task (baseline)", |b| {
        b.iter(|| runtime.block_on(async { std::hint::black_box(1) }))
    });
    group.bench_function("device token, its own check-in", |b| {
        b.iter(|| {
            runtime
                .block_on(authenticate(
                    &state,
                    Rule::Device,
                    Some(&device),
                    None,
                    path,
                ))
                .unwrap()
        })
    });
    group.bench_function("API token, read permission", |b| {
        b.iter(|| {
            runtime
                .block_on(authenticate(
                    &state,
                    Rule::Operator(Permission::Read),
                    Some(&operator),
                    None,
                    "/api/v1/firmware",
                ))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
