//! Replays every committed fuzz input (`fuzz/corpus/<target>/*` and
//! `fuzz/regressions/<target>/*`) through the same function the libFuzzer target of
//! that name runs, so CI on the stable toolchain checks them all: each must return
//! (with `Ok` or `Err` inside) and never panic.

#[path = "../fuzz/src/seeds.rs"]
mod seeds;
#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn target(name: &str) -> Option<fn(&[u8])> {
    targets::TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    v.sort();
    v
}

/// Replays `fuzz/<set>/<target>/*`; returns the number of inputs per target and panics
/// naming every input that panicked.
fn replay(set: &str) -> Vec<(String, usize)> {
    let root = fuzz_dir().join(set);
    if !root.exists() {
        return Vec::new();
    }
    let mut counts = Vec::new();
    let mut failures = Vec::new();
    for dir in sorted_entries(&root) {
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().expect("named").to_string_lossy().into_owned();
        let run = target(&name).unwrap_or_else(|| panic!("{}: no fuzz target named {name:?}", dir.display()));
        let mut n = 0;
        for file in sorted_entries(&dir) {
            if !file.is_file() || file.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.')) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| run(&bytes))) {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", file.display()));
            }
            n += 1;
        }
        counts.push((name, n));
    }
    assert!(
        failures.is_empty(),
        "{} fuzz input(s) panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
    counts
}

#[test]
fn corpus_replays_without_panic() {
    let counts = replay("corpus");
    for (name, _) in targets::TARGETS {
        let n = counts.iter().find(|(c, _)| c == name).map_or(0, |(_, n)| *n);
        assert!(n > 0, "fuzz/corpus/{name}/ has no seed inputs");
    }
}

#[test]
fn regressions_replay_without_panic() {
    replay("regressions");
}

#[test]
fn committed_seeds_reach_past_the_first_check() {
    let dir = fuzz_dir().join("corpus");
    for s in seeds::seeds() {
        let path = dir.join(s.target).join(s.name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            (s.accepted)(&bytes),
            "{} is no longer accepted by its decoder; regenerate the seeds with \
             `cargo test --test fuzz_corpus -- --ignored regenerate_seed_corpus`",
            path.display()
        );
    }
}

#[test]
fn fresh_seeds_are_accepted() {
    for s in seeds::seeds() {
        assert!((s.accepted)(&s.bytes), "{}/{}", s.target, s.name);
        (target(s.target).expect("seed for a known target"))(&s.bytes);
    }
}

/// Rewrites `fuzz/corpus/<target>/<name>` for every seed (other corpus files stay).
#[test]
#[ignore = "writes into fuzz/corpus; run by hand after a format change"]
fn regenerate_seed_corpus() {
    let dir = fuzz_dir().join("corpus");
    for s in seeds::seeds() {
        let d = dir.join(s.target);
        std::fs::create_dir_all(&d).expect("create corpus directory");
        std::fs::write(d.join(s.name), &s.bytes).expect("write seed");
    }
}
