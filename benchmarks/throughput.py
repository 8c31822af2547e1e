"""Training throughput (images/s) of each preset: ganforge's step vs the PyTorch DCGAN tutorial's loop.

Both train the same networks on the same real images, held in memory on the device so that decoding
does not hide the step's cost (data loading is measured elsewhere).  "Images" are real images
consumed by D, so both sides count ``batch_size`` per generator step (x ``train.d_steps``).

Variants (``--variants``):

- ``tutorial``: the tutorial's loop as it is written (pytorch/tutorials dcgan_faces_tutorial.py):
  fp32, eager, Sigmoid + BCELoss, ``.item()`` every step, G's backward also computing D's gradients,
  default Adam;
- ``eager``: ganforge's step with every speed switch off;
- ``auto``: ganforge's step as ``ganforge train`` runs it on this device for a long run
  (``train.amp/compile/channels_last=auto``);
- ``compile``, ``channels_last``, ``bf16``, ``fp16``: one switch on over ``eager``, to choose the
  ``auto`` defaults by measurement.

Variants are timed in interleaved rounds (A B C A B C ...) so that a busy machine slows them alike;
the median round counts, and each ratio to the tutorial is the median of per-round ratios.  Results go to ``benchmarks/results/throughput-<device>-<time>.json``.

    python benchmarks/throughput.py                                   # quickstart and dcgan-celeba64
    python benchmarks/throughput.py --presets dcgan-celeba64 --variants tutorial eager auto compile
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge import config as C
from ganforge import nets
from ganforge.data.sources import DEBIAN_FASHION_MNIST, _read_idx
from ganforge.training import speed
from ganforge.training.trainer import Trainer, hardware_description, pick_device

RESULTS = Path(__file__).parent / "results"
OVERRIDES = {  # a variant = speed switches over the preset's
    "eager": ["train.amp=off", "train.compile=off", "train.channels_last=off"],
    "auto": ["train.amp=auto", "train.compile=auto", "train.channels_last=auto"],
    "compile": ["train.amp=off", "train.compile=on", "train.channels_last=off"],
    "channels_last": ["train.amp=off", "train.compile=off", "train.channels_last=on"],
    "bf16": ["train.amp=bf16", "train.compile=off", "train.channels_last=off"],
    "fp16": ["train.amp=fp16", "train.compile=off", "train.channels_last=off"],
    "compile_channels_last": ["train.amp=off", "train.compile=on", "train.channels_last=on"],
    "compile_bf16": ["train.amp=bf16", "train.compile=on", "train.channels_last=off"],
}


# --------------------------------------------------------------------------------------------------
# Real images in memory
# --------------------------------------------------------------------------------------------------
def real_images(cfg: C.Config, n: int, device: torch.device) -> torch.Tensor:
    """``n`` Fashion-MNIST images at the preset's size and channels, in [-1, 1], on ``device``.
    (CelebA is not installable offline; the step's cost depends on the shape, not the content.)"""
    raw = torch.from_numpy(_read_idx(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")[:n].copy())
    x = raw.float().div(127.5).sub(1.0).unsqueeze(1)
    x = F.interpolate(x, size=(cfg.data.image_size,) * 2, mode="bilinear", align_corners=False)
    if cfg.data.channels == 3:  # a per-image tint: real colour images out of the grey ones
        tint = torch.rand(n, 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
        x = ((x + 1) * tint - 1).clamp(-1, 1)
    return x.contiguous().to(device)


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


# --------------------------------------------------------------------------------------------------
# ganforge's step, as the trainer sets it up
# --------------------------------------------------------------------------------------------------
class GanforgeStep:
    def __init__(self, cfg: C.Config, device: torch.device, run_dir: Path, steps_left: int):
        self.trainer = Trainer(cfg, run_dir, log_format="quiet")
        self.settings = speed.accelerate(self.trainer, steps_left=steps_left)
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


def _sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_preset(preset: str, variants: list[str], steps: int, rounds: int, device: torch.device,
                     batch_size: int | None, n_images: int, warmup: int = 2) -> dict:
    base = [f"train.device={device}", "train.tensorboard=false", "train.report=false", "data.num_workers=0"]
    if batch_size:
        base.append(f"data.batch_size={batch_size}")
    cfg0 = C.load(preset=preset, overrides=base)
    images = real_images(cfg0, n_images, device)
    B = cfg0.data.batch_size
    n_batches = images.shape[0] // B
    runners, setup = {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="ganforge-bench-"))
    for v in variants:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        if v == "tutorial":
            runners[v] = TutorialLoop(cfg0, device)
        else:
            cfg = C.load(preset=preset, overrides=base + OVERRIDES[v])
            # steps_left: what a full run of the preset has, so 'auto' resolves as it would in training.
            runners[v] = GanforgeStep(cfg, device, tmp / v, steps_left=10**6)
        # Warm-up: compilation, autotuning, allocator.  Timed: that is what compile costs a run.
        for i in range(warmup):
            runners[v](images[(i % n_batches) * B:(i % n_batches + 1) * B], i)
        runners[v].sync()
        _sync_device(device)
        setup[v] = {"warmup_s": round(time.perf_counter() - t0, 2)}
        if hasattr(runners[v], "settings"):
            setup[v]["settings"] = runners[v].settings.describe()
        print(f"  {preset} {v}: ready after {setup[v]['warmup_s']:.1f}s  {setup[v].get('settings', '')}",
              flush=True)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            run = runners[v]
            _sync_device(device)
            t0 = time.perf_counter()
            for i in range(steps):
                k = (r * steps + i) % n_batches
                run(images[k * B:(k + 1) * B], i)
            run.sync()
            _sync_device(device)
            times[v].append(time.perf_counter() - t0)
        line = "  ".join(f"{v} {B * steps / times[v][-1]:.1f}" for v in variants)
        print(f"  {preset} round {r + 1}/{rounds} img/s: {line}", flush=True)
    result = {"batch_size": B, "warmup_steps": warmup, "image_size": cfg0.data.image_size, "channels": cfg0.data.channels,
              "steps_per_round": steps, "rounds": rounds, "variants": {}}
    base_ips = None
    for v in variants:
        ips = B * steps / statistics.median(times[v])
        result["variants"][v] = {"images_per_s": round(ips, 2),
                                 "rounds_images_per_s": [round(B * steps / t, 2) for t in times[v]], **setup[v]}
        if v == "tutorial":
            base_ips = ips
    if base_ips:
        # Paired per round (the same minute of a busy machine), then the median round: steadier than
        # the ratio of medians when other jobs come and go.
        for v in variants:
            ratios = [t_tut / t_v for t_tut, t_v in zip(times["tutorial"], times[v])]
            result["variants"][v]["vs_tutorial"] = round(statistics.median(ratios), 3)
            result["variants"][v]["rounds_vs_tutorial"] = [round(r, 3) for r in ratios]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["quickstart", "dcgan-celeba64"],
                   help=f"presets to measure (all: {' '.join(C.preset_names())})")
    p.add_argument("--variants", nargs="+", default=["tutorial", "eager", "auto"], choices=["tutorial", *OVERRIDES])
    p.add_argument("--steps", type=int, default=5, help="generator steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=0, help="override the presets' batch size")
    p.add_argument("--images", type=int, default=2048, help="real images held in memory")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="", help="JSON path (default benchmarks/results/throughput-<device>-<time>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    report = {"benchmark": "throughput", "device": str(device), "hardware": hardware_description(device),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv), "presets": {}}
    print(f"throughput on {report['hardware']} (torch {torch.__version__})", flush=True)
    for preset in args.presets:
        report["presets"][preset] = benchmark_preset(preset, args.variants, args.steps, args.rounds, device,
                                                     args.batch_size or None, args.images, args.warmup)
        for v, r in report["presets"][preset]["variants"].items():
            ratio = f"  {r['vs_tutorial']:.2f}x tutorial" if "vs_tutorial" in r else ""
            print(f"{preset:16s} {v:22s} {r['images_per_s']:10.1f} img/s{ratio}", flush=True)
    out = Path(args.out) if args.out else RESULTS / f"throughput-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
