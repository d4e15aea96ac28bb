"""Issue 17's benchmark, run by scripts/bench-plan.sh: the config `niftyhost plan` derives
from the cohort's input sections alone against the hand-written configs/cohort.toml, at the
same training time, scored on the same held-out subjects (configs/cohort_split.csv).

For each config: short probe trainings measure the time of one iteration (the median of
`step_s + data_wait_s` in train_log.jsonl after a warm-up, over two probes per config run
in turn, so that both are timed under the same load: this machine's speed drifts by a
quarter over minutes), the budget over it gives the iterations, then training, inference
and evaluation run one after the other. Prints a table and writes OUT/bench-plan.json
(the plan, each config's measured step, iterations, training wall time, and GM / WM Dice
and HD95 over the INFER subjects, mean and std).

Standard library only, so it runs on a device machine from a bundle
(scripts/build-gpu-bundle.sh) as well as here from target/release.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT = os.path.join(ROOT, "configs", "cohort_split.csv")
SECTIONS = ("t1", "t2", "label")
# The cohort's classes: 0 other (background, CSF), 1 grey matter, 2 white matter.
TISSUES = {"1": "GM", "2": "WM"}
PROBE_WARMUP = 10
PROBE_ROUNDS = 2
# metrics_summary.csv's names of the reported metrics.
METRICS = {"dice": "dice", "hausdorff95_mm": "hd95"}


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=9.0, help="training time of each config (default 9)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    p.add_argument("--bundle", help="a folder with niftyhost and plugins/ (default: target/release)")
    p.add_argument("--cohort", default=os.environ.get("NIFTYHOST_COHORT", os.path.join(ROOT, "..", "shared", "data", "cohort")))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_plan"))
    p.add_argument("--memory-gb", help="plan's step memory budget (default: 0.5 on a CPU, the GPU's memory on a GPU)")
    p.add_argument("--loader-threads", type=int, default=min(8, os.cpu_count() or 2), help="both configs' loader threads")
    p.add_argument("--seed", type=int, default=1, help="system.seed of both configs (default 1)")
    p.add_argument("--probe-iterations", type=int, default=30, help="timed iterations of each probe (default 30)")
    return p.parse_args()


class Runner:
    """Runs niftyhost commands, logging each to OUT/<name>.log."""

    def __init__(self, args):
        if args.bundle:
            self.bin = os.path.join(args.bundle, "niftyhost")
            self.plugins = ["--plugin-dir", os.path.join(args.bundle, "plugins")]
        else:
            self.bin = os.path.join(ROOT, "target", "release", "niftyhost")
            self.plugins = []
        self.out = args.out

    def __call__(self, name, command, args):
        log = os.path.join(self.out, name + ".log")
        cmd = [self.bin, command] + self.plugins + args
        started = time.monotonic()
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        seconds = time.monotonic() - started
        if rc != 0:
            with open(log) as f:
                tail = f.read()[-3000:]
            sys.exit(f"error: `{' '.join(cmd)}` failed (exit {rc}); {log} ends with:\n{tail}")
        return seconds


def sets(pairs):
    return [a for k, v in pairs for a in ("--set", f"{k}={v}")]


def timed_steps(train_log):
    """The times of the iterations after the warm-up, seconds."""
    rows = []
    with open(train_log) as f:
        for line in f:
            row = json.loads(line)
            if "step_s" in row and row.get("iteration", 0) > PROBE_WARMUP:
                rows.append(row["step_s"] + row.get("data_wait_s", 0.0))
    if not rows:
        sys.exit(f"error: no timed iterations in {train_log}")
    return rows


def scores(model_dir):
    """GM and WM Dice and HD95 (mean, std) over the scored subjects."""
    found = {}
    with open(os.path.join(model_dir, "evaluation", "metrics_summary.csv")) as f:
        for row in csv.DictReader(f):
            if row["unit"] == "label" and row["label"] in TISSUES and row["metric"] in METRICS:
                name = f"{TISSUES[row['label']]} {METRICS[row['metric']]}"
                found[name] = {"mean": float(row["mean"]), "std": float(row["std"]), "n": int(row["n"])}
    return found


def main():
    args = arguments()
    if not os.path.isfile(os.path.join(args.cohort, "sub00_t1.nii.gz")):
        sys.exit(f"error: no cohort at {args.cohort} (sub00_t1.nii.gz ...): --cohort DIR or NIFTYHOST_COHORT")
    cohort = os.path.abspath(args.cohort)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    run = Runner(args)
    device = f'["{args.device}"]'
    common = [("system.devices", device), ("system.loader_threads", args.loader_threads), ("system.seed", args.seed)]

    # The plan, from what plan cannot know: where the files are, which are images, the classes.
    data = os.path.join(args.out, "data.toml")
    with open(data, "w") as f:
        for s in SECTIONS:
            f.write(f'[input.{s}]\npath_to_search = "{cohort}"\nfilename_contains = ["_{s}"]\n\n')
        f.write('[segmentation]\nimage = ["t1", "t2"]\nlabel = "label"\nnum_classes = 3\n')
    planned = os.path.join(args.out, "planned.toml")
    memory = args.memory_gb or ("0.5" if args.device == "cpu" else None)
    plan_args = ["-c", data, "--out", planned] + (["--memory-gb", memory] if memory else []) + sets(common)
    plan_seconds = run("plan", "plan", plan_args)

    configs = {
        "cohort.toml": ["-c", os.path.join(ROOT, "configs", "cohort.toml")]
        + sets((f"input.{s}.path_to_search", f'"{cohort}"') for s in SECTIONS),
        "planned": ["-c", planned],
    }
    report = {"device": args.device, "minutes": args.minutes, "seed": args.seed, "plan_seconds": plan_seconds, "configs": {}}
    # Probes and trainings: the same subjects (the split's TRAIN ones, INFER held out).
    on_split = common + [("system.dataset_split_file", f'"{SPLIT}"')]
    probe_iterations = PROBE_WARMUP + args.probe_iterations
    steps = {name: [] for name in configs}
    for turn in range(PROBE_ROUNDS):
        for name, config in configs.items():
            tag = f"{name.split('.')[0]}_probe{turn}"
            probe_dir = os.path.join(args.out, tag)
            probe = sets(
                on_split
                + [
                    ("system.model_dir", f'"{probe_dir}"'),
                    ("training.max_iter", probe_iterations),
                    ("training.save_every_n", probe_iterations),
                    ("training.validation_every_n", 0),
                ]
            )
            run(tag, "train", config + probe)
            steps[name] += timed_steps(os.path.join(probe_dir, "train_log.jsonl"))
    for name, config in configs.items():
        tag = name.split(".")[0]
        step = statistics.median(steps[name])
        iterations = max(1, int(args.minutes * 60.0 / step))
        model_dir = os.path.join(args.out, tag)
        job = config + sets(on_split + [("system.model_dir", f'"{model_dir}"')])
        train = job + sets([("training.max_iter", iterations), ("training.save_every_n", iterations)])
        train_seconds = run(tag + "_train", "train", train)
        run(tag + "_inference", "inference", job)
        run(tag + "_evaluation", "evaluation", job)
        report["configs"][name] = {
            "step_seconds": step,
            "iterations": iterations,
            "train_seconds": train_seconds,
            "scores": scores(model_dir),
        }
        print(f"{name}: {iterations} iterations of {step:.3f} s, trained in {train_seconds:.0f} s", flush=True)

    with open(os.path.join(args.out, "bench-plan.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nsame training budget: {args.minutes} min on {args.device}; INFER subjects of {os.path.relpath(SPLIT, ROOT)}")
    print("| config | iterations | s/iteration | training (s) | GM Dice | WM Dice | GM HD95 | WM HD95 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in report["configs"].items():
        s = r["scores"]
        cell = lambda k, d: f"{s[k]['mean']:.{d}f} ± {s[k]['std']:.{d}f}" if k in s else "-"  # noqa: E731
        print(f"| {name} | {r['iterations']} | {r['step_seconds']:.3f} | {r['train_seconds']:.0f} | {cell('GM dice', 4)} | {cell('WM dice', 4)} | {cell('GM hd95', 2)} | {cell('WM hd95', 2)} |")
    print(f"\nplan took {plan_seconds:.0f} s; report: {os.path.join(args.out, 'bench-plan.json')}")


if __name__ == "__main__":
    main()
