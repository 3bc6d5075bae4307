//! Property tests of the plan invariants every built-in strategy keeps, over random fleets and
//! random valid parameters.

use std::collections::BTreeSet;

use hotswap_plan::health::{self, HealthSample, Verdict, WaveStats};
use hotswap_plan::{Device, Fleet, FleetView, Gate, Mode, Plan, PlanViolation};
use proptest::prelude::*;

fn arb_devices() -> impl Strategy<Value = Vec<Device>> {
    prop::collection::vec((0u8..5, any::<bool>(), 0u32..1_000_000), 0..300).prop_map(|raw| {
        let mut seen = BTreeSet::new();
        raw.into_iter()
            .filter(|(_, _, n)| seen.insert(*n))
            .map(|(region, online, n)| Device {
                id: format!("d{n}"),
                region: ["", "eu", "us", "ap", "sa"][region as usize].to_string(),
                groups: vec![],
                labels: vec![],
                version: "1.0.0".into(),
                online,
            })
            .collect()
    })
}

/// Rising cumulative percentages ending at 100.
fn arb_steps() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::btree_set(1u32..100, 0..6).prop_map(|set| {
        let mut steps: Vec<f64> = set.into_iter().map(f64::from).collect();
        steps.push(100.0);
        steps
    })
}

fn arb_fleet() -> impl Strategy<Value = Fleet> {
    arb_devices().prop_map(|d| Fleet::from_devices(&d))
}

fn ids_per_wave(plan: &Plan, fleet: &Fleet) -> Vec<BTreeSet<String>> {
    plan.waves
        .iter()
        .map(|w| {
            w.devices
                .iter()
                .map(|&d| fleet.id(d as usize).to_string())
                .collect()
        })
        .collect()
}

fn region(fleet: &Fleet, d: u32) -> &str {
    fleet.region_name(fleet.region(d as usize))
}

fn assert_every_device_once(plan: &Plan, fleet: &Fleet) {
    plan.check(fleet.len()).unwrap();
    assert!(plan.updates_per_device(fleet.len()).iter().all(|&n| n == 1));
    assert!(plan.waves.iter().all(|w| !w.devices.is_empty()));
}

proptest! {
    #[test]
    fn canary_updates_every_device_once_and_ignores_input_order(
        devices in arb_devices(), steps in arb_steps(), seed in any::<u64>(), rotate in 0usize..300,
    ) {
        let fleet = Fleet::from_devices(&devices);
        let params = serde_json::json!({"initialPercentage": steps[0], "increments": &steps[1..], "seed": seed}).to_string();
        let plan = hotswap_plan::canary::plan(&params, &fleet).unwrap();
        assert_every_device_once(&plan, &fleet);
        prop_assert!(plan.waves.len() <= steps.len());
        // Cumulative sizes never fall short of the asked percentage.
        let mut covered = 0;
        for w in &plan.waves {
            covered += w.devices.len();
        }
        prop_assert_eq!(covered, fleet.len());

        let mut rotated = devices.clone();
        if !rotated.is_empty() {
            let k = rotate % rotated.len();
            rotated.rotate_left(k);
        }
        let rotated = Fleet::from_devices(&rotated);
        let again = hotswap_plan::canary::plan(&params, &rotated).unwrap();
        prop_assert_eq!(ids_per_wave(&plan, &fleet), ids_per_wave(&again, &rotated));
    }

    #[test]
    fn canary_puts_online_devices_first(fleet in arb_fleet(), seed in any::<u64>()) {
        let order = hotswap_plan::spread_order(&fleet, seed);
        let first_offline = order.iter().position(|&d| !fleet.online(d as usize)).unwrap_or(order.len());
        prop_assert!(order[first_offline..].iter().all(|&d| !fleet.online(d as usize)));
    }

    #[test]
    fn rolling_batches_are_full_but_the_last(fleet in arb_fleet(), batch in 1u32..60, concurrency in 1u32..10) {
        let params = serde_json::json!({"batchSize": batch, "maxConcurrency": concurrency}).to_string();
        let plan = hotswap_plan::rolling::plan(&params, &fleet).unwrap();
        assert_every_device_once(&plan, &fleet);
        if let Some((last, full)) = plan.waves.split_last() {
            prop_assert!(full.iter().all(|w| w.devices.len() == batch as usize));
            prop_assert!(last.devices.len() <= batch as usize);
        }
        prop_assert!(plan.waves.iter().all(|w| w.max_in_flight == Some(concurrency)));
    }

    #[test]
    fn regional_waves_hold_one_region_each(fleet in arb_fleet()) {
        let plan = hotswap_plan::regional::plan("{}", &fleet).unwrap();
        assert_every_device_once(&plan, &fleet);
        let regions: BTreeSet<&str> = fleet.regions.iter().map(String::as_str).collect();
        prop_assert_eq!(plan.waves.len(), regions.len());
        for w in &plan.waves {
            let in_wave: BTreeSet<&str> = w.devices.iter().map(|&d| region(&fleet, d)).collect();
            prop_assert_eq!(in_wave.len(), 1);
        }
        // Smallest region first.
        let sizes: Vec<usize> = plan.waves.iter().map(|w| w.devices.len()).collect();
        prop_assert!(sizes.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn blue_green_stages_all_before_activating(fleet in arb_fleet(), steps in arb_steps()) {
        let params = serde_json::json!({"activateIncrements": steps}).to_string();
        let plan = hotswap_plan::blue_green::plan(&params, &fleet).unwrap();
        assert_every_device_once(&plan, &fleet);
        if !fleet.is_empty() {
            prop_assert_eq!(plan.waves[0].mode, Mode::Stage);
            prop_assert_eq!(plan.waves[0].devices.len(), fleet.len());
            prop_assert!(plan.waves[1..].iter().all(|w| w.mode == Mode::Activate));
        }
    }

    #[test]
    fn default_gates_are_sized_by_their_own_wave(fleet in arb_fleet(), steps in arb_steps(), batch in 1u32..40, min_success in 50u8..=100) {
        let gate = serde_json::json!({"minSuccessPercent": min_success});
        let plans = [
            hotswap_plan::canary::plan(&serde_json::json!({"initialPercentage": steps[0], "increments": &steps[1..], "gate": gate}).to_string(), &fleet).unwrap(),
            hotswap_plan::regional::plan(&serde_json::json!({"gate": gate}).to_string(), &fleet).unwrap(),
            hotswap_plan::rolling::plan(&serde_json::json!({"batchSize": batch, "gate": gate}).to_string(), &fleet).unwrap(),
            hotswap_plan::blue_green::plan(&serde_json::json!({"activateIncrements": steps, "gate": gate}).to_string(), &fleet).unwrap(),
            hotswap_plan::direct::plan(&serde_json::json!({"gate": gate}).to_string(), &fleet).unwrap(),
        ];
        for plan in &plans {
            for w in plan.waves.iter().filter(|w| w.mode != Mode::Stage) {
                let size = w.devices.len() as u32;
                let must_succeed = (size * u32::from(min_success)).div_ceil(100);
                prop_assert_eq!(w.gate.failure_budget, size - must_succeed, "{}", w.name);
                prop_assert_eq!(w.gate.min_sample, size.min(10), "{}", w.name);
            }
        }
    }

    #[test]
    fn check_catches_a_device_moved_into_a_second_wave(fleet in arb_fleet(), pick in any::<prop::sample::Index>()) {
        prop_assume!(fleet.len() >= 2);
        let mut plan = hotswap_plan::rolling::plan(r#"{"batchSize": 1}"#, &fleet).unwrap();
        let from = pick.index(plan.waves.len() - 1);
        let device = plan.waves[from].devices[0];
        plan.waves.last_mut().unwrap().devices.push(device);
        let is_duplicate = matches!(plan.check(fleet.len()), Err(PlanViolation::DeviceInTwoWaves { .. }));
        prop_assert!(is_duplicate);
    }

    #[test]
    fn the_default_policy_never_proceeds_past_a_broken_gate(
        targeted in 1u32..500, ok_share in 0u32..=100, failed_share in 0u32..=100,
        settled in prop::option::of(0u32..200), soak in 0u32..120, min_success in 0u8..=100, budget in 0u32..50,
    ) {
        let ok = targeted * ok_share / 100;
        let failed = (targeted - ok) * failed_share / 100;
        let stats = WaveStats {
            wave: 0, waves: 2, mode: Mode::Install,
            gate: Gate { soak_seconds: soak, min_success_percent: min_success, failure_budget: budget, min_sample: 5 },
            targeted, succeeded: ok, failed, in_progress: targeted - ok - failed, elapsed_seconds: 0,
            settled_seconds: settled, deployment_targeted: targeted, deployment_succeeded: ok, deployment_failed: failed,
        };
        let verdict = health::evaluate::<HealthSample>("{}", &stats, &[]).unwrap();
        if verdict == Verdict::Proceed {
            prop_assert!(failed <= budget);
            prop_assert_eq!(stats.in_progress, 0);
            prop_assert!(settled.is_some_and(|s| s >= soak));
            prop_assert!(u64::from(ok) * 100 >= u64::from(min_success) * u64::from(targeted));
        }
        if failed > budget {
            prop_assert!(matches!(verdict, Verdict::RollBack { .. }), "{verdict:?}");
        }
    }
}
