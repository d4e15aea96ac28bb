//! Multi-process training on MPI over loopback: equivalence with in-process replicas,
//! only rank 0 writing, a hung peer ending the run, and resuming after a rank was
//! killed. Needs Open MPI's `mpirun` (scripts/install-mpi.sh) and a niftyhost built with
//! the `mpi` feature (this crate turns it on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use niftyhost_tests::{logged_losses, niftyhost_bin, plugin_dir, run, text, tissue_config, workspace_plugin};
use tch::Tensor;

/// One MPI job at a time: two at once would share two cores four ways and make the
/// deadlines below meaningless.
static ONE_JOB: Mutex<()> = Mutex::new(());

const STEPS: u64 = 20;

/// A toynet config whose batch is `batch` windows per process.
fn config(dir: &Path, batch: usize, max_iter: u64, save_every: u64) -> PathBuf {
    plugin_dir(dir, &[workspace_plugin("toynet"), workspace_plugin("seglosses")]);
    tissue_config(
        dir,
        "toynet",
        &format!(
            "batch_size = {batch}\nspatial_window_size = [12, 12, 12]\n\
             [training]\nloss = \"cross_entropy\"\noptimiser = \"sgd\"\nlr = 0.05\n\
             max_iter = {max_iter}\nsave_every_n = {save_every}\ntensorboard_every_n = 0"
        ),
    )
}

/// `mpirun -np <np> niftyhost <args>` in `dir`, as root if need be, on loopback.
fn mpirun(dir: &Path, np: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-np", &np.to_string(), "--oversubscribe", "--bind-to", "none"])
        .arg(niftyhost_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("NIFTYHOST_PLUGIN_PATH")
        .env("RUST_LOG", "info")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-memory attach of Open MPI's shared-memory
        // transport.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    c
}

fn output(mut c: Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot start mpirun ({e}): run scripts/install-mpi.sh"))
}

fn losses(model: &Path) -> Vec<(u64, f64)> {
    logged_losses(&model.join("train_log.jsonl"))
}

fn weights(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn assert_close(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for ((i, x), (j, y)) in a.iter().zip(b) {
        assert_eq!(i, j, "{what}");
        assert!((x - y).abs() < 1e-5, "{what}: iteration {i}: loss {x} vs {y}");
    }
}

/// The pid of the rank `rank` of the job whose command line names `marker`.
fn rank_pid(rank: usize, marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        let wanted = format!("\0OMPI_COMM_WORLD_RANK={rank}\0");
        (has(&cmdline, marker.as_bytes()) && has(&[b"\0", &environ[..]].concat(), wanted.as_bytes())).then_some(pid)
    })
}

/// Waits for `file` to exist, with a deadline.
fn wait_for(file: &Path, deadline: Duration, job: &mut Child) {
    let started = Instant::now();
    while !file.exists() {
        assert!(job.try_wait().unwrap().is_none(), "the job ended before {} appeared", file.display());
        assert!(started.elapsed() < deadline, "{} did not appear within {deadline:?}", file.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits for the job to end, killing it past `deadline`; returns its exit status and
/// stderr, and how long it took.
fn finish(mut job: Child, deadline: Duration) -> (bool, String, Duration) {
    let started = Instant::now();
    loop {
        if job.try_wait().unwrap().is_some() {
            let out = job.wait_with_output().unwrap();
            return (out.status.success(), text(&out).1, started.elapsed());
        }
        if started.elapsed() > deadline {
            let _ = job.kill();
            let out = job.wait_with_output().unwrap();
            panic!("the job was still running after {deadline:?}:\n{}", text(&out).1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_mpi_processes_match_two_replicas_and_one_replica_with_the_whole_batch_with_and_without_overlap() {
    let _one_job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = || tempfile::tempdir().unwrap();
    let (single, replicas, mpi, mpi_replicas) = (tmp(), tmp(), tmp(), tmp());
    let threads = ["--set", "system.torch_threads=1", "--set", "system.loader_threads=1"];
    for (dir, devices) in [(single.path(), "cpu"), (replicas.path(), "cpu,cpu")] {
        let c = config(dir, 4, STEPS, STEPS);
        let out = run(dir, &[&["train", "-c", c.to_str().unwrap(), "--devices", devices][..], &threads].concat());
        assert!(out.status.success(), "{}", text(&out).1);
    }
    // Two processes of two replicas each: their gradients are summed in the process,
    // then across processes after backward rather than during it.
    let out = output({
        let c = config(mpi_replicas.path(), 2, STEPS, STEPS);
        let args = [&["train", "-c", c.to_str().unwrap(), "--devices", "cpu,cpu"][..], &threads].concat();
        let mut m = mpirun(mpi_replicas.path(), 2, &args);
        m.stdin(Stdio::null());
        m
    });
    assert!(out.status.success(), "{}", text(&out).1);
    let c = config(mpi.path(), 2, STEPS, STEPS);
    let out = output({
        let mut m = mpirun(mpi.path(), 2, &[&["train", "-c", c.to_str().unwrap(), "--json"][..], &threads].concat());
        m.stdin(Stdio::null());
        m
    });
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");

    // One report, from rank 0, naming the backend.
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((report["processes"].as_u64(), report["backend"].as_str()), (Some(2), Some("mpi")), "{report}");
    let share = report["communication_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "communication share {share}");

    let model = |d: &tempfile::TempDir| d.path().join("model");
    // Rank 0 alone wrote the log: one line per step, not one per rank.
    let (a, b, m) = (losses(&model(&single)), losses(&model(&replicas)), losses(&model(&mpi)));
    assert_eq!(m.len() as u64, STEPS);
    assert_close(&a, &m, "one process with batch 4 vs 2 processes with batch 2");
    assert_close(&b, &m, "2 in-process replicas vs 2 processes");
    assert_close(&a, &losses(&model(&mpi_replicas)), "one process with batch 4 vs 2 processes of 2 replicas");
    let ckpt = format!("checkpoints/iter_{STEPS:08}.safetensors");
    let (wa, wm) = (weights(&model(&single).join(&ckpt)), weights(&model(&mpi).join(&ckpt)));
    assert_eq!(wa.len(), wm.len());
    for (name, t) in &wa {
        let diff = (t - &wm[name]).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{name} differs by {diff} after {STEPS} steps");
    }
}

#[test]
fn a_hung_rank_ends_the_run_with_a_clear_error_within_the_timeout() {
    let _one_job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), 2, 100_000, 50_000);
    let marker = dir.path().to_str().unwrap().to_owned();
    let mut job = mpirun(dir.path(), 2, &["train", "-c", c.to_str().unwrap(), "--set", "system.comm_timeout_s=5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts: run scripts/install-mpi.sh");
    wait_for(&dir.path().join("model/train_log.jsonl"), Duration::from_secs(240), &mut job);
    let pid = rank_pid(1, &marker).expect("rank 1 is running");
    signal(pid, "STOP");
    let (ok, stderr, took) = finish(job, Duration::from_secs(120));
    signal_quietly(pid);
    assert!(!ok, "the job succeeded with a stopped rank:\n{stderr}");
    assert!(stderr.contains("did not complete within 5 s") && stderr.contains("dead or hung"), "{stderr}");
    assert!(took < Duration::from_secs(60), "the job took {took:?} to notice");
}

/// Ends a stopped process if mpirun left it behind.
fn signal_quietly(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
}

#[test]
fn a_job_whose_rank_was_killed_resumes_from_the_last_checkpoint() {
    let _one_job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A run far too long to finish by itself, keeping every checkpoint.
    let c = config(dir.path(), 2, 1_000_000, 5);
    let keep = ["--set", "training.max_checkpoints=100000"];
    let marker = dir.path().to_str().unwrap().to_owned();
    let mut job = mpirun(dir.path(), 2, &[&["train", "-c", c.to_str().unwrap()][..], &keep].concat())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts: run scripts/install-mpi.sh");
    let checkpoints = dir.path().join("model/checkpoints");
    wait_for(&checkpoints.join("iter_00000010.safetensors"), Duration::from_secs(240), &mut job);
    signal(rank_pid(1, &marker).expect("rank 1 is running"), "KILL");
    let (ok, stderr, _) = finish(job, Duration::from_secs(60));
    assert!(!ok, "the job survived a killed rank:\n{stderr}");
    let last = niftyhost::engine::checkpoint::list(&checkpoints).last().map(|(i, _)| *i).expect("a checkpoint");
    assert!(last >= 10, "the last complete checkpoint is {last}");

    // Resume, now to 10 steps past the last checkpoint.
    let steps = last + 10;
    let until = format!("training.max_iter={steps}");
    let resume =
        [&["train", "-c", c.to_str().unwrap(), "--set", "training.starting_iter=-1", "--set", &until][..], &keep]
            .concat();
    let out = output({
        let mut m = mpirun(dir.path(), 2, &resume);
        m.stdin(Stdio::null());
        m
    });
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resumed from checkpoint iteration={last}")), "{stderr}");
    // The resumed log runs 1..=steps once, and matches one process trained without a break.
    let resumed = losses(&dir.path().join("model"));
    assert_eq!(resumed.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (1..=steps).collect::<Vec<_>>());
    let c = config(whole.path(), 4, steps, steps);
    let out = run(whole.path(), &["train", "-c", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_close(&losses(&whole.path().join("model")), &resumed, "killed and resumed vs uninterrupted");
}

#[test]
fn one_process_on_the_mpi_backend_runs_every_collective_and_matches_in_process() {
    let _one_job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let (alone, mpi) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, backend) in [(alone.path(), "in-process"), (mpi.path(), "mpi")] {
        let c = config(dir, 4, 5, 5);
        let set = format!("system.distributed=\"{backend}\"");
        let out = run(dir, &["train", "-c", c.to_str().unwrap(), "--set", &set, "--json"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!((report["backend"].as_str(), report["processes"].as_u64()), (Some(backend), Some(1)));
        // MPI's collectives (broadcast, overlapped all-reduce, loss mean) really ran.
        assert_eq!(stderr.contains("MPI connected rank=0 size=1"), backend == "mpi", "{stderr}");
    }
    assert_close(&losses(&alone.path().join("model")), &losses(&mpi.path().join("model")), "in-process vs MPI alone");
}
