//! `hotswap deployments watch`: a deployment followed to its end. On a terminal, one progress
//! bar per wave with its devices by state, the current wave marked and its soak time left;
//! elsewhere (a pipe, a log), one line per change. Each verdict and event is printed as it
//! comes. A server that goes away is waited for: the watch reconnects and goes on.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use hotswap_client::{Client, Retry};
use hotswap_protocol::{DeploymentState, DeploymentStatus, WaveStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::show;

/// The exit code of a watched deployment that was rolled back.
pub const ROLLED_BACK: u8 = 3;
/// The exit code of a watched deployment cancelled, or paused for the operator to decide.
pub const CANCELLED_OR_PAUSED: u8 = 4;

/// The exit code of a watch stopped by Ctrl-C or SIGTERM (the shell's for a command a signal
/// ended), the deployment going on.
pub const STOPPED: u8 = 130;

/// The longest pause between tries while the server cannot be reached.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// The exit code for a deployment in `state`, once the watch is over; `None` while it goes on.
pub fn outcome(state: DeploymentState) -> Option<u8> {
    use DeploymentState::*;
    match state {
        Completed => Some(0),
        RolledBack => Some(ROLLED_BACK),
        Cancelled | Paused => Some(CANCELLED_OR_PAUSED),
        WaitingForApproval | Running | RollingBack => None,
    }
}

/// What has been printed already, so each change is printed once.
#[derive(Default)]
struct Seen {
    events: BTreeSet<(i64, Option<String>, String)>,
    decisions: BTreeSet<i64>,
    lines: Vec<String>,
    /// The last status printed with `--json`.
    json: String,
    state: Option<DeploymentState>,
}

pub async fn run(
    client: &Client,
    id: i64,
    every: Duration,
    json: bool,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    // One try per look: the watch does its own reconnecting, and says so.
    let client = client.retrying(Retry::ONCE);
    let bars = std::io::stderr().is_terminal() && !json;
    let multi = MultiProgress::with_draw_target(if bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut wave_bars: Vec<ProgressBar> = Vec::new();
    let mut seen = Seen::default();
    let mut stop = std::pin::pin!(crate::signals::stopped());
    let mut pause = every;
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        match client.status(id).await {
            Ok(s) => {
                if let Some(since) = lost_since.take() {
                    say(
                        &multi,
                        out,
                        bars,
                        &format!(
                            "reconnected to {} after {:.0} s",
                            client.server(),
                            since.elapsed().as_secs_f64()
                        ),
                    )?;
                }
                pause = every;
                if json {
                    // One JSON document per change, on a line of its own (JSON Lines).
                    let line = serde_json::to_string(&s)?;
                    if seen.json != line {
                        writeln!(out, "{line}")?;
                        seen.json = line;
                    }
                } else {
                    report(&s, &mut seen, &multi, &mut wave_bars, &style, bars, out)?;
                }
                if let Some(code) = outcome(s.deployment.state) {
                    for b in &wave_bars {
                        b.abandon();
                    }
                    if !json {
                        let why = s.deployment.reason.as_deref().unwrap_or("");
                        writeln!(
                            out,
                            "deployment {id} {}{}{why}",
                            s.deployment.state,
                            if why.is_empty() { "" } else { ": " }
                        )?;
                    }
                    return Ok(ExitCode::from(code));
                }
            }
            Err(e) if e.is_transient() => {
                if lost_since.is_none() {
                    lost_since = Some(std::time::Instant::now());
                    say(
                        &multi,
                        out,
                        bars,
                        &format!("lost the server ({e}); reconnecting"),
                    )?;
                }
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            r = &mut stop => {
                r?;
                for b in &wave_bars {
                    b.abandon();
                }
                say(&multi, out, bars, &format!(
                    "stopped watching deployment {id}; it goes on (hotswap deployments status {id})"
                ))?;
                return Ok(ExitCode::from(STOPPED));
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A line above the bars on a terminal, or on `out`.
fn say(multi: &MultiProgress, out: &mut dyn Write, bars: bool, line: &str) -> Result<()> {
    if bars {
        multi.println(line)?;
    } else {
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

fn report(
    s: &DeploymentStatus,
    seen: &mut Seen,
    multi: &MultiProgress,
    wave_bars: &mut Vec<ProgressBar>,
    style: &ProgressStyle,
    bars: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let d = &s.deployment;
    if seen.state != Some(d.state) {
        seen.state = Some(d.state);
        say(
            multi,
            out,
            bars,
            &format!(
                "deployment {}: {} for {} by {}, {}",
                d.id, d.firmware_version, d.device_model, d.strategy, d.state
            ),
        )?;
    }
    // Events and verdicts come newest last; each is printed once.
    for e in &s.recent_events {
        let key = (e.at.0, e.device_id.clone(), e.message.clone());
        if seen.events.insert(key) {
            let who = e
                .device_id
                .as_deref()
                .map(|d| format!("{d}: "))
                .unwrap_or_default();
            say(multi, out, bars, &format!("  event {who}{}", e.message))?;
        }
    }
    for v in &s.recent_decisions {
        if seen.decisions.insert(v.id) {
            say(
                multi,
                out,
                bars,
                &format!(
                    "  verdict on wave {}: {} ({} ok, {} failed of {})",
                    v.wave + 1,
                    v.verdict,
                    v.stats.succeeded,
                    v.stats.failed,
                    v.stats.targeted
                ),
            )?;
        }
    }
    let now = hotswap_protocol::UnixMillis::now().seconds();
    let lines: Vec<String> = s
        .wave_status
        .iter()
        .map(|w| wave_line(w, w.index == d.current_wave && d.state.is_active(), now))
        .collect();
    if bars {
        while wave_bars.len() < s.wave_status.len() {
            let w = &s.wave_status[wave_bars.len()];
            let bar = multi.add(ProgressBar::new(u64::from(w.devices)));
            bar.set_style(style.clone());
            wave_bars.push(bar);
        }
        for (w, bar) in s.wave_status.iter().zip(wave_bars.iter()) {
            let current = w.index == d.current_wave && d.state.is_active();
            bar.set_prefix(format!(
                "{} wave {} {:<10}",
                if current { ">" } else { " " },
                w.index + 1,
                w.name
            ));
            bar.set_length(u64::from(w.devices));
            bar.set_position(u64::from(w.succeeded + w.failed));
            bar.set_message(wave_detail(w, now));
        }
    } else {
        for (i, line) in lines.iter().enumerate() {
            if seen.lines.get(i) != Some(line) {
                writeln!(out, "{line}")?;
            }
        }
        out.flush()?;
    }
    seen.lines = lines;
    Ok(())
}

/// One wave as a line: `> wave 2 canary-10: 40/100 done, confirmed 40, downloading 60`.
fn wave_line(w: &WaveStatus, current: bool, now: hotswap_protocol::UnixSeconds) -> String {
    format!(
        "{} wave {} {}: {}/{} done, {}",
        if current { ">" } else { " " },
        w.index + 1,
        w.name,
        w.succeeded + w.failed,
        w.devices,
        wave_detail(w, now)
    )
}

/// A wave's devices by state, and the soak time left once it settled.
fn wave_detail(w: &WaveStatus, now: hotswap_protocol::UnixSeconds) -> String {
    let mut text = show::states(&w.states);
    if let Some(settled) = w.settled_at {
        let soaked = now.0.saturating_sub(settled.0).max(0);
        let left = i64::from(w.gate.soak_seconds) - soaked;
        if left > 0 {
            text.push_str(&format!(", soaking {left} s more"));
        } else {
            text.push_str(", soaked");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_its_exit_code() {
        use DeploymentState::*;
        assert_eq!(outcome(Completed), Some(0));
        assert_eq!(outcome(RolledBack), Some(ROLLED_BACK));
        assert_eq!(outcome(Cancelled), Some(CANCELLED_OR_PAUSED));
        assert_eq!(outcome(Paused), Some(CANCELLED_OR_PAUSED));
        for going_on in [WaitingForApproval, Running, RollingBack] {
            assert_eq!(outcome(going_on), None, "{going_on}");
        }
    }
}
