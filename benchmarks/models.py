"""The model zoo side by side: size, compute, training speed, and checkerboard artefacts.

For every architecture at the same image size and batch (32x32 grayscale, nz = 100, batch 64: the
quickstart's shape; ngf = ndf = 32 for the DCGANs, 16 for the ResNet, which is then about as large;
the MLP at its classic widths, on 28x28), on real Fashion-MNIST images:

- parameters of G and D, and FLOPs of one forward pass per image (``ganforge describe``'s counter);
- training speed: images per second through the project's GAN step (one D and one G update, BCE),
  as a ratio to ``dcgan`` measured in the same run (timings on a shared machine drift; ratios less);
- checkerboard artefacts of the *untrained* generator (Odena et al. 2016 show they are there from
  initialisation): the share of the image power at the period-2 frequencies (the Nyquist bins of a 2D
  FFT), averaged over several random initialisations, at 64x64 where G has 4 upsampling stages.
  Smooth images put almost no power there; a stride-2 transposed conv's uneven overlap puts a lot.

    python benchmarks/models.py --threads 1      # about 10 minutes on 2 busy CPU cores
    python benchmarks/models.py --steps 30 --inits 16

Results: ``benchmarks/results/models-<time>.json``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganforge import config as C
from ganforge import nets
from ganforge.cli.describe import count_parameters, forward_flops
from ganforge.training.losses import build_loss
from ganforge.training.optim import build_optimizer
from ganforge.training.step import GANStep
from ganforge.training.strategies import build_targets

RESULTS = Path(__file__).parent / "results"
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
#: ResNet widths are multiples of ngf (4x at 32px), so it runs at ngf = ndf = 16: about the DCGAN's
#: parameter count.  Its compute is still much higher: its 3x3 convs run at every resolution twice.
RESNET_WIDTH = ["model.ngf=16", "model.ndf=16"]
MODELS = {  # name: overrides on the shared shape
    "dcgan": [],
    "dcgan-upsample": ["model.upsample=nearest"],
    "dcgan-upsample-bilinear": ["model.name=dcgan-upsample", "model.upsample=bilinear"],
    "mlp": ["model.g_hidden=[256,512,1024]", "model.d_hidden=[512,256]"],
    "resnet": RESNET_WIDTH,
    "resnet-sn-attention": ["model.name=resnet", *RESNET_WIDTH, "model.spectral_norm=true",
                            "model.spectral_norm_g=true", "model.attention=16", "model.init=orthogonal"],
}


def model_config(key: str, size: int, batch: int) -> C.Config:
    name = key if key in ("dcgan", "dcgan-upsample", "mlp", "resnet") else "dcgan"
    return C.load(overrides=[f"model.name={name}", f"data.image_size={size}", "data.channels=1", "model.nz=100",
                             "model.ngf=32", "model.ndf=32", f"data.batch_size={batch}", "train.device=cpu",
                             *MODELS[key]])


def real_batch(n: int, size: int) -> torch.Tensor:
    with gzip.open(FASHION, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    x = torch.from_numpy(data.copy()).float().div(127.5).sub(1)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def training_speed(cfg: C.Config, real: torch.Tensor, steps: int) -> float:
    torch.manual_seed(0)
    G, D = nets.build(cfg)
    step = GANStep(G=G, D=D, opt_g=build_optimizer(G, cfg.optim.g), opt_d=build_optimizer(D, cfg.optim.d),
                   loss=build_loss(cfg), nz=cfg.model.nz, targets=build_targets(cfg))
    labels = torch.zeros(real.shape[0], dtype=torch.long)
    for i in range(2):  # warm-up
        step([(real, labels)], i)
    t0 = time.perf_counter()
    for i in range(steps):
        out = step([(real, labels)], i)
    out["loss_d"].item()
    return steps * real.shape[0] / (time.perf_counter() - t0)


@torch.no_grad()
def nyquist_power_share(cfg: C.Config, inits: int) -> float:
    """Mean share of the (mean-removed) image power in the period-2 FFT bins, untrained G."""
    size = cfg.data.image_size
    shares = []
    for seed in range(inits):
        torch.manual_seed(seed)
        G, _ = nets.build(cfg)
        images = G(torch.randn(16, cfg.model.nz)).float()
        images = images - images.mean(dim=(2, 3), keepdim=True)
        power = torch.fft.fft2(images).abs() ** 2
        h = size // 2
        nyquist = power[..., h, 0] + power[..., 0, h] + power[..., h, h]
        shares.append((nyquist / power.sum(dim=(2, 3)).clamp_min(1e-12)).mean().item())
    return float(np.mean(shares))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inits", type=int, default=8, help="random initialisations for the checkerboard measure")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    real = real_batch(args.batch, 32)
    rows = {}
    for key in MODELS:
        size = 28 if key == "mlp" else 32
        cfg = model_config(key, size, args.batch)
        G, D = nets.build(cfg)
        row = {"image_size": size, "g_parameters": count_parameters(G), "d_parameters": count_parameters(D),
               "g_flops": forward_flops(G, torch.zeros(1, cfg.model.nz), None),
               "d_flops": forward_flops(D, torch.zeros(1, 1, size, size), None),
               "images_per_s": training_speed(cfg, real if size == 32 else F.interpolate(real, size=(28, 28)),
                                              args.steps)}
        if key != "mlp":
            row["nyquist_power_share_64px"] = nyquist_power_share(model_config(key, 64, args.batch), args.inits)
        rows[key] = row
        print(f"{key:24s} G {row['g_parameters']:>9,} D {row['d_parameters']:>9,}  "
              f"G {row['g_flops'] / 1e6:7.1f} MFLOPs  D {row['d_flops'] / 1e6:7.1f} MFLOPs  "
              f"{row['images_per_s']:7.0f} img/s" + (f"  Nyquist share {row['nyquist_power_share_64px']:.4f}"
                                                    if "nyquist_power_share_64px" in row else ""), flush=True)
    base = rows["dcgan"]
    for key, row in rows.items():
        row["speed_vs_dcgan"] = row["images_per_s"] / base["images_per_s"]
        if "nyquist_power_share_64px" in row:
            row["nyquist_share_vs_dcgan"] = row["nyquist_power_share_64px"] / base["nyquist_power_share_64px"]
    print("\nratios to dcgan (same run):")
    for key, row in rows.items():
        extra = f", checkerboard (Nyquist power) x{row['nyquist_share_vs_dcgan']:.3f}" if "nyquist_share_vs_dcgan" in row else ""
        print(f"  {key:24s} speed x{row['speed_vs_dcgan']:.2f}{extra}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"models-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "models": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
