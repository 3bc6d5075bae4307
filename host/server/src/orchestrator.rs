//! The orchestrator: runs every active deployment wave by wave.
//!
//! One pass, every tick, for each active deployment: give up on devices past their deadline
//! (retry with a doubling backoff, quarantine after the last try); start the current wave and hand
//! out its devices up to `maxInFlight`; count the wave and gather the health samples the new
//! version's devices sent; when those inputs changed (more devices done: at most once a second
//! and a tenth of the time), or the policy's last `wait` ran out, ask the health policy (in the
//! sandbox) and store its verdict with its inputs; act on it: next wave, done, pause, or roll
//! back. A rollback ends when every device sent back has answered.
//!
//! All state is in the store; the orchestrator keeps only caches (warm policy instances, the
//! inputs last judged), so a restarted server carries on where the last one stopped. Replicas
//! on one database each run an orchestrator: every step holds the deployment's lease
//! ([`hotswap_store::LEASE_MS`]), so one replica orchestrates a deployment at a time and
//! another takes it over once a dead one's lease runs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use hotswap_plan::health::Verdict;

use hotswap_plugin_host::{HealthSample, HealthSession, PluginRuntime, WaveStats};
use hotswap_protocol::{Deployment, DeploymentState, UnixMillis};
use hotswap_store::{Store, StoreError, WaveView};

use crate::doorbell::Doorbell;
use crate::metrics::Timings;
use crate::rollout::{Rollout, RolloutError, plugins};
use crate::traces::{Judgement, Traces, WaveSummary};

/// How often the orchestrator looks at its deployments when nothing says otherwise.
pub const DEFAULT_TICK: Duration = Duration::from_millis(500);

/// A wave still in progress whose only news is more devices done (none more failed, not yet
/// settled) is judged at most this often, in milliseconds: judging reads the health samples of
/// every device of the wave, the orchestrator's largest cost in a large fleet. Failures and a
/// settled wave are judged at the next tick.
pub const PROGRESS_JUDGED_EVERY_MS: i64 = 1000;

/// And no sooner than this many times as long as the last judgement took (judging takes at most
/// a tenth of the orchestrator's time): one that took 150 ms (reading, judging and storing
/// 100,000 samples) is followed by progress-only ones 1.5 s later at the soonest.
pub const PROGRESS_JUDGED_AFTER_TIMES: i64 = 10;

/// What the health policy is asked again for when it changes: the wave and its counts.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Inputs {
    wave: u32,
    succeeded: u32,
    failed: u32,
    in_progress: u32,
    settled: bool,
}

impl Inputs {
    /// Whether the only news since `before` is more devices done: the same wave, no more
    /// failures, not settled.
    fn progress_only_since(&self, before: &Inputs) -> bool {
        self.wave == before.wave && self.failed == before.failed && !self.settled
    }
}

/// What was last judged for a deployment: its inputs, and when to ask again if they stay the
/// same.
struct Judged {
    inputs: Inputs,
    again_at: UnixMillis,
    /// When news of progress alone may be judged again.
    progress_at: UnixMillis,
}

/// The share of the plugin pool (`pool-instances`) the orchestrator keeps warm between
/// verdicts, as its divisor (a quarter): the deployments judged most recently keep their
/// health-policy instances, the others make a fresh one when next asked, and the rest of the
/// pool serves new deployments, dry runs and uploads.
pub const WARM_SHARE_OF_POOL: u32 = 4;

/// What the orchestrator works with: the store (the truth), the sandbox the health policies run
/// in, and the doorbell it rings for the devices each step hands something to.
pub struct Orchestrator {
    store: Arc<Store>,
    runtime: PluginRuntime,
    doorbell: Arc<Doorbell>,
    sessions: HashMap<i64, HealthSession>,
    /// When each deployment's policy was last asked, to give back the coldest instances.
    last_judged: HashMap<i64, UnixMillis>,
    judged: HashMap<i64, Judged>,
    timings: Timings,
    traces: Traces,
    /// When this orchestrator first saw each wave under way, when traces are on: the store
    /// keeps a wave's start to the second, a span wants the millisecond.
    waves_seen: HashMap<(i64, u32), std::time::SystemTime>,
}

/// Stops the orchestrator's thread when dropped.
pub struct Running {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Orchestrator {
    /// An orchestrator over the rollout floor's store, sandbox and doorbell; its health-policy
    /// calls are timed into the floor's metrics, and its deployments' waves, verdicts and
    /// rollbacks recorded as spans in its traces.
    pub fn new(rollout: Rollout) -> Orchestrator {
        Orchestrator {
            timings: rollout.metrics.timings(),
            store: rollout.store,
            runtime: rollout.runtime,
            doorbell: rollout.doorbell,
            traces: rollout.traces,
            sessions: HashMap::new(),
            last_judged: HashMap::new(),
            judged: HashMap::new(),
            waves_seen: HashMap::new(),
        }
    }

    /// Runs a pass every `tick` on a thread of its own until the returned handle is dropped.
    pub fn spawn(mut self, tick: Duration) -> Running {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hotswap-orchestrator".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    if let Err(e) = self.pass(self.store.clock().now()) {
                        tracing::error!(error = %e, "orchestrator pass failed");
                    }
                }
            })
            .expect("the orchestrator thread starts");
        Running {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// One look at every active deployment.
    pub fn pass(&mut self, now: UnixMillis) -> Result<(), StoreError> {
        // Devices whose retry backoff ended, should they wait in a long poll.
        self.doorbell.ring_due(now);
        let active = self.store.active_deployments()?;
        let mut others = Vec::new();
        for d in &active {
            match self.advance(d, now) {
                Ok(()) => {}
                // Another replica orchestrates it: this one keeps nothing of it.
                Err(StoreError::NotOwner { owner, .. }) => {
                    tracing::debug!(deployment = d.id, %owner, "orchestrated by another replica");
                    others.push(d.id);
                }
                Err(e) => {
                    tracing::error!(deployment = d.id, error = %e, "advancing a deployment failed");
                }
            }
        }
        let mine = |id: &i64| active.iter().any(|d| d.id == *id) && !others.contains(id);
        self.sessions.retain(|id, _| mine(id));
        self.last_judged.retain(|id, _| mine(id));
        self.judged.retain(|id, _| mine(id));
        self.waves_seen.retain(|(id, _), _| mine(id));
        Ok(())
    }

    fn advance(&mut self, d: &Deployment, now: UnixMillis) -> Result<(), StoreError> {
        let store = self.store.clone();
        let expired = store.expire(d, now)?;
        for (device, at) in &expired.retried {
            self.doorbell.ring_at(device, *at);
        }
        let mut d = d.clone();
        loop {
            match d.state {
                DeploymentState::RollingBack => {
                    if store.finish_rollback(&d, now)? && self.traces.on() {
                        self.traces.rollback_ended(&d);
                        // A deployment rolled back after it completed has its span already.
                        if !store.completed_once(d.id)? {
                            self.traces.deployment_ended(&store.deployment(d.id)?);
                        }
                    }
                    return Ok(());
                }
                DeploymentState::Running => {}
                _ => return Ok(()),
            }
            let mut view = store.advance_wave(&d, now)?;
            self.doorbell
                .ring(view.handed_out.iter().map(String::as_str));
            if self.traces.on() {
                self.waves_seen
                    .entry((d.id, view.index))
                    .or_insert_with(std::time::SystemTime::now);
            }
            let s = &view.stats;
            let inputs = Inputs {
                wave: view.index,
                succeeded: s.succeeded,
                failed: s.failed,
                in_progress: s.in_progress,
                settled: s.settled_seconds.is_some(),
            };
            if let Some(j) = self.judged.get(&d.id)
                && (j.inputs == inputs && now < j.again_at
                    || inputs.progress_only_since(&j.inputs) && now < j.progress_at)
            {
                return Ok(());
            }
            let judging = std::time::Instant::now();
            let judged_at = std::time::SystemTime::now();
            view.samples = store.wave_samples(&d, view.index)?;
            let Some(verdict) = self.judge(&d, &view, now) else {
                // The plugin pool is full: asked again next tick, nothing decided.
                return Ok(());
            };
            let sent_back = store.decide(&d, &view, &verdict, now)?;
            self.doorbell.ring(sent_back.iter().map(String::as_str));
            if self.traces.on() {
                self.trace_decision(&d, &view, &verdict, judged_at)?;
            }
            let took = i64::try_from(judging.elapsed().as_millis()).unwrap_or(i64::MAX);
            let progress_at = now.plus_ms(
                PROGRESS_JUDGED_EVERY_MS.max(took.saturating_mul(PROGRESS_JUDGED_AFTER_TIMES)),
            );
            let again_at = match &verdict {
                Verdict::Wait { seconds } => now.plus_ms(i64::from(*seconds) * 1000),
                _ => now,
            };
            self.judged.insert(
                d.id,
                Judged {
                    inputs,
                    again_at,
                    progress_at,
                },
            );
            if verdict != Verdict::Proceed {
                return Ok(());
            }
            // The wave passed: how long each of its devices took, in one read.
            self.timings
                .updates_confirmed(&store.update_durations(d.id, view.index)?);
            // The next wave starts in this same pass.
            d = store.deployment(d.id)?;
        }
    }

    /// Records a judgement in the deployment's trace, and what it ended: the wave (passed, or
    /// rolled back) and the deployment when it completed. Reads what the decision did, since
    /// a deployment an operator changed meanwhile keeps the verdict on record only.
    fn trace_decision(
        &self,
        d: &Deployment,
        view: &WaveView,
        verdict: &Verdict,
        judged_at: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        let fuel_used = self.sessions.get(&d.id).map(HealthSession::fuel_used);
        self.traces.verdict(
            d,
            view.index,
            Judgement {
                verdict,
                stats: &view.stats,
                fuel_used,
                started: judged_at,
            },
        );
        let after = self.store.deployment(d.id)?;
        let mut wave = WaveSummary::from(&view.stats);
        // Seen in the pass that started it, unless this server started since: then it is
        // further from the stored start than the stored start's rounding.
        if let Some(seen) = self.waves_seen.get(&(d.id, view.index)) {
            let apart = seen
                .duration_since(wave.started)
                .unwrap_or_else(|earlier| earlier.duration());
            if apart <= Duration::from_secs(2) {
                wave.started = *seen;
            }
        }
        if after.current_wave > view.index || after.state == DeploymentState::Completed {
            self.traces.wave_ended(d, view.index, wave, None);
        } else if after.state == DeploymentState::RollingBack {
            let reason = after.reason.as_deref().unwrap_or("rolled back");
            self.traces.wave_ended(d, view.index, wave, Some(reason));
        }
        if after.state == DeploymentState::Completed {
            self.traces.deployment_ended(&after);
        }
        Ok(())
    }

    /// The health policy's verdict; a policy that fails pauses the deployment, it never lets it
    /// go on unjudged. `None` when the plugin pool has no instance free: a full pool is the
    /// server's moment, not the policy's failure, so the deployment is judged next tick.
    fn judge(&mut self, d: &Deployment, view: &WaveView, now: UnixMillis) -> Option<Verdict> {
        if !self.sessions.contains_key(&d.id) {
            match self.load_policy(d) {
                Ok(s) => self.sessions.insert(d.id, s),
                Err(e) => {
                    return Some(Verdict::Pause {
                        reason: format!("the health policy cannot be loaded: {e}"),
                    });
                }
            };
        }
        let session = self.sessions.get_mut(&d.id).expect("inserted above");
        let stats = WaveStats::from(&view.stats);
        let samples: Vec<HealthSample> = view.samples.iter().map(HealthSample::from).collect();
        let verdict = self.timings.time(
            hotswap_protocol::PluginKind::HealthPolicy,
            "evaluate",
            || session.evaluate(&d.health_config, &stats, &samples),
        );
        self.last_judged.insert(d.id, now);
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(hotswap_plugin_host::PluginError::Busy(e)) => {
                tracing::warn!(deployment = d.id, error = %e, "the plugin pool is full; the health policy is asked again next tick");
                return None;
            }
            Err(e) => {
                self.sessions.remove(&d.id);
                Verdict::Pause {
                    reason: format!("the health policy failed: {e}"),
                }
            }
        };
        if !matches!(verdict, Verdict::Proceed | Verdict::Wait { .. })
            && let Some(s) = self.sessions.get_mut(&d.id)
        {
            // A paused or rolled-back deployment is not judged again soon: its instance goes
            // back to the pool.
            s.release();
        }
        self.release_coldest();
        Some(verdict)
    }

    /// Keeps at most a [`WARM_SHARE_OF_POOL`] share of the pool warm, giving back the instances
    /// judged longest ago.
    fn release_coldest(&mut self) {
        let most = (self.runtime.limits().pool_instances / WARM_SHARE_OF_POOL).max(1) as usize;
        let mut warm: Vec<(UnixMillis, i64)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_warm())
            .map(|(id, _)| (self.last_judged.get(id).copied().unwrap_or_default(), *id))
            .collect();
        if warm.len() <= most {
            return;
        }
        warm.sort();
        for (_, id) in &warm[..warm.len() - most] {
            if let Some(s) = self.sessions.get_mut(id) {
                s.release();
            }
        }
    }

    fn load_policy(&self, d: &Deployment) -> Result<HealthSession, RolloutError> {
        plugins::recorded_health_policy(
            &self.store,
            &self.runtime,
            &d.health_policy,
            d.health_sha256.as_deref(),
        )
        .map(|p| p.session())
    }
}
