//! The operator's commands: one for every action of the API, on the typed client. Each prints a
//! table or a summary, or with `--json` the API's own JSON; a refusal is the server's message as
//! it said it (exit code [`REFUSED`]).

mod import;
mod show;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use hotswap_client::Client;
use hotswap_protocol::{
    AuditQuery, DecisionsQuery, DeploymentRequest, DeviceQuery, DeviceRegistration, DeviceStatus,
    FirmwareQuery, FirmwareStatus, GroupCreation, GroupFilter, Role, Spelling, TokenRequest,
    UnixSeconds, UserRequest,
};
use hotswap_protocol::{DeploymentAction, StandingChange};
use serde::Serialize;

use crate::connection::ServerArgs;
use crate::usage::usage;
pub use watch::{CANCELLED_OR_PAUSED, ROLLED_BACK};

/// What every operator command takes: where to connect, and how to print.
#[derive(Args, Clone)]
pub struct Api {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the API's own JSON instead of a table, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Api {
    fn client(&self) -> Result<Client> {
        self.server.client()
    }

    /// Prints `value` as JSON with `--json`, else as `human` writes it.
    fn print<T: Serialize>(
        &self,
        out: &mut dyn Write,
        value: &T,
        human: impl FnOnce(&mut dyn Write, &T) -> Result<()>,
    ) -> Result<ExitCode> {
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        } else {
            human(&mut show::Escaped::new(out), value)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Args)]
pub struct FirmwareArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: FirmwareCommand,
}

#[derive(Subcommand)]
pub enum FirmwareCommand {
    /// Sign an agent as a version with a release key and register it.
    Register(crate::operator::release::SignArgs),
    /// The versions, newest first.
    List {
        #[arg(long)]
        model: Option<String>,
        /// Deprecated versions too.
        #[arg(long)]
        all: bool,
    },
    /// One version, with how many devices came to it from which version.
    Show { id: i64 },
    /// No new deployment may use the version.
    Deprecate { id: i64 },
    /// After `--at`, the version can no longer be deployed; its devices are listed as left
    /// behind.
    Sunset {
        id: i64,
        /// Seconds since the Unix epoch, or `now`.
        #[arg(long)]
        at: String,
    },
}

#[derive(Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: DevicesCommand,
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Register one device; prints its token, shown this once.
    Register {
        id: String,
        #[arg(long)]
        model: String,
        #[arg(long, default_value = "")]
        region: String,
        /// `key=value`, repeated.
        #[arg(long = "label", value_parser = key_value)]
        labels: Vec<(String, String)>,
        /// A group tag, repeated.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The version it runs from the factory.
        #[arg(long, default_value = "")]
        firmware_version: String,
    },
    /// Register the devices of a CSV or JSON file, in batches, with a progress bar.
    Import(import::ImportArgs),
    /// Devices, a page at a time (`--all` follows every page).
    List(ListDevices),
    /// One device with its slots, health and deployment history.
    Show { id: String },
    /// The whole fleet counted by agent version, status and region.
    Summary,
    /// The versions a device went through, oldest first.
    Lineage { id: String },
    /// A pending (enrolled) device may claim its credential.
    Accept {
        id: String,
        /// Only if it enrolled with the key of this fingerprint (`sha256:...`, as `devices
        /// show` prints it): compare with what the device itself shows.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// The device is refused from now on; its credential stops at once.
    Reject { id: String },
    /// The device leaves the fleet; its credential stops at once.
    Decommission { id: String },
}

#[derive(Args)]
pub struct ListDevices {
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    /// `key=value`.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub firmware_version: Option<String>,
    #[arg(long, value_parser = spelled::<DeviceStatus>)]
    pub status: Option<DeviceStatus>,
    /// `current`, `deprecated` or `sunset` (left behind).
    #[arg(long, value_parser = spelled::<FirmwareStatus>)]
    pub firmware_status: Option<FirmwareStatus>,
    /// Devices per page.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// The page after this device id.
    #[arg(long)]
    pub after: Option<String>,
    /// Every page, not the first only.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// A static group (`--devices`) or a dynamic one (`--filter`).
    Create {
        name: String,
        #[arg(long, value_delimiter = ',', conflicts_with = "filter")]
        devices: Vec<String>,
        /// `region=eu-west,label=site=lyon,model=sensor-v1,group=g,version=1.2.0`.
        #[arg(long, value_parser = filter)]
        filter: Option<GroupFilter>,
        /// Deployments to the group's devices wait for an approval.
        #[arg(long)]
        requires_approval: bool,
    },
    List,
    /// A group with the devices it stands for now.
    Show {
        name: String,
    },
}

#[derive(Args)]
pub struct PluginsArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: PluginsCommand,
}

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Upload a strategy or health policy component (.wasm).
    Upload {
        file: PathBuf,
        /// Ask for the limits of this file's `[plugin-limits]` table (a plugin project's
        /// `hotswap.toml`), each at most the server's `[plugin-ceilings]`.
        #[arg(long)]
        limits: Option<PathBuf>,
        /// Ask for one limit, `KEY=VALUE` with a key of `[plugin-limits]` (repeatable; over
        /// `--limits`).
        #[arg(long = "limit", value_name = "KEY=VALUE")]
        limit: Vec<String>,
    },
    /// The built-in and uploaded plugins.
    List,
    /// One plugin, with the JSON Schema of its parameters.
    Show {
        name: String,
        /// Its version [default: the newest].
        #[arg(long)]
        version: Option<String>,
    },
    /// Delete an uploaded plugin no deployment uses.
    Delete { name: String, version: String },
}

#[derive(Args)]
pub struct DeploymentsArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: DeploymentsCommand,
}

#[derive(Subcommand)]
pub enum DeploymentsCommand {
    /// Start a deployment, or print its plan wave by wave with `--dry-run`.
    Create(Box<CreateDeployment>),
    /// The newest first.
    List,
    /// A deployment wave by wave, with its recent events and verdicts.
    Status {
        id: i64,
    },
    /// Follow a deployment to its end: exit 0 completed, 3 rolled back, 4 cancelled or paused.
    Watch {
        id: i64,
        /// Seconds between looks.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Hand out nothing more until resumed.
    Pause {
        id: i64,
    },
    Resume {
        id: i64,
    },
    /// End it; devices not yet updated stay as they are.
    Cancel {
        id: i64,
    },
    /// Send every device it updated back to the version before.
    Rollback {
        id: i64,
    },
    /// Approve a deployment waiting for one (not your own).
    Approve {
        id: i64,
        #[arg(long, default_value = "")]
        remark: String,
    },
    /// Deny a deployment waiting for an approval; it is cancelled.
    Deny {
        id: i64,
        #[arg(long, default_value = "")]
        remark: String,
    },
    /// The health policy's verdicts with what it was shown, oldest first.
    Decisions {
        id: i64,
        /// The newest this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Leave out the health samples each verdict was given.
        #[arg(long)]
        no_samples: bool,
    },
}

#[derive(Args)]
pub struct CreateDeployment {
    /// The version to roll out.
    #[arg(long)]
    pub firmware: String,
    #[arg(long)]
    pub model: String,
    /// Device ids, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["group", "filter"])]
    pub devices: Vec<String>,
    /// A device group by name.
    #[arg(long, conflicts_with = "filter")]
    pub group: Option<String>,
    /// `region=eu-west,label=site=lyon` (the same keys as `groups create --filter`).
    #[arg(long, value_parser = filter)]
    pub filter: Option<GroupFilter>,
    /// A built-in strategy (direct, regional, canary, blue-green, rolling) or an uploaded one.
    #[arg(long, default_value = "canary")]
    pub strategy: String,
    /// The strategy's configuration, a JSON object.
    #[arg(long, conflicts_with = "config_file")]
    pub config: Option<String>,
    /// The strategy's configuration from a JSON file.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// The health policy [default: the server's].
    #[arg(long)]
    pub health_policy: Option<String>,
    /// The health policy's configuration, a JSON object.
    #[arg(long, conflicts_with = "health_config_file")]
    pub health_config: Option<String>,
    #[arg(long)]
    pub health_config_file: Option<PathBuf>,
    /// Seconds a device may go without a report before it is retried.
    #[arg(long)]
    pub device_timeout_seconds: Option<u32>,
    /// Tries per device before it is failed and quarantined.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// The wait before the first retry; it doubles with each.
    #[arg(long)]
    pub retry_backoff_seconds: Option<u32>,
    /// Print the plan wave by wave; start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Make an API token; its secret is printed this once.
    Create {
        name: String,
        /// viewer, operator, release-manager, approver or admin.
        #[arg(long, value_parser = spelled::<Role>)]
        role: Role,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// The tokens (never their secrets).
    List,
    /// The token stops working at once.
    Revoke { id: i64 },
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password comes from `HOTSWAP_PASSWORD` or standard input.
    Create {
        name: String,
        #[arg(long, value_parser = spelled::<Role>)]
        role: Role,
    },
    List,
    /// The user can no longer sign in; its sessions end.
    Disable {
        name: String,
        /// Also revoke every API token the user made.
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Change a user's own password: the current one from `HOTSWAP_PASSWORD` or standard
    /// input, the new one from `HOTSWAP_NEW_PASSWORD` or standard input. No token needed.
    Password {
        name: String,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub api: Api,
    #[arg(long)]
    pub actor: Option<String>,
    /// A piece of the action (`deployments`, `POST`).
    #[arg(long)]
    pub action: Option<String>,
    /// A piece of the object's path.
    #[arg(long)]
    pub object: Option<String>,
    /// Entries at or after this time (seconds since the epoch).
    #[arg(long)]
    pub since: Option<i64>,
    #[arg(long)]
    pub until: Option<i64>,
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `key=value`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, found {s:?}")),
    }
}

/// A state or role by its one spelling.
fn spelled<T: Spelling + Send + Sync + 'static>(s: &str) -> Result<T, String> {
    T::decode(s).map_err(|e| e.to_string())
}

/// `region=eu-west,label=site=lyon,model=m,group=g,version=v`: the label's own `=` is kept.
pub fn filter(s: &str) -> Result<GroupFilter, String> {
    let mut f = GroupFilter::default();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in the filter, found {part:?}"))?;
        let slot = match key {
            "region" => &mut f.region,
            "label" => &mut f.label,
            "model" | "deviceModel" => &mut f.device_model,
            "group" => &mut f.group,
            "version" | "firmwareVersion" => &mut f.firmware_version,
            other => {
                return Err(format!(
                    "no filter key `{other}`: region, label, model, group or version"
                ));
            }
        };
        if slot.replace(value.to_string()).is_some() {
            return Err(format!("`{key}` is given twice in the filter"));
        }
    }
    Ok(f)
}

/// A JSON object from a flag or a file.
fn json_object(
    flag: &str,
    text: Option<&str>,
    file: Option<&PathBuf>,
) -> Result<Option<serde_json::Value>> {
    let (text, origin) = match (text, file) {
        (Some(t), _) => (t.to_string(), format!("--{flag}")),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("reading {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(None),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{origin} is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(usage(format!("{origin} must be a JSON object")));
    }
    Ok(Some(value))
}

pub async fn firmware(a: FirmwareArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        FirmwareCommand::Register(r) => {
            crate::operator::release::run(r, &api.server, api.json, out).await?;
            Ok(ExitCode::SUCCESS)
        }
        FirmwareCommand::List { model, all } => {
            let list = api
                .client()?
                .list_firmware(&FirmwareQuery {
                    device_model: model,
                    include_deprecated: all,
                })
                .await?;
            api.print(out, &list, show::firmware_list)
        }
        FirmwareCommand::Show { id } => {
            let f = api.client()?.firmware(id).await?;
            api.print(out, &f, show::firmware)
        }
        FirmwareCommand::Deprecate { id } => {
            let f = api.client()?.deprecate_firmware(id).await?;
            api.print(out, &f, |out, f| {
                Ok(writeln!(
                    out,
                    "deprecated firmware {} ({} for {})",
                    f.id, f.version, f.device_model
                )?)
            })
        }
        FirmwareCommand::Sunset { id, at } => {
            let at = match at.as_str() {
                "now" => hotswap_protocol::UnixMillis::now().seconds(),
                s => UnixSeconds(s.parse().map_err(|_| {
                    usage(format!(
                        "--at is seconds since the epoch or `now`, found {s:?}"
                    ))
                })?),
            };
            let f = api.client()?.sunset_firmware(id, at).await?;
            api.print(out, &f, |out, f| {
                Ok(writeln!(
                    out,
                    "firmware {} ({} for {}) sunsets at {}",
                    f.id,
                    f.version,
                    f.device_model,
                    show::time(f.sunset_at.unwrap_or(at))
                )?)
            })
        }
    }
}

pub async fn devices(a: DevicesArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        DevicesCommand::Register {
            id,
            model,
            region,
            labels,
            groups,
            firmware_version,
        } => {
            let d = api
                .client()?
                .register_device(&DeviceRegistration {
                    device_id: id,
                    device_model: model,
                    region,
                    labels: labels.into_iter().collect(),
                    groups,
                    firmware_version,
                })
                .await?;
            api.print(out, &d, |out, d| {
                writeln!(
                    out,
                    "registered {} ({})",
                    d.device.device_id, d.device.device_model
                )?;
                writeln!(out, "token (shown this once): {}", d.token)?;
                Ok(())
            })
        }
        DevicesCommand::Import(i) => import::run(api, i, out).await,
        DevicesCommand::List(l) => {
            let client = api.client()?;
            let mut q = DeviceQuery {
                device_model: l.model,
                region: l.region,
                group: l.group,
                label: l.label,
                firmware_version: l.firmware_version,
                status: l.status,
                firmware_status: l.firmware_status,
                after: l.after,
                limit: Some(l.limit),
            };
            let mut page = client.devices(&q).await?;
            if l.all {
                while let Some(next) = page.next.take() {
                    q.after = Some(next);
                    let more = client.devices(&q).await?;
                    page.devices.extend(more.devices);
                    page.next = more.next;
                }
            }
            api.print(out, &page, show::device_page)
        }
        DevicesCommand::Show { id } => {
            let d = api.client()?.device(&id).await?;
            api.print(out, &d, show::device)
        }
        DevicesCommand::Summary => {
            let s = api.client()?.fleet_summary().await?;
            api.print(out, &s, show::fleet_summary)
        }
        DevicesCommand::Lineage { id } => {
            let l = api.client()?.lineage(&id).await?;
            api.print(out, &l, show::lineage)
        }
        DevicesCommand::Accept { id, fingerprint } => {
            let change = (StandingChange::Accept, fingerprint.as_deref());
            standing(api, &id, change, "accepted", out).await
        }
        DevicesCommand::Reject { id } => {
            standing(api, &id, (StandingChange::Reject, None), "rejected", out).await
        }
        DevicesCommand::Decommission { id } => {
            standing(
                api,
                &id,
                (StandingChange::Decommission, None),
                "decommissioned",
                out,
            )
            .await
        }
    }
}

/// Changes a device's standing: `(change, fingerprint of the key it must have enrolled with)`.
async fn standing(
    api: &Api,
    id: &str,
    (standing, fingerprint): (StandingChange, Option<&str>),
    done: &str,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let d = api
        .client()?
        .set_standing_of_key(id, standing, fingerprint)
        .await?;
    api.print(out, &d, |out, d| {
        Ok(writeln!(out, "{done} {}: now {}", d.device_id, d.status)?)
    })
}

pub async fn groups(a: GroupsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        GroupsCommand::Create {
            name,
            devices,
            filter,
            requires_approval,
        } => {
            if devices.is_empty() && filter.is_none() {
                return Err(usage(
                    "a group needs --devices (static) or --filter (dynamic)",
                ));
            }
            let g = api
                .client()?
                .create_group(&GroupCreation {
                    name,
                    devices: (!devices.is_empty()).then_some(devices),
                    filter,
                    requires_approval,
                })
                .await?;
            api.print(out, &g, |out, g| {
                Ok(writeln!(
                    out,
                    "created group {} with {} devices",
                    g.group.name,
                    g.members.len()
                )?)
            })
        }
        GroupsCommand::List => {
            let list = api.client()?.groups().await?;
            api.print(out, &list, show::groups)
        }
        GroupsCommand::Show { name } => {
            let g = api.client()?.group(&name).await?;
            api.print(out, &g, show::group)
        }
    }
}

/// The limits an upload asks for: a file's `[plugin-limits]`, then each `KEY=VALUE` over it.
fn asked_limits(
    file: Option<&std::path::Path>,
    each: &[String],
) -> Result<hotswap_protocol::PluginLimitOverrides> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Project {
        #[serde(default)]
        plugin_limits: toml::Table,
    }
    let mut table = toml::Table::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("reading {}: {e}", path.display())))?;
        let project: Project =
            toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
        table = project.plugin_limits;
    }
    for kv in each {
        let (key, value) = kv.split_once('=').ok_or_else(|| {
            usage(format!(
                "--limit {kv:?}: KEY=VALUE, such as fuel-per-call=20000000000"
            ))
        })?;
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| usage(format!("--limit {kv:?}: the value must be a whole number")))?;
        table.insert(key.trim().to_string(), toml::Value::Integer(value));
    }
    let asked: hotswap_protocol::PluginLimitOverrides = table.try_into().map_err(|e| {
        let keys = hotswap_protocol::PluginLimitOverrides::default()
            .keys()
            .map(|(k, _)| k)
            .join(", ");
        usage(format!(
            "the limits asked for: {e} (a plugin may ask for {keys})"
        ))
    })?;
    Ok(asked)
}

pub async fn plugins(a: PluginsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        PluginsCommand::Upload {
            file,
            limits,
            limit,
        } => {
            let asked = asked_limits(limits.as_deref(), &limit)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| usage(format!("reading {}: {e}", file.display())))?;
            let p = api.client()?.upload_plugin_with(&bytes, &asked).await?;
            api.print(out, &p, |out, p| {
                Ok(writeln!(
                    out,
                    "uploaded {} plugin {} {} (sha256 {})",
                    p.kind, p.name, p.version, p.sha256
                )?)
            })
        }
        PluginsCommand::List => {
            let client = api.client()?;
            let list = client.plugins().await?;
            api.print(out, &list, show::plugins)?;
            if !api.json {
                let limits = client.plugin_limits().await?;
                show::plugin_limits(out, &limits)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Show { name, version } => {
            let list = api.client()?.plugins().await?;
            let found = list
                .into_iter()
                .filter(|p| p.name == name && version.as_ref().is_none_or(|v| &p.version == v))
                .max_by(|a, b| show::version_order(&a.version, &b.version));
            let Some(p) = found else {
                anyhow::bail!(hotswap_client::ClientError::Refused {
                    url: api.server.url()?,
                    status: 404,
                    message: match version {
                        Some(v) => format!("no plugin `{name}` version {v}"),
                        None => format!("no plugin `{name}`"),
                    },
                    id: None,
                });
            };
            api.print(out, &p, show::plugin)
        }
        PluginsCommand::Delete { name, version } => {
            api.client()?.delete_plugin(&name, &version).await?;
            let done = serde_json::json!({"deleted": {"name": name, "version": version}});
            api.print(out, &done, |out, _| {
                Ok(writeln!(out, "deleted plugin {name} {version}")?)
            })
        }
    }
}

pub async fn deployments(a: DeploymentsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        DeploymentsCommand::Create(c) => create(api, *c, out).await,
        DeploymentsCommand::List => {
            let list = api.client()?.deployments().await?;
            api.print(out, &list, show::deployments)
        }
        DeploymentsCommand::Status { id } => {
            let s = api.client()?.status(id).await?;
            api.print(out, &s, show::status)
        }
        DeploymentsCommand::Watch { id, interval } => {
            if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
                return Err(usage(format!(
                    "--interval is 0.1 to 3600 seconds, found {interval}"
                )));
            }
            watch::run(
                &api.client()?,
                id,
                std::time::Duration::from_secs_f64(interval),
                api.json,
                out,
            )
            .await
        }
        DeploymentsCommand::Pause { id } => act(api, id, DeploymentAction::Pause, out).await,
        DeploymentsCommand::Resume { id } => act(api, id, DeploymentAction::Resume, out).await,
        DeploymentsCommand::Cancel { id } => act(api, id, DeploymentAction::Cancel, out).await,
        DeploymentsCommand::Rollback { id } => act(api, id, DeploymentAction::Rollback, out).await,
        DeploymentsCommand::Approve { id, remark } => {
            let d = api.client()?.decide(id, true, &remark).await?;
            api.print(out, &d, show::deployment_line)
        }
        DeploymentsCommand::Deny { id, remark } => {
            let d = api.client()?.decide(id, false, &remark).await?;
            api.print(out, &d, show::deployment_line)
        }
        DeploymentsCommand::Decisions {
            id,
            limit,
            no_samples,
        } => {
            let list = api
                .client()?
                .decisions(
                    id,
                    &DecisionsQuery {
                        limit,
                        samples: !no_samples,
                    },
                )
                .await?;
            api.print(out, &list, show::decisions)
        }
    }
}

async fn act(
    api: &Api,
    id: i64,
    action: DeploymentAction,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let d = api.client()?.act(id, action).await?;
    api.print(out, &d, show::deployment_line)
}

async fn create(api: &Api, c: CreateDeployment, out: &mut dyn Write) -> Result<ExitCode> {
    let request = DeploymentRequest {
        firmware_version: c.firmware,
        device_model: c.model,
        target_devices: (!c.devices.is_empty()).then_some(c.devices),
        target_filter: c.filter,
        target_group: c.group,
        strategy: c.strategy,
        config: json_object("config", c.config.as_deref(), c.config_file.as_ref())?,
        health_policy: c.health_policy,
        health_config: json_object(
            "health-config",
            c.health_config.as_deref(),
            c.health_config_file.as_ref(),
        )?,
        device_timeout_seconds: c.device_timeout_seconds,
        max_attempts: c.max_attempts,
        retry_backoff_seconds: c.retry_backoff_seconds,
    };
    let client = api.client()?;
    if c.dry_run {
        let plan = client.dry_run(&request).await?;
        return api.print(out, &plan, show::dry_run);
    }
    let s = client.create_deployment(&request).await?;
    api.print(out, &s, |out, s| {
        writeln!(
            out,
            "started deployment {}: {} to {} devices of {} in {} waves ({})",
            s.deployment.id,
            s.deployment.firmware_version,
            s.wave_status.iter().map(|w| w.devices).sum::<u32>(),
            s.deployment.device_model,
            s.deployment.waves,
            s.deployment.state
        )?;
        writeln!(
            out,
            "follow it: hotswap deployments watch {}",
            s.deployment.id
        )?;
        Ok(())
    })
}

pub async fn tokens(a: TokensArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        TokensCommand::Create {
            name,
            role,
            expires_in_days,
        } => {
            let t = api
                .client()?
                .create_token(&TokenRequest {
                    name,
                    role,
                    expires_in_days,
                })
                .await?;
            api.print(out, &t, |out, t| {
                writeln!(
                    out,
                    "created token {} `{}` ({})",
                    t.info.id, t.info.name, t.info.role
                )?;
                writeln!(out, "secret (shown this once): {}", t.token)?;
                Ok(())
            })
        }
        TokensCommand::List => {
            let list = api.client()?.tokens().await?;
            api.print(out, &list, show::tokens)
        }
        TokensCommand::Revoke { id } => {
            let t = api.client()?.revoke_token(id).await?;
            api.print(out, &t, |out, t| {
                Ok(writeln!(out, "revoked token {} `{}`", t.id, t.name)?)
            })
        }
    }
}

pub async fn users(a: UsersArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let api = &a.api;
    match a.command {
        UsersCommand::Create { name, role } => {
            let password = crate::operator::login::password(&format!("password for {name}: "))?;
            let u = api
                .client()?
                .create_user(&UserRequest {
                    name,
                    role,
                    password,
                })
                .await?;
            api.print(out, &u, |out, u| {
                Ok(writeln!(out, "created user {} ({})", u.name, u.role)?)
            })
        }
        UsersCommand::List => {
            let list = api.client()?.users().await?;
            api.print(out, &list, show::users)
        }
        UsersCommand::Disable {
            name,
            revoke_tokens,
        } => {
            let u = api
                .client()?
                .disable_user_revoking(&name, revoke_tokens)
                .await?;
            api.print(out, &u, |out, u| {
                Ok(writeln!(out, "disabled user {}", u.name)?)
            })
        }
        UsersCommand::Password { name } => {
            use crate::operator::login::password_from;
            let password = password_from(
                "HOTSWAP_PASSWORD",
                &format!("current password for {name}: "),
            )?;
            let new_password = password_from(
                "HOTSWAP_NEW_PASSWORD",
                &format!("new password for {name}: "),
            )?;
            api.server
                .anonymous_client()?
                .change_password(&hotswap_protocol::PasswordChange {
                    name: name.clone(),
                    password,
                    new_password,
                })
                .await?;
            writeln!(out, "changed the password of {name}")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn audit(a: AuditArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let page = a
        .api
        .client()?
        .audit(&AuditQuery {
            actor: a.actor,
            action: a.action,
            object: a.object,
            since: a.since,
            until: a.until,
            before: None,
            limit: Some(a.limit),
        })
        .await?;
    a.api.print(out, &page, show::audit)
}
