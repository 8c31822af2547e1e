"""Prototype (docs/quality.md, "A two-stage autoencoder"): the recipe's FastGAN G trained as the decoder of an
autoencoder, then sampled from a distribution fitted to the training images' latents; scored like the sweep.

Phase 1 trains G and a small convolutional encoder on the pyramid L1 reconstruction loss that IMLE uses.
With ``--gan-minutes`` the last part of the budget is a GAN phase: the recipe's D and step, G's latents drawn
near the training images' (``--bandwidth``), and the reconstruction kept as an anchor term of G's loss.
Each sampling is scored on FID/KID/copy ratio (EfficientNet-Lite0) and a pixel copy ratio at 32 px:
``gauss`` (one Gaussian fitted to the latents), ``kde0.5``/``kde0.25`` (a training image's latent plus that
fraction of the Gaussian's spread), ``recon`` (the first 1,000 images' own latents) and ``prior`` (N(0, I),
what G would see as a plain GAN). There is no baseline inside a run: run the sweep's control beside it
(``benchmarks/quality_sweep.py custom --name control --minutes 12 --threads 1``) and compare the pair.
Results are appended to ``benchmarks/results/ae_latent.jsonl``; grids and the trained G go to ``--out``."""
import argparse, json, sys, time, copy
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import emoji_folder, real_images, score_images
from ganforge.recipe import auto_config
from ganforge.nets.fastgan import FastGANGenerator
from ganforge.nets.init import initialise
from ganforge.metrics.scores import copy_ratio
from ganforge.sampling import generate, save_grid
from ganforge.training.imle import pyramid_l1
from two_stage import latent_gaussian, latent_samplings, pixels32

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=12)
ap.add_argument("--ngf", type=int, default=8)
ap.add_argument("--nz", type=int, default=100)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--kl", type=float, default=0.0)
ap.add_argument("--name", default="ae")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--flip", action="store_true")
ap.add_argument("--gan-minutes", type=float, default=0.0, help="of --minutes: the GAN's, after the autoencoder")
ap.add_argument("--anchor", type=float, default=1.0, help="weight of the reconstruction anchor in the GAN phase")
ap.add_argument("--bandwidth", type=float, default=0.25, help="KDE bandwidth of the GAN phase's latents")
ap.add_argument("--out", type=Path, default=Path("benchmarks/results/ae_latent"), help="grids and the trained G")
args = ap.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1); torch.manual_seed(args.seed)
work = Path.home() / ".cache/ganforge/bench-quality"
cfg = auto_config(str(emoji_folder(work)), ["data.num_workers=0"])
X = real_images(cfg).float() / 127.5 - 1
N0 = X.shape[0]
X = torch.cat([X, X.flip(3)]) if args.flip else X
N = X.shape[0]
class Encoder(nn.Module):
    def __init__(self, nz, w=16):
        super().__init__()
        layers, c = [], 3
        for k in (w, 2 * w, 4 * w, 8 * w):  # 64 -> 4
            layers += [nn.Conv2d(c, k, 4, 2, 1), nn.LeakyReLU(0.2)]; c = k
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * 16, nz * (2 if args.kl else 1))
    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
G = FastGANGenerator(args.nz, args.ngf, 3, 64); initialise(G, "dcgan")
E = Encoder(args.nz)
opt = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=args.lr, betas=(0.5, 0.99))
budget = (args.minutes - args.gan_minutes) * 60; t_train = 0.0; epoch = 0; step = 0
while t_train < budget:
    t0 = time.time()
    perm = torch.randperm(N)
    for i in range(0, N - args.batch + 1, args.batch):
        x = X[perm[i:i + args.batch]]
        h = E(x)
        if args.kl:
            mu, logvar = h.chunk(2, 1)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean() / (64 * 64 * 3)
        else:
            z, kl = h, torch.zeros(())
        out = G(z)
        rec = pyramid_l1(out, x)
        loss = rec + args.kl * kl
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        if time.time() - t0 + t_train > budget: break
    t_train += time.time() - t0; epoch += 1
    print(f"epoch {epoch} step {step} rec {rec.item():.3f} kl {kl.item():.4f} t {t_train:.0f}", flush=True)
G.eval(); E.eval()
with torch.no_grad():
    H = torch.cat([E(X[i:i + 256]) for i in range(0, N, 256)])
    L = F.normalize(H[:, :args.nz], dim=1)
ways = latent_samplings(L)
gan_steps = 0
if args.gan_minutes:
    from ganforge.training.build import build_components
    from ganforge.training.strategies import GTerm
    comp = build_components(cfg, torch.device("cpu"))
    comp.G.load_state_dict(G.state_dict()); G = comp.G; G.train()
    for pe, p in zip(comp.ema.model.parameters(), G.parameters()): pe.data.copy_(p.data)
    class Anchor(GTerm):
        def __call__(self, G, step):
            idx = torch.randint(0, N, (args.batch,))
            return args.anchor * pyramid_l1(G(L[idx]), X[idx])
    step_fn = comp.step_fn
    step_fn.g_terms = [Anchor()] if args.anchor else []
    chol = latent_gaussian(L)[1]
    def kde_z(n, device):
        return L[torch.randint(0, N, (n,))] + args.bandwidth * torch.randn(n, args.nz) @ chol.T
    step_fn.sample_z = kde_z
    t_gan = 0.0
    while t_gan < args.gan_minutes * 60:
        t0 = time.time()
        perm = torch.randperm(N)
        for i in range(0, N - args.batch + 1, args.batch):
            out = step_fn([(X[perm[i:i + args.batch]], torch.zeros(args.batch, dtype=torch.long))], gan_steps)
            comp.ema.update(G, gan_steps); gan_steps += 1
            if time.time() - t0 + t_gan > args.gan_minutes * 60: break
        t_gan += time.time() - t0
        print(f"gan step {gan_steps} loss_d {out['loss_d'].item():.3f} loss_g {out['loss_g'].item():.3f} t {t_gan:.0f}", flush=True)
    G = comp.ema.model.eval()
torch.save({"G": G.state_dict(), "L": L, "args": {**vars(args), "out": str(args.out)}}, args.out / f"{args.name}.pt")
reals = real_images(cfg)
res = {"name": args.name, "args": {**vars(args), "out": str(args.out)}, "steps": step, "epochs": epoch, "gan_steps": gan_steps}
# Memorisation: each sample's distance to its nearest training image at 32 px, against each real image's
# distance to its nearest other real image (1.0: as far from the set as a real image is from the rest).
reference = pixels32(X[:N0])
for tag, z in ways.items():
    fakes = generate(G, z)
    s = score_images(fakes, reals, 1000, features=("effnet-lite0",))
    save_grid(fakes[:64], args.out / f"{args.name}-{tag}.png")
    res[tag] = {k: round(v, 4) for k, v in s.items()}
    res[tag]["nn_ratio"] = round(copy_ratio(pixels32(fakes), reference), 3)
    print(tag, res[tag], flush=True)
print(json.dumps(res))
with open("benchmarks/results/ae_latent.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
