//! The runtime's own duties: the compiled-component cache, sharing across threads, uploads that
//! load twice.

use std::fs;

use hotswap_plugin_host::{BUILTINS, Plugin, PluginRuntime, RuntimeConfig};

use crate::{fleet, runtime};

#[test]
fn every_builtin_loads_as_its_kind() {
    for b in BUILTINS {
        let plugin = runtime().load(b.bytes).unwrap();
        assert_eq!(plugin.kind(), b.kind, "{}", b.name);
        assert_eq!(plugin.description().name, b.name);
        assert!(matches!(
            (&plugin, b.kind),
            (
                Plugin::Strategy(_),
                hotswap_plugin_host::PluginKind::Strategy
            ) | (
                Plugin::HealthPolicy(_),
                hotswap_plugin_host::PluginKind::HealthPolicy
            )
        ));
    }
}

#[test]
fn compiled_components_are_cached_on_disk_and_damaged_entries_recompiled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
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
    let entries = cache_entries(&dir);
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
}

/// The compiled components in a cache directory (its key file aside).
fn cache_entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// An entry whose trailer is a plain SHA-256 of the serialization (what anyone able to write the
/// directory can compute), or a tag under another install's key, is never deserialized: the
/// component is compiled again, and the entry replaced by one this install wrote.
#[test]
fn a_forged_cache_entry_with_a_valid_plain_hash_is_recompiled() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(tmp.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let (_, devices) = fleet(20, 2);
    let first = PluginRuntime::new(config.clone()).unwrap();
    let plan = first
        .builtin_strategy("direct")
        .unwrap()
        .plan("{}", &devices)
        .unwrap();
    assert_eq!(first.compilations(), 1);
    let [entry] = cache_entries(tmp.path()).try_into().unwrap();
    let written = fs::read(&entry).unwrap();
    let serialized = &written[..written.len() - 32];

    // Untouched, a restarted host loads it from disk without compiling.
    let second = PluginRuntime::new(config.clone()).unwrap();
    second.builtin_strategy("direct").unwrap();
    assert_eq!(second.compilations(), 0);

    // The same serialization with a plain SHA-256 trailer, as the cache once wrote it.
    let mut forged = serialized.to_vec();
    forged.extend_from_slice(&sha2::Sha256::digest(serialized));
    fs::write(&entry, &forged).unwrap();
    let third = PluginRuntime::new(config.clone()).unwrap();
    assert_eq!(
        third
            .builtin_strategy("direct")
            .unwrap()
            .plan("{}", &devices)
            .unwrap(),
        plan
    );
    assert_eq!(third.compilations(), 1, "the forged entry was recompiled");
    let rewritten = fs::read(&entry).unwrap();
    assert_ne!(
        rewritten, forged,
        "the entry is replaced by one this host wrote"
    );
    let fifth = PluginRuntime::new(config.clone()).unwrap();
    fifth.builtin_strategy("direct").unwrap();
    assert_eq!(
        fifth.compilations(),
        0,
        "and that one loads from disk again"
    );

    // A tag under another install's key does not verify either.
    fs::write(
        tmp.path().join(hotswap_plugin_host::CACHE_KEY_FILE),
        [1u8; 32],
    )
    .unwrap();
    let fourth = PluginRuntime::new(config).unwrap();
    fourth.builtin_strategy("direct").unwrap();
    assert_eq!(
        fourth.compilations(),
        1,
        "an entry of another key was recompiled"
    );
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
    // A runtime of its own: the shared one compiles for other tests at the same time.
    let runtime = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let a = runtime.load(BUILTINS[0].bytes).unwrap();
    let b = runtime.load(BUILTINS[0].bytes).unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(runtime.compilations(), 1);
    runtime.load(BUILTINS[1].bytes).unwrap();
    assert_eq!(runtime.compilations(), 2, "another component is compiled");
}
