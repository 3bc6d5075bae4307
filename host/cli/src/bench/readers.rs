//! `hotswap readers-bench`: whether expensive reads from one operator starve everyone else. A
//! server in this process over SQLite with a fleet of `--devices`, one viewer keeping `--lists`
//! label-filtered device lists in flight for `--seconds` (each for a site no device is at, so
//! each scans every device's labels: the worst a viewer can ask; a refused one is sent again at
//! once), and another operator reading the firmware list every few milliseconds meanwhile: how
//! long its reads took. Three variants in the same run, alternated: the server as it was (one
//! read connection, no cap on an operator's requests in flight), pooled readers alone, and as
//! it is.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use hotswap_protocol::Role;
use hotswap_server::credentials::{MAX_IN_FLIGHT_PER_OPERATOR, digest, hint, new_secret};
use hotswap_server::{ServerConfig, ServerLimits};
use hotswap_store::{Database, NewDevice, NewToken, SQLITE_READERS, Store, SystemClock};

#[derive(Args)]
pub struct ReadersArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    pub devices: usize,
    /// Label-filtered lists one viewer sends at once.
    #[arg(long, default_value_t = 500)]
    pub lists: usize,
    /// Seconds the viewer keeps its lists in flight.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Runs of each variant, alternated.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
}

/// The server as it was before readers were pooled and operators capped, or as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    OneReader,
    PooledReaders,
    Served,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::OneReader => "one read connection, no in-flight cap",
            Variant::PooledReaders => "pooled readers, no in-flight cap",
            Variant::Served => "as served",
        }
    }
}

/// What one run measured.
struct Run {
    /// The viewer's lists answered in full.
    answered: usize,
    /// The viewer's answers by status.
    statuses: BTreeMap<u16, usize>,
    /// The other operator's reads while the viewer's lists were in flight.
    probes: Vec<Duration>,
}

pub async fn run(a: ReadersArgs, out: &mut dyn Write) -> Result<()> {
    let mut results: BTreeMap<Variant, Vec<Run>> = BTreeMap::new();
    for i in 0..a.runs.max(1) {
        for variant in [Variant::OneReader, Variant::PooledReaders, Variant::Served] {
            let run = once(&a, variant)
                .await
                .with_context(|| format!("run {} of {}", i + 1, variant.name()))?;
            writeln!(
                out,
                "{}: {} lists in flight for {} s, {} answered ({:?}); other operator's reads: median {:.1} ms, p99 {:.1} ms, worst {:.1} ms ({} reads)",
                variant.name(),
                a.lists,
                a.seconds,
                run.answered,
                run.statuses,
                ms(quantile(&run.probes, 0.5)),
                ms(quantile(&run.probes, 0.99)),
                ms(quantile(&run.probes, 1.0)),
                run.probes.len()
            )?;
            results.entry(variant).or_default().push(run);
        }
    }
    writeln!(out, "medians over the runs:")?;
    for (variant, runs) in &results {
        let median_of = |q: f64| {
            let mut v: Vec<Duration> = runs.iter().map(|r| quantile(&r.probes, q)).collect();
            v.sort();
            v[v.len() / 2]
        };
        writeln!(
            out,
            "  {:<40} other operator's read: median {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
            variant.name(),
            ms(median_of(0.5)),
            ms(median_of(0.99)),
            ms(median_of(1.0)),
        )?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}

async fn once(a: &ReadersArgs, variant: Variant) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let readers = match variant {
        Variant::OneReader => 1,
        Variant::PooledReaders | Variant::Served => SQLITE_READERS,
    };
    let store = Store::open_with_readers(
        &Database::Sqlite,
        dir.path(),
        Arc::new(SystemClock),
        readers,
    )?;
    seed(&store, a.devices)?;
    let viewer = token(&store, "viewer", Role::Viewer)?;
    let other = token(&store, "other", Role::Viewer)?;
    let (_, mut config): (_, ServerConfig) = hotswap_server::resolve(
        hotswap_server::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
        Default::default(),
    )?;
    config.limits = ServerLimits {
        operator_in_flight: match variant {
            Variant::OneReader | Variant::PooledReaders => usize::MAX,
            Variant::Served => MAX_IN_FLIGHT_PER_OPERATOR,
        },
        ..ServerLimits::default()
    };
    let state = hotswap_server::state_with_store(&config, store)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hotswap_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    // One try each: a 429 is an answer here, not something to wait out.
    let client = |token: &str| -> Result<hotswap_client::Client> {
        Ok(hotswap_client::Client::new(&url)?
            .retrying(hotswap_client::Retry::ONCE)
            .with_token(token))
    };
    let (viewer, other) = (client(&viewer)?, client(&other)?);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The other operator reads every 5 ms while the viewer's lists are in flight.
    let probing = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let began = Instant::now();
                if other.list_firmware(&Default::default()).await.is_ok() {
                    took.push(began.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            took
        })
    };
    let until = Instant::now() + Duration::from_secs(a.seconds);
    let lists: Vec<_> = (0..a.lists)
        .map(|i| {
            let viewer = viewer.clone();
            tokio::spawn(async move {
                let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                let mut n = 0;
                while Instant::now() < until {
                    let q = hotswap_protocol::DeviceQuery {
                        label: Some(format!("site=nowhere-{i}-{n}")),
                        limit: Some(100),
                        ..Default::default()
                    };
                    n += 1;
                    let status = match viewer.devices(&q).await {
                        Ok(_) => 200,
                        Err(e) => e.status().unwrap_or(0),
                    };
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for l in lists {
        for (status, n) in l.await? {
            *statuses.entry(status).or_default() += n;
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let probes = probing.await?;
    let _ = stop.send(());
    server.await??;
    Ok(Run {
        answered: statuses.get(&200).copied().unwrap_or(0),
        statuses,
        probes,
    })
}

/// The sites the fleet's devices are labelled with (the viewer asks for others).
const SITES: usize = 50;

/// Registers `n` devices, each labelled with one of [`SITES`] sites.
fn seed(store: &Store, n: usize) -> Result<()> {
    let devices: Vec<NewDevice> = (0..n)
        .map(|i| NewDevice {
            device_id: format!("d-{i:06}"),
            device_model: "sensor-v1".into(),
            region: "eu-west".into(),
            labels: [("site".to_string(), format!("s{}", i % SITES))].into(),
            groups: Vec::new(),
            firmware_version: "1.0.0".into(),
            token_sha256: None,
        })
        .collect();
    for batch in devices.chunks(10_000) {
        store.add_devices(batch, false)?;
    }
    Ok(())
}

/// A new API token in `role`; its secret.
fn token(store: &Store, name: &str, role: Role) -> Result<String> {
    let secret = new_secret(hotswap_protocol::auth::API_TOKEN_PREFIX)?;
    store.add_token(&NewToken {
        name: name.into(),
        role,
        sha256: digest(&secret),
        hint: hint(&secret),
        created_by: "readers-bench".into(),
        expires_at: None,
    })?;
    Ok(secret)
}
