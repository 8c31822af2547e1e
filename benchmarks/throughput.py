"""Training throughput (images/s) of each preset: ganforge's step vs the PyTorch DCGAN tutorial's loop.

Both train the same networks on the same real images.  "Images" are real images consumed by D, so both
sides count ``batch_size`` per generator step (x ``train.d_steps``).

Variants (``--variants``):

- ``tutorial``: the tutorial's loop as it is written (pytorch/tutorials dcgan_faces_tutorial.py):
  fp32, eager, Sigmoid + BCELoss, ``.item()`` every step, G's backward also computing D's gradients,
  default Adam, torch's default backend flags (no cuDNN autotuning);
- ``eager``: ganforge's step with every speed switch off;
- ``auto``: ganforge's step as ``ganforge train`` runs it on this device for a long run
  (``train.amp/compile/channels_last=auto``);
- ``auto_cuda_graphs``: ``auto`` plus ``train.cuda_graphs=true`` (CUDA only);
- ``auto_loader``: ``auto`` fed by the trainer's own loader from a prepared dataset (``ganforge
  prepare``) read on the host and copied to the device every step;
- ``auto_on_gpu``: the same with ``data.on_gpu=true`` (the prepared set held in GPU memory; CUDA only);
- ``compile``, ``channels_last``, ``bf16``, ``fp16``, ...: one switch on over ``eager``, to choose the
  ``auto`` defaults by measurement.

The in-memory variants (all but the two loader ones) train on batches already on the device, so that
decoding does not hide the step's cost; the loader variants add what the trainer's loader costs.  They
run the ``auto`` variant's compiled step when it is measured too (no second compilation).

Variants are timed in interleaved rounds (A B C A B C ...) so that a busy machine slows them alike; the
median round counts, and each ratio to the tutorial is the median of per-round ratios.  ``--round-seconds``
gives each variant as many steps per round as fill that time (calibrated after the warm-up), instead of
the same ``--steps`` for all.  A variant that fails is recorded with its error; the others go on.

Each result also holds the FLOPs of a training image (3 forward passes of G and 8 of D, counted by
``torch.utils.flop_counter``: G forward, backward for its weight and input gradients; D forward on the
real and the fake batch with both backward passes, forward and input-gradient pass of the G step), the
TFLOP/s that makes, and the fraction of the device's dense bf16 peak when it is known (``PEAK_BF16_TFLOPS``
by device name, or ``--peak-tflops``).  ``--profile VARIANT ...`` adds where their time goes
(torch.profiler: kernel time by kind, and on CUDA the share of the wall time the GPU sat idle).  Results go to ``benchmarks/results/throughput-<device>-<time>.json``
(rewritten after every preset and batch size, so an interrupted run keeps what it measured).

    python benchmarks/throughput.py                                   # quickstart and dcgan-celeba64
    python benchmarks/throughput.py --presets dcgan-celeba64 --variants tutorial eager auto compile
    python benchmarks/throughput.py --presets dcgan-celeba64 --batch-sizes 128 512 --round-seconds 0.5 \\
        --variants tutorial eager auto auto_cuda_graphs auto_on_gpu        # what scripts/gpu_check.sh runs
    python benchmarks/throughput.py --presets recipe --recipe ~/emoji64 --variants eager compile \\
        --warmup 3 --rounds 5 --round-seconds 5   # the default recipe's model: compile on against off

``--presets recipe`` is the default recipe (``ganforge train --data SOURCE``) for ``--recipe SOURCE`` on this
device type, feature matching's real statistics included; the variants then change its speed switches only.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import config as C
from ganforge import nets
from ganforge.data.sources import DEBIAN_FASHION_MNIST, _read_idx
from ganforge.training import speed
from ganforge.training.trainer import Trainer, hardware_description, pick_device

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Where ``scripts/gpu_check.sh --prepare`` puts a Fashion-MNIST subset for machines without the Debian package
#: (torchvision's layout under a ``data.root``).
CARRIED_DATA_ROOT = ROOT / ".gpu_carry" / "data"

OVERRIDES = {  # a variant = speed switches over the preset's
    "eager": ["train.amp=off", "train.compile=off", "train.channels_last=off"],
    "auto": ["train.amp=auto", "train.compile=auto", "train.channels_last=auto"],
    "auto_cuda_graphs": ["train.amp=auto", "train.compile=auto", "train.channels_last=auto", "train.cuda_graphs=true"],
    "auto_loader": ["train.amp=auto", "train.compile=auto", "train.channels_last=auto"],
    "auto_on_gpu": ["train.amp=auto", "train.compile=auto", "train.channels_last=auto", "data.on_gpu=true"],
    "compile": ["train.amp=off", "train.compile=on", "train.channels_last=off"],
    "channels_last": ["train.amp=off", "train.compile=off", "train.channels_last=on"],
    "bf16": ["train.amp=bf16", "train.compile=off", "train.channels_last=off"],
    "fp16": ["train.amp=fp16", "train.compile=off", "train.channels_last=off"],
    "compile_channels_last": ["train.amp=off", "train.compile=on", "train.channels_last=on"],
    "compile_bf16": ["train.amp=bf16", "train.compile=on", "train.channels_last=off"],
}
LOADER_VARIANTS = {"auto_loader", "auto_on_gpu"}
#: Variants that differ by train.compile alone: the ratio of each pair is printed and saved.
COMPILE_PAIRS = [("compile", "eager"), ("compile_channels_last", "channels_last")]
CUDA_ONLY = {"auto_cuda_graphs", "auto_on_gpu"}
VARIANTS = ["tutorial", *OVERRIDES]

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets, matched against
#: ``torch.cuda.get_device_name()`` in this order (first match wins).
PEAK_BF16_TFLOPS: list[tuple[str, float, str]] = [
    (r"H100.*PCIe", 756.0, "H100 PCIe"),
    (r"H100.*NVL", 835.0, "H100 NVL"),
    (r"H200.*NVL", 835.0, "H200 NVL"),
    (r"H100|H200|GH200", 989.0, "H100/H200 SXM"),
    (r"A100|A800", 312.0, "A100"),
    (r"L40S", 362.0, "L40S"),
    (r"\bL4\b", 121.0, "L4"),
    (r"\bA10\b", 125.0, "A10"),
]


def known_peak(device_name: str) -> tuple[float | None, str | None]:
    """(dense bf16 peak in TFLOP/s, the table row) for a CUDA device name; (None, None) when not in the table."""
    for pattern, tflops, label in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops, label
    return None, None


# --------------------------------------------------------------------------------------------------
# Real images
# --------------------------------------------------------------------------------------------------
def fashion_root_overrides() -> list[str]:
    """``data.root=...`` pointing at the carried Fashion-MNIST subset when the Debian package is missing."""
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return []
    if (CARRIED_DATA_ROOT / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file():
        return [f"data.root={CARRIED_DATA_ROOT}"]
    raise SystemExit("throughput.py needs Fashion-MNIST: apt-get install dataset-fashion-mnist, or carry the subset "
                     "that `bash scripts/gpu_check.sh --prepare` writes to .gpu_carry/data/")


def _fashion_file() -> Path:
    roots = fashion_root_overrides()
    folder = Path(roots[0].split("=", 1)[1]) / "FashionMNIST" / "raw" if roots else DEBIAN_FASHION_MNIST
    return folder / "train-images-idx3-ubyte.gz"


def real_images(cfg: C.Config, n: int, device: torch.device) -> torch.Tensor:
    """``n`` Fashion-MNIST images at the preset's size and channels, in [-1, 1], on ``device``.
    (CelebA is not installable offline; the step's cost depends on the shape, not the content.)"""
    raw = torch.from_numpy(_read_idx(_fashion_file())[:n].copy())
    if raw.shape[0] < n:
        raise SystemExit(f"--images {n}: only {raw.shape[0]} Fashion-MNIST images are available")
    x = raw.float().div(127.5).sub(1.0).unsqueeze(1)
    x = F.interpolate(x, size=(cfg.data.image_size,) * 2, mode="bilinear", align_corners=False)
    if cfg.data.channels == 3:  # a per-image tint: real colour images out of the grey ones
        tint = torch.rand(n, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
        x = ((x + 1) * tint - 1).clamp(-1, 1)
    return x.contiguous().to(device)


def prepared_dataset(preset: str, base: list[str], n: int, out: Path) -> Path:
    """A prepared dataset (``ganforge prepare``) of ``n`` Fashion-MNIST images at the preset's size."""
    from ganforge.data.prepared import prepare
    cfg = C.load(preset=preset, overrides=base + ["data.source=fashion-mnist", f"data.limit={n}",
                                                  *fashion_root_overrides()])
    prepare(cfg, out, workers=0, progress=False)
    return out


# --------------------------------------------------------------------------------------------------
# FLOPs and the device's peak
# --------------------------------------------------------------------------------------------------
def training_flops_per_image(cfg: C.Config) -> dict:
    """Forward FLOPs of G and D for one image, and the training FLOPs per real image (3 G + 8 D)."""
    from ganforge.cli.describe import forward_flops
    G, D = nets.build(cfg)
    y = torch.zeros(1, dtype=torch.long) if cfg.model.num_classes else None
    g = forward_flops(G, torch.zeros(1, cfg.model.nz), y)
    d = forward_flops(D, torch.zeros(1, cfg.data.channels, cfg.data.image_size, cfg.data.image_size), y)
    k = cfg.train.d_steps  # D steps per G step: each D step is 1 G forward + 6 D; the G step is 2 G + 2 D
    per_g_step = k * (g + 6 * d) + 2 * g + 2 * d
    return {"g_forward": g, "d_forward": d, "per_image": per_g_step / k,
            "note": "conv/matmul FLOPs (multiply-add = 2) of the algorithm's necessary passes, 3 G + 8 D forward "
                    "equivalents per image; the same count for every variant"}


# --------------------------------------------------------------------------------------------------
# The tutorial's loop, as the tutorial writes it
# --------------------------------------------------------------------------------------------------
class TutorialLoop:
    def __init__(self, cfg: C.Config, device: torch.device):
        G, D = nets.build(cfg)  # the tutorial's layers and initialisation (tests check the counts)
        self.netG = G.to(device)
        self.netD = nn.Sequential(D.main, nn.Sigmoid()).to(device)  # the tutorial's D ends in a Sigmoid
        self.criterion = nn.BCELoss()
        self.nz, self.device = cfg.model.nz, device
        o = cfg.optim
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=o.d.lr, betas=tuple(o.d.betas))
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=o.g.lr, betas=tuple(o.g.betas))
        self.real_label, self.fake_label = 1.0, 0.0

    def __call__(self, real_cpu: torch.Tensor, step: int) -> None:
        netD, netG, criterion, device = self.netD, self.netG, self.criterion, self.device
        ############################
        # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        netD.zero_grad()
        real_cpu = real_cpu.to(device)
        b_size = real_cpu.size(0)
        label = torch.full((b_size,), self.real_label, dtype=torch.float, device=device)
        output = netD(real_cpu).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = output.mean().item()
        noise = torch.randn(b_size, self.nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(self.fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = output.mean().item()
        errD = errD_real + errD_fake
        self.optimizerD.step()
        ############################
        # (2) Update G network: maximize log(D(G(z)))
        ###########################
        netG.zero_grad()
        label.fill_(self.real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = output.mean().item()
        self.optimizerG.step()
        self.stats = (errD.item(), errG.item(), D_x, D_G_z1, D_G_z2)  # the tutorial prints these

    def sync(self) -> None:
        pass  # .item() above already waits for the device every step


#: torch's backend flags before anything here changes them: what the tutorial runs with.
TORCH_DEFAULT_FLAGS = {"cudnn_benchmark": torch.backends.cudnn.benchmark,
                       "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                       "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}


def apply_flags(flags: dict) -> None:
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_tf32"]


def current_flags() -> dict:
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}


# --------------------------------------------------------------------------------------------------
# ganforge's step, as the trainer sets it up
# --------------------------------------------------------------------------------------------------
class GanforgeStep:
    def __init__(self, cfg: C.Config, device: torch.device, run_dir: Path, steps_left: int):
        self.trainer = Trainer(cfg, run_dir, log_format="quiet")
        if self.trainer.step_fn.g_terms:  # feature matching: the real set's statistics, as fit() reads them first
            from ganforge.data import build_loader
            from ganforge.training.clusters import latent_clusters
            dataset = build_loader(cfg, device).dataset
            clusters = latent_clusters(cfg, dataset, device)  # the latent groups' clusters, None without groups
            for term in self.trainer.step_fn.g_terms:
                term.start(dataset, device, clusters)
        self.settings = speed.accelerate(self.trainer, steps_left=steps_left)
        self.flags = current_flags()  # what accelerate set (cuDNN autotuning, TF32)
        self.channels_last = self.settings.channels_last
        self.labels = torch.zeros(cfg.data.batch_size, dtype=torch.long, device=device)
        self.device = device
        self.out = None

    def __call__(self, real: torch.Tensor, step: int) -> None:
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        self.out = self.trainer.step_fn([(real, self.labels)], step)

    def sync(self) -> None:
        # The trainer's one host sync per log line.
        torch.stack([v.float() for v in self.out.values()]).tolist()


class LoaderStep:
    """A ganforge step fed as ``Trainer.fit`` feeds it: batches from the trainer's own loader
    (``data.build_loader``) over a prepared dataset, epoch after epoch; the batch handed in is ignored."""

    def __init__(self, cfg: C.Config, device: torch.device, step: GanforgeStep):
        from ganforge.data import build_loader
        self.step = step
        self.loader = build_loader(cfg, device)
        self.on_device = getattr(self.loader.dataset, "on_device", None) is not None
        self.batches = itertools.chain.from_iterable(self.loader.epoch(e) for e in itertools.count())
        self.settings, self.flags = step.settings, step.flags

    def __call__(self, real: torch.Tensor, step: int) -> None:
        images, labels = next(self.batches)
        self.step.out = self.step.trainer.step_fn([(images, labels)], step)

    def sync(self) -> None:
        self.step.sync()


#: Kernel (CUDA) or operator (CPU) names by what they do, first match wins.  DCGAN has no linear layers,
#: so every GEMM is a convolution's.
PROFILE_CATEGORIES = [
    ("optimizer", r"adam|multi_tensor|foreach|_amp_|optimizer|addcdiv|addcmul|lerp|sqrt"),
    ("fused elementwise (compiled: BatchNorm, activations, losses)", r"^triton_"),
    ("layout copies", r"nchwtonhwc|nhwctonchw|transpose|permute|copy_kernel|contiguous|clone|aten::copy_"),
    ("batchnorm", r"batch_norm|bn_fw|bn_bw|\bbn_"),
    ("data", r"memcpy|memset|index|gather|flip|aten::to\b|_to_copy|aten::where|randperm"),
    ("convolution", r"conv|cudnn|xmma|implicit|wgrad|dgrad|fprop|winograd|cutlass|gemm|mkldnn|sm\d+_"),
    ("activations, losses, other elementwise", r"elementwise|reduce|vectorized|leaky|tanh|sigmoid|relu|binary|"
                                               r"cross_entropy|mul|add|sum|mean|fill|randn|normal|norm"),
]


def profile_steps(run, device: torch.device, n: int, start: int, step_images) -> dict:
    """Where the time of ``n`` steps goes (torch.profiler): on CUDA the kernels' time by category and the
    share of the wall time the GPU was idle (kernel launches, host work, waits); on a CPU the operators'
    self time by category."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    apply_flags(run.flags)
    _sync_device(device)
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for i in range(n):
            run(step_images(start + i), start + i)
        run.sync()
        _sync_device(device)
        wall = time.perf_counter() - t0
    rows = []
    for e in prof.key_averages():
        on_device = str(getattr(e, "device_type", "")).endswith("CUDA")
        if cuda and on_device:
            rows.append((e.key, getattr(e, "self_device_time_total", 0.0) / 1e6))
        elif not cuda and not on_device:
            rows.append((e.key, e.self_cpu_time_total / 1e6))
    busy = sum(t for _, t in rows)
    categories: dict[str, float] = {}
    for name, t in rows:
        cat = next((c for c, pattern in PROFILE_CATEGORIES if re.search(pattern, name, flags=re.I)), "other")
        categories[cat] = categories.get(cat, 0.0) + t
    out = {"steps": n, "wall_s": round(wall, 4), "measured": "CUDA kernels" if cuda else "CPU operators (self time)",
           "busy_s": round(busy, 4),
           "shares": {c: round(t / busy, 4) for c, t in sorted(categories.items(), key=lambda kv: -kv[1])} if busy else {},
           "top": [[name[:120], round(t, 5)] for name, t in sorted(rows, key=lambda r: -r[1])[:12]]}
    if cuda:
        out["gpu_idle_fraction"] = round(max(0.0, 1 - busy / wall), 4) if wall else None
    return out


def _sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:1500]}"


def load_config(preset: str, overrides: list[str], recipe_source: str | None = None) -> C.Config:
    """A preset's config, or (``recipe``) the default recipe's for ``recipe_source`` on the device that
    ``overrides`` name."""
    if preset != "recipe":
        return C.load(preset=preset, overrides=overrides)
    if not recipe_source:
        raise SystemExit("--presets recipe needs --recipe SOURCE (the images the recipe is chosen for)")
    from ganforge.recipe import auto_config
    return auto_config(recipe_source, overrides)


def benchmark_preset(preset: str, variants: list[str], steps: int, rounds: int, device: torch.device,
                     batch_size: int | None, n_images: int, warmup: int = 2, round_seconds: float = 0.0,
                     steps_left: int = 10**6, peak_tflops: float | None = None,
                     profile: list[str] | None = None, recipe_source: str | None = None) -> dict:
    base = [f"train.device={device}", "train.tensorboard=false", "train.report=false", "data.num_workers=0"]
    if batch_size:
        base.append(f"data.batch_size={batch_size}")
    cfg0 = load_config(preset, base, recipe_source)
    B = cfg0.data.batch_size
    if n_images < B:
        raise SystemExit(f"--images {n_images} is fewer than one batch of {B}")
    images = real_images(cfg0, n_images, device)
    n_batches = images.shape[0] // B
    flops = training_flops_per_image(cfg0)
    runners, setup = {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="ganforge-bench-"))
    prepared = None
    order = sorted(variants, key=lambda v: v in LOADER_VARIANTS)  # loader variants reuse auto's step
    for v in order:
        setup[v] = {}
        if v in CUDA_ONLY and device.type != "cuda":
            setup[v]["skipped"] = f"{v} needs a CUDA device (this run is on {device.type})"
            print(f"  {preset} {v}: skipped ({setup[v]['skipped']})", flush=True)
            continue
        torch.manual_seed(0)
        t0 = time.perf_counter()
        try:
            if v == "tutorial":
                apply_flags(TORCH_DEFAULT_FLAGS)
                runners[v] = TutorialLoop(cfg0, device)
                runners[v].flags = dict(TORCH_DEFAULT_FLAGS)
            elif v in LOADER_VARIANTS:
                if prepared is None:
                    prepared = prepared_dataset(preset, base, n_images, tmp / "prepared")
                cfg = C.load(preset=preset, overrides=base + OVERRIDES[v] + [f"data.source={prepared}"])
                shared = runners.get("auto")
                if isinstance(shared, GanforgeStep):
                    setup[v]["shares_step_with"] = "auto"
                else:
                    shared = GanforgeStep(cfg, device, tmp / v, steps_left=steps_left)
                runners[v] = LoaderStep(cfg, device, shared)
                setup[v]["data_on_device"] = runners[v].on_device
            else:
                cfg = load_config(preset, base + OVERRIDES[v], recipe_source)
                # steps_left: what a full run of the preset has, so 'auto' resolves as it would in training.
                runners[v] = GanforgeStep(cfg, device, tmp / v, steps_left=steps_left)
            apply_flags(runners[v].flags)
            # Warm-up: compilation, autotuning, CUDA graph recording, allocator.  Timed: that is what they cost a run.
            for i in range(warmup):
                runners[v](images[(i % n_batches) * B:(i % n_batches + 1) * B], i)
            runners[v].sync()
            _sync_device(device)
        except Exception as e:  # noqa: BLE001 - a variant that fails is a result; the others go on
            runners.pop(v, None)
            setup[v]["error"] = _error(e)
            setup[v]["traceback"] = traceback.format_exc()[-3000:]
            print(f"  {preset} {v}: FAILED in setup: {setup[v]['error']}", flush=True)
            continue
        setup[v]["warmup_s"] = round(time.perf_counter() - t0, 2)
        if hasattr(runners[v], "settings"):
            setup[v]["settings"] = runners[v].settings.describe()
        print(f"  {preset} {v}: ready after {setup[v]['warmup_s']:.1f}s  {setup[v].get('settings', '')}", flush=True)

    live = [v for v in variants if v in runners]

    def timed(v: str, n: int, start: int) -> float:
        run = runners[v]
        apply_flags(run.flags)
        _sync_device(device)
        t0 = time.perf_counter()
        for i in range(n):
            k = (start + i) % n_batches
            run(images[k * B:(k + 1) * B], start + i)
        run.sync()
        _sync_device(device)
        return time.perf_counter() - t0

    steps_of = {v: steps for v in live}
    if round_seconds > 0:  # as many steps as fill round_seconds, from a short timed probe
        for v in list(live):
            try:
                probe = timed(v, 2, warmup)
                steps_of[v] = max(1, min(100_000, math.ceil(round_seconds / max(probe / 2, 1e-6))))
            except Exception as e:  # noqa: BLE001
                setup[v]["error"] = _error(e)
                live.remove(v)
    times: dict[str, list[float]] = {v: [] for v in live}
    for r in range(rounds):
        for v in list(live):
            try:
                times[v].append(timed(v, steps_of[v], r * steps_of[v]))
            except Exception as e:  # noqa: BLE001
                setup[v]["error"] = f"round {r + 1}: {_error(e)}"
                print(f"  {preset} {v}: FAILED in round {r + 1}: {setup[v]['error']}", flush=True)
                live.remove(v)
        line = "  ".join(f"{v} {B * steps_of[v] / times[v][-1]:.1f}" for v in live)
        print(f"  {preset} batch {B} round {r + 1}/{rounds} img/s: {line}", flush=True)
    profiles = {}
    for v in profile or []:
        if v in live:
            try:
                n = max(3, min(steps_of[v], 30))
                batch = lambda k: images[(k % n_batches) * B:(k % n_batches + 1) * B]  # noqa: E731
                profiles[v] = profile_steps(runners[v], device, n, rounds * steps_of[v], batch)
                shares = ", ".join(f"{c} {100 * x:.0f}%" for c, x in profiles[v]["shares"].items())
                idle = profiles[v].get("gpu_idle_fraction")
                print(f"  {preset} batch {B} profile {v}: {shares}" +
                      (f"; GPU idle {100 * idle:.0f}% of the wall time" if idle is not None else ""), flush=True)
            except Exception as e:  # noqa: BLE001 - a profile is extra: its failure loses no figure
                profiles[v] = {"error": _error(e)}
    apply_flags(TORCH_DEFAULT_FLAGS)
    result = {"preset": preset, "batch_size": B, "warmup_steps": warmup, "image_size": cfg0.data.image_size,
              "channels": cfg0.data.channels, "steps_per_round": steps if round_seconds <= 0 else None,
              "round_seconds": round_seconds or None, "rounds": rounds, "flops": flops,
              "peak_bf16_tflops": peak_tflops, "variants": {}}
    for v in variants:
        entry = dict(setup[v])
        if v in live and times[v]:
            ips = B * steps_of[v] / statistics.median(times[v])
            tflops = ips * flops["per_image"] / 1e12
            entry.update(images_per_s=round(ips, 2), steps_per_round=steps_of[v],
                         rounds_images_per_s=[round(B * steps_of[v] / t, 2) for t in times[v]],
                         tflops=round(tflops, 4),
                         fraction_of_peak=round(tflops / peak_tflops, 5) if peak_tflops else None)
        if v in profiles:
            entry["profile"] = profiles[v]
        result["variants"][v] = entry
    if "tutorial" in live and times["tutorial"]:
        # Paired per round (the same minute of a busy machine), then the median round: steadier than
        # the ratio of medians when other jobs come and go.
        tut = [B * steps_of["tutorial"] / t for t in times["tutorial"]]
        for v in live:
            ratios = [(B * steps_of[v] / t_v) / t_tut for t_tut, t_v in zip(tut, times[v])]
            result["variants"][v]["vs_tutorial"] = round(statistics.median(ratios), 3)
            result["variants"][v]["rounds_vs_tutorial"] = [round(x, 3) for x in ratios]
    return result


def _write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["quickstart", "dcgan-celeba64"],
                   help=f"presets to measure (all: {' '.join(C.preset_names())})")
    p.add_argument("--variants", nargs="+", default=["tutorial", "eager", "auto"], choices=VARIANTS)
    p.add_argument("--steps", type=int, default=5, help="generator steps per timed round")
    p.add_argument("--round-seconds", type=float, default=0.0,
                   help="instead of --steps: steps per variant that fill this many seconds a round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=0, help="override the presets' batch size")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[], help="several batch sizes, one after another")
    p.add_argument("--images", type=int, default=2048, help="real images held in memory")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--steps-left", type=int, default=10**6,
                   help="the run length 'auto' resolves for (default: a long run; on a CPU under 2,000 means no compile)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the device's dense bf16 peak in TFLOP/s (default: PEAK_BF16_TFLOPS by device name)")
    p.add_argument("--profile", nargs="*", default=[], choices=VARIANTS, metavar="VARIANT",
                   help="after the rounds, profile these variants (torch.profiler): time by kind of kernel, GPU idle share")
    p.add_argument("--out", default="", help="JSON path (default benchmarks/results/throughput-<device>-<time>.json)")
    p.add_argument("--recipe", default="", metavar="SOURCE",
                   help="with --presets recipe: the images the default recipe is chosen for (a folder or zip)")
    args = p.parse_args(argv)
    for name in ("steps", "rounds", "images", "warmup", "steps_left"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if any(b < 1 for b in args.batch_sizes) or args.batch_size < 0 or args.round_seconds < 0 or args.peak_tflops < 0:
        p.error("batch sizes must be at least 1, and --round-seconds and --peak-tflops not negative")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    hardware = hardware_description(device)
    peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (None, None)
    if peak is None and device.type == "cuda":
        peak, peak_source = known_peak(hardware)
        peak_source = f"PEAK_BF16_TFLOPS: {peak_source}" if peak_source else None
    report = {"benchmark": "throughput", "device": str(device), "hardware": hardware,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
              "platform": platform.platform(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join(sys.argv), "peak_bf16_tflops": peak, "peak_source": peak_source,
              "presets": {}, "results": []}
    out = Path(args.out) if args.out else RESULTS / f"throughput-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    print(f"throughput on {hardware} (torch {torch.__version__}); bf16 peak {peak or 'unknown'} TFLOP/s", flush=True)
    batch_sizes = args.batch_sizes or [args.batch_size or None]
    for preset in args.presets:
        for bs in batch_sizes:
            res = benchmark_preset(preset, args.variants, args.steps, args.rounds, device, bs, args.images,
                                   args.warmup, args.round_seconds, args.steps_left, peak, args.profile,
                                   recipe_source=args.recipe or None)
            rows = res["variants"]
            for on, off in COMPILE_PAIRS:  # compile on against off, the other switches the same
                if all("images_per_s" in rows.get(v, {}) for v in (on, off)):
                    res[f"{on}_vs_{off}"] = round(rows[on]["images_per_s"] / rows[off]["images_per_s"], 3)
            report["results"].append(res)
            if len(batch_sizes) == 1:
                report["presets"][preset] = res  # the layout of the results before --batch-sizes
            for v, r in res["variants"].items():
                if "images_per_s" not in r:
                    print(f"{preset:16s} {res['batch_size']:5d} {v:22s} {r.get('error') or r.get('skipped')}", flush=True)
                    continue
                ratio = f"  {r['vs_tutorial']:.2f}x tutorial" if "vs_tutorial" in r else ""
                frac = f"  {100 * r['fraction_of_peak']:.2f}% of peak" if r.get("fraction_of_peak") else ""
                print(f"{preset:16s} {res['batch_size']:5d} {v:22s} {r['images_per_s']:10.1f} img/s"
                      f"  {r['tflops']:.3f} TFLOP/s{ratio}{frac}", flush=True)
            for on, off in COMPILE_PAIRS:
                if f"{on}_vs_{off}" in res:
                    print(f"{preset:16s} {res['batch_size']:5d} {on} / {off}: {res[f'{on}_vs_{off}']:.2f}x (warm-up "
                          f"with compiling {rows[on].get('warmup_s', 0):.0f} s, without {rows[off].get('warmup_s', 0):.0f} s)",
                          flush=True)
            _write(report, out)
    _write(report, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
