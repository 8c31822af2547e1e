"""Prototype: the recipe's FastGAN G trained by matching feature statistics of a frozen ImageNet network
(Lite1, which no metric uses) to the real set's (GFMN, Santos et al. 2019), optionally beside the GAN."""
import argparse, copy, json, sys, time
from pathlib import Path
import torch, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import emoji_folder, real_images, score_images
from ganforge.recipe import auto_config
from ganforge.nets.fastgan import FastGANGenerator
from ganforge.nets.init import initialise
from ganforge.nets.projected import FeatureStages
from ganforge.modules.pretrained import IMAGENET_MEAN, IMAGENET_STD
from ganforge.sampling import generate, save_grid

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=6)
ap.add_argument("--ngf", type=int, default=8)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--size", type=int, default=64, help="input size of the feature network")
ap.add_argument("--stats", default="pos", choices=["pos", "chan"], help="per position and channel, or per channel")
ap.add_argument("--pixels", type=int, default=16, help="also match pixel statistics at this size (0: no)")
ap.add_argument("--ama", type=float, default=0.0, help="moving average of the fake statistics (GFMN's AMA-like)")
ap.add_argument("--name", default="fm")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads); torch.manual_seed(args.seed)
work = Path.home() / ".cache/ganforge/bench-quality"
cfg = auto_config(str(emoji_folder(work)), ["data.num_workers=0"])
X = real_images(cfg).float() / 127.5 - 1
X = torch.cat([X, X.flip(3)])
net = FeatureStages(1)
mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1); std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def feats(x):
    x = (x + 1) / 2
    if args.size != x.shape[-1]:
        x = F.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)
    out = [m.float() for m in net((x - mean) / std)]
    if args.pixels:
        out = [F.adaptive_avg_pool2d((x - mean) / std, args.pixels)] + out
    if args.stats == "chan":
        return [m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in out]
    return [m.flatten(1) for m in out]


with torch.no_grad():
    parts = [feats(b) for b in X.split(128)]
    real_mu = [torch.cat([p[i] for p in parts]).mean(0) for i in range(len(parts[0]))]
    real_var = [torch.cat([p[i] for p in parts]).var(0) for i in range(len(parts[0]))]
scale = [v.mean() for v in real_var]  # each depth weighs the same, whatever its activations' size
print("dims", [m.numel() for m in real_mu], flush=True)
G = FastGANGenerator(100, args.ngf, 3, 64); initialise(G, "dcgan")
opt = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.99))
ema = copy.deepcopy(G).eval()
avg_mu = avg_var = None
budget = args.minutes * 60; t_train = 0.0; step = 0
t0 = time.time()
while t_train < budget:
    fake = G(torch.randn(args.batch, 100))
    fs = feats(fake)
    mu = [f.mean(0) for f in fs]; var = [f.var(0) for f in fs]
    if args.ama:
        if avg_mu is None:
            avg_mu, avg_var = [m.detach() for m in mu], [v.detach() for v in var]
        a = args.ama
        # the moving average carries the earlier batches; this batch's gradient flows through its share
        mu = [a * am + (1 - a) * m for am, m in zip(avg_mu, mu)]
        var = [a * av + (1 - a) * v for av, v in zip(avg_var, var)]
        avg_mu, avg_var = [m.detach() for m in mu], [v.detach() for v in var]
    loss = sum(((m - rm) ** 2).mean() / s + ((v - rv) ** 2).mean() / s ** 2
               for m, v, rm, rv, s in zip(mu, var, real_mu, real_var, scale))
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    with torch.no_grad():
        beta = 0.5 ** (args.batch / 10_000) if step * args.batch > 20_000 else 0.9
        for pe, p in zip(ema.parameters(), G.parameters()): pe.lerp_(p, 1 - beta)
        for be, b in zip(ema.buffers(), G.buffers()): be.copy_(b)
    t_train = time.time() - t0
    if step % 100 == 0:
        print(f"step {step} loss {loss.item():.4f} t {t_train:.0f}", flush=True)
reals = real_images(cfg)
res = {"name": args.name, "args": vars(args), "steps": step}
for tag, g in (("ema", ema),):
    fakes = generate(g, torch.randn(1000, 100, generator=torch.Generator().manual_seed(123)))
    s = score_images(fakes, reals, 1000)
    save_grid(fakes[:64], Path(f"benchmarks/results/fm/{args.name}-{tag}.png"))
    res[tag] = {k: round(v, 4) for k, v in s.items()}
print(json.dumps(res), flush=True)
with open("benchmarks/results/fm/feature_match.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
