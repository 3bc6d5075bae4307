//! Each built-in strategy, run as a component over a generated 1,000-device fleet in 3 regions,
//! keeps its promises, agrees with the native planning code, and refuses bad parameters clearly.

use std::collections::{BTreeMap, HashSet};

use hotswap_plan::{Mode, Plan};
use hotswap_plugin_host::{FleetRecord, PluginError};

use crate::{fleet, runtime};

const N: usize = 1000;

/// Plans with the built-in component and checks the plan against the native code.
fn plan(strategy: &str, config: &str) -> Plan {
    let (native, wit) = fleet(N, 3);
    let plan = runtime()
        .builtin_strategy(strategy)
        .unwrap()
        .plan(config, &wit)
        .unwrap();
    let expected = hotswap_plan::plan_builtin(strategy, config, &native).unwrap();
    assert_eq!(
        plan, expected,
        "{strategy}: the component and the native code disagree"
    );
    plan.check(N).unwrap();
    plan
}

fn refused(strategy: &str, config: &str) -> String {
    let (_, wit) = fleet(N, 3);
    match runtime()
        .builtin_strategy(strategy)
        .unwrap()
        .plan(config, &wit)
    {
        Err(PluginError::Rejected { message, .. }) => message,
        other => panic!(
            "{strategy} {config}: expected the plugin to refuse, got {:?}",
            other.map(|p| p.waves.len())
        ),
    }
}

fn sizes(plan: &Plan) -> Vec<usize> {
    plan.waves.iter().map(|w| w.devices.len()).collect()
}

fn every_device_updated_once(plan: &Plan) {
    assert!(
        plan.updates_per_device(N).iter().all(|&n| n == 1),
        "some device is not updated exactly once"
    );
}

fn regions_of(devices: &[u32]) -> BTreeMap<String, usize> {
    let (native, _) = fleet(N, 3);
    let mut count = BTreeMap::new();
    for &d in devices {
        *count
            .entry(crate::region(&native, d).to_string())
            .or_default() += 1;
    }
    count
}

#[test]
fn canary_takes_the_configured_cumulative_percentages() {
    let plan = plan(
        "canary",
        r#"{"initialPercentage": 10, "increments": [30, 50, 100]}"#,
    );
    assert_eq!(sizes(&plan), [100, 200, 200, 500]);
    assert!(plan.waves.iter().all(|w| w.mode == Mode::Install));
    // Each wave's gate is sized by the wave: 95% must succeed by default.
    let budgets: Vec<u32> = plan.waves.iter().map(|w| w.gate.failure_budget).collect();
    assert_eq!(budgets, [5, 10, 10, 25]);
    assert!(
        plan.waves
            .iter()
            .all(|w| w.gate.soak_seconds == 60 && w.gate.min_sample == 10)
    );
    every_device_updated_once(&plan);
}

#[test]
fn canary_sample_is_spread_across_regions_and_not_the_first_ids() {
    let plan = plan(
        "canary",
        r#"{"initialPercentage": 10, "increments": [100], "seed": 42}"#,
    );
    let canary = &plan.waves[0].devices;
    // The fleet is 50% eu-west, 30% us-east, 20% ap-south: the sample follows within one device.
    let regions = regions_of(canary);
    for (region, share) in hotswap_plan::fleet::REGIONS {
        let expected = canary.len() * share as usize / 100;
        let got = regions[region];
        assert!(
            got.abs_diff(expected) <= 1,
            "{region}: {got} devices in the canary, expected about {expected}"
        );
    }
    let max_index = canary.iter().copied().max().unwrap();
    assert!(
        max_index > 500,
        "the canary looks like the first ids: highest index {max_index}"
    );
    let (native, _) = fleet(N, 3);
    assert!(
        canary.iter().all(|&d| native.online[d as usize]),
        "an offline device was picked for the canary"
    );
}

#[test]
fn canary_seed_changes_the_sample_and_the_same_seed_repeats_it() {
    let a = plan("canary", r#"{"seed": 1}"#);
    let b = plan("canary", r#"{"seed": 1}"#);
    let c = plan("canary", r#"{"seed": 2}"#);
    assert_eq!(a, b);
    assert_ne!(a.waves[0].devices, c.waves[0].devices);
}

#[test]
fn regional_follows_the_given_order() {
    let plan = plan(
        "regional",
        r#"{"order": ["us-east", "ap-south", "eu-west"]}"#,
    );
    let order: Vec<String> = plan
        .waves
        .iter()
        .map(|w| {
            regions_of(&w.devices)
                .into_keys()
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(order, ["us-east", "ap-south", "eu-west"]);
    every_device_updated_once(&plan);
}

#[test]
fn regional_derives_smallest_region_first() {
    let plan = plan("regional", "{}");
    let names: Vec<&str> = plan.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        ["region ap-south", "region us-east", "region eu-west"]
    );
    assert_eq!(sizes(&plan), [200, 300, 500]);
}

#[test]
fn rolling_batches_by_count_with_max_concurrency() {
    let plan = plan("rolling", r#"{"batchSize": 150, "maxConcurrency": 20}"#);
    assert_eq!(sizes(&plan), [150, 150, 150, 150, 150, 150, 100]);
    assert!(plan.waves.iter().all(|w| w.max_in_flight == Some(20)));
    every_device_updated_once(&plan);
}

#[test]
fn rolling_batches_by_percentage() {
    let plan = plan("rolling", r#"{"batchPercentage": 25}"#);
    assert_eq!(sizes(&plan), [250, 250, 250, 250]);
    assert!(plan.waves.iter().all(|w| w.max_in_flight.is_none()));
}

#[test]
fn blue_green_stages_everything_then_activates() {
    let plan = plan("blue-green", r#"{"activateIncrements": [50, 100]}"#);
    let modes: Vec<Mode> = plan.waves.iter().map(|w| w.mode).collect();
    assert_eq!(modes, [Mode::Stage, Mode::Activate, Mode::Activate]);
    assert_eq!(sizes(&plan), [1000, 500, 500]);
    let staged: HashSet<u32> = plan.waves[0].devices.iter().copied().collect();
    assert_eq!(staged.len(), N);
    assert_eq!(
        plan.waves[0].gate.min_success_percent, 100,
        "every device must stage before any switches"
    );
    every_device_updated_once(&plan);
}

#[test]
fn blue_green_activates_all_at_once_by_default() {
    let plan = plan("blue-green", "{}");
    assert_eq!(sizes(&plan), [1000, 1000]);
}

#[test]
fn direct_updates_exactly_the_named_devices() {
    let plan = plan(
        "direct",
        r#"{"devices": ["dev-000010", "dev-000500", "dev-000999"]}"#,
    );
    assert_eq!(plan.waves.len(), 1);
    let (native, _) = fleet(N, 3);
    let mut ids: Vec<&str> = plan.waves[0]
        .devices
        .iter()
        .map(|&d| hotswap_plan::FleetView::id(&native, d as usize))
        .collect();
    ids.sort();
    assert_eq!(ids, ["dev-000010", "dev-000500", "dev-000999"]);

    let one = self::plan("direct", r#"{"device": "dev-000042"}"#);
    assert_eq!(one.device_count(), 1);
    let all = self::plan("direct", "{}");
    every_device_updated_once(&all);
}

#[test]
fn strategy_names_follow_the_design_documents() {
    for name in [
        "Canary",
        "BlueGreen",
        "blue_green",
        "ROLLING",
        "Direct",
        "Regional",
    ] {
        runtime()
            .builtin_strategy(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = runtime()
        .builtin_strategy("Linear")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no built-in strategy called `Linear`") && err.contains("canary"),
        "{err}"
    );
}

/// Bad parameters, and a piece of the message that must say what is wrong.
const INVALID: &[(&str, &str, &str)] = &[
    ("canary", "not json", "invalid canary parameters"),
    (
        "canary",
        r#"{"initialPercentage": 0}"#,
        "`initialPercentage` must be above 0",
    ),
    (
        "canary",
        r#"{"initialPercentage": 120}"#,
        "`initialPercentage` must be above 0 and at most 100, found 120",
    ),
    (
        "canary",
        r#"{"increments": [50, 30, 100]}"#,
        "must rise from step to step",
    ),
    ("canary", r#"{"increments": [30, 50]}"#, "must end at 100"),
    (
        "canary",
        r#"{"initialPercent": 10}"#,
        "unknown field `initialPercent`",
    ),
    (
        "canary",
        r#"{"gate": {"minSuccessPercent": 150}}"#,
        "`gate.minSuccessPercent` must be from 0 to 100, found 150",
    ),
    (
        "canary",
        r#"{"maxInFlight": 0}"#,
        "`maxInFlight` must be at least 1",
    ),
    (
        "regional",
        r#"{"order": ["eu-west"]}"#,
        "missing: `ap-south`, `us-east`",
    ),
    (
        "regional",
        r#"{"order": ["eu-west", "eu-west", "us-east", "ap-south"]}"#,
        "names region `eu-west` twice",
    ),
    (
        "rolling",
        "{}",
        "`batchSize` or `batchPercentage` is required",
    ),
    (
        "rolling",
        r#"{"batchSize": 10, "batchPercentage": 5}"#,
        "not both",
    ),
    (
        "rolling",
        r#"{"batchSize": 0}"#,
        "`batchSize` must be at least 1",
    ),
    (
        "rolling",
        r#"{"batchPercentage": 0}"#,
        "`batchPercentage` must be above 0",
    ),
    ("rolling", r#"{"batchSize": "ten"}"#, "invalid type"),
    (
        "blue-green",
        r#"{"activateIncrements": []}"#,
        "`activateIncrements` must not be empty",
    ),
    (
        "blue-green",
        r#"{"activateIncrements": [50]}"#,
        "must end at 100",
    ),
    (
        "direct",
        r#"{"devices": ["dev-999999"]}"#,
        "device `dev-999999` is not among the deployment's targets",
    ),
    (
        "direct",
        r#"{"devices": ["dev-000001", "dev-000001"]}"#,
        "device `dev-000001` is named twice",
    ),
    ("direct", r#"{"devices": []}"#, "`devices` is empty"),
    (
        "direct",
        r#"{"device": "dev-000001", "devices": ["dev-000002"]}"#,
        "not both",
    ),
];

#[test]
fn invalid_parameters_are_refused_with_a_message_naming_the_problem() {
    for (strategy, config, expected) in INVALID {
        let message = refused(strategy, config);
        assert!(
            message.contains(expected),
            "{strategy} {config}: message {message:?} does not contain {expected:?}"
        );
    }
}

#[test]
fn descriptions_carry_a_json_schema_of_the_parameters() {
    for name in hotswap_plan::STRATEGIES {
        let strategy = runtime().builtin_strategy(name).unwrap();
        let d = strategy.description();
        assert_eq!(d.name, name);
        let schema: serde_json::Value = serde_json::from_str(&d.params_schema).unwrap();
        assert_eq!(schema["type"], "object", "{name}");
        assert!(
            schema["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn an_empty_fleet_gives_an_empty_plan() {
    for (name, config) in hotswap::kit::plans::EXAMPLES {
        if name == "direct" {
            continue; // it names devices that an empty fleet does not have
        }
        let plan = runtime()
            .builtin_strategy(name)
            .unwrap()
            .plan(config, &FleetRecord::from(&hotswap_plan::Fleet::default()))
            .unwrap();
        assert!(plan.waves.is_empty(), "{name}");
    }
}
