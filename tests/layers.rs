//! The layering ARCHITECTURE.md states, enforced on the source text: every
//! `crate::<module>` a file names must be in a lower layer than the file's
//! own top-level module, and the twin model does no IO.
//!
//! Layers, lowest first (a module may import only modules of lower layers):
//!
//! 0. `telemetry`, `store`, `topology` - names and recorder, RocksDB, the
//!    validated topology
//! 1. `twin` - the pure twin model; `priority` - threads' CPU priorities
//! 2. `pipeline`, `kafka`, `mqtt` - what passes between stages; broker
//!    client plumbing
//! 3. `cluster` - shards, membership, changelog, directory
//! 4. `source`, `sink` - the components at the edges
//! 5. `report` - the replay report from durable state
//! 6. `engine` - wiring, routing, hosting twins, checkpoints; `state_check`
//!    - a state directory verified offline; `fuzzing` - the fuzz targets
//! 7. `api` - the HTTP API

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["telemetry", "store", "topology"],
    &["twin", "priority"],
    &["pipeline", "kafka", "mqtt"],
    &["cluster"],
    &["source", "sink"],
    &["report"],
    &["engine", "state_check", "fuzzing"],
    &["api"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code without comments and without its test module (tests may
/// import anything), and `None` for a file of tests only.
fn code_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with("_tests.rs") || name == "tests.rs" {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap();
    // An inline test module is the file's last item (clippy's
    // `items_after_test_module`): everything from its attribute on is tests.
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|next| {
                    let next = next.trim();
                    next.ends_with('{')
                        && next
                            .trim_start_matches("pub(crate) ")
                            .trim_start_matches("pub ")
                            .starts_with("mod ")
                })
        })
        .unwrap_or(lines.len());
    let body = lines[..end].join("\n");
    let code = body
        .lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://") is rare in imports;
            // cutting there only ever drops text, never adds an import.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(code)
}

/// The top-level modules `code` names: `crate::x` paths and the members of
/// `use crate::{x, y::z}` groups.
fn imports(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Top-level module of a file under `src/` (`None`: lib.rs, main.rs).
fn top_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let top = first.strip_suffix(".rs").unwrap_or(first);
    (top != "lib" && top != "main").then(|| top.to_string())
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .filter_map(|f| top_of(f))
        .filter(|m| layer_of(m).is_none())
        .collect();
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "give these modules a layer in tests/layers.rs and ARCHITECTURE.md: {missing:?}"
    );
}

#[test]
fn no_module_imports_its_own_layer_or_one_above() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let (Some(top), Some(code)) = (top_of(file), code_of(file)) else {
            continue;
        };
        let Some(mine) = layer_of(&top) else { continue };
        for used in imports(&code) {
            if used == top {
                continue;
            }
            // `crate::` items that are not modules (macros, re-exports) have no layer.
            let Some(theirs) = layer_of(&used) else { continue };
            if theirs >= mine {
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                upward.entry(rel).or_default().push(used);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports at or above the importer's layer (see the layers at the top of tests/layers.rs):\n{}",
        upward
            .iter()
            .map(|(f, m)| format!("  src/{f} -> {m:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What the pure twin model must never name: IO, threads, clocks,
/// randomness, logging, metrics, the store (its pure codecs aside: the
/// envelope and the layout of values in parts) and actors.
const IMPURE: &[&str] = &[
    "std::fs",
    "std::net",
    "std::io",
    "std::thread",
    "std::process",
    "std::env",
    "SystemTime",
    "Instant",
    "rocksdb",
    "actix",
    "tokio",
    "crossbeam",
    "tracing",
    "metrics::",
    "fastrand",
    "telemetry",
];

#[test]
fn the_twin_model_does_no_io() {
    let mut files = Vec::new();
    rust_files(&src().join("twin"), &mut files);
    assert!(!files.is_empty(), "no twin model under src/twin");
    let mut found = Vec::new();
    for file in &files {
        let Some(code) = code_of(file) else { continue };
        let rel = file.strip_prefix(src()).unwrap().display().to_string();
        for word in IMPURE {
            if code.contains(word) {
                found.push(format!("src/{rel}: {word}"));
            }
        }
        for (i, _) in code.match_indices("crate::store::") {
            let codec = ["crate::store::envelope", "crate::store::parts"];
            if !codec.iter().any(|c| code[i..].starts_with(c)) {
                found.push(format!("src/{rel}: the store beyond its codecs"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "src/twin is the pure model; its IO belongs to engine::host:\n{}",
        found.join("\n")
    );
}

/// The checker itself: it sees grouped imports and ignores comments and tests.
#[test]
fn imports_are_read_from_paths_and_groups_but_not_comments() {
    let code = "use crate::{twin::model, store};\nlet x = crate::pipeline::now_ms();\n";
    assert_eq!(imports(code), ["twin", "store", "pipeline"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.rs");
    std::fs::write(
        &file,
        "use crate::a; // crate::b\n/// crate::c\nstruct S {\n    #[cfg(test)]\n    hook: crate::e::Hook,\n}\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\n",
    )
    .unwrap();
    assert_eq!(imports(&code_of(&file).unwrap()), ["a", "e"]);
}
