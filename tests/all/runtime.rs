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
    let dir = tmp.path().join("compiled");
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

/// The compiled components in a cache directory.
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
    let dir = tmp.path().join("compiled");
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
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
    let [entry] = cache_entries(&dir).try_into().unwrap();
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

// The cache's key used to sit in the directory it protects, so whoever could write there could
// plant a key and entries tagged with it. The key is now kept apart, and a key file that
// another user owns, others may read or write, or that is a link, is not used: nothing is
// cached on disk under it.
#[test]
fn the_cache_key_is_kept_apart_and_used_only_when_it_is_the_servers_alone() {
    use std::os::unix::fs::PermissionsExt;
    let (_, devices) = fleet(10, 1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compiled");
    let key = tmp.path().join(hotswap_plugin_host::CACHE_KEY_FILE);
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        cache_key_file: Some(key.clone()),
        ..RuntimeConfig::default()
    };
    let made = PluginRuntime::new(config.clone()).unwrap();
    made.builtin_strategy("direct")
        .unwrap()
        .plan("{}", &devices)
        .unwrap();
    assert!(!dir.join(hotswap_plugin_host::CACHE_KEY_FILE).exists());
    let mode = fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(cache_entries(&dir).len(), 1);
    // Only new files of random names were ever made in the directory, all renamed into place.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".cwasm")), "{names:?}");

    // A key others may read: not used, nothing is written to disk, and plans still run.
    for e in cache_entries(&dir) {
        fs::remove_file(e).unwrap();
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let loose = PluginRuntime::new(config.clone()).unwrap();
    loose
        .builtin_strategy("direct")
        .unwrap()
        .plan("{}", &devices)
        .unwrap();
    assert!(
        cache_entries(&dir).is_empty(),
        "cached under a key others can read"
    );

    // A link to a key: not used either.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let link = tmp.path().join("linked.key");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    let linked = PluginRuntime::new(RuntimeConfig {
        cache_key_file: Some(link),
        ..config
    })
    .unwrap();
    linked
        .builtin_strategy("direct")
        .unwrap()
        .plan("{}", &devices)
        .unwrap();
    assert!(cache_entries(&dir).is_empty(), "cached under a linked key");
}
