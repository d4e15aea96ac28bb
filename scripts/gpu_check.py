"""The GPU check of issue 20, run by scripts/gpu-check.sh (which finds libtorch first):
`niftyhost train` of unet3d on the bundled task on cuda:0 in fp32, bf16 and fp16 at two
batch sizes, its first losses against the CPU's, whole-volume inference in fp32 and bf16,
NCCL with one process and (with two or more GPUs) two, and the same network in plain
PyTorch on the same card. Writes one JSON report and prints a summary.

Every step is guarded: one that fails is recorded with its error and the check goes on;
the exit status is 1 when any step failed. `--cpu` runs the same steps on the CPU with tiny
settings (the steps that need CUDA are recorded as skipped, with the reason), so that CI
keeps the script working while no GPU is at hand. Standard library only: the PyTorch
baseline runs in its own process (scripts/pytorch_unet3d.py).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import nifti_min  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "unet3d.toml")
DATA = os.path.join(ROOT, "data", "mni152")
# The first losses of fp32 on the device and on the CPU must agree to this, relative to
# max(1, |loss|) (issue 20: "about 1e-3"; cuDNN's TF32 convolutions are on by default).
LOSS_TOLERANCE = 1e-3
COMPARED_LOSSES = 10
MIB = 1024.0 * 1024.0


class Skip(Exception):
    """A step that does not apply here; its message is the reason."""


class StepFailed(Exception):
    """A step that ran and failed; `record` keeps what it measured before failing."""

    def __init__(self, message, record=None):
        super().__init__(message)
        self.record = record or {}


def mib(value):
    return None if value is None else round(value, 1)


def settings_for(args):
    """The sizes of the run: the GPU's (issue 20) or the CPU mode's tiny ones."""
    cpu = args.cpu
    s = {
        "mode": "cpu" if cpu else "gpu",
        "device": "cpu" if cpu else "cuda:0",
        "window": args.window or (16 if cpu else 64),
        "batch": args.batch or 2,
        "big_batch": args.big_batch or (4 if cpu else 16),
        "iterations": args.iterations or (10 if cpu else 50),
        "warmup": args.warmup if args.warmup is not None else (3 if cpu else 10),
        "precisions": ["fp32", "bf16", "fp16"],
        "loader_threads": args.loader_threads or (1 if cpu else max(2, min(8, (os.cpu_count() or 4) // 2))),
        "torch_threads": 1 if cpu else 0,
        "inference_window": args.window or (16 if cpu else 64),
        "inference_copies": 2 if cpu else 3,
        "inference_batch": 2,
        "budget_s": args.budget or (240.0 if cpu else 330.0),
        "seed": 1,
    }
    if s["iterations"] < max(COMPARED_LOSSES, s["warmup"] + 2):
        raise SystemExit(f"error: --iterations must be at least {max(COMPARED_LOSSES, s['warmup'] + 2)}")
    return s


class Proc:
    """A finished child process: exit code, output, wall seconds and peak resident memory."""

    def __init__(self, name, cmd, rc, out, err, seconds, maxrss_mib):
        self.name, self.cmd, self.rc, self.out, self.err = name, cmd, rc, out, err
        self.seconds, self.maxrss_mib = seconds, maxrss_mib

    def tail(self, chars=3000):
        text = self.err.strip() or self.out.strip()
        return text[-chars:]

    def failure(self, what):
        """`what exited with N: <its last error line>`, then the end of its output."""
        lines = [line.strip() for line in self.tail().splitlines() if line.strip()] or ["no output"]
        errors = [i for i, line in enumerate(lines) if "error" in line.lower()]
        headline = " ".join(lines[errors[-1] if errors else -1 :])
        return f"{what} exited with {self.rc}: {headline[:400]}\n{self.tail()}"


class GpuMemory:
    """nvidia-smi's memory.used of every GPU, sampled every 100 ms while a step runs."""

    def __init__(self, available):
        self.available = available
        self.proc, self.peaks, self.thread = None, {}, None

    def query(self):
        return parse_memory_lines(nvidia_smi_query("index,memory.used")) if self.available else {}

    def start(self):
        if not self.available:
            return
        self.peaks = {}
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

        def read():
            for line in self.proc.stdout:
                for gpu, used in parse_memory_lines([line]).items():
                    self.peaks[gpu] = max(used, self.peaks.get(gpu, 0.0))

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def stop(self):
        """Peak memory.used per GPU index (MiB) since `start`."""
        if self.proc is None:
            return {}
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.thread.join(timeout=5)
        self.proc = None
        return dict(self.peaks)


def nvidia_smi_query(fields):
    """The lines of `nvidia-smi --query-gpu=FIELDS` (one per GPU); none if it fails."""
    try:
        return subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def parse_memory_lines(lines):
    out = {}
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                out[int(parts[0])] = float(parts[1])
            except ValueError:
                pass
    return out


class Check:
    """The check's state: settings, paths, the deadline, and the steps' records."""

    def __init__(self, args):
        self.args = args
        self.s = settings_for(args)
        self.bundle = os.path.abspath(args.bundle)
        self.bin = os.path.join(self.bundle, "niftyhost")
        plugins = os.path.join(self.bundle, "plugins")
        self.plugins = plugins if os.path.isdir(plugins) else self.bundle
        self.out = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="gpu-check-")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.out, exist_ok=True)
        self.started = time.time()
        self.deadline = self.started + self.s["budget_s"]
        self.steps = {}
        self.aborted = None
        self.nvidia_smi = shutil.which("nvidia-smi") is not None
        self.gpu_memory = GpuMemory(self.nvidia_smi and not args.cpu)
        self.gpus = self.list_gpus()
        self.baseline = self.gpu_memory.query()
        self.torch_python = args.torch_python or os.environ.get("GPU_CHECK_TORCH_PYTHON") or None

    # -- running things ---------------------------------------------------------------

    def list_gpus(self):
        if not self.nvidia_smi:
            return []
        gpus = []
        for line in nvidia_smi_query("index,name,memory.total,driver_version"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 4:
                gpus.append({"index": parts[0], "name": parts[1], "memory_mib": parts[2], "driver": parts[3]})
        return gpus

    def time_left(self):
        return self.deadline - time.time()

    def start(self, name, cmd, env=None):
        """Starts a child in its own process group, its output in logs/<name>.{out,err}."""
        out = open(os.path.join(self.logs, f"{name}.out"), "w")
        err = open(os.path.join(self.logs, f"{name}.err"), "w")
        full_env = dict(os.environ)
        full_env.pop("NIFTYHOST_PLUGIN_PATH", None)
        full_env.update(env or {})
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=out, stderr=err, cwd=self.work, env=full_env, start_new_session=True
        )
        return proc, out, err, time.time()

    def finish(self, name, cmd, started, limit_s):
        """Waits for a child of `start` for at most `limit_s` (then kills its process
        group); returns its Proc with the child's own peak resident memory."""
        proc, out, err, t0 = started
        deadline = t0 + limit_s
        status, usage = None, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.05)
        proc.returncode = -1 if status is None else os.waitstatus_to_exitcode(status)
        seconds = time.time() - t0
        out.close()
        err.close()
        read = lambda ext: open(os.path.join(self.logs, f"{name}.{ext}"), errors="replace").read()  # noqa: E731
        p = Proc(name, cmd, proc.returncode, read("out"), read("err"), seconds, usage.ru_maxrss / 1024.0)
        if status is None:
            raise StepFailed(f"{name} did not finish within {limit_s:.0f} s (killed); last output:\n{p.tail()}")
        return p

    def run(self, name, cmd, limit_s, env=None):
        return self.finish(name, cmd, self.start(name, cmd, env), limit_s)

    def measured(self, name, cmd, limit_s, env=None):
        """`run` with nvidia-smi sampling; returns (Proc, peak GPU memory record)."""
        self.gpu_memory.start()
        try:
            p = self.run(name, cmd, limit_s, env)
        finally:
            peaks = self.gpu_memory.stop()
        return p, self.memory_record(peaks)

    def memory_record(self, peaks):
        if not self.gpu_memory.available:
            why = "CPU mode" if self.args.cpu else "nvidia-smi not found"
            return {"peak_gpu_memory_mib": None, "gpu_memory_note": f"not sampled: {why}"}
        used = {g: peaks[g] - self.baseline.get(g, 0.0) for g in peaks}
        return {
            "peak_gpu_memory_mib": mib(used.get(0)),
            "peak_gpu_memory_mib_per_gpu": {str(g): mib(v) for g, v in sorted(used.items())},
            "gpu_memory_note": "nvidia-smi memory.used sampled every 100 ms, minus the idle baseline "
            "(the whole process: CUDA context, caching allocator and cuDNN workspaces included)",
        }

    # -- niftyhost commands -------------------------------------------------------------

    def niftyhost(self, command, model_dir, extra):
        """`niftyhost COMMAND` on the bundled task (configs/unet3d.toml, data/mni152 by
        absolute path: the commands run in the work folder), with `--json`."""
        s = self.s
        head = [self.bin, command, "-c", CONFIG, "--plugin-dir", self.plugins, "--model-dir", model_dir]
        head += ["--seed", str(s["seed"]), "--json"]
        return head + set_flags(
            f"input.t1.path_to_search={toml(DATA)}",
            f"input.label.path_to_search={toml(DATA)}",
            f"system.torch_threads={s['torch_threads']}",
        ) + extra

    def train_cmd(self, model_dir, precision, batch, iterations, devices=None, sets=()):
        """`niftyhost train`: `iterations` steps, one checkpoint at the end, no TensorBoard."""
        w = self.s["window"]
        extra = ["--batch-size", str(batch), "--max-iter", str(iterations)]
        extra += set_flags(
            f"network.spatial_window_size=[{w}, {w}, {w}]",
            f"training.mixed_precision={toml('none' if precision == 'fp32' else precision)}",
            f"training.save_every_n={iterations}",
            "training.tensorboard_every_n=0",
            f"system.loader_threads={self.s['loader_threads']}",
            *sets,
        )
        if devices:
            extra += ["--devices", devices]
        return self.niftyhost("train", model_dir, extra)

    def train_record(self, p, model_dir, memory, precision, batch):
        """What a `niftyhost train --json` run measured, its step times after warm-up
        taken from train_log.jsonl (the last step, which writes the checkpoint, left out)."""
        if p.rc != 0:
            raise StepFailed(p.failure("niftyhost train"), memory)
        report = json.loads(p.out)
        steps = read_log(os.path.join(model_dir, "train_log.jsonl"))
        warmup = self.s["warmup"]
        timed = steps[warmup : len(steps) - 1] or steps[-1:]
        step_s = sum(r["step_s"] for r in timed)
        per_iteration = step_s / len(timed)
        patches = batch * report["processes"]  # windows per step over the job
        skipped = sum(1 for r in steps if r.get("grad_norm") is None or r.get("grad_norm") != r.get("grad_norm"))
        record = {
            "precision": precision,
            "batch": batch,
            "window": self.s["window"],
            "iterations": report["iterations"],
            "warmup": warmup,
            "timed_iterations": len(timed),
            "seconds_per_iteration": per_iteration,
            "patches_per_second": patches / per_iteration,
            "data_wait_share": sum(r["data_wait_s"] for r in timed) / step_s if step_s > 0 else None,
            "host_overhead_share": report["step_parts"]["host_overhead_share"],
            "communication_share": report["communication_share"],
            "whole_run_seconds_per_iteration": report["seconds_per_iteration"],
            "step_parts": report["step_parts"],
            "first_losses": [r["loss"] for r in steps[:COMPARED_LOSSES]],
            "final_loss": report["final_loss"],
            "parameters": report["parameters"],
            "backend": report["backend"],
            "processes": report["processes"],
            "process_seconds": p.seconds,
            "peak_rss_mib": mib(p.maxrss_mib),
        }
        if precision == "fp16":
            record["skipped_steps"] = skipped
            record["final_loss_scale"] = steps[-1].get("loss_scale") if steps else None
        record.update(memory)
        return record

    # -- the steps ----------------------------------------------------------------------

    def step(self, name, section, fn, limit_s):
        """Runs one guarded step and records it: ok (with what it measured), skipped (with
        the reason) or failed (with the error)."""
        t0 = time.time()
        left = self.time_left()
        try:
            if left < 5:
                raise Skip(f"the time budget of {self.s['budget_s']:.0f} s is used up")
            record = {"status": "ok"}
            record.update(fn(min(limit_s, left)) or {})
        except Skip as e:
            record = {"status": "skipped", "reason": str(e)}
        except StepFailed as e:
            record = {"status": "failed", "error": str(e)}
            record.update(e.record)
        except Exception as e:  # a bug or a surprise: recorded, and the check goes on
            record = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        record["section"] = section
        record["step_seconds"] = round(time.time() - t0, 2)
        self.steps[name] = record
        print(f"[{time.time() - self.started:6.1f} s] {name}: {record['status']} {line_for(record)}", flush=True)
        return record

    def ok(self, name):
        step = self.steps.get(name)
        return step if step and step["status"] == "ok" else None

    def bundle_step(self, limit):
        if not os.access(self.bin, os.X_OK):
            raise StepFailed(f"no executable {self.bin}: build the bundle with scripts/build-gpu-bundle.sh")
        version = self.run("version", [self.bin, "--version"], limit)
        p = self.run("list_plugins", [self.bin, "list-plugins", "--json", "--plugin-dir", self.plugins], limit)
        if p.rc != 0:
            raise StepFailed(p.failure("niftyhost list-plugins"))
        rows = json.loads(p.out)
        names = sorted({r.get("name") for r in rows if isinstance(r, dict) and r.get("name")})
        record = {"niftyhost": version.out.strip(), "components": names, "plugins_dir": self.plugins}
        missing = [c for c in ("unet3d", "dice_ce") if c not in names]
        if missing:
            raise StepFailed(f"the bundle's plugins lack {missing} (found {names})", record)
        return record

    def train_step(self, precision, batch):
        name = f"train_{precision}_b{batch}"

        def fn(limit):
            if self.args.cpu and precision != "fp32":
                raise Skip(
                    "niftyhost's training autocast (training.mixed_precision) applies to CUDA devices only: "
                    "CPU replicas stay fp32"
                )
            model_dir = os.path.join(self.work, name)
            cmd = self.train_cmd(model_dir, precision, batch, self.s["iterations"], self.s["device"])
            p, memory = self.measured(name, cmd, limit)
            return self.train_record(p, model_dir, memory, precision, batch)

        return name, fn

    def losses_step(self, limit):
        """The first losses of fp32 on the device against a reference run with the same
        seed: on the CPU (GPU mode), or with other loader threads (CPU mode)."""
        device_run = self.ok(f"train_fp32_b{self.s['batch']}")
        if device_run is None:
            raise StepFailed(f"needs train_fp32_b{self.s['batch']}, which did not run")
        model_dir = os.path.join(self.work, "cpu_reference")
        # CPU mode: the same device, other loader threads (the batches must not change).
        other = ["system.loader_threads=2"] if self.args.cpu else ["system.torch_threads=0"]
        cmd = self.train_cmd(model_dir, "fp32", self.s["batch"], COMPARED_LOSSES, "cpu", other)
        p = self.run("cpu_reference", cmd, limit)
        if p.rc != 0:
            raise StepFailed(p.failure("the CPU reference run"))
        reference = [r["loss"] for r in read_log(os.path.join(model_dir, "train_log.jsonl"))][:COMPARED_LOSSES]
        device = device_run["first_losses"]
        diffs = [abs(a - b) / max(1.0, abs(b)) for a, b in zip(device, reference)]
        record = {
            "device": self.s["device"],
            "reference": "cpu" if not self.args.cpu else "cpu with system.loader_threads = 2 (the run: 1)",
            "device_losses": device,
            "reference_losses": reference,
            "max_abs_difference": max(abs(a - b) for a, b in zip(device, reference)) if reference else None,
            "max_relative_difference": max(diffs) if diffs else None,
            "tolerance": f"{LOSS_TOLERANCE} relative to max(1, |loss|)",
        }
        if len(device) < COMPARED_LOSSES or len(reference) < COMPARED_LOSSES:
            raise StepFailed(f"expected {COMPARED_LOSSES} losses, got {len(device)} and {len(reference)}", record)
        if max(diffs) > LOSS_TOLERANCE:
            raise StepFailed(f"the losses differ by up to {max(diffs):.2e} (tolerance {LOSS_TOLERANCE})", record)
        return record

    def inference_image(self):
        """The 1 mm T1 on a GPU; in CPU mode a 24³ crop of the 2 mm T1 (in the work folder;
        bf16 convolutions are slow on CPUs without bf16 dot products)."""
        if not self.args.cpu:
            return os.path.join(ROOT, "data", "mni152_1mm", "t1_1mm.nii.gz")
        path = os.path.join(self.work, "t1_crop24.nii.gz")
        if not os.path.exists(path):
            nifti_min.write_crop(os.path.join(DATA, "t1_2mm.nii.gz"), path, (38, 46, 36), (24, 24, 24))
        return path

    def inference_step(self, precision):
        name = f"inference_{precision}"

        def fn(limit):
            trained = self.ok(f"train_fp32_b{self.s['batch']}")
            if trained is None:
                raise StepFailed(f"needs the model of train_fp32_b{self.s['batch']}, which did not run")
            image = self.inference_image()
            # The same image under several subject ids: the first is cold (cuDNN's first
            # calls, allocator growth), the others show the steady state.
            ids = ["cold"] + [f"warm{i}" for i in range(1, self.s["inference_copies"])]
            csv = os.path.join(self.work, f"{name}.csv")
            with open(csv, "w") as f:
                f.write("subject_id,path\n" + "".join(f"{i},{image}\n" for i in ids))
            w = self.s["inference_window"]
            model_dir = os.path.join(self.work, f"train_fp32_b{self.s['batch']}")
            extra = ["--devices", self.s["device"]] + set_flags(
                f"input.t1.csv_file={toml(csv)}",
                f"system.dataset_split_file={toml(os.path.join(self.work, name + '_no_split.csv'))}",
                f"inference.output_dir={toml(os.path.join(self.work, name))}",
                f"inference.precision={toml(precision)}",
                f"inference.spatial_window_size=[{w}, {w}, {w}]",
                f"inference.batch_size={self.s['inference_batch']}",
            )
            cmd = self.niftyhost("inference", model_dir, extra)
            p, memory = self.measured(name, cmd, limit)
            if p.rc != 0:
                raise StepFailed(p.failure("niftyhost inference"), memory)
            segmented = json.loads(p.out)
            segmented = segmented["segmented"] if isinstance(segmented, dict) else segmented
            if len(segmented) != len(ids):
                raise StepFailed(f"expected {len(ids)} segmentations, got {len(segmented)}", memory)
            warm = segmented[1:]
            record = {
                "image": os.path.relpath(image, ROOT) if not self.args.cpu else "24³ crop of data/mni152/t1_2mm",
                "precision": precision,
                "window": w,
                "batch": self.s["inference_batch"],
                "windows": segmented[0]["windows"],
                "cold_seconds": segmented[0]["seconds"],
                "cold_network_seconds": segmented[0]["network_seconds"],
                "warm_seconds": min(s["seconds"] for s in warm),
                "warm_network_seconds": min(s["network_seconds"] for s in warm),
                "process_seconds": p.seconds,
                "peak_rss_mib": mib(p.maxrss_mib),
                "note": "seconds: reading to writing one volume; network_seconds: its forward passes",
            }
            record.update(memory)
            return record

        return name, fn

    def nccl_one_step(self, limit):
        if self.args.cpu:
            raise Skip("NCCL reduces CUDA tensors: GPU mode only")
        name, b = "nccl_one_process", self.s["batch"]
        model_dir = os.path.join(self.work, name)
        cmd = self.train_cmd(model_dir, "fp32", b, self.s["iterations"], self.s["device"], ['system.distributed="nccl"'])
        p, memory = self.measured(name, cmd, limit)
        record = self.train_record(p, model_dir, memory, "fp32", b)
        if record["backend"] != "nccl":
            raise StepFailed(f"the run used backend {record['backend']!r}, not nccl", record)
        base = self.ok(f"train_fp32_b{b}")
        if base:
            record["vs_in_process_seconds_per_iteration"] = record["seconds_per_iteration"] / base["seconds_per_iteration"]
        return record

    def nccl_two_step(self, limit):
        if self.args.cpu:
            raise Skip("NCCL reduces CUDA tensors: GPU mode only")
        if len(self.gpus) < 2:
            raise Skip(f"needs 2 GPUs, nvidia-smi lists {len(self.gpus)}")
        name, b = "nccl_two_processes", self.s["batch"]
        model_dir = os.path.join(self.work, name)
        cmd = self.train_cmd(
            model_dir,
            "fp32",
            b,
            self.s["iterations"],
            None,
            ['system.distributed="nccl"', "system.num_gpus=1", "system.comm_timeout_s=60.0"],
        )
        port = str(free_port())
        common = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        self.gpu_memory.start()
        started = []
        try:
            for r in (0, 1):
                started.append(self.start(f"{name}_rank{r}", cmd, dict(common, RANK=str(r), LOCAL_RANK=str(r))))
            procs = [self.finish(f"{name}_rank{r}", cmd, started[r], limit) for r in (0, 1)]
        except BaseException:
            for proc, *_ in started:  # a rank that is still running would outlive the step
                if proc.returncode is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    os.waitpid(proc.pid, 0)
                    proc.returncode = -1
            raise
        finally:
            memory = self.memory_record(self.gpu_memory.stop())
        for r, p in enumerate(procs):
            if p.rc != 0:
                raise StepFailed(p.failure(f"rank {r}"), memory)
        record = self.train_record(procs[0], model_dir, memory, "fp32", b)
        one = self.ok("nccl_one_process")
        if one:
            record["scaling_efficiency"] = record["patches_per_second"] / (2 * one["patches_per_second"])
            record["note"] = "scaling_efficiency: patches/s of 2 processes over twice those of 1 (batch per process)"
        return record

    def pytorch_step(self, limit):
        if not self.torch_python:
            raise Skip("no Python with torch found (scripts/gpu-check.sh looks at $TORCH_PYTHON, python3 and /opt/torch/.venv)")
        s = self.s
        precisions = ["fp32"] if self.args.cpu else s["precisions"]
        out = os.path.join(self.work, "pytorch.json")
        cmd = self.torch_python.split() + [os.path.join(HERE, "pytorch_unet3d.py"), "--device", s["device"]]
        cmd += ["--window", str(s["window"]), "--batches", f"{s['batch']},{s['big_batch']}"]
        cmd += ["--precisions", ",".join(precisions), "--iterations", str(s["iterations"])]
        cmd += ["--warmup", str(s["warmup"]), "--seed", str(s["seed"]), "--threads", str(s["torch_threads"])]
        cmd += ["--json", out]
        p, memory = self.measured("pytorch", cmd, limit)
        if not os.path.exists(out):
            raise StepFailed(p.failure("scripts/pytorch_unet3d.py (no report written)"), memory)
        with open(out) as f:
            record = json.load(f)
        record.update(memory)
        record["process_seconds"] = p.seconds
        if self.args.cpu:
            record["skipped_precisions"] = {"bf16": "CPU mode: niftyhost trains fp32 on a CPU", "fp16": "likewise"}
        failed = [f"{r['precision']} b{r['batch']}: {r['error']}" for r in record["runs"] if "error" in r]
        if failed:
            raise StepFailed("; ".join(failed), record)
        trained = self.ok(f"train_fp32_b{s['batch']}")
        counts = {r["parameters"] for r in record["runs"]}
        if trained and counts != {trained["parameters"]}:
            raise StepFailed(
                f"the PyTorch network has {sorted(counts)} parameters, niftyhost's {trained['parameters']}", record
            )
        return record

    def comparison_step(self, limit):
        pytorch = self.ok("pytorch")
        if pytorch is None:
            state = self.steps.get("pytorch", {})
            why = (state.get("reason") or state.get("error") or "").splitlines()[:1]
            raise Skip(f"the PyTorch baseline {state.get('status', 'did not run')}: {''.join(why)[:300]}")
        ratios = {}
        for run in pytorch["runs"]:
            mine = self.ok(f"train_{run['precision']}_b{run['batch']}")
            if mine:
                ratios[f"{run['precision']}_b{run['batch']}"] = {
                    "niftyhost_s_per_iteration": mine["seconds_per_iteration"],
                    "pytorch_s_per_iteration": run["seconds_per_iteration"],
                    "ratio": mine["seconds_per_iteration"] / run["seconds_per_iteration"],
                }
        if not ratios:
            raise StepFailed("no niftyhost training run matches a PyTorch run")
        bf16 = self.ok("inference_bf16")
        return {
            "ratios": ratios,
            "note": "ratio = niftyhost seconds per iteration / PyTorch eager's, after warm-up (below 1: niftyhost is faster)",
            "targets": {
                "training_at_least_as_fast_as_pytorch": all(r["ratio"] <= 1.0 for r in ratios.values()),
                "bf16_inference_under_1_s": None if bf16 is None else bf16["warm_seconds"] < 1.0,
            },
        }

    def all_steps(self):
        s = self.s
        per = 150.0
        self.step("bundle", "bundle", self.bundle_step, 60.0)
        for batch in (s["batch"], s["big_batch"]):
            for precision in s["precisions"]:
                name, fn = self.train_step(precision, batch)
                self.step(name, "training", fn, per)
        self.step("losses_vs_cpu", "loss_agreement", self.losses_step, per)
        for precision in ("fp32", "bf16"):
            name, fn = self.inference_step(precision)
            self.step(name, "inference", fn, per)
        self.step("nccl_one_process", "nccl", self.nccl_one_step, per)
        self.step("nccl_two_processes", "nccl", self.nccl_two_step, per)
        self.step("pytorch", "pytorch", self.pytorch_step, per)
        self.step("comparison", "comparison", self.comparison_step, per)

    # -- the report ---------------------------------------------------------------------

    def environment(self):
        manifest = os.path.join(self.bundle, "manifest.json")
        env = {
            "hostname": platform.node(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "gpus": self.gpus,
            "gpu_memory_baseline_mib": {str(g): v for g, v in self.baseline.items()},
            "libtorch_lib": os.environ.get("GPU_CHECK_LIBTORCH_LIB") or "the binary's runpath",
            "libtorch_version": os.environ.get("GPU_CHECK_LIBTORCH_VERSION"),
            "torch_python": self.torch_python,
            "bundle": self.bundle,
            "work": self.work,
        }
        if os.path.exists(manifest):
            try:
                with open(manifest) as f:
                    env["bundle_manifest"] = json.load(f)
            except (OSError, ValueError) as e:
                env["bundle_manifest"] = f"unreadable: {e}"
        return env

    def write(self):
        failed = [n for n, r in self.steps.items() if r["status"] == "failed"]
        if self.aborted:
            failed.append(f"aborted ({self.aborted})")
        report = {
            "check": "niftyhost GPU check (issue 20)",
            "mode": self.s["mode"],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "settings": self.s,
            "environment": self.environment(),
            "order": list(self.steps),
            "steps": self.steps,
            "failed": failed,
            "ok": not failed,
        }
        path = os.path.join(self.out, "gpu-check.json")
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        summary = summary_text(report)
        with open(os.path.join(self.out, "gpu-check.txt"), "w") as f:
            f.write(summary)
        with tarfile.open(os.path.join(self.out, "gpu-check-logs.tar.gz"), "w:gz") as tar:
            tar.add(self.logs, arcname="logs")
            for name in sorted(os.listdir(self.work)):
                log = os.path.join(self.work, name, "train_log.jsonl")
                if os.path.exists(log):
                    tar.add(log, arcname=f"train_logs/{name}.jsonl")
        print(summary, end="")
        print(f"report: {path}")
        return report


def set_flags(*settings):
    """`--set KEY=VALUE` for each setting."""
    return [arg for setting in settings for arg in ("--set", setting)]


def toml(value):
    """A TOML string literal (JSON's escaping is TOML's for basic strings)."""
    return json.dumps(value)


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def memory_text(r):
    """Peak GPU memory where it was sampled, else the process's peak resident memory."""
    if r.get("peak_gpu_memory_mib") is not None:
        return f"peak GPU {r['peak_gpu_memory_mib']:.0f} MiB"
    return f"peak RSS {fmt(r.get('peak_rss_mib'), '.0f')} MiB"


def line_for(r):
    """One line of what a step measured, or why it did not."""
    if r["status"] == "skipped":
        return r["reason"]
    if r["status"] == "failed":
        return r["error"].splitlines()[0][:300] if r["error"] else ""
    if "seconds_per_iteration" in r and "precision" in r:
        text = (
            f"{r['seconds_per_iteration']:.4f} s/it, {r['patches_per_second']:.1f} patches/s, "
            f"data wait {100 * (r['data_wait_share'] or 0):.1f}%, host overhead {100 * r['host_overhead_share']:.1f}%, "
            + memory_text(r)
        )
        if "scaling_efficiency" in r:
            text += f", scaling efficiency {100 * r['scaling_efficiency']:.0f}%"
        return text
    if "max_relative_difference" in r:
        return f"max |Δloss| {r['max_abs_difference']:.2e} over {COMPARED_LOSSES} losses ({r['tolerance']})"
    if "cold_seconds" in r:
        return (
            f"{r['windows']} windows, cold {r['cold_seconds']:.2f} s, warm {r['warm_seconds']:.2f} s "
            f"(network {r['warm_network_seconds']:.2f} s), " + memory_text(r)
        )
    if "runs" in r:
        return ", ".join(
            f"{x['precision']} b{x['batch']} {x['seconds_per_iteration']:.4f} s/it" for x in r["runs"] if "error" not in x
        )
    if "ratios" in r:
        return ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in r["ratios"].items())
    if "components" in r:
        return f"{r['niftyhost']}, {len(r['components'])} components"
    return ""


def summary_text(report):
    env = report["environment"]
    gpus = ", ".join(f"{g['name']} ({g['memory_mib']} MiB)" for g in env["gpus"]) or "no GPU"
    lines = [
        f"niftyhost GPU check, {report['mode']} mode, {report['seconds']:.0f} s: {gpus}",
        f"  window {report['settings']['window']}³, batches {report['settings']['batch']} and "
        f"{report['settings']['big_batch']}, {report['settings']['iterations']} iterations "
        f"({report['settings']['warmup']} warm-up)",
    ]
    for name, r in report["steps"].items():
        lines.append(f"  {name:<20} {r['status']:<8} {line_for(r)}")
    comparison = report["steps"].get("comparison", {})
    if comparison.get("status") == "ok":
        lines.append(f"  targets: {json.dumps(comparison['targets'])}")
    lines.append("all steps passed" if report["ok"] else f"FAILED: {', '.join(report['failed'])}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="tiny settings on the CPU (what CI runs)")
    ap.add_argument("--bundle", default=os.path.join(ROOT, "gpu-bundle"), help="folder with niftyhost and plugins/")
    ap.add_argument("--out", default=os.path.join(ROOT, "gpu-check"), help="where the report goes")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed at the end)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary working folder")
    ap.add_argument("--torch-python", help="command of a Python with torch, for the PyTorch baseline")
    ap.add_argument("--window", type=int, help="training window edge (64; CPU mode 16)")
    ap.add_argument("--batch", type=int, help="the small batch (2)")
    ap.add_argument("--big-batch", type=int, help="the larger batch (16; CPU mode 4)")
    ap.add_argument("--iterations", type=int, help="iterations per training run (50; CPU mode 10)")
    ap.add_argument("--warmup", type=int, help="iterations left out of the timings (10; CPU mode 3)")
    ap.add_argument("--loader-threads", type=int, help="system.loader_threads of the training runs")
    ap.add_argument("--budget", type=float, help="seconds after which the remaining steps are skipped (330; CPU 240)")
    args = ap.parse_args()
    check = Check(args)
    try:
        try:
            check.all_steps()
        except BaseException as e:  # interrupted (Ctrl-C, a closed stdout): the report says how far it got
            check.aborted = f"{type(e).__name__}: {e}"
        report = check.write()
    finally:
        if not args.work and not args.keep_work:
            shutil.rmtree(check.work, ignore_errors=True)
        elif args.keep_work:
            print(f"work folder kept: {check.work}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
