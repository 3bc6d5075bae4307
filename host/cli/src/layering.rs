//! The command's layering, checked on its sources: each room (one kind of user's commands)
//! imports none of the others, and what the rooms share imports no room. `cli.rs`, which hands
//! each subcommand to its room, is the one place that names them all.

use std::path::{Path, PathBuf};

/// The rooms, by their folder under `src/`.
const ROOMS: [&str; 5] = ["operator", "device", "push", "kit", "bench"];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source directory reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The rooms a line of code names through `crate::`, alone or in a `crate::{...}` group.
fn rooms_named(line: &str) -> Vec<&'static str> {
    let mut named = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or_default())
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default(),
            ],
        };
        named.extend(ROOMS.iter().filter(|r| names.contains(r)));
    }
    named
}

#[test]
fn rooms_do_not_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        if ["cli.rs", "lib.rs", "layering.rs"].contains(&first) {
            continue;
        }
        let room = ROOMS.iter().find(|r| **r == first);
        let text = std::fs::read_to_string(file).expect("a source reads");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for named in rooms_named(line) {
                if room != Some(&named) {
                    broken.push(format!(
                        "{}:{}: {} imports the room `{named}`: {}",
                        relative.display(),
                        n + 1,
                        room.map_or("a shared module".to_string(), |r| format!("the room `{r}`")),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("device/link.rs")),
        "the check found the rooms"
    );
    assert!(
        broken.is_empty(),
        "rooms importing each other:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_room_is_found_however_it_is_imported() {
    assert_eq!(rooms_named("use crate::push::Smp;"), ["push"]);
    assert_eq!(
        rooms_named("use crate::{device, kit::plans};"),
        ["device", "kit"]
    );
    assert!(rooms_named("use crate::usage::UsageError;").is_empty());
    assert!(rooms_named("use crate::pushing::X;").is_empty());
}
