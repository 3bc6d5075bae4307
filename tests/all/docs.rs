//! The docs a newcomer reads, held to what the code does: the README stays short enough to read
//! in one sitting, every variable the docs say a setting comes from is one the code reads, and
//! every link between the docs leads somewhere.

use std::path::{Path, PathBuf};

/// The README's size, at most: what a first hour needs, the reference in `docs/`.
const README_MAX_BYTES: usize = 10 * 1024;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The Markdown a reader is sent to: the top-level documents, `docs/`, the deployment guide.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut found: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "SECURITY.md",
        "BENCHMARKS.md",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    found.push(root.join("host/cli/deploy/DEPLOYING.md"));
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ reads") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory reads") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && !["target", "node_modules", ".git"].contains(&name) {
            rust_sources(&path, found);
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_readme_is_short() {
    let size = std::fs::metadata(root().join("README.md")).unwrap().len() as usize;
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, over {README_MAX_BYTES}: move reference to docs/"
    );
}

#[test]
fn every_variable_the_docs_name_is_read_by_the_code() {
    let mut sources = Vec::new();
    for dir in ["host", "tests", "device-vm"] {
        rust_sources(&root().join(dir), &mut sources);
    }
    let code: String = sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let mut missing = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (i, _) in text.match_indices("HOTSWAP_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = name.trim_end_matches('_');
            if !code.contains(&format!("\"{name}\"")) {
                missing.push(format!("{}: {name}", doc.display()));
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "named in the docs, read nowhere:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_link_between_the_docs_leads_to_a_file() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let dir = doc.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                continue;
            }
            if !dir.join(path).exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_constant_security_md_names_is_in_the_code() {
    let mut sources = Vec::new();
    for dir in ["host", "device-vm"] {
        rust_sources(&root().join(dir), &mut sources);
    }
    let code: String = sources
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    let text = std::fs::read_to_string(root().join("SECURITY.md")).unwrap();
    let mut missing = Vec::new();
    for quoted in text.split('`').skip(1).step_by(2) {
        let name = quoted.rsplit("::").next().unwrap_or(quoted);
        // Environment variables (`HOTSWAP_...`) are the test above's.
        let constant = name.len() > 3
            && name.contains('_')
            && !name.starts_with("HOTSWAP_")
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if constant && !code.contains(&format!("const {name}:")) {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md names constants the code does not have: {missing:?}"
    );
}
