"""The unet3d plugin's network and the seglosses plugin's dice_ce loss in plain PyTorch,
timed the way scripts/gpu_check.py times `niftyhost train`: the PyTorch-eager baseline
of the GPU check (issue 20). Needs torch only (and scripts/nifti_min.py beside it).

The network is plugins/unet3d's `compact` layout on plugins/blocks: per encoder level two
3³ convolution -> normalisation -> activation blocks (convolutions without bias when a
normalisation follows) and a 2³ max pool; a bottom stack; per decoder level a 2³
transposed convolution (with bias) halving the maps, the skip concatenated first, and two
blocks; a 1³ classifier. `instance` normalisation is GroupNorm with one group per channel
(affine), as in plugins/blocks/src/norm.rs. The parameter count is printed so that it can
be checked against niftyhost's report. Weight initialisation is PyTorch's default, not
tch's: losses are not compared with niftyhost's, only speed.

dice_ce is plugins/seglosses's: softmax over classes in float32, soft Dice
`1 - mean_c (2 sum p g + s) / (sum p + sum g + s)` with sums over the batch and every voxel,
plus the voxel mean of the cross-entropy, both weights 1, s = 1e-5.

Training windows are cut at random from the volumes, which are whitened and kept on the
device: no data pipeline at all, PyTorch's best case. Each step reads its loss back
(`loss.item()`), as a training loop that logs does, and as niftyhost does.

  python3 scripts/pytorch_unet3d.py --device cuda:0 --window 64 --batches 2,16 \
      --precisions fp32,bf16,fp16 --iterations 50 --warmup 10 --json out.json
"""

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nifti_min  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

TORCH_DTYPES = {
    2: torch.uint8,
    4: torch.int16,
    8: torch.int32,
    16: torch.float32,
    64: torch.float64,
    256: torch.int8,
}


def load_volume(path):
    """A NIfTI volume as a float32 tensor indexed (i, j, k)."""
    vol = nifti_min.read(path)
    if vol.datatype not in TORCH_DTYPES or vol.endian != "<":
        raise ValueError(f"{path}: datatype {vol.datatype} ({vol.endian}) is not read here")
    t = torch.frombuffer(bytearray(vol.data), dtype=TORCH_DTYPES[vol.datatype])
    t = t.reshape(vol.shape[2], vol.shape[1], vol.shape[0]).permute(2, 1, 0).float()
    if vol.slope not in (0.0, 1.0) or vol.inter != 0.0:
        t = t * (vol.slope or 1.0) + vol.inter
    return t.contiguous()


def norm_layer(norm, channels):
    if norm == "instance":
        return nn.GroupNorm(channels, channels)
    if norm == "batch":
        return nn.BatchNorm3d(channels)
    if norm == "group" or norm.startswith("group:"):
        groups = 8 if norm == "group" else int(norm.split(":", 1)[1])
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {norm!r}")


def activation_layer(activation, channels):
    layers = {
        "relu": lambda: nn.ReLU(),
        "prelu": lambda: nn.PReLU(channels, init=0.25),
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "elu": lambda: nn.ELU(),
        "selu": lambda: nn.SELU(),
        "gelu": lambda: nn.GELU(),
        "none": lambda: nn.Identity(),
    }
    if activation not in layers:
        raise ValueError(f"unknown activation {activation!r}")
    return layers[activation]()


def conv_stack(channels, norm, activation):
    """Blocks conv 3³ -> norm -> activation for each step of `channels`."""
    layers = []
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [
            nn.Conv3d(c_in, c_out, 3, padding=1, bias=norm == "none"),
            norm_layer(norm, c_out),
            activation_layer(activation, c_out),
        ]
    return nn.Sequential(*layers)


class UNet3d(nn.Module):
    """plugins/unet3d's compact layout: level l has base·2^l maps."""

    def __init__(self, in_channels, num_classes, base_channels=8, depth=3, norm="instance", activation="relu"):
        super().__init__()
        width = [base_channels << level for level in range(depth + 1)]
        self.down = nn.ModuleList(
            conv_stack([in_channels if l == 0 else width[l - 1], width[l], width[l]], norm, activation)
            for l in range(depth)
        )
        self.bottom = conv_stack([width[depth - 1], width[depth], width[depth]], norm, activation)
        self.upsample = nn.ModuleList(
            nn.ConvTranspose3d(width[l + 1], width[l], 2, stride=2) for l in reversed(range(depth))
        )
        self.up = nn.ModuleList(
            conv_stack([2 * width[l], width[l], width[l]], norm, activation) for l in reversed(range(depth))
        )
        self.classifier = nn.Conv3d(width[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = nn.functional.max_pool3d(x, 2)
        x = self.bottom(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips)):
            x = block(torch.cat([skip, upsample(x)], 1))
        return self.classifier(x)


def dice_ce(logits, labels, smooth=1e-5):
    """plugins/seglosses's dice_ce: logits [N, K, ...], labels [N, 1, ...] (int64)."""
    logits = logits.float()
    classes = logits.shape[1]
    onehot = nn.functional.one_hot(labels[:, 0], classes).movedim(-1, 1).float()
    p = logits.softmax(1)
    dims = [0] + list(range(2, logits.dim()))
    intersection = (p * onehot).sum(dims)
    per_class = (2 * intersection + smooth) / (p.sum(dims) + onehot.sum(dims) + smooth)
    ce = -logits.log_softmax(1).gather(1, labels).mean()
    return (1 - per_class.mean()) + ce


def windows(image, labels, window, batch, generator):
    """`batch` random windows of edge `window` from the device-resident volumes."""
    starts = [
        [int(torch.randint(0, n - window + 1, (1,), generator=generator)) for n in image.shape]
        for _ in range(batch)
    ]
    cut = lambda v, s: v[s[0] : s[0] + window, s[1] : s[1] + window, s[2] : s[2] + window]  # noqa: E731
    x = torch.stack([cut(image, s) for s in starts]).unsqueeze(1)
    y = torch.stack([cut(labels, s) for s in starts]).unsqueeze(1)
    return x, y


def train(args, device, image, labels, precision, batch):
    """One timed training run; returns its record."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = UNet3d(1, args.num_classes, args.base_channels, args.depth, args.norm, args.activation).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**16, growth_interval=2000, enabled=precision == "fp16")
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    losses, step_seconds = [], []
    for _ in range(args.iterations):
        start = time.perf_counter()
        x, y = windows(image, labels, args.window, batch, generator)
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            loss = dice_ce(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - start)
    timed = step_seconds[args.warmup : args.iterations - 1] or step_seconds[-1:]
    per_iteration = sum(timed) / len(timed)
    record = {
        "precision": precision,
        "batch": batch,
        "window": args.window,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "timed_iterations": len(timed),
        "seconds_per_iteration": per_iteration,
        "patches_per_second": batch / per_iteration,
        "first_losses": losses[:10],
        "final_loss": losses[-1],
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if cuda:
        mib = 1024.0 * 1024.0
        record["peak_memory_allocated_mib"] = torch.cuda.max_memory_allocated(device) / mib
        record["peak_memory_reserved_mib"] = torch.cuda.max_memory_reserved(device) / mib
    if precision == "fp16":
        record["loss_scale"] = scaler.get_scale()
    return record


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(os.path.dirname(here), "data", "mni152")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--image", default=os.path.join(data, "t1_2mm.nii.gz"))
    ap.add_argument("--label", default=os.path.join(data, "tissue_2mm.nii.gz"))
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--batches", default="2", help="comma-separated batch sizes")
    ap.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--num-classes", type=int, default=3)
    ap.add_argument("--base-channels", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--norm", default="instance")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads on a CPU (0 = default)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--json", help="write the report here (else stdout)")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: {args.device} asked for, but torch {torch.__version__} sees no CUDA device")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    image = load_volume(args.image)
    image = ((image - image.mean()) / image.std().clamp_min(1e-8)).to(device)
    labels = load_volume(args.label).round().long().to(device)
    if image.shape != labels.shape:
        raise SystemExit(f"error: image {tuple(image.shape)} and labels {tuple(labels.shape)} differ")

    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "network": {
            "base_channels": args.base_channels,
            "depth": args.depth,
            "norm": args.norm,
            "activation": args.activation,
            "num_classes": args.num_classes,
        },
        "runs": [],
    }
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            try:
                run = train(args, device, image, labels, precision, batch)
                print(
                    f"pytorch {precision} batch {batch}: {run['seconds_per_iteration']:.4f} s/iteration, "
                    f"{run['patches_per_second']:.1f} patches/s",
                    file=sys.stderr,
                )
            except Exception as e:  # one failing precision must not hide the others
                run = {"precision": precision, "batch": batch, "error": f"{type(e).__name__}: {e}"}
                print(f"pytorch {precision} batch {batch}: failed: {run['error']}", file=sys.stderr)
            report["runs"].append(run)
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 1 if any("error" in r for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
