"""Prototype: IMLE (Li & Malik) on emoji with the FastGAN G; scored like the sweep."""
import argparse, json, sys, time, copy
from pathlib import Path
import torch, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import emoji_folder, real_images, score_images
from ganforge.recipe import auto_config
from ganforge.nets.fastgan import FastGANGenerator
from ganforge.nets.init import initialise
from ganforge.sampling import generate, save_grid
from ganforge.training.imle import pyramid_l1

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=8)
ap.add_argument("--ngf", type=int, default=8)
ap.add_argument("--m", type=int, default=4, help="pool size per real")
ap.add_argument("--reselect", type=int, default=2, help="epochs between selections")
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--sigma", type=float, default=0.0)
ap.add_argument("--dist", type=int, default=16)
ap.add_argument("--name", default="imle")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--flip", action="store_true")
args = ap.parse_args()
torch.set_num_threads(1); torch.manual_seed(args.seed)
work = Path.home() / ".cache/ganforge/bench-quality"
cfg = auto_config(str(emoji_folder(work)), ["data.num_workers=0"])
X = real_images(cfg).float() / 127.5 - 1
X = torch.cat([X, X.flip(3)]) if args.flip else X
N = X.shape[0]
Xd = F.adaptive_avg_pool2d(X, args.dist).flatten(1)
G = FastGANGenerator(100, args.ngf, 3, 64); initialise(G, "dcgan")
opt = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.99))
ema = copy.deepcopy(G).eval()
budget = args.minutes * 60; t_train = 0.0; epoch = 0; step = 0
Z = None
while t_train < budget:
    t0 = time.time()
    if epoch % args.reselect == 0:
        P = args.m * N
        pool = torch.randn(P, 100)
        with torch.no_grad():
            feats = torch.cat([F.adaptive_avg_pool2d(G(pool[i:i+512]), args.dist).flatten(1) for i in range(0, P, 512)])
        d = torch.cdist(Xd, feats)  # N x P
        Z = pool[d.argmin(1)]
        print(f"epoch {epoch} select: mean nn dist {d.min(1).values.mean():.3f}", flush=True)
    perm = torch.randperm(N)
    for i in range(0, N, 32):
        idx = perm[i:i+32]
        z = Z[idx] + args.sigma * torch.randn(len(idx), 100)
        out = G(z)
        loss = pyramid_l1(out, X[idx])
        opt.zero_grad(); loss.backward(); opt.step(); step += 1
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), G.parameters()): pe.lerp_(p, 1 - 0.99)
            for be, b in zip(ema.buffers(), G.buffers()): be.copy_(b)
        if time.time() - t0 + t_train > budget: break
    t_train += time.time() - t0; epoch += 1
    print(f"epoch {epoch} step {step} loss {loss.item():.3f} t {t_train:.0f}", flush=True)
reals = real_images(cfg)
res = {"name": args.name, "args": vars(args), "steps": step, "epochs": epoch}
for tag, net in (("G", G), ("ema", ema)):
    fakes = generate(net, torch.randn(1000, 100, generator=torch.Generator().manual_seed(123)))
    s = score_images(fakes, reals, 1000, features=("effnet-lite0",))
    save_grid(fakes[:64], Path(f"benchmarks/results/{args.name}-{tag}.png"))
    res[tag] = {k: round(v, 4) for k, v in s.items()}
print(json.dumps(res))
with open("benchmarks/results/imle.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
