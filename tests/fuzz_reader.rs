//! A short, seeded run of the reader's mutation fuzzer (`fuzz-reader`, tests/fuzz/reader.rs):
//! mutated conformance files and regression cases read through every reader entry point
//! with zero panics, hangs, allocations above the budget or aborts. Longer runs: README,
//! "Fuzzing the reader".

use std::path::Path;
use std::process::{Command, Output};

fn fuzz(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fuzz-reader"))
        .args(args)
        .args(["--case-seconds", "60"])
        .arg("--findings")
        .arg(dir.join("findings"))
        .arg("--work")
        .arg(dir.join("work"))
        .output()
        .expect("fuzz-reader runs")
}

#[test]
fn a_short_seeded_fuzz_run_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let findings = dir.path().join("findings");
    let out = fuzz(dir.path(), &["--seed", "7", "--cases", "150", "--budget", "64M"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().find(|l| l.starts_with("cases ")).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    assert!(summary.starts_with("cases 150 panics 0 hangs 0 over-budget 0 aborted 0"), "{stdout}\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The cases are not all refused: some read through.
    let read: u64 = summary.split("entry point: ").nth(1).and_then(|r| r.split(')').next()).unwrap().parse().unwrap();
    assert!(read > 15, "{summary}");
    assert_eq!(std::fs::read_dir(&findings).map(|d| d.count()).unwrap_or(0), 0, "{summary}");
}

/// The regression corpus under a 1 MiB budget: every buffer the reader allocates above it
/// must go through the budget (the header's extension prefix of a pair once asked for
/// 16 MiB whatever the file held, which the fuzzer's allocator turned into an abort).
#[test]
fn the_regression_corpus_under_a_tiny_budget_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let corpus = corpus.to_str().unwrap();
    let out = fuzz(dir.path(), &["--seed", "11", "--cases", "100", "--budget", "1M", "--corpus", corpus]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cases 100 panics 0 hangs 0 over-budget 0 aborted 0"), "{stdout}\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
