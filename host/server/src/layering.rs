//! The server's layering, checked on its sources: only `api/` knows HTTP (and `serve.rs`, which
//! runs its router), and nothing outside `api/` imports from it. The rollout floor and the
//! orchestrator stay callable by a second protocol without a handler in between.

use std::path::{Path, PathBuf};

/// What only HTTP's side names.
const FORBIDDEN: [&str; 5] = ["axum", "StatusCode", "ApiError", "crate::api", "super::api"];

/// Every `.rs` file under `dir`, with its path relative to `src/`.
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

/// The lines of `text` that are code, not comments.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

#[test]
fn only_api_knows_http() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        // `api/` is HTTP's; `serve.rs` runs its router; the crate's root declares and
        // re-exports it; this file names it.
        if relative.starts_with("api")
            || ["serve.rs", "lib.rs", "layering.rs"]
                .iter()
                .any(|f| relative == Path::new(f))
        {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source reads");
        for (n, line) in code(&text) {
            for word in FORBIDDEN {
                if line.contains(word) {
                    broken.push(format!(
                        "{}:{n}: `{word}` in `{}`",
                        relative.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("rollout/start.rs")),
        "the check found the rollout floor"
    );
    assert!(
        broken.is_empty(),
        "HTTP outside api/:\n{}",
        broken.join("\n")
    );
}
