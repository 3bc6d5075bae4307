//! The README's main command: the whole mission at once. A server on a temporary data directory,
//! agent versions 1.0.0, 2.0.0 and a broken 3.0.0 registered and signed, a simulated fleet on the
//! device VM running 1.0.0, a canary rollout of 2.0.0 to completion, then a rollout of 3.0.0 that
//! the health policy stops and rolls back.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::sim::{Release, ReleaseKey};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use crate::api::ServerLimits;
use crate::server::{ServerConfig, serve, state};
use crate::sim::{Fleet, FleetConfig, Summary};

/// What the story is told over.
#[derive(Debug, Clone)]
pub struct StoryConfig {
    pub devices: usize,
    /// Where the server keeps its data; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Draw progress bars (on a terminal); plain lines otherwise.
    pub progress_bars: bool,
    /// Soak time of each canary wave, in seconds.
    pub soak_seconds: u32,
}

/// How the story ended.
#[derive(Debug, Clone)]
pub struct StoryOutcome {
    pub v2: Value,
    pub v3: Value,
    pub fleet: Summary,
}

/// `image` with a custom section naming `tag`: the same agent, distinct bytes per version.
pub fn tagged(image: &[u8], tag: &str) -> Vec<u8> {
    let name = b"hotswap-version";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    assert!(content.len() < 128, "a one-byte section size");
    let mut out = image.to_vec();
    out.push(0);
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

/// The registration body (`POST /api/v1/firmware`) of a signed release for `device_model`.
pub fn registration(release: &Release, device_model: &str, notes: &str) -> Value {
    json!({
        "version": release.manifest.version.to_string(),
        "deviceModel": device_model,
        "releaseNotes": notes,
        "checksum": format!("sha256:{}", hex::encode(release.manifest.sha256)),
        "binary": base64::engine::general_purpose::STANDARD.encode(&release.image),
        "signature": hex::encode(release.signature),
        "securityCounter": release.manifest.security_counter,
    })
}

/// POSTs `body`; an answer that is not a success is an error with the server's message.
pub(crate) async fn post(client: &reqwest::Client, url: String, body: &Value) -> Result<Value> {
    let r = client.post(&url).json(body).send().await?;
    let status = r.status();
    let answer: Value = r.json().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", answer["error"]["message"]);
    }
    Ok(answer)
}

/// Runs the story, writing what happens to `out`.
pub async fn run(config: StoryConfig, out: &mut (impl Write + Send)) -> Result<StoryOutcome> {
    let temporary = config.data_dir.is_none();
    let dir = config.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("hotswap-demo-{}", std::process::id()))
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let key = ReleaseKey::from_seed(*b"hotswap demo release key, 32 by.");
    let server_config = ServerConfig {
        data_dir: dir.clone(),
        trusted_keys: vec![key.trusted()],
        limits: ServerLimits::default(),
        tick: Duration::from_millis(100),
    };
    let app = state(&server_config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    writeln!(
        out,
        "HotSwap demo: server on {url}, data in {}",
        dir.display()
    )?;

    let client = reqwest::Client::new();
    let agent = hotswap_agents::THRESHOLD_ALARM;
    let releases = [
        (
            key.release(Version::new(1, 0, 0), &tagged(agent, "1.0.0"), 0),
            "threshold alarm",
        ),
        (
            key.release(Version::new(2, 0, 0), &tagged(agent, "2.0.0"), 0),
            "threshold alarm, faster",
        ),
        (
            key.release(
                Version::new(3, 0, 0),
                &tagged(hotswap_agents::FAILING_SELF_TEST, "3.0.0"),
                0,
            ),
            "broken build: its self-test fails",
        ),
    ];
    for (release, notes) in &releases {
        post(
            &client,
            format!("{url}/api/v1/firmware"),
            &registration(release, "sensor-v1", notes),
        )
        .await
        .context("registering firmware")?;
        writeln!(
            out,
            "registered agent {} ({} bytes, signed): {notes}",
            release.manifest.version,
            release.image.len()
        )?;
    }

    let mut fleet_config = FleetConfig::new(&url, config.devices);
    fleet_config.poll = Duration::from_millis(250);
    let device_config = DeviceConfig {
        keys: vec![key.trusted()],
        allow_downgrade: false,
    };
    let fleet = Fleet::start(fleet_config, device_config, &releases[0].0).await?;
    writeln!(
        out,
        "started {} simulated devices in 3 regions, each on the device VM running agent 1.0.0",
        config.devices
    )?;
    writeln!(
        out,
        "next: 2.0.0 goes out by canary (10% of the devices, then 50%, then all), each wave judged \
         by the health policy; then the broken 3.0.0 the same way, which the policy must stop\n"
    )?;

    let mut outcomes = Vec::new();
    for (version, title) in [
        ("2.0.0", "canary rollout of 2.0.0"),
        ("3.0.0", "canary rollout of the broken 3.0.0"),
    ] {
        writeln!(out, "== {title}")?;
        let body = json!({
            "firmwareVersion": version,
            "deviceModel": "sensor-v1",
            "targetFilter": {},
            "strategy": "canary",
            "config": {"initialPercentage": 10, "increments": [50, 100], "gate": {"soakSeconds": config.soak_seconds}},
            "healthConfig": {"pollSeconds": 1},
            "deviceTimeoutSeconds": 60,
        });
        let started = post(&client, format!("{url}/api/v1/deployments"), &body).await?;
        let id = started["id"].as_i64().context("a deployment id")?;
        let status = follow(&client, &url, id, &config, out).await?;
        for w in status["waveStatus"].as_array().into_iter().flatten() {
            // Every device of a wave accounted for: updated, failed, or called off by a rollback
            // before it activated the new version; a wave the rollout never reached says so.
            let counts = if w["startedAt"].is_null() {
                "not started".to_string()
            } else {
                let mut counts = format!("{} updated, {} failed", w["succeeded"], w["failed"]);
                match w["states"]["cancelled"].as_u64().unwrap_or(0) {
                    0 => {}
                    n => counts.push_str(&format!(", {n} called off by the rollback")),
                }
                counts
            };
            writeln!(
                out,
                "  wave {} ({}): {} devices, {counts}",
                w["index"].as_u64().unwrap_or(0) + 1,
                w["name"].as_str().unwrap_or(""),
                w["devices"],
            )?;
        }
        writeln!(
            out,
            "deployment {id}: {} ({})",
            status["state"].as_str().unwrap_or("?"),
            status["reason"].as_str().unwrap_or("")
        )?;
        outcomes.push(status);
    }
    // Let every device check in once more, then sum up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let summary = fleet.stop().await;
    writeln!(out, "\n== the fleet at the end\n{summary}")?;
    let _ = stop_server.send(());
    server.await??;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let v3 = outcomes.pop().unwrap_or_default();
    let v2 = outcomes.pop().unwrap_or_default();
    Ok(StoryOutcome {
        v2,
        v3,
        fleet: summary,
    })
}

/// Follows a deployment to its end with a progress bar per wave.
async fn follow(
    client: &reqwest::Client,
    url: &str,
    id: i64,
    config: &StoryConfig,
    out: &mut (impl Write + Send),
) -> Result<Value> {
    let bars = MultiProgress::with_draw_target(if config.progress_bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("  {prefix:<22} [{bar:40}] {pos:>5}/{len:<5} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut wave_bars: Vec<ProgressBar> = Vec::new();
    let mut seen_events = std::collections::HashSet::new();
    loop {
        let status: Value = client
            .get(format!("{url}/api/v1/deployments/{id}/status"))
            .send()
            .await?
            .json()
            .await?;
        let waves = status["waveStatus"].as_array().cloned().unwrap_or_default();
        for (i, w) in waves.iter().enumerate() {
            if wave_bars.len() <= i {
                let bar = bars.add(ProgressBar::new(w["devices"].as_u64().unwrap_or(0)));
                bar.set_style(style.clone());
                bar.set_prefix(format!(
                    "wave {} ({})",
                    i + 1,
                    w["name"].as_str().unwrap_or("")
                ));
                wave_bars.push(bar);
            }
            let done = w["succeeded"].as_u64().unwrap_or(0) + w["failed"].as_u64().unwrap_or(0);
            wave_bars[i].set_position(done);
            wave_bars[i].set_message(format!("{} ok, {} failed", w["succeeded"], w["failed"]));
        }
        // Events as plain lines: wave starts, verdicts, failures (the first few of each kind).
        if let Some(events) = status["recentEvents"].as_array() {
            for e in events {
                let line = e["message"].as_str().unwrap_or("").to_string();
                let key = (e["at"].as_i64(), line.clone(), e["deviceId"].clone());
                if seen_events.insert(format!("{key:?}")) && e["deviceId"].is_null() {
                    bars.suspend(|| writeln!(out, "  {line}"))?;
                }
            }
        }
        let state = status["state"].as_str().unwrap_or("");
        if matches!(state, "completed" | "rolled-back" | "paused" | "cancelled") {
            for b in &wave_bars {
                b.abandon();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
