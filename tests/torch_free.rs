//! The two binaries (issue 21): the `niftyhost` front links no libtorch and runs
//! `evaluation`, `info` and `check` on its own; every other command line goes to
//! `niftyhost-engine` beside it, and a missing engine is named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use niftyhost_tests::{niftyhost_bin, profile_dir, repo_root, text, tissue_config};

/// The libraries an ELF64 little-endian executable names as `DT_NEEDED` in its dynamic
/// section, read from the file's section headers (no `readelf` needed).
fn needed_libraries(path: &Path) -> Vec<String> {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1, "{}: not an ELF64 LE file", path.display());
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let section = |i: usize| shoff + i * shentsize;
    const SHT_DYNAMIC: usize = 6;
    const DT_NEEDED: usize = 1;
    let dynamic = (0..shnum).map(section).find(|&s| u32_at(s + 4) == SHT_DYNAMIC).expect("a dynamic section");
    let (offset, size) = (u64_at(dynamic + 24), u64_at(dynamic + 32));
    let strings = u64_at(section(u32_at(dynamic + 40)) + 24);
    let mut out = Vec::new();
    for entry in (offset..offset + size).step_by(16) {
        match u64_at(entry) {
            0 => break,
            DT_NEEDED => {
                let name = &elf[strings + u64_at(entry + 8)..];
                let end = name.iter().position(|&b| b == 0).expect("a terminated name");
                out.push(String::from_utf8_lossy(&name[..end]).into_owned());
            }
            _ => {}
        }
    }
    out
}

fn is_torch(lib: &str) -> bool {
    lib.contains("torch") || lib.starts_with("libc10")
}

#[test]
fn the_front_binary_needs_no_libtorch_and_the_engine_does() {
    let front = needed_libraries(&niftyhost_bin());
    assert!(front.iter().any(|l| l.starts_with("libc.so")), "the reader finds the C library: {front:?}");
    assert!(!front.iter().any(|l| is_torch(l)), "niftyhost needs libtorch: {front:?}");
    let engine = needed_libraries(&profile_dir().join("niftyhost-engine"));
    assert!(engine.iter().any(|l| l == "libtorch_cpu.so"), "niftyhost-engine: {engine:?}");
}

/// Runs the front binary at `bin` in `cwd`.
fn run_front(bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).current_dir(cwd).env_remove("NIFTYHOST_PLUGIN_PATH").output().expect("niftyhost runs")
}

/// A copy of the front binary alone in `dir/bin`, with no engine beside it.
fn front_alone(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(niftyhost_bin(), bin.join("niftyhost")).unwrap();
    bin.join("niftyhost")
}

#[test]
fn without_the_engine_the_front_runs_info_evaluation_and_check_and_names_the_engine_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let front = front_alone(dir.path());
    let tissue = repo_root().join("data/mni152/tissue_2mm.nii.gz");

    let out = run_front(&front, dir.path(), &["info", tissue.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("uint8"), "{}", text(&out).0);

    for sub in ["seg", "ref"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::copy(&tissue, dir.path().join(sub).join("s1.nii.gz")).unwrap();
    }
    let out = run_front(&front, dir.path(), &["evaluation", "--seg-dir", "seg", "--ref-dir", "ref", "--out", "m.csv"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let csv = std::fs::read_to_string(dir.path().join("m.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("s1,1,1.0")), "identical masks have Dice 1:\n{csv}");
    // Its configuration errors keep their exit code.
    let out = run_front(&front, dir.path(), &["evaluation", "--set", "evaluation.connectivity=5"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);

    let config = tissue_config(dir.path(), "unet3d", "");
    let out = run_front(&front, dir.path(), &["check", "-c", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(dir.path().join("model/dataset_split.csv").is_file(), "check writes the split file");

    let engine = dir.path().join("bin/niftyhost-engine");
    for args in [&["train", "-c", config.to_str().unwrap()][..], &["--help"], &["evaluation", "-h"], &["bogus"]] {
        let out = run_front(&front, dir.path(), args);
        let stderr = text(&out).1;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{} is missing", engine.display())), "{args:?}: {stderr}");
    }
}

#[test]
fn the_engine_gets_the_command_line_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // Help and errors read `niftyhost`, as the user typed it.
    let out = run_front(&niftyhost_bin(), dir.path(), &["train", "--help"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let help = text(&out).0;
    assert!(help.contains("Usage: niftyhost train") && help.contains("training.max_iter"), "{help}");
    let out = run_front(&niftyhost_bin(), dir.path(), &["train", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--no-such-flag"), "{}", text(&out).1);
    // The engine's exit code and output come back.
    let out = run_front(&niftyhost_bin(), dir.path(), &["list-plugins", "--plugin", "missing.so"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("missing.so"), "{}", text(&out).1);
}
