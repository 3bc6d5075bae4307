//! How each answer reads without `--json`: a table for a list, a summary for one thing.

// Each takes the answer as `Api::print` holds it (a `Vec` for a list), so it can be passed by name.
#![allow(clippy::ptr_arg)]

use std::io::Write;

use anyhow::Result;
use comfy_table::{Table, presets};
use hotswap_protocol::{
    AuditPage, Decision, Deployment, DeploymentStatus, DeviceDetail, DeviceGroup, DevicePage,
    DryRun, Firmware, FirmwareDetail, Lineage, PluginInfo, ResolvedGroup, TokenInfo, UnixSeconds,
    UserInfo,
};

/// What the human output goes through: control characters in what the server sent (a device's
/// id or region, a label, a reason) are written as escapes (`\x1b`, `\u{9b}`), never passed to
/// the terminal, where they could move the cursor, rewrite a line or set a title. Line feeds
/// and tabs, which the output is made of, pass.
pub struct Escaped<'a> {
    out: &'a mut dyn Write,
    /// A 0xC2 byte written last: the first byte of a C1 control character, or of a printable
    /// one, as the next byte will tell.
    lead: bool,
}

impl<'a> Escaped<'a> {
    pub fn new(out: &'a mut dyn Write) -> Escaped<'a> {
        Escaped { out, lead: false }
    }
}

impl Write for Escaped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if self.lead {
                self.lead = false;
                if (0x80..=0x9f).contains(&b) {
                    write!(self.out, "\\u{{{b:x}}}")?;
                } else {
                    self.out.write_all(&[0xc2, b])?;
                }
                continue;
            }
            match b {
                b'\n' | b'\t' => self.out.write_all(&[b])?,
                0x00..=0x1f | 0x7f => write!(self.out, "\\x{b:02x}")?,
                0xc2 => self.lead = true,
                _ => self.out.write_all(&[b])?,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.lead) {
            self.out.write_all(&[0xc2])?;
        }
        self.out.flush()
    }
}

impl Drop for Escaped<'_> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A table without borders, as `kubectl get` prints one.
fn table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> Result<()> {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header);
    let mut empty = true;
    for row in rows {
        t.add_row(row);
        empty = false;
    }
    // No padding before the first column, two blanks between columns, as `kubectl get`.
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    if empty {
        writeln!(out, "(none)")?;
    } else {
        // comfy-table pads each line; the trailing blanks are noise in a pipe.
        for line in t.to_string().lines() {
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

/// A time as UTC, to the second.
pub fn time(t: UnixSeconds) -> String {
    match u64::try_from(t.0) {
        Ok(s) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
        )
        .to_string(),
        Err(_) => t.0.to_string(),
    }
}

fn maybe_time(t: Option<UnixSeconds>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// `a` against `b` as major.minor.patch where both are, else as text.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

pub fn firmware_list(out: &mut dyn Write, list: &Vec<Firmware>) -> Result<()> {
    table(
        out,
        ["ID", "MODEL", "VERSION", "SIZE", "KEY", "STATUS", "CREATED"],
        list.iter().map(|f| {
            [
                f.id.to_string(),
                f.device_model.clone(),
                f.version.clone(),
                f.size.to_string(),
                f.key_id.clone(),
                firmware_status(f),
                time(f.created_at),
            ]
        }),
    )
}

fn firmware_status(f: &Firmware) -> String {
    match (f.deprecated, f.sunset_at) {
        (true, _) => "deprecated".into(),
        (false, Some(at)) => format!("sunsets {}", time(at)),
        (false, None) => "current".into(),
    }
}

pub fn firmware(out: &mut dyn Write, d: &FirmwareDetail) -> Result<()> {
    let f = &d.firmware;
    writeln!(
        out,
        "firmware {}: {} for {}",
        f.id, f.version, f.device_model
    )?;
    writeln!(out, "  status:    {}", firmware_status(f))?;
    writeln!(out, "  checksum:  {}", f.checksum)?;
    writeln!(out, "  size:      {} bytes", f.size)?;
    writeln!(
        out,
        "  signed by: {} (security counter {})",
        f.key_id, f.security_counter
    )?;
    writeln!(out, "  created:   {}", time(f.created_at))?;
    if !f.release_notes.is_empty() {
        writeln!(out, "  notes:     {}", f.release_notes)?;
    }
    writeln!(
        out,
        "  runs on:   {}",
        serde_json::to_string(&f.compatibility)?
    )?;
    if d.came_from.is_empty() {
        writeln!(out, "  no device came to it yet")?;
    }
    for c in &d.came_from {
        let from = if c.from_version.is_empty() {
            "the factory"
        } else {
            &c.from_version
        };
        writeln!(out, "  {} devices came from {from}", c.devices)?;
    }
    Ok(())
}

pub fn device_page(out: &mut dyn Write, page: &DevicePage) -> Result<()> {
    table(
        out,
        ["ID", "MODEL", "REGION", "VERSION", "STATUS", "LAST SEEN"],
        page.devices.iter().map(|d| {
            [
                d.device_id.clone(),
                d.device_model.clone(),
                d.region.clone(),
                d.firmware_version.clone(),
                d.status.to_string(),
                maybe_time(d.last_seen),
            ]
        }),
    )?;
    if let Some(next) = &page.next {
        writeln!(out, "more: --after {next} (or --all)")?;
    }
    Ok(())
}

pub fn device(out: &mut dyn Write, d: &DeviceDetail) -> Result<()> {
    let r = &d.device;
    writeln!(
        out,
        "device {} ({}), {}",
        r.device_id, r.device_model, r.status
    )?;
    writeln!(out, "  region:    {}", r.region)?;
    writeln!(out, "  runs:      {}", r.firmware_version)?;
    writeln!(out, "  last seen: {}", maybe_time(r.last_seen))?;
    if let Some(f) = &r.key_fingerprint {
        writeln!(out, "  key:       {f}")?;
    }
    if !r.labels.is_empty() {
        let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(out, "  labels:    {}", labels.join(", "))?;
    }
    if !r.groups.is_empty() {
        writeln!(out, "  groups:    {}", r.groups.join(", "))?;
    }
    for s in d.inventory.slots.iter().flatten() {
        writeln!(
            out,
            "  slot {}: {} {}",
            s.slot,
            s.state,
            s.version.as_deref().unwrap_or("-")
        )?;
    }
    if let Some(h) = &d.inventory.health {
        writeln!(out, "  health:    {h}")?;
    }
    if !d.inventory.history.is_empty() {
        writeln!(out)?;
        table(
            out,
            [
                "DEPLOYMENT",
                "KIND",
                "FROM",
                "TO",
                "STATE",
                "TRIES",
                "UPDATED",
                "REASON",
            ],
            d.inventory.history.iter().map(|h| {
                [
                    h.deployment_id.to_string(),
                    h.kind.to_string(),
                    h.from_version.clone(),
                    h.version.clone(),
                    h.state.to_string(),
                    h.attempts.to_string(),
                    time(h.updated_at),
                    h.reason.clone().unwrap_or_default(),
                ]
            }),
        )?;
    }
    Ok(())
}

pub fn lineage(out: &mut dyn Write, l: &Lineage) -> Result<()> {
    writeln!(out, "device {} runs {}", l.device_id, l.firmware_version)?;
    table(
        out,
        ["DEPLOYMENT", "FROM", "TO", "HOW", "STATE", "AT", "REASON"],
        l.steps.iter().map(|s| {
            [
                s.deployment_id.to_string(),
                s.from_version.clone(),
                s.to_version.clone(),
                s.how.to_string(),
                s.state.to_string(),
                time(s.at),
                s.reason.clone().unwrap_or_default(),
            ]
        }),
    )
}

fn describe_group(g: &DeviceGroup) -> String {
    match (&g.devices, &g.filter) {
        (Some(d), _) => format!("static, {} devices", d.len()),
        (None, Some(f)) => format!("dynamic: {}", serde_json::to_string(f).unwrap_or_default()),
        (None, None) => "empty".into(),
    }
}

pub fn groups(out: &mut dyn Write, list: &Vec<DeviceGroup>) -> Result<()> {
    table(
        out,
        ["NAME", "KIND", "APPROVAL", "CREATED"],
        list.iter().map(|g| {
            [
                g.name.clone(),
                describe_group(g),
                if g.requires_approval { "required" } else { "-" }.into(),
                time(g.created_at),
            ]
        }),
    )
}

pub fn group(out: &mut dyn Write, g: &ResolvedGroup) -> Result<()> {
    writeln!(out, "group {}: {}", g.group.name, describe_group(&g.group))?;
    if g.group.requires_approval {
        writeln!(out, "  deployments to it wait for an approval")?;
    }
    writeln!(
        out,
        "  {} devices now: {}",
        g.members.len(),
        g.members.join(", ")
    )?;
    Ok(())
}

pub fn fleet_summary(out: &mut dyn Write, s: &hotswap_protocol::FleetSummary) -> Result<()> {
    writeln!(out, "{} devices", s.devices)?;
    for (title, counts) in [
        ("by version", &s.by_version),
        ("by status", &s.by_status),
        ("by region", &s.by_region),
    ] {
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(out, "  {title}: {}", parts.join(", "))?;
    }
    Ok(())
}

pub fn plugins(out: &mut dyn Write, list: &Vec<PluginInfo>) -> Result<()> {
    table(
        out,
        ["NAME", "VERSION", "KIND", "SOURCE", "OWN LIMITS", "SUMMARY"],
        list.iter().map(|p| {
            [
                p.name.clone(),
                p.version.clone(),
                p.kind.to_string(),
                if p.builtin { "built-in" } else { "uploaded" }.into(),
                own_limits(&p.limits),
                p.summary.clone(),
            ]
        }),
    )
}

/// The limits a plugin asked for at upload, `key=value` each; `-` for none.
fn own_limits(l: &hotswap_protocol::PluginLimitOverrides) -> String {
    let given = l.given();
    if given.is_empty() {
        return "-".into();
    }
    given
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The server's `[plugin-limits]` and `[plugin-ceilings]`, under the plugin table.
pub fn plugin_limits(out: &mut dyn Write, l: &hotswap_protocol::PluginLimits) -> Result<()> {
    writeln!(
        out,
        "limits: components up to {} bytes, {} core instances, {} memories; per call {} fuel, {} bytes of memory, {} ms, {} log lines",
        l.max_component_bytes,
        l.max_core_instances,
        l.max_memories,
        l.fuel_per_call,
        l.memory_bytes,
        l.deadline_ms,
        l.log_lines_per_call
    )?;
    writeln!(
        out,
        "a plugin may ask at upload for up to: {}",
        own_limits(&l.ceilings)
    )?;
    Ok(())
}

pub fn plugin(out: &mut dyn Write, p: &PluginInfo) -> Result<()> {
    writeln!(
        out,
        "{} plugin {} {} ({})",
        p.kind,
        p.name,
        p.version,
        if p.builtin { "built-in" } else { "uploaded" }
    )?;
    writeln!(out, "  {}", p.summary)?;
    if !p.sha256.is_empty() {
        writeln!(out, "  sha256 {}", p.sha256)?;
    }
    if !p.builtin {
        writeln!(out, "  own limits: {}", own_limits(&p.limits))?;
    }
    writeln!(
        out,
        "  parameters: {}",
        serde_json::to_string_pretty(&p.params_schema)?
    )?;
    Ok(())
}

pub fn deployments(out: &mut dyn Write, list: &Vec<Deployment>) -> Result<()> {
    table(
        out,
        [
            "ID",
            "VERSION",
            "MODEL",
            "STRATEGY",
            "STATE",
            "WAVE",
            "CREATED BY",
            "UPDATED",
        ],
        list.iter().map(|d| {
            [
                d.id.to_string(),
                d.firmware_version.clone(),
                d.device_model.clone(),
                d.strategy.clone(),
                d.state.to_string(),
                format!("{}/{}", (d.current_wave + 1).min(d.waves), d.waves),
                d.created_by.clone(),
                time(d.updated_at),
            ]
        }),
    )
}

pub fn deployment_line(out: &mut dyn Write, d: &Deployment) -> Result<()> {
    write!(out, "deployment {}: {}", d.id, d.state)?;
    match &d.reason {
        Some(r) => writeln!(out, " ({r})")?,
        None => writeln!(out)?,
    }
    Ok(())
}

pub fn status(out: &mut dyn Write, s: &DeploymentStatus) -> Result<()> {
    let d = &s.deployment;
    writeln!(
        out,
        "deployment {}: {} for {} by {}, {}",
        d.id, d.firmware_version, d.device_model, d.strategy, d.state
    )?;
    if let Some(r) = &d.reason {
        writeln!(out, "  reason: {r}")?;
    }
    writeln!(
        out,
        "  health policy: {}; created by {} at {}",
        d.health_policy,
        d.created_by,
        time(d.created_at)
    )?;
    writeln!(out)?;
    table(
        out,
        [
            "", "WAVE", "MODE", "DEVICES", "OK", "FAILED", "SOAK", "STATES",
        ],
        s.wave_status.iter().map(|w| {
            [
                if w.index == d.current_wave && d.state.is_active() {
                    ">".into()
                } else {
                    String::new()
                },
                format!("{} {}", w.index + 1, w.name),
                w.mode.to_string(),
                w.devices.to_string(),
                w.succeeded.to_string(),
                w.failed.to_string(),
                format!("{} s", w.gate.soak_seconds),
                states(&w.states),
            ]
        }),
    )?;
    if !s.rollback.is_empty() {
        writeln!(out, "  rollback: {}", states(&s.rollback))?;
    }
    if s.excluded_count > 0 {
        writeln!(
            out,
            "  {} targets left out (outside the version's compatibility)",
            s.excluded_count
        )?;
    }
    for e in &s.recent_events {
        let who = e
            .device_id
            .as_deref()
            .map(|d| format!(" {d}:"))
            .unwrap_or_default();
        writeln!(out, "  {}{who} {}", time(e.at), e.message)?;
    }
    for v in &s.recent_decisions {
        writeln!(
            out,
            "  {} wave {}: {} said {}",
            time(v.at),
            v.wave + 1,
            v.policy,
            v.verdict
        )?;
    }
    Ok(())
}

/// Devices by state, `confirmed 10, downloading 2`.
pub fn states(states: &std::collections::BTreeMap<hotswap_protocol::DeviceState, u32>) -> String {
    let parts: Vec<String> = states
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

pub fn dry_run(out: &mut dyn Write, d: &DryRun) -> Result<()> {
    writeln!(
        out,
        "dry run: {} for {} by {} (health policy {}), {} targets; nothing started",
        d.firmware_version, d.device_model, d.strategy, d.health_policy, d.targets
    )?;
    if d.quarantined_skipped > 0 {
        writeln!(
            out,
            "  {} quarantined devices left out",
            d.quarantined_skipped
        )?;
    }
    if d.excluded_count > 0 {
        writeln!(
            out,
            "  {} devices left out (outside the version's compatibility)",
            d.excluded_count
        )?;
    }
    table(
        out,
        ["WAVE", "MODE", "DEVICES", "GATE", "FIRST DEVICES"],
        d.waves.iter().enumerate().map(|(i, w)| {
            let shown: Vec<&str> = w.devices.iter().take(5).map(String::as_str).collect();
            let more = w.devices.len().saturating_sub(shown.len());
            [
                format!("{} {}", i + 1, w.name),
                w.mode.to_string(),
                w.devices.len().to_string(),
                format!(
                    "soak {} s, {}% ok, budget {}, sample {}",
                    w.gate.soak_seconds,
                    w.gate.min_success_percent,
                    w.gate.failure_budget,
                    w.gate.min_sample
                ),
                if more > 0 {
                    format!("{} +{more}", shown.join(" "))
                } else {
                    shown.join(" ")
                },
            ]
        }),
    )
}

pub fn decisions(out: &mut dyn Write, list: &Vec<Decision>) -> Result<()> {
    table(
        out,
        [
            "ID", "WAVE", "POLICY", "OK", "FAILED", "TARGETED", "VERDICT", "AT",
        ],
        list.iter().map(|d| {
            [
                d.id.to_string(),
                (d.wave + 1).to_string(),
                d.policy.clone(),
                d.stats.succeeded.to_string(),
                d.stats.failed.to_string(),
                d.stats.targeted.to_string(),
                d.verdict.to_string(),
                time(d.at),
            ]
        }),
    )
}

pub fn tokens(out: &mut dyn Write, list: &Vec<TokenInfo>) -> Result<()> {
    table(
        out,
        [
            "ID",
            "NAME",
            "ROLE",
            "HINT",
            "CREATED BY",
            "EXPIRES",
            "LAST USED",
            "REVOKED",
        ],
        list.iter().map(|t| {
            [
                t.id.to_string(),
                t.name.clone(),
                t.role.to_string(),
                t.hint.clone(),
                t.created_by.clone(),
                maybe_time(t.expires_at),
                maybe_time(t.last_used_at),
                maybe_time(t.revoked_at),
            ]
        }),
    )
}

pub fn users(out: &mut dyn Write, list: &Vec<UserInfo>) -> Result<()> {
    table(
        out,
        ["NAME", "ROLE", "CREATED", "DISABLED"],
        list.iter().map(|u| {
            [
                u.name.clone(),
                u.role.to_string(),
                time(u.created_at),
                if u.disabled { "yes" } else { "-" }.into(),
            ]
        }),
    )
}

pub fn audit(out: &mut dyn Write, page: &AuditPage) -> Result<()> {
    table(
        out,
        ["AT", "ACTOR", "ACTION", "OBJECT", "STATUS", "SOURCE"],
        page.entries.iter().map(|e| {
            [
                time(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.object.clone().unwrap_or_default(),
                e.status.to_string(),
                e.source.clone().unwrap_or_default(),
            ]
        }),
    )?;
    if let Some(next) = page.next {
        writeln!(out, "older entries: before id {next}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_server_are_escaped() {
        let mut out = Vec::new();
        {
            let mut e = Escaped::new(&mut out);
            write!(e, "d-1\u{1b}[2J\r\u{9b}31m é 20°C\tok\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "d-1\\x1b[2J\\x0d\\u{9b}31m é 20°C\tok\n"
        );
    }
}
