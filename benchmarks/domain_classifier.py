"""Domain classifiers: scores of generated images from a network trained here, from scratch, never on ImageNet
and never on the images being scored (issue 44).  ``benchmarks/quality.py --curve`` imports it.

- ``emoji``: a small CNN that tells OpenMoji's emoji *groups* apart (npm ``openmoji@17.0.0``, CC-BY-SA-4.0:
  smileys-emotion, people-body, animals-nature, food-drink, travel-places, activities, objects, symbols,
  flags).  The GAN learns from Google's Noto emoji; the classifier never sees them in training.  OpenMoji's
  SVGs are rendered as the scored Noto images are: 64 px, the emoji filling the frame (Noto's leave about a
  pixel each side), composited on white.  Left out: skin-tone variants (the Noto set leaves them out too),
  ``component`` (9 swatches of skin and hair, no group of their own in a GAN's samples) and OpenMoji's own
  ``extras-openmoji`` / ``extras-unicode`` (not Unicode groups: no Noto image has them).  Light augmentation
  (flips, shifts, scale, colour jitter, blur) makes it judge the object rather than OpenMoji's black outlines;
  its accuracy on the Noto images (labelled by ``emoji-datasource-google``'s ``category``, the same Unicode
  groups) is the evidence that it recognises emoji in the style the GAN draws.
- ``fashion``: a small CNN on Fashion-MNIST's 10 classes at 32 px, grey (Debian ``dataset-fashion-mnist``).
  ``quality.py`` scores against the *train* split's first images (at most 10,000 read, the first 1,000
  scored), so the classifier trains on the train split's images 10,000 to 60,000 (one epoch) and is tested on
  the t10k split.

Scores (higher ``domain_confidence`` and ``domain_spread`` are better, lower ``domain_fd``):

- ``domain_fd``: the Fréchet distance of the samples' and the reals' penultimate features (after the global
  pool: 256-d for emoji, 128-d for Fashion-MNIST), computed by ganforge's own FID function (:func:`ganforge.metrics.scores.fid_from_features`);
- ``domain_confidence``: the mean top-class probability: how recognisable a sample is as *some* class;
- ``domain_spread``: exp(E[KL(p(y|x) || p(y))]) over all images (the Inception Score's formula, one split):
  near the number of classes when every image is recognised and the classes are evenly used.

The judges are pinned: the weights the results were scored with ship in ``benchmarks/judges/`` (safetensors,
named by a hash of the training recipe, with the training facts in a JSON beside them), because training
again on another machine gives other weights (other sums in another order: the emoji classifier's reals'
confidence was 0.511 with one training and 0.530 with another), and scores compare only under one judge.
Without pinned weights for a recipe, the classifier is trained (minutes) and cached under
``~/.cache/ganforge/bench-quality/domain/``; ``--pin`` copies it into ``benchmarks/judges/``.  Every result
records the weights' digest (``weights_digest``).

    python benchmarks/domain_classifier.py --datasets emoji fashion --threads 1   # load (or train), print the facts
    python benchmarks/domain_classifier.py --datasets emoji --retrain --pin        # train again and pin the new judge
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.metrics.features import to_uint8_rgb
from ganforge.metrics.scores import fid_from_features, inception_score

WORK = Path.home() / ".cache" / "ganforge" / "bench-quality"
CACHE = WORK / "domain"
#: The pinned judges, shipped with the repository (see the module's doc).
JUDGES = Path(__file__).resolve().parent / "judges"
OPENMOJI_PACKAGE = "openmoji@17.0.0"
#: The Unicode emoji groups, in OpenMoji's names (its ``group`` column), as the classifier's classes.
EMOJI_GROUPS = ("smileys-emotion", "people-body", "animals-nature", "food-drink", "travel-places", "activities",
                "objects", "symbols", "flags")
#: ``emoji-datasource-google``'s ``category`` -> OpenMoji's group (``Component`` has no class: left out).
NOTO_CATEGORY = {"Smileys & Emotion": "smileys-emotion", "People & Body": "people-body",
                 "Animals & Nature": "animals-nature", "Food & Drink": "food-drink",
                 "Travel & Places": "travel-places", "Activities": "activities", "Objects": "objects",
                 "Symbols": "symbols", "Flags": "flags"}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
#: Fashion-MNIST train images quality.py may score (it reads at most 10,000): never trained on.
FASHION_SCORED = 10_000

#: What makes a classifier: its hash names the cached weights (bump ``version`` when the code changes them).
RECIPES = {
    "emoji": dict(version=1, data=f"{OPENMOJI_PACKAGE} groups, no skin tones, 64 px filling the frame on white",
                  classes=list(EMOJI_GROUPS), size=64, channels=3, stem_stride=1, widths=[16, 32, 64, 128, 256],
                  epochs=24,
                  batch=64, lr=3e-3, weight_decay=5e-4, holdout=0.15, augment="flip shift scale jitter blur",
                  seed=0),
    "fashion": dict(version=1, data=f"fashion-mnist train[{FASHION_SCORED}:], test t10k", classes=list(FASHION_CLASSES),
                    size=32, channels=1, stem_stride=1, widths=[16, 32, 64, 128], epochs=1, batch=128, lr=3e-3,
                    weight_decay=5e-4, holdout=0.0, augment="flip shift", seed=0),
}


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------
class DomainNet(nn.Module):
    """Conv-BN-ReLU blocks, each halving the size, then a global average pool: its ``widths[-1]`` values are the
    features FD compares; a linear layer on them gives the class logits.  The first convolution may stride
    (``stem_stride=2``: a quarter of the arithmetic at 64 px, which this CPU needs).  Takes uint8 images as saved
    to PNG (any of 1, 3 or 4 channels: grey, RGB, RGBA composited on white) and returns ``(features, logits)``."""

    def __init__(self, channels: int, classes: int, widths: list[int], stem_stride: int = 1, size: int = 0):
        super().__init__()
        self.channels, self.size = channels, size
        layers, c = [], channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(c, classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (any channels) as the network's input: floats in [-1, 1]."""
        if images.dtype == torch.uint8:
            rgb = to_uint8_rgb(images)  # grey repeated, RGBA on white
            if self.channels == 1:
                rgb = (rgb.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            images = rgb.float() / 127.5 - 1
        if self.size and images.shape[-1] != self.size:  # another set's images (Fluent's 128 px) at its size
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)
        return images

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(self.prepare(images)).mean(dim=(2, 3))
        return features, self.head(self.dropout(features))


def build(recipe: dict) -> DomainNet:
    return DomainNet(recipe["channels"], len(recipe["classes"]), recipe["widths"], recipe.get("stem_stride", 1),
                     recipe["size"])


@torch.no_grad()
def features_and_logits(net: DomainNet, images: torch.Tensor, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    feats, logits = [], []
    for part in images.split(batch):
        f, lo = net(part)
        feats.append(f.double().numpy())
        logits.append(lo.double().numpy())
    return np.concatenate(feats), np.concatenate(logits)


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------
def confidence(logits: np.ndarray) -> float:
    """The mean top-class probability."""
    return float(torch.as_tensor(logits).softmax(dim=1).max(dim=1).values.mean())


def spread(logits: np.ndarray) -> float:
    """exp(E[KL(p(y|x) || p(y))]) over all the images (the Inception Score's formula, one split)."""
    return inception_score(logits, splits=1)[0]


def domain_scores(net: DomainNet, fakes: torch.Tensor, real_features: np.ndarray) -> dict[str, float]:
    """``domain_fd`` against the reals' features, ``domain_confidence`` and ``domain_spread`` of ``fakes``."""
    feats, logits = features_and_logits(net, fakes)
    return {"domain_fd": float(fid_from_features(feats, real_features)), "domain_confidence": confidence(logits),
            "domain_spread": spread(logits)}


def real_reference(net: DomainNet, reals: torch.Tensor, reference: torch.Tensor) -> tuple[np.ndarray, dict[str, float]]:
    """The features of ``reference`` (the reals the samples are scored against: quality.py's evaluation subset of
    ``reals``), and the same figures for real images: the reference's confidence and spread, and the FD of two
    disjoint halves of ``reals`` (as many images each as the reference at most, as quality.py's FID yardstick is
    taken): the floor a generator's FD can reach."""
    n = reference.shape[0]
    feats, logits = features_and_logits(net, reference)
    perm = torch.randperm(reals.shape[0], generator=torch.Generator().manual_seed(0))
    half = reals.shape[0] // 2
    a = features_and_logits(net, reals[perm[:half]][:n])[0]
    b = features_and_logits(net, reals[perm[half:]][:n])[0]
    return feats, {"real_domain_confidence": confidence(logits), "real_domain_spread": spread(logits),
                   "real_domain_fd_half_vs_half": float(fid_from_features(a, b))}


# --------------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------------
def openmoji_package() -> Path:
    """OpenMoji's npm package (SVGs and data/openmoji.csv), installed into the cache first when it is missing."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import npm_package
    return npm_package(CACHE / "npm", OPENMOJI_PACKAGE, "openmoji")


def fill_frame(rgba, size: int, margin: int = 1) -> np.ndarray:
    """An RGBA emoji scaled so its longer side fills ``size`` less ``margin`` each side (as Noto's 64 px PNGs are),
    centred and composited on white: uint8 (3, size, size)."""
    from PIL import Image
    box = rgba.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox() or (0, 0, *rgba.size)
    glyph = rgba.crop(box)
    inner = size - 2 * margin
    scale = inner / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return np.asarray(canvas.convert("RGB")).transpose(2, 0, 1).copy()


def openmoji_set(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenMoji's emoji of the Unicode groups, no skin tones, rendered as :func:`fill_frame`; cached as a .npz."""
    out = CACHE / f"openmoji-{size}px.npz"
    if out.is_file():
        data = np.load(out)
        return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])
    try:
        import cairosvg
    except ImportError:
        raise SystemExit("domain_classifier.py: rendering OpenMoji's SVGs needs cairosvg: pip install cairosvg "
                         "(and the cairo library: apt-get install libcairo2)") from None
    from PIL import Image
    pkg = openmoji_package()
    images, labels = [], []
    with open(pkg / "data" / "openmoji.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["group"] not in EMOJI_GROUPS or row["skintone"]:
                continue
            png = cairosvg.svg2png(url=str(pkg / "color" / "svg" / f"{row['hexcode']}.svg"), output_width=4 * size,
                                   output_height=4 * size)
            images.append(fill_frame(Image.open(io.BytesIO(png)).convert("RGBA"), size))
            labels.append(EMOJI_GROUPS.index(row["group"]))
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, images=np.stack(images), labels=np.array(labels, dtype=np.int64))
    tmp.replace(out)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def noto_set(work: Path = WORK) -> tuple[torch.Tensor, torch.Tensor]:
    """The Noto emoji exactly as quality.py scores them (its folder, no skin tones, 64 px on white), labelled by
    ``emoji-datasource-google``'s ``category`` (``Component`` left out): the cross-style test."""
    from PIL import Image

    from ganforge.data.decode import to_channels
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import emoji_folder
    folder = emoji_folder(work)
    meta = json.loads((work / "npm" / "node_modules" / "emoji-datasource-google" / "emoji.json").read_text())
    category = {e["image"]: e["category"] for e in meta}
    images, labels = [], []
    for f in sorted(folder.glob("*.png")):
        group = NOTO_CATEGORY.get(category.get(f.name, ""))
        if group is None:
            continue
        with Image.open(f) as img:
            images.append(np.asarray(to_channels(img, 3, (255, 255, 255))).transpose(2, 0, 1).copy())
        labels.append(EMOJI_GROUPS.index(group))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def fluent_set(work: Path = WORK) -> tuple[torch.Tensor, torch.Tensor]:
    """Fluent Emoji 3D as quality.py's ``fluent`` set reads it (128 px, RGBA on white), labelled by OpenMoji's
    group of the same code point (the file name, with or without FE0F): a second cross-style test, and the
    reason the emoji classifier can score that set."""
    from PIL import Image

    from ganforge.data.decode import resize_crop, to_channels
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import fluent_folder
    folder = fluent_folder(work)
    pkg = openmoji_package()
    group = {}
    with open(pkg / "data" / "openmoji.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["group"] in EMOJI_GROUPS and not row["skintone"]:
                code = row["hexcode"].lower()
                group.setdefault(code, row["group"])
                group.setdefault(code.replace("-fe0f", ""), row["group"])
    images, labels = [], []
    for f in sorted(folder.glob("*.webp")):
        name = group.get(f.stem.lower()) or group.get(f.stem.lower().replace("-fe0f", ""))
        if name is None:
            continue
        with Image.open(f) as img:
            rgb = torch.from_numpy(np.asarray(to_channels(img, 3, (255, 255, 255))).transpose(2, 0, 1).copy())
        images.append(resize_crop(rgb, 128).numpy())
        labels.append(EMOJI_GROUPS.index(name))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


def fashion_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST's ``train`` or ``t10k`` split at 32 px, as ganforge reads it (28 px resized, grey)."""
    from ganforge.data.decode import resize_crop
    from ganforge.data.named import DEBIAN_FASHION_MNIST, _read_idx
    folder = DEBIAN_FASHION_MNIST
    if not (folder / f"{split}-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"domain_classifier.py: Fashion-MNIST is not in {folder}: apt-get install -y "
                         "dataset-fashion-mnist")
    images = torch.from_numpy(_read_idx(folder / f"{split}-images-idx3-ubyte.gz").copy()).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64))
    return torch.cat([resize_crop(c, 32) for c in images.split(4096)]), labels


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def augment(x: torch.Tensor, recipe: dict, g: torch.Generator) -> torch.Tensor:
    """A batch of floats in [-1, 1] (white background = 1), lightly changed: mirrored, shifted and scaled by a
    few pixels (the uncovered border white), colours jittered and sometimes blurred."""
    n = x.shape[0]
    kinds = recipe["augment"].split()
    if "flip" in kinds:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if "shift" in kinds or "scale" in kinds:
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (4 / recipe["size"]) * 2  # +-4 px
        scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.15 if "scale" in kinds else torch.ones(n)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        background = 1.0 if recipe["channels"] == 3 else -1.0  # emoji on white; Fashion-MNIST on black
        x = F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background
    if "jitter" in kinds:
        grey = x.mean(dim=1, keepdim=True)
        saturation = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
        x = grey + (x - grey) * saturation
        contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        brightness = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.2
        x = (x - 1) * contrast + 1 + brightness  # around white, so the background stays near white
        hue = torch.rand(n, generator=g) < 0.2  # a random permutation of the channels: another colour
        if hue.any():
            perm = torch.randperm(3, generator=g)
            x = torch.where(hue.view(-1, 1, 1, 1), x[:, perm], x)
    if "blur" in kinds:
        blur = torch.rand(n, generator=g) < 0.3
        if blur.any():
            x = torch.where(blur.view(-1, 1, 1, 1), F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False), x)
    return x.clamp(-1, 1)


def accuracy(net: DomainNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((torch.as_tensor(features_and_logits(net, images)[1]).argmax(1) == labels).double().mean())


def train(dataset: str, log=print) -> tuple[DomainNet, dict]:
    recipe = RECIPES[dataset]
    torch.manual_seed(recipe["seed"])
    g = torch.Generator().manual_seed(recipe["seed"])
    if dataset == "emoji":
        images, labels = openmoji_set(recipe["size"])
        perm = torch.randperm(len(labels), generator=g)
        n_test = int(len(labels) * recipe["holdout"])
        test_images, test_labels = images[perm[:n_test]], labels[perm[:n_test]]
        images, labels = images[perm[n_test:]], labels[perm[n_test:]]
    else:
        images, labels = fashion_split("train")
        images, labels = images[FASHION_SCORED:], labels[FASHION_SCORED:]
        test_images, test_labels = fashion_split("t10k")
    net = build(recipe)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps_per_epoch = (len(labels) + recipe["batch"] - 1) // recipe["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=recipe["epochs"] * steps_per_epoch)
    # Classes are uneven (people-body 388 images, activities 85): weight the loss so each counts alike.
    counts = torch.bincount(labels, minlength=len(recipe["classes"])).double()
    weights = (counts.sum() / counts.clamp_min(1) / len(counts)).float()
    t = time.time()
    for epoch in range(recipe["epochs"]):
        net.train()
        order = torch.randperm(len(labels), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * recipe["batch"]:(i + 1) * recipe["batch"]]
            x = augment(net.prepare(images[idx]), recipe, g)
            loss = F.cross_entropy(net(x)[1], labels[idx], weight=weights, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"{dataset}: epoch {epoch + 1}/{recipe['epochs']} loss {total / steps_per_epoch:.3f} "
            f"({time.time() - t:.0f} s)")
    facts = {"dataset": dataset, "recipe": recipe, "recipe_hash": recipe_hash(recipe),
             "train_images": int(len(labels)), "train_seconds": round(time.time() - t, 1),
             "torch_threads": torch.get_num_threads(),
             "train_accuracy": accuracy(net, images[:5000], labels[:5000]), "test_images": int(len(test_labels)),
             "test_accuracy": accuracy(net, test_images, test_labels)}
    if dataset == "emoji":
        noto_images, noto_labels = noto_set()
        facts.update(noto_images=int(len(noto_labels)), noto_accuracy=accuracy(net, noto_images, noto_labels),
                     noto_per_group={c: accuracy(net, noto_images[noto_labels == k], noto_labels[noto_labels == k])
                                     for k, c in enumerate(EMOJI_GROUPS)})
    return net.eval(), facts


def weights_path(dataset: str, folder: Path | None = None) -> Path:
    return (folder or CACHE) / f"{dataset}-{recipe_hash(RECIPES[dataset])}.safetensors"


def weights_digest(path: Path) -> str:
    """Which trained weights a score came from: the first 12 hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load(dataset: str, retrain: bool = False, log=print) -> tuple[DomainNet, dict]:
    """The dataset's classifier and its training facts (with ``weights_digest``): the pinned judge, else the
    cached one, else trained now (minutes) and cached; ``retrain`` trains again whatever is there."""
    from safetensors.torch import load_file
    for path in [] if retrain else [weights_path(dataset, JUDGES), weights_path(dataset)]:
        facts_path = path.with_suffix(".json")
        if path.is_file() and facts_path.is_file():
            net = build(RECIPES[dataset])
            net.load_state_dict(load_file(path))
            return net.eval(), {**json.loads(facts_path.read_text()), "weights_digest": weights_digest(path)}
    net, facts = train(dataset, log)
    path = save(dataset, net, facts)
    return net, {**facts, "weights_digest": weights_digest(path)}


def pin(dataset: str) -> Path:
    """Copy the cached classifier of ``dataset`` (weights and facts) into ``benchmarks/judges/``."""
    source = weights_path(dataset)
    target = weights_path(dataset, JUDGES)
    JUDGES.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        target.with_suffix(suffix).write_bytes(source.with_suffix(suffix).read_bytes())
    return target


def save(dataset: str, net: DomainNet, facts: dict) -> Path:
    """The classifier's weights (safetensors) and training facts (JSON) in the cache, where :func:`load` finds
    them."""
    from safetensors.torch import save_file
    path = weights_path(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(path)
    facts = {k: v for k, v in facts.items() if k != "weights_digest"}  # the file's own, computed on load
    path.with_suffix(".json").write_text(json.dumps(facts, indent=1) + "\n")
    return path


def facts_summary(facts: dict) -> dict:
    """What a result file records of the classifier it was scored with."""
    keep = ("recipe_hash", "weights_digest", "train_images", "test_images", "test_accuracy", "noto_images",
            "noto_accuracy")
    return {"data": facts["recipe"]["data"], **{k: facts[k] for k in keep if k in facts}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--retrain", action="store_true", help="train again even if pinned or cached weights exist")
    ap.add_argument("--pin", action="store_true", help="copy the classifier into benchmarks/judges/ (the judge "
                                                       "every machine then scores with)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for dataset in args.datasets:
        net, facts = load(dataset, retrain=args.retrain)
        if dataset == "emoji" and "fluent_accuracy" not in facts:  # added after the first weights were cached
            images, labels = fluent_set()
            facts.update(fluent_images=int(len(labels)), fluent_accuracy=accuracy(net, images, labels),
                         fluent_per_group={c: accuracy(net, images[labels == k], labels[labels == k])
                                           for k, c in enumerate(EMOJI_GROUPS)})
            save(dataset, net, facts)
        pinned = weights_path(dataset, JUDGES)
        if args.pin and (args.retrain or not pinned.is_file()):  # what load() trained or found is in the cache
            print(f"pinned: {pin(dataset)}")
        print(json.dumps(facts, indent=1))
        print(f"weights: {pinned if pinned.is_file() else weights_path(dataset)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
