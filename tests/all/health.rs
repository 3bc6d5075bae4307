//! The default health policy, as a component: verdicts for a table of waves, agreement with the
//! native code, warm sessions, and bad parameters.

use hotswap_plan::health::Verdict;
use hotswap_plan::{Gate, Mode};
use hotswap_plugin_host::{HealthSample, PluginError, WaveStats};

use crate::runtime;

fn stats(
    targeted: u32,
    succeeded: u32,
    failed: u32,
    settled: Option<u32>,
) -> hotswap_plan::health::WaveStats {
    hotswap_plan::health::WaveStats {
        wave: 0,
        waves: 3,
        mode: Mode::Install,
        gate: Gate {
            soak_seconds: 60,
            min_success_percent: 90,
            failure_budget: 20,
            min_sample: 10,
        },
        targeted,
        succeeded,
        failed,
        in_progress: targeted - succeeded - failed,
        elapsed_seconds: 100,
        settled_seconds: settled,
        deployment_targeted: 1000,
        deployment_succeeded: succeeded,
        deployment_failed: failed,
    }
}

fn sample(device: &str, healthy: bool) -> hotswap_plan::health::HealthSample {
    hotswap_plan::health::HealthSample {
        device: device.to_string(),
        healthy,
        self_test_passed: healthy,
        traps: u32::from(!healthy),
        fuel_exhausted: 0,
        metrics: vec![("loop-ms".to_string(), 1.5)],
    }
}

/// (what, params, stats, unhealthy samples of 20, expected verdict kind, piece of the reason)
#[allow(clippy::type_complexity)]
fn cases() -> Vec<(
    &'static str,
    &'static str,
    hotswap_plan::health::WaveStats,
    usize,
    &'static str,
    &'static str,
)> {
    vec![
        (
            "all good, soaked",
            "{}",
            stats(100, 100, 0, Some(60)),
            0,
            "proceed",
            "",
        ),
        (
            "still running",
            "{}",
            stats(100, 50, 0, None),
            0,
            "wait",
            "",
        ),
        ("soaking", "{}", stats(100, 100, 0, Some(20)), 0, "wait", ""),
        (
            "under min sample",
            "{}",
            stats(100, 3, 2, None),
            0,
            "wait",
            "",
        ),
        (
            "failure rate over threshold",
            "{}",
            stats(100, 40, 10, None),
            0,
            "roll-back",
            "20.0% of finished devices failed (10 of 50)",
        ),
        (
            "failure budget spent",
            r#"{"failureThresholdPercent": 100}"#,
            stats(1000, 500, 21, None),
            0,
            "roll-back",
            "over the failure budget of 20",
        ),
        (
            "short of min success",
            r#"{"failureThresholdPercent": 50}"#,
            stats(100, 85, 15, Some(60)),
            0,
            "pause",
            "85.0% of devices succeeded",
        ),
        (
            "unhealthy samples",
            "{}",
            stats(100, 20, 0, None),
            5,
            "roll-back",
            "health samples are unhealthy (5 of 20)",
        ),
        (
            "threshold raised",
            r#"{"failureThresholdPercent": 30}"#,
            stats(100, 40, 10, None),
            0,
            "wait",
            "",
        ),
        (
            "own min sample",
            r#"{"minSample": 100}"#,
            stats(100, 40, 10, None),
            0,
            "wait",
            "",
        ),
    ]
}

fn kind(v: &Verdict) -> &'static str {
    match v {
        Verdict::Proceed => "proceed",
        Verdict::Wait { .. } => "wait",
        Verdict::Pause { .. } => "pause",
        Verdict::RollBack { .. } => "roll-back",
    }
}

#[test]
fn verdicts_follow_the_table_and_agree_with_the_native_policy() {
    let policy = runtime().builtin_health_policy("default").unwrap();
    let mut session = policy.session();
    for (what, params, s, unhealthy, expected, reason) in cases() {
        let native_samples: Vec<_> = (0..20)
            .map(|i| sample(&format!("dev-{i}"), i >= unhealthy))
            .collect();
        let samples: Vec<HealthSample> = native_samples.iter().map(HealthSample::from).collect();
        let verdict = session
            .evaluate(params, &WaveStats::from(&s), &samples)
            .unwrap();
        assert_eq!(kind(&verdict), expected, "{what}: {verdict:?}");
        if let Verdict::Pause { reason: r } | Verdict::RollBack { reason: r } = &verdict {
            assert!(
                r.contains(reason),
                "{what}: reason {r:?} does not contain {reason:?}"
            );
        }
        let native = hotswap_plan::health::evaluate(params, &s, &native_samples).unwrap();
        assert_eq!(verdict, native, "{what}");
        // A one-off instance answers the same as the warm session.
        assert_eq!(
            policy
                .evaluate(params, &WaveStats::from(&s), &samples)
                .unwrap(),
            verdict,
            "{what}"
        );
    }
}

#[test]
fn a_soaking_wave_is_looked_at_again_every_poll_until_its_time_is_up() {
    let policy = runtime().builtin_health_policy("Default").unwrap();
    let wait = |params: &str, settled: u32| {
        policy
            .evaluate(
                params,
                &WaveStats::from(&stats(10, 10, 0, Some(settled))),
                &[],
            )
            .unwrap()
    };
    // 60 s of soak: 15 s left, polled every 5 s by default, or every 20 s when asked.
    assert_eq!(wait("{}", 45), Verdict::Wait { seconds: 5 });
    assert_eq!(
        wait(r#"{"pollSeconds": 20}"#, 45),
        Verdict::Wait { seconds: 15 }
    );
    assert_eq!(wait("{}", 58), Verdict::Wait { seconds: 2 });
    assert_eq!(wait("{}", 60), Verdict::Proceed);
}

#[test]
fn bad_policy_parameters_are_refused() {
    let policy = runtime().builtin_health_policy("default").unwrap();
    let s = WaveStats::from(&stats(10, 10, 0, Some(60)));
    for (params, expected) in [
        (
            r#"{"failureThresholdPercent": 150}"#,
            "`failureThresholdPercent` must be from 0 to 100, found 150",
        ),
        (r#"{"pollSeconds": 0}"#, "`pollSeconds` must be at least 1"),
        (r#"{"threshold": 5}"#, "unknown field `threshold`"),
    ] {
        match policy.evaluate(params, &s, &[]) {
            Err(PluginError::Rejected { message, .. }) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("{params}: expected a refusal, got {other:?}"),
        }
    }
}
