//! `hotswap devices import`: the devices of a CSV or JSON file registered in batches, with a
//! progress bar. Each batch is all or nothing on the server; the tokens of every batch taken
//! are written before the next is sent, so a refusal halfway loses none of them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use hotswap_protocol::{BatchAnswer, DeviceBatch, DeviceRegistration, IfRegistered};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Api, usage};

/// Devices per request unless `--batch-size` says otherwise.
pub const DEFAULT_BATCH: usize = 1000;

#[derive(Args)]
pub struct ImportArgs {
    /// A CSV file with a header (`deviceId,deviceModel,region,labels,groups,firmwareVersion`;
    /// labels `k=v;k=v`, groups `a;b`), or a JSON array of registrations.
    pub file: PathBuf,
    /// The file's format [default: from its extension].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Devices per request, 1 to the server's `MAX_BATCH`.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Devices registered already: refuse the batch (`fail`), leave them (`skip`), or give them
    /// new credentials (`reissue`).
    #[arg(long, value_enum, default_value_t = Existing::Fail)]
    pub if_registered: Existing,
    /// Where to write each new device's token (CSV `deviceId,token`, mode 0600): they are
    /// shown this once. Without it, `--json` prints them.
    #[arg(long)]
    pub tokens_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Existing {
    Fail,
    Skip,
    Reissue,
}

impl From<Existing> for IfRegistered {
    fn from(e: Existing) -> Self {
        match e {
            Existing::Fail => IfRegistered::Fail,
            Existing::Skip => IfRegistered::Skip,
            Existing::Reissue => IfRegistered::Reissue,
        }
    }
}

/// One row of the CSV file; column names as the API spells them, or in snake case.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    #[serde(alias = "device_id", alias = "id")]
    #[serde(rename = "deviceId")]
    device_id: String,
    #[serde(alias = "device_model", alias = "model")]
    #[serde(rename = "deviceModel")]
    device_model: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    groups: String,
    #[serde(alias = "firmware_version", alias = "version", default)]
    #[serde(rename = "firmwareVersion")]
    firmware_version: String,
}

/// The devices of `path`, each error naming its line.
pub fn read(path: &Path, format: Option<Format>) -> Result<Vec<DeviceRegistration>> {
    let format = match format {
        Some(f) => f,
        None => match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            _ => {
                return Err(usage(format!(
                    "{}: say --format csv or json (the extension does not)",
                    path.display()
                )));
            }
        },
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
    match format {
        Format::Json => serde_json::from_str(&text).map_err(|e| {
            usage(format!(
                "{}: not a JSON array of device registrations: {e}",
                path.display()
            ))
        }),
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let mut devices = Vec::new();
            for (i, row) in reader.deserialize::<Row>().enumerate() {
                // Line 1 is the header.
                let line = i + 2;
                let row = row.map_err(|e| usage(format!("{} line {line}: {e}", path.display())))?;
                let mut labels = std::collections::BTreeMap::new();
                for pair in row
                    .labels
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        usage(format!(
                            "{} line {line}: a label is key=value, found {pair:?}",
                            path.display()
                        ))
                    })?;
                    labels.insert(k.trim().to_string(), v.trim().to_string());
                }
                devices.push(DeviceRegistration {
                    device_id: row.device_id,
                    device_model: row.device_model,
                    region: row.region,
                    labels,
                    groups: row
                        .groups
                        .split(';')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect(),
                    firmware_version: row.firmware_version,
                });
            }
            Ok(devices)
        }
    }
}

pub async fn run(api: &Api, a: ImportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let max = hotswap_server::api::MAX_BATCH;
    if !(1..=max).contains(&a.batch_size) {
        return Err(usage(format!(
            "--batch-size is 1 to {max}, found {}",
            a.batch_size
        )));
    }
    if a.tokens_out.is_none() && !api.json {
        return Err(usage(
            "the new devices' tokens are shown this once: give --tokens-out FILE (or --json to print them)",
        ));
    }
    let devices = read(&a.file, a.format)?;
    if devices.is_empty() {
        return Err(usage(format!("{} holds no devices", a.file.display())));
    }
    let mut tokens = match &a.tokens_out {
        Some(path) => Some(tokens_file(path)?),
        None => None,
    };
    let client = api.client()?;
    let bar = ProgressBar::with_draw_target(
        Some(devices.len() as u64),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "importing [{bar:30}] {pos}/{len} devices, {per_sec}, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut total = BatchAnswer {
        created: 0,
        skipped: Vec::new(),
        tokens: Vec::new(),
    };
    let batches = devices.chunks(a.batch_size).count();
    for (i, chunk) in devices.chunks(a.batch_size).enumerate() {
        let answer = client
            .register_devices(&DeviceBatch {
                devices: chunk.to_vec(),
                if_registered: a.if_registered.into(),
            })
            .await
            .with_context(|| {
                format!(
                    "batch {} of {batches} (devices {} to {}) refused; {} devices were registered before it{}",
                    i + 1,
                    i * a.batch_size + 1,
                    i * a.batch_size + chunk.len(),
                    total.created,
                    if total.created > 0 { ", rerun with --if-registered skip to go on" } else { "" }
                )
            })?;
        if let Some((file, path)) = tokens.as_mut() {
            for t in &answer.tokens {
                writeln!(file, "{},{}", t.device_id, t.token)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            file.flush()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        total.created += answer.created;
        total.skipped.extend(answer.skipped);
        if api.json {
            total.tokens.extend(answer.tokens);
        }
        bar.inc(chunk.len() as u64);
        if !std::io::stderr().is_terminal() && batches > 1 {
            eprintln!("imported batch {} of {batches}", i + 1);
        }
    }
    bar.finish_and_clear();
    api.print(out, &total, |out, t| {
        writeln!(
            out,
            "imported {} devices from {}: {} registered, {} already registered and left as they were",
            devices.len(),
            a.file.display(),
            t.created,
            t.skipped.len()
        )?;
        if let Some((_, path)) = &tokens {
            writeln!(out, "their tokens are in {} (mode 0600)", path.display())?;
        }
        Ok(())
    })
}

/// A new file only its owner may read, with a header; an existing one is not overwritten.
fn tokens_file(path: &Path) -> Result<(std::io::BufWriter<std::fs::File>, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            usage(format!(
                "--tokens-out {}: {e} (an existing file is not overwritten)",
                path.display()
            ))
        })?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "deviceId,token")?;
    Ok((w, path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_file_reads_with_its_labels_and_groups_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(
            &path,
            "deviceId,deviceModel,region,labels,groups,firmwareVersion\n\
             a-1,sensor-v1,eu-west,site=lyon;env=lab,pilot,1.0.0\n\
             a-2,sensor-v1,us-east,,,\n",
        )
        .unwrap();
        let devices = read(&path, None).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].labels["site"], "lyon");
        assert_eq!(devices[0].groups, vec!["pilot"]);
        assert_eq!(devices[1].region, "us-east");
        std::fs::write(&path, "deviceId,deviceModel,labels\na-1,m,site\n").unwrap();
        let err = read(&path, None).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("key=value"), "{err}");
        let json = dir.path().join("fleet.txt");
        std::fs::write(&json, "[]").unwrap();
        let err = read(&json, None).unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
    }
}
