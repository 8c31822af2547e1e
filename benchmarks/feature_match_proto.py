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
ap.add_argument("--clusters", type=int, default=0,
                help="k-means the real set on the feature network's pooled features into K groups; G is conditioned "
                     "on the group and each group's statistics are matched on its own (0: one set of statistics)")
ap.add_argument("--groups", type=int, default=4, help="groups per batch with --clusters (batch / groups images each)")
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


def feats(x, maps=False):
    x = (x + 1) / 2
    if args.size != x.shape[-1]:
        x = F.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)
    out = [m.float() for m in net((x - mean) / std)]
    if args.pixels:
        out = [F.adaptive_avg_pool2d((x - mean) / std, args.pixels)] + out
    if maps:
        return out
    if args.stats == "chan":
        return [m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in out]
    return [m.flatten(1) for m in out]


def kmeans(rows, k, iters=50):
    """Lloyd's k-means with k-means++ seeding (seeded): the labels of ``rows``."""
    g = torch.Generator().manual_seed(args.seed)
    centres = rows[torch.randint(len(rows), (1,), generator=g)]
    for _ in range(k - 1):
        d = torch.cdist(rows, centres).min(1).values ** 2
        centres = torch.cat([centres, rows[torch.multinomial(d / d.sum(), 1, generator=g)]])
    for _ in range(iters):
        labels = torch.cdist(rows, centres).argmin(1)
        centres = torch.stack([rows[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)])
    return labels


with torch.no_grad():
    parts = [feats(b) for b in X.split(128)]
    rows = [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
    real_var_all = [r.var(0) for r in rows]
    if args.clusters:
        # Each image described by its deepest features pooled over positions (what it is) and its colours
        # at 4x4 (what it looks like), each part standardised.
        deep = torch.cat([feats(b, maps=True)[-1].mean((2, 3)) for b in X.split(128)])
        colour = F.adaptive_avg_pool2d(X, 4).flatten(1)
        desc = torch.cat([(deep - deep.mean(0)) / deep.std(0).add(1e-6) / deep.shape[1] ** 0.5,
                          (colour - colour.mean(0)) / colour.std(0).add(1e-6) / colour.shape[1] ** 0.5], 1)
        labels = kmeans(desc, args.clusters)
    else:
        labels = torch.zeros(len(X), dtype=torch.long)
    K = max(args.clusters, 1)
    sizes = torch.bincount(labels, minlength=K).float()
    print("cluster sizes", sizes.long().tolist(), flush=True)
    real_mu = [[r[labels == c].mean(0) for r in rows] for c in range(K)]
    real_var = [[r[labels == c].var(0) if sizes[c] > 1 else torch.zeros_like(r[0]) for r in rows] for c in range(K)]
scale = [v.mean() for v in real_var_all]  # each depth weighs the same, whatever its activations' size
print("dims", [m.numel() for m in real_mu[0]], flush=True)
G = FastGANGenerator(100, args.ngf, 3, 64, num_classes=args.clusters); initialise(G, "dcgan")
opt = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.99))
ema = copy.deepcopy(G).eval()
budget = args.minutes * 60; t_train = 0.0; step = 0
t0 = time.time()
while t_train < budget:
    if args.clusters:
        picked = torch.multinomial(sizes, args.groups, replacement=True)
        y = picked.repeat_interleave(args.batch // args.groups)
    else:
        picked, y = torch.zeros(1, dtype=torch.long), None
    fake = G(torch.randn(args.batch, 100), y)
    fs = feats(fake)
    loss = 0.0
    for gi, c in enumerate(picked.tolist()):
        part = [f.view(len(picked), -1, f.shape[1])[gi] for f in fs]
        mu = [f.mean(0) for f in part]; var = [f.var(0) for f in part]
        loss = loss + sum(((m - rm) ** 2).mean() / sc + ((v - rv) ** 2).mean() / sc ** 2
                          for m, v, rm, rv, sc in zip(mu, var, real_mu[c], real_var[c], scale)) / len(picked)
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
    gen = torch.Generator().manual_seed(123)
    z = torch.randn(1000, 100, generator=gen)
    y = torch.multinomial(sizes, 1000, replacement=True, generator=gen) if args.clusters else None
    fakes = generate(g, z, y)
    s = score_images(fakes, reals, 1000)
    save_grid(fakes[:64], Path(f"benchmarks/results/fm/{args.name}-{tag}.png"))
    res[tag] = {k: round(v, 4) for k, v in s.items()}
print(json.dumps(res), flush=True)
with open("benchmarks/results/fm/feature_match.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
