//! Store write throughput: device check-ins and reports per second, each durable (WAL,
//! `synchronous = FULL`) before it is answered. Batched: many devices at once share a
//! transaction through the store's group-commit writer. One per transaction: devices one after
//! another, each paying a sync.
//!
//! `cargo bench -p hotswap-store --bench store`; results go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hotswap_protocol::{CheckIn, DeploymentState, DeviceState, Health, Report, RetryPolicy};
use hotswap_store::{NewDeployment, NewDevice, NewFirmware, NewWave, Store};

const DEVICES: usize = 2_000;

fn setup() -> (Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for version in ["1.0.0", "2.0.0"] {
        store
            .add_firmware(NewFirmware {
                device_model: "sensor-v1".into(),
                version: version.into(),
                sha256: "00".repeat(32),
                size: 14_080,
                key_id: "k".into(),
                signature: "s".into(),
                security_counter: 0,
                release_notes: String::new(),
                other_models: Vec::new(),
                installed_versions: None,
                sunset_at: None,
            })
            .unwrap();
    }
    for i in 0..DEVICES {
        store
            .add_device(NewDevice {
                device_id: format!("d-{i:05}"),
                device_model: "sensor-v1".into(),
                region: "eu-west".into(),
                labels: BTreeMap::new(),
                groups: vec![],
                firmware_version: "1.0.0".into(),
                token_sha256: None,
            })
            .unwrap();
    }
    (Arc::new(store), dir)
}

fn check_in(i: usize) -> (String, CheckIn) {
    (
        format!("d-{:05}", i % DEVICES),
        CheckIn {
            firmware_version: Some("1.0.0".into()),
            slots: None,
            health: Some(Health {
                healthy: true,
                self_test_passed: true,
                traps: 0,
                fuel_exhausted: 0,
                metrics: BTreeMap::from([("temperature".into(), 21.5)]),
            }),
        },
    )
}

/// A fresh deployment over every device, all handed out.
fn deployment(store: &Store) {
    for d in store.active_deployments().unwrap() {
        store
            .transition(d.id, &[d.state], DeploymentState::Cancelled, "bench")
            .unwrap();
    }
    let devices: Vec<(String, String)> = (0..DEVICES)
        .map(|i| (format!("d-{i:05}"), "1.0.0".to_string()))
        .collect();
    let id = store
        .create_deployment(&NewDeployment {
            firmware_id: 2,
            device_model: "sensor-v1".into(),
            strategy: "direct".into(),
            strategy_config: "{}".into(),
            health_policy: "default".into(),
            health_sha256: None,
            health_config: "{}".into(),
            retry: RetryPolicy {
                device_timeout_seconds: 600,
                max_attempts: 3,
                retry_backoff_seconds: 30,
            },
            created_by: "token:test".into(),
            needs_approval: false,
            excluded: Vec::new(),
            traceparent: None,
            waves: vec![NewWave {
                name: "all".into(),
                mode: hotswap_plan::Mode::Install,
                gate: hotswap_plan::Gate {
                    soak_seconds: 0,
                    min_success_percent: 0,
                    failure_budget: 0,
                    min_sample: 1,
                },
                max_in_flight: None,
                devices,
            }],
        })
        .unwrap();
    let d = store.deployment(id).unwrap();
    store.advance_wave(&d, store.clock().now()).unwrap();
}

fn writes(c: &mut Criterion) {
    let (store, dir) = setup();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("store writes");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));

    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("check-ins, batched (2,000 devices at once)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..DEVICES {
                        let store = store.clone();
                        let (id, c) = check_in(i);
                        tasks.spawn(async move { store.check_in(id, c).await.unwrap() });
                    }
                    tasks.join_all().await;
                }
                started.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(100));
    group.bench_function("check-ins, one per transaction (100 in a row)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    for i in 0..100 {
                        let (id, c) = check_in(i);
                        store.check_in(id, c).await.unwrap();
                    }
                }
                started.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(DEVICES as u64));
    group.bench_function("reports, batched (2,000 devices at once)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                deployment(&store);
                // Each device learns its assignment (untimed), then reports `downloading`.
                let assignments: Vec<(String, i64)> = rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..DEVICES {
                        let store = store.clone();
                        let (id, c) = check_in(i);
                        tasks.spawn(async move {
                            let a = store.check_in(id.clone(), c).await.unwrap().unwrap();
                            (id, a.assignment_id)
                        });
                    }
                    tasks.join_all().await
                });
                total += rt.block_on(async {
                    let started = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for (id, assignment_id) in assignments {
                        let store = store.clone();
                        tasks.spawn(async move {
                            let r = Report {
                                assignment_id,
                                state: DeviceState::Downloading,
                                reason: None,
                                health: None,
                                traceparent: None,
                                took_ms: None,
                            };
                            assert!(store.report(id, r).await.unwrap().applied);
                        });
                    }
                    tasks.join_all().await;
                    started.elapsed()
                });
            }
            total
        })
    });
    group.finish();
    drop(store);
    drop(dir);
}

criterion_group!(benches, writes);
criterion_main!(benches);
