//! The operator's actions on a deployment and the table of the transitions each may make;
//! approving or denying one that waits for an approval, never by the credential that created
//! it. Every transition is recorded in the deployment's trace when it ends the wave under way
//! or the deployment itself, and the devices it hands something to are woken.

use hotswap_protocol::{Deployment, DeploymentAction, DeploymentState};
use hotswap_store::Transitioned;

use super::{Rollout, RolloutError};

/// One row of the transition table: the states an action applies in, the state it leads to,
/// and the reason recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: &'static [DeploymentState],
    pub to: DeploymentState,
    pub reason: &'static str,
}

/// The transition table, one row per action.
pub fn transition(action: DeploymentAction) -> Transition {
    use DeploymentState::*;
    match action {
        DeploymentAction::Pause => Transition {
            from: &[Running],
            to: Paused,
            reason: "paused by the operator",
        },
        DeploymentAction::Resume => Transition {
            from: &[Paused],
            to: Running,
            reason: "resumed by the operator",
        },
        DeploymentAction::Cancel => Transition {
            from: &[WaitingForApproval, Running, Paused],
            to: Cancelled,
            reason: "cancelled by the operator",
        },
        // A completed deployment too: a problem found later sends back every device that
        // still runs its version.
        DeploymentAction::Rollback => Transition {
            from: &[Running, Paused, Completed],
            to: RollingBack,
            reason: "rollback asked by the operator",
        },
    }
}

/// An approval's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The deployment starts.
    Approve,
    /// The deployment ends, cancelled.
    Deny,
}

impl Rollout {
    /// Applies `action` to deployment `id`; a deployment not in a state it applies to is a
    /// [`RolloutError::Store`] conflict naming both.
    pub fn act(&self, id: i64, action: DeploymentAction) -> Result<Deployment, RolloutError> {
        let t = transition(action);
        self.transition(id, t.from, t.to, t.reason)
    }

    /// Approves or denies deployment `id`, waiting for an approval, as `by` (the audit log's
    /// name of the caller) with an optional `remark`. Four eyes: never by its creator.
    pub fn decide_approval(
        &self,
        id: i64,
        by: &str,
        approval: Approval,
        remark: &str,
    ) -> Result<Deployment, RolloutError> {
        let d = self.store.deployment(id)?;
        if d.created_by == by {
            return Err(RolloutError::Forbidden(format!(
                "{by} started deployment {id}, so it cannot approve or deny it: four eyes, someone else decides"
            )));
        }
        let (verb, to) = match approval {
            Approval::Approve => ("approved", DeploymentState::Running),
            Approval::Deny => ("denied", DeploymentState::Cancelled),
        };
        let reason = match remark.trim() {
            "" => format!("{verb} by {by}"),
            remark => format!("{verb} by {by}: {remark}"),
        };
        self.transition(id, &[DeploymentState::WaitingForApproval], to, &reason)
    }

    /// A transition, traced, with the devices it hands something to woken.
    fn transition(
        &self,
        id: i64,
        from: &[DeploymentState],
        to: DeploymentState,
        reason: &str,
    ) -> Result<Deployment, RolloutError> {
        let changed = self.traced_transition(id, from, to, reason)?;
        self.doorbell
            .ring(changed.handed_out.iter().map(String::as_str));
        Ok(changed.deployment)
    }

    /// Recorded in the deployment's trace when it ends the wave under way or the deployment.
    fn traced_transition(
        &self,
        id: i64,
        from: &[DeploymentState],
        to: DeploymentState,
        reason: &str,
    ) -> Result<Transitioned, RolloutError> {
        if !self.traces.on() {
            return Ok(self.store.transition(id, from, to, reason)?);
        }
        let before = self.store.deployment(id)?;
        let changed = self.store.transition(id, from, to, reason)?;
        let after = &changed.deployment;
        let wave_cut = matches!(
            before.state,
            DeploymentState::Running | DeploymentState::Paused
        ) && matches!(
            after.state,
            DeploymentState::Cancelled | DeploymentState::RollingBack
        );
        if wave_cut {
            let status = self.store.deployment_status(id)?;
            if let Some(w) = status
                .wave_status
                .get(before.current_wave as usize)
                .filter(|w| w.started_at.is_some())
            {
                self.traces
                    .wave_ended(after, before.current_wave, w.into(), Some(reason));
            }
        }
        if !after.state.is_active() {
            self.traces.deployment_ended(after);
        }
        Ok(changed)
    }
}
