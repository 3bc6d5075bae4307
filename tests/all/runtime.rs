//! The runtime's own duties: the compiled-component cache, sharing across threads, uploads that
//! load twice.

use std::fs;

use hotswap::plugin::{BUILTINS, Plugin, PluginRuntime, RuntimeConfig};

use crate::{fleet, runtime};

#[test]
fn every_builtin_loads_as_its_kind() {
    for b in BUILTINS {
        let plugin = runtime().load(b.bytes).unwrap();
        assert_eq!(plugin.kind(), b.kind, "{}", b.name);
        assert_eq!(plugin.description().name, b.name);
        assert!(matches!(
            (&plugin, b.kind),
            (Plugin::Strategy(_), hotswap::plugin::PluginKind::Strategy)
                | (
                    Plugin::HealthPolicy(_),
                    hotswap::plugin::PluginKind::HealthPolicy
                )
        ));
    }
}

#[test]
fn compiled_components_are_cached_on_disk_and_damaged_entries_recompiled() {
    let dir = std::env::temp_dir().join(format!("hotswap-cache-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    };
    let (_, devices) = fleet(50, 2);

    let first = PluginRuntime::new(config.clone()).unwrap();
    let plan = first
        .builtin_strategy("rolling")
        .unwrap()
        .plan(r#"{"batchSize": 10}"#, &devices)
        .unwrap();
    let entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let hash = first.builtin_strategy("rolling").unwrap().content_hash();
    assert_eq!(
        entries[0].file_name().unwrap().to_str().unwrap(),
        format!("{hash}.cwasm")
    );

    // A second runtime (a restarted host) loads the compiled code from disk.
    let second = PluginRuntime::new(config.clone()).unwrap();
    assert_eq!(
        second
            .builtin_strategy("rolling")
            .unwrap()
            .plan(r#"{"batchSize": 10}"#, &devices)
            .unwrap(),
        plan
    );

    // A damaged entry is never deserialized: the runtime compiles again and works.
    let mut bytes = fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&entries[0], &bytes).unwrap();
    let third = PluginRuntime::new(config).unwrap();
    assert_eq!(
        third
            .builtin_strategy("rolling")
            .unwrap()
            .plan(r#"{"batchSize": 10}"#, &devices)
            .unwrap(),
        plan
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn plans_run_in_parallel_from_many_threads() {
    let (native, devices) = fleet(2000, 3);
    let expected = hotswap_plan::canary::plan("{}", &native).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let canary = runtime().builtin_strategy("canary").unwrap();
                for _ in 0..5 {
                    assert_eq!(canary.plan("{}", &devices).unwrap(), expected);
                }
            });
        }
    });
}

#[test]
fn a_plugin_loaded_twice_is_compiled_once_and_identical() {
    let a = runtime().load(BUILTINS[0].bytes).unwrap();
    let b = runtime().load(BUILTINS[0].bytes).unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
}
