"""How near a generator's samples sit to the training images, beside FID: the check that tells a model that
learned the set from one that reproduces it (docs/quality.md, "A two-stage autoencoder").

For each system, 1,000 samples (latent seed 123) are scored against the first 1,000 emoji, as the quality
benchmarks score: FID, KID and the copy ratio (``ganforge.metrics.scores.copy_ratio``) on EfficientNet-Lite0
and Lite2 features, and the copy ratio on the images themselves shrunk to 32 px, where a blurred copy of a
training image is still near it (on features it is not: blur moves the features as far as a new image).
The baseline in the same run is the rest of the real set (906 emoji the reference never saw): the ratio
printed for each system is its pixel copy ratio over that of new real images (1: as new as a real image).

    python benchmarks/copy_check.py --run RUN_DIR [--ae benchmarks/results/ae_latent/NAME.pt ...]

``--run``: ganforge run directories or generator files (sampled from N(0, I)); ``--ae``: generators saved by
``benchmarks/ae_latent.py``, each sampled four ways (gauss, kde0.5, kde0.25, recon; see that script).
Writes ``benchmarks/results/copy_check-<time>.json``."""
import argparse, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import emoji_folder, real_images, score_images
from ganforge.recipe import auto_config
from ganforge.export import load_generator
from ganforge.nets.fastgan import FastGANGenerator
from ganforge.sampling import generate
from ganforge.metrics.scores import copy_ratio
from two_stage import latent_samplings, pixels32

ap = argparse.ArgumentParser()
ap.add_argument("--run", nargs="*", default=[], help="ganforge run directories or generator files")
ap.add_argument("--ae", nargs="*", default=[], help="generators saved by benchmarks/ae_latent.py")
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
cfg = auto_config(str(emoji_folder(Path.home() / ".cache/ganforge/bench-quality")), ["data.num_workers=0"])
reals = real_images(cfg)
reference = pixels32(reals[:1000].float() / 127.5 - 1)
features = ("effnet-lite0", "effnet-lite2")


def systems():
    yield "real images not in the reference", reals[1000:].float() / 127.5 - 1
    for run in args.run:
        out = load_generator(run)
        G = out[0] if isinstance(out, tuple) else out
        yield run, generate(G, torch.randn(1000, G.nz, generator=torch.Generator().manual_seed(123)))
    for pt in args.ae:
        saved = torch.load(pt, weights_only=True)  # tensors and plain values only: no code runs
        a = saved["args"]
        G = FastGANGenerator(a["nz"], a["ngf"], 3, 64)
        G.load_state_dict(saved["G"])
        ways = latent_samplings(saved["L"])
        ways.pop("prior")
        for way, z in ways.items():
            yield f"{pt} {way}", generate(G, z)


results, baseline = [], None
for name, images in systems():
    row = {"system": name, "n": images.shape[0], **score_images(images, reals, 1000, features),
           "copy_ratio_pixels32": copy_ratio(pixels32(images), reference)}
    baseline = baseline or row["copy_ratio_pixels32"]
    row["pixel_copy_vs_new_real"] = row["copy_ratio_pixels32"] / baseline
    results.append(row)
    print(f"{name}: FID-EL0 {row['fid_effnet_lite0']:.1f}  copy (pixels) {row['copy_ratio_pixels32']:.3f} "
          f"= {row['pixel_copy_vs_new_real']:.2f}x new real images  copy (EL0) {row['copy_ratio_effnet_lite0']:.3f}",
          flush=True)
out = Path("benchmarks/results") / f"copy_check-{time.strftime('%Y%m%d-%H%M%S')}.json"
out.write_text(json.dumps(results, indent=1))
print(f"wrote {out}")
