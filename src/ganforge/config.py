"""Typed, validated run configuration.

A run is described by one :class:`Config`: nested dataclasses, one per concern.  Configs come from a
preset shipped in the package (``ganforge/presets/NAME.yaml``), a YAML file, and dotted ``key=value``
overrides, merged in that order.  Unknown keys and wrong types are errors that name the key and the
closest valid one (StudioGAN-style strictness), and the fully resolved config is saved in every run
directory so a run can always be reproduced.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config key, value or combination that cannot work; the message says what to change."""


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    name: Literal["dcgan", "dcgan-upsample", "mlp", "resnet", "fastgan"] = "dcgan"
    nz: int = 100  # latent size
    ngf: int = 64  # generator width (channels of the last hidden stage for conv nets)
    ndf: int = 64  # discriminator width
    g_hidden: list[int] = field(default_factory=lambda: [256, 512, 1024])  # mlp generator widths
    d_hidden: list[int] = field(default_factory=lambda: [512, 256])  # mlp discriminator widths
    spectral_norm: bool = False  # spectral normalisation in D
    spectral_norm_g: bool = False  # spectral normalisation in G too (BigGAN)
    d_batchnorm: bool = True  # BatchNorm in D (the tutorial's); off is usual with spectral norm
    attention: int = 0  # resolution at which to put a self-attention block (0: none)
    num_classes: int = 0  # >0: class-conditional G (conditional BN) and projection D
    init: Literal["dcgan", "dcgan-icnr", "orthogonal", "xavier", "default"] = "dcgan"
    hierarchical_z: bool = False  # split z across generator blocks (BigGAN)
    upsample: Literal["nearest", "bilinear"] = "nearest"  # for dcgan-upsample and resnet
    fastgan_decoder: int = 32  # fastgan: size D's decoders rebuild real images at (0: no self-supervision)
    discriminator: Literal["own", "projected"] = "own"  # projected: judge through a frozen ImageNet network
    projected_size: int = 0  # projected D: the size its feature network sees (0: data.image_size)
    projected_pixels: int = 0  # projected D: also judge the raw pixels at this size (0: no pixel head)
    latent_groups: int = 0  # >0: z's angle picks one of K groups G conditions on; feature matching fits each to a cluster
    latent_groups_in_d: bool = False  # D is conditioned on the groups too: reals on their cluster, fakes on their group
    projection_scale: float = 1.0  # a conditional D's projection term is multiplied by this (1: as published)

    @property
    def d_classes(self) -> int:
        """How many conditions D's projection term has: the classes, or the latent groups when D sees
        them (model.latent_groups_in_d); 0: an unconditional D."""
        return self.num_classes or (self.latent_groups if self.latent_groups_in_d else 0)


@dataclass
class DataConfig:
    source: str = "fashion-mnist"  # folder, zip (optionally zip:inner/dir), prepared dir, or a named set
    root: str = "~/.cache/ganforge/datasets"  # where named datasets are looked for / downloaded
    image_size: int = 32
    channels: Literal[1, 3, 4] = 1  # 4: RGBA, the alpha channel kept (not composited on data.background)
    batch_size: int = 128
    crop: Literal["center", "random"] = "center"
    hflip: float = 0.5  # probability of a horizontal flip per image (the tutorial preset sets 0)
    background: list[int] = field(default_factory=lambda: [255, 255, 255])  # RGBA is composited on it
    limit: int = 0  # use only the first N images of the source (0: all)
    labels: bool = False  # read class labels from the first folder level
    class_names: list[str] = field(default_factory=list)  # written by ganforge: the class folders, in label order
    num_workers: int = -1  # -1: as many as the cores available (0 loads in the main process)
    prefetch_factor: int = 2
    persistent_workers: bool = True
    max_bad_fraction: float = 0.05  # stop before training if more of the files are broken than this
    on_gpu: bool = False  # hold a prepared dataset on the GPU whole
    index_cache: str = "~/.cache/ganforge/index"  # where folder/zip name indexes are cached ("": no cache)
    # Each real batch in blocks of a few latent groups' clusters, and each fake drawn in the group of the
    # real image it is paired with (model.latent_groups): real i and fake i are of one kind.
    group_batches: bool = False


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0  # L2, decoupled from the gradient (AdamW-style)
    l1: float = 0.0  # L1 penalty strength added to the loss
    schedule: Literal["constant", "linear", "cosine"] = "constant"


@dataclass
class OptimPair:
    g: OptimConfig = field(default_factory=OptimConfig)
    d: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class LossConfig:
    name: Literal["bce", "minimax", "hinge", "wgan-gp", "lsgan", "ragan", "rpgan"] = "bce"
    real_label: float = 1.0  # one-sided label smoothing: e.g. 0.9
    fake_label: float = 0.0
    label_flip: float = 0.0  # probability of swapping real/fake targets for D
    gp_weight: float = 10.0  # WGAN gradient penalty weight (wgan-gp)
    r1_gamma: float = 0.0  # R1 penalty on real data (0: off)
    r1_every: int = 1  # lazy R1 and R2: apply every k D steps (scaled by k)
    r2_gamma: float = 0.0  # R2 penalty on generated images (0: off; R3GAN pairs it with R1)
    lecam: float = 0.0  # LeCam regularisation weight: D's outputs tied to their moving averages (0: off)
    recon: Literal["none", "l1", "mse"] = "mse"  # fastgan: D's reconstruction loss on reals (self-supervision)
    recon_weight: float = 1.0
    imle: float = 0.0  # weight of IMLE's term in G's loss: each training image pulls its nearest sample (0: off)
    imle_pool: int = 2  # candidate latents per training image at each matching
    imle_every: int = 120  # generator steps between matchings
    imle_size: int = 16  # images and samples are compared at this size when matching
    imle_warmup: int = 0  # the first N generator steps train G on the IMLE term alone; D waits
    feature_match: float = 0.0  # weight of the feature-matching term in G's loss: ImageNet-feature statistics (0: off)
    feature_match_size: int = 64  # the images reach the feature network at this size (a multiple of 32)
    feature_match_warmup: int = 0  # the first N generator steps train G on the feature-matching term alone; D waits
    feature_match_sliced: float = 0.0  # weight of matching the distribution of each image's features (sliced Wasserstein; 0: off)
    feature_match_nearest: float = 0.0  # weight of pulling each sample's features to the nearest real image's (0: off)
    feature_match_gram: float = 0.0  # weight of matching each depth's channel co-occurrence (Gram matrices; 0: off)
    feature_match_every: int = 1  # the term runs on every k-th generator step only, at k times the weight (lazy)
    feature_match_average: float = 0.0  # decay of moving averages of the moments' errors over steps (0: each batch's own)
    feature_match_unbiased: bool = False  # batch estimates without their small-batch bias (no pull towards sameness)


@dataclass
class NoiseConfig:
    std: float = 0.0  # instance noise added to D's inputs at step 0
    anneal_steps: int = 10000  # linearly to zero over this many steps


@dataclass
class AugmentConfig:
    name: Literal["none", "diffaugment", "ada"] = "none"
    policy: list[str] = field(default_factory=lambda: ["color", "translation", "cutout"])
    p: float = 1.0  # probability for diffaugment; initial probability for ada
    ada_target: float = 0.6
    ada_interval: int = 4  # adjust p every N D steps
    ada_kimg: float = 100.0  # images for p to move by 1
    fill: Literal["zero", "background", "reflect"] = "zero"  # what translation and cutout leave behind


@dataclass
class EMAConfig:
    enabled: bool = False
    decay: float = 0.999
    start_step: int = 0  # before this step the EMA copies the generator
    warmup: bool = True  # ramp decay up from 0 (decay = min(decay, (1+s)/(10+s)))
    half_life_images: int = 0  # >0: the average's half-life in images seen (StyleGAN2-ADA: 10,000); replaces decay
    rampup: float = 0.0  # with half_life_images: the half-life is at most this fraction of the images seen (0.05)


@dataclass
class GuardConfig:
    enabled: bool = True
    d_wins_steps: int = 0  # D winning completely this many steps in a row counts as a failure (0: off)
    lr_factor: float = 0.5  # learning rates are multiplied by this after a recovery
    max_recoveries: int = 1


@dataclass
class TrainConfig:
    epochs: int = 5
    max_steps: int = 0  # stop after this many generator steps (0: no limit)
    max_minutes: float = 0.0  # stop after this much training time, across resumes (0: no limit)
    d_steps: int = 1  # discriminator steps per generator step
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (bitwise resume on CPU)
    n_fixed_noise: int = 64
    sample_every: int = 0  # also write a fixed-noise grid every N steps (0: epoch ends only)
    init_from: str = ""  # a new run whose G, D and EMA start from these weights (run dir, checkpoint, export)
    init_from_step: int = 0  # written by ganforge: the step of the weights init_from started from
    log_every: int = 50  # steps between metrics.jsonl lines
    midsave_steps: int = 0  # also checkpoint every N steps (0: off)
    midsave_minutes: float = 0.0  # also checkpoint every N minutes (0: off)
    keep_checkpoints: int = 3  # keep the last K step checkpoints (the best is kept too)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    compile: Literal["auto", "off", "on"] = "auto"
    channels_last: Literal["auto", "off", "on"] = "auto"
    cuda_graphs: bool = False
    sync_bn: bool = False
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"  # under torchrun: lr x processes, x sqrt(processes)
    world_size: int = 1  # written by ganforge: processes that train the run (torchrun --nproc_per_node x nodes)
    effective_batch_size: int = 0  # written by ganforge: data.batch_size x train.world_size
    tensorboard: bool = True
    report: bool = True  # refresh report.html at every epoch end


@dataclass
class EvalConfig:
    every: int = 0  # evaluate every N steps (0: off)
    metrics: list[str] = field(default_factory=lambda: ["fid"])
    features: str = "effnet-lite0"  # inception (needs its weights) or effnet-lite0 (offline)
    n: int = 1000  # generated samples per evaluation
    best: str = "fid"  # metric that picks the best checkpoint (lower is better)
    inception_weights: str = ""


@dataclass
class Config:
    preset: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimPair = field(default_factory=OptimPair)
    loss: LossConfig = field(default_factory=LossConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Free-form notes a recipe records about why it chose what it chose.
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj


# --------------------------------------------------------------------------------------------------
# Building a Config from plain data, strictly
# --------------------------------------------------------------------------------------------------
def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(options)}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert the harmless cases (int -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool):
            # YAML reads on/off/yes/no as booleans: give choices spelled that way (train.compile=off) back.
            for word in (("on", "yes", "true") if value else ("off", "no", "false")):
                if word in allowed:
                    return word
        if value in allowed:
            return value
        # "1" from a command line for Literal[1, 3]
        for a in allowed:
            if str(a) == str(value):
                return a
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and item_tp is str:
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -2**63 <= value < 2**63:  # torch and NumPy take 64-bit integers (seeds, sizes, counts)
                raise ConfigError(f"{key}: {value} is out of range (beyond a 64-bit integer)")
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"{key}: expected a{' finite' if number is not None else ''} number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(f"unknown config key {f'{prefix}{k}'!r}{_closest(str(k), names)}")
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    cfg = _build(Config, data or {})
    validate(cfg)
    return cfg


def _deep_merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=10`` -> (['train', 'epochs'], 10); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value (for example train.epochs=10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    valid = _all_keys(Config)
    if key not in valid:
        raise ConfigError(f"unknown config key {key!r}{_closest(key, valid)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 (no dot) as a string; a user means the number.
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = _deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


# --------------------------------------------------------------------------------------------------
# Presets and files
# --------------------------------------------------------------------------------------------------
def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_dict(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        names = preset_names()
        raise ConfigError(f"unknown preset '{name}'{_closest(name, names).replace('keys', 'presets')}")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("preset", name)
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data or {}


def load(preset: Optional[str] = None, file: Optional[str | Path] = None,
         overrides: Optional[list[str]] = None) -> Config:
    """Preset, then file, then overrides; validated."""
    data: dict = {}
    if preset:
        data = preset_dict(preset)
    if file:
        file_data = read_yaml(file)
        if "preset" in file_data and not preset:
            data = preset_dict(file_data["preset"])
        data = _deep_merge(data, file_data)
    data = apply_overrides(data, overrides or [])
    return from_dict(data)


# --------------------------------------------------------------------------------------------------
# Validation of values and combinations, before any data is read
# --------------------------------------------------------------------------------------------------
def _positive(cfg: Config, *keys: str, allow_zero: bool = False) -> None:
    for k in keys:
        v = cfg.get(k)
        if v < 0 or (v == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"{k} must be {bound}, got {v}")


#: Image sizes each convolutional family builds ("default": the families not listed).
IMAGE_SIZES = {"default": (32, 64, 128, 256), "resnet": (32, 64, 128, 256, 512, 1024),
               "fastgan": (32, 64, 128, 256, 512, 1024)}

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_limits_and_devices(cfg: Config) -> None:
    """Ranges the first checks leave out, the device's name, and settings that need a GPU."""
    _positive(cfg, "data.prefetch_factor", "augment.ada_kimg", "eval.n")
    _positive(cfg, "train.seed", "noise.anneal_steps", "ema.start_step", "guard.d_wins_steps",
              "guard.max_recoveries", allow_zero=True)
    if cfg.data.num_workers < -1:
        raise ConfigError(f"data.num_workers must be -1 (one per core), 0 (none) or more, got {cfg.data.num_workers}")
    for k in ("data.max_bad_fraction", "guard.lr_factor"):
        if not 0.0 <= cfg.get(k) <= 1.0:
            raise ConfigError(f"{k} must be between 0 and 1, got {cfg.get(k)}")
    device = cfg.train.device
    if not _DEVICE.match(device):
        raise ConfigError(f"train.device={device!r} is not a device: use auto, cpu, cuda, cuda:N (a GPU's index) or mps")
    if device in ("cpu", "mps"):
        for key, what in (("train.cuda_graphs", "CUDA graphs"), ("data.on_gpu", "holding the data on the GPU")):
            if cfg.get(key):
                raise ConfigError(f"{key}=true ({what}) needs a CUDA device, but train.device={device}: "
                                  f"set {key}=false, or train.device=auto or cuda")


def validate(cfg: Config) -> None:
    _check_limits_and_devices(cfg)
    _positive(cfg, "model.nz", "model.ngf", "model.ndf", "data.batch_size", "data.image_size",
              "optim.g.lr", "optim.d.lr", "train.d_steps", "train.n_fixed_noise", "train.log_every", "train.world_size",
              "loss.r1_every", "augment.ada_interval")
    _positive(cfg, "train.epochs", "train.max_steps", "train.sample_every", "train.midsave_steps",
              "train.midsave_minutes", "train.max_minutes", "data.limit", "optim.g.weight_decay", "optim.d.weight_decay",
              "optim.g.l1", "optim.d.l1", "noise.std", "loss.r1_gamma", "loss.gp_weight", "loss.r2_gamma",
              "loss.lecam", "loss.recon_weight", "ema.half_life_images", "ema.rampup", "model.fastgan_decoder",
              "model.num_classes", "model.latent_groups", "eval.every", "train.keep_checkpoints", "model.attention",
              allow_zero=True)
    if cfg.train.epochs == 0 and cfg.train.max_steps == 0:
        raise ConfigError("train.epochs and train.max_steps are both 0: set one of them to say how long to train")
    for k in ("data.hflip", "loss.label_flip", "augment.p", "ema.decay", "augment.ada_target"):
        v = cfg.get(k)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{k} must be between 0 and 1, got {v}")
    if not 0.0 < cfg.loss.real_label <= 1.0 or not 0.0 <= cfg.loss.fake_label < cfg.loss.real_label:
        raise ConfigError(f"loss.real_label ({cfg.loss.real_label}) must be in (0, 1] and above "
                          f"loss.fake_label ({cfg.loss.fake_label}) in [0, 1)")
    for net in ("g", "d"):
        betas = cfg.get(f"optim.{net}.betas")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"optim.{net}.betas must be two numbers in [0, 1), got {betas}")
    if len(cfg.data.background) != 3 or not all(0 <= c <= 255 for c in cfg.data.background):
        raise ConfigError(f"data.background must be three integers 0..255 (R, G, B), got {cfg.data.background}")
    size = cfg.data.image_size
    if cfg.model.name == "mlp":
        if size > 64:
            raise ConfigError(f"data.image_size={size} is too large for the fully connected model "
                              "(model.name=mlp is meant for 28x28 or 32x32); use model.name=dcgan or resnet")
    elif size not in IMAGE_SIZES.get(cfg.model.name, IMAGE_SIZES["default"]):
        sizes = IMAGE_SIZES.get(cfg.model.name, IMAGE_SIZES["default"])
        bigger = [k for k, v in IMAGE_SIZES.items() if size in v and k != "default"]
        raise ConfigError(f"data.image_size={size} is not supported by model.name={cfg.model.name}: "
                          f"use a power of two from {sizes[0]} to {sizes[-1]} ({', '.join(map(str, sizes))})"
                          + (f"; at {size} px use model.name={' or '.join(bigger)}" if bigger else ""))
    if cfg.model.attention and cfg.model.attention not in (8, 16, 32, 64, 128) or cfg.model.attention >= size:
        if cfg.model.attention:
            raise ConfigError(f"model.attention={cfg.model.attention} must be a resolution inside the "
                              f"network (8..{size // 2}, a power of two), or 0 for none")
    if cfg.model.name == "mlp" and cfg.model.attention:
        raise ConfigError("model.attention needs feature maps, which the fully connected model (model.name=mlp) "
                          "has none of: set model.attention=0 or use model.name=dcgan, dcgan-upsample or resnet")
    if cfg.model.hierarchical_z and cfg.model.name != "resnet":
        raise ConfigError(f"model.hierarchical_z splits z across generator blocks, which only model.name=resnet "
                          f"has (not {cfg.model.name}): set model.hierarchical_z=false or use model.name=resnet")
    if cfg.ema.enabled and cfg.ema.decay <= 0:
        raise ConfigError("ema.decay must be > 0 when ema.enabled is true")
    if cfg.model.num_classes and not cfg.data.labels:
        raise ConfigError("model.num_classes > 0 makes a class-conditional model, which needs labels: "
                          "set data.labels=true (labels come from the first folder level)")
    names = cfg.data.class_names
    if names and (len(set(names)) != len(names) or (cfg.model.num_classes and len(names) != cfg.model.num_classes)):
        raise ConfigError(f"data.class_names ({len(names)} names) must be distinct and one per class "
                          f"(model.num_classes={cfg.model.num_classes}); ganforge writes it from the class folders: "
                          "leave it out of configs you write")
    _check_fastgan(cfg)
    check_latent_groups(cfg)
    if cfg.model.projection_scale <= 0:
        raise ConfigError(f"model.projection_scale must be > 0 (1: the projection discriminator's own term), "
                          f"got {cfg.model.projection_scale}")
    if cfg.model.projection_scale != 1 and not cfg.model.d_classes:
        raise ConfigError("model.projection_scale weighs a conditional D's projection term, and this D has none: "
                          "set model.num_classes or model.latent_groups_in_d=true, or leave model.projection_scale at 1")


def check_latent_groups(cfg: Config) -> None:
    """model.latent_groups: a generator condition of its own, meaningful only through feature matching."""
    m, l = cfg.model, cfg.loss
    if m.latent_groups_in_d and not m.latent_groups:
        raise ConfigError("model.latent_groups_in_d conditions D on the latent groups, and there are none: set "
                          "model.latent_groups (for example 16), or model.latent_groups_in_d=false")
    if cfg.data.group_batches and not m.latent_groups:
        raise ConfigError("data.group_batches draws each real batch in blocks of the latent groups' clusters, and "
                          "there are none: set model.latent_groups (for example 16), or data.group_batches=false")
    if not m.latent_groups:
        return
    if m.latent_groups == 1:
        raise ConfigError("model.latent_groups=1 is one group, the same as none: use 0, or K >= 2 groups")
    if m.name == "mlp":
        raise ConfigError("model.latent_groups conditions G's BatchNorms on the group, which the fully connected "
                          "model (model.name=mlp) has no conditional form of: use model.name=dcgan, resnet or fastgan")
    if m.num_classes:
        raise ConfigError("model.latent_groups and model.num_classes both condition G: use one of them "
                          "(latent groups are for unlabelled sets)")
    if m.nz < 2:
        raise ConfigError(f"model.latent_groups reads the angle of z's first two components: model.nz must be >= 2, "
                          f"got {m.nz}")
    if not (l.feature_match or l.feature_match_warmup):
        raise ConfigError("model.latent_groups gets its meaning from feature matching, which fits each group to one "
                          "cluster of the real set: set loss.feature_match (for example 1), or model.latent_groups=0")
    if l.feature_match_sliced or l.feature_match_average:
        raise ConfigError("model.latent_groups matches each group's moments batch by batch; the sliced part and the "
                          "moving averages are for one set of statistics: set loss.feature_match_sliced=0 and "
                          "loss.feature_match_average=0, or model.latent_groups=0")
    if m.latent_groups_in_d and l.name == "wgan-gp":
        raise ConfigError("model.latent_groups_in_d conditions D on a real image's cluster and a sample's group, which "
                          "differ, and the gradient penalty of loss.name=wgan-gp judges mixtures of the two: use "
                          "another loss (rpgan, hinge), or model.latent_groups_in_d=false")
    if cfg.data.batch_size < 2 * min(m.latent_groups, GROUPS_PER_BATCH):
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is too small for model.latent_groups: a batch "
                          f"holds {min(m.latent_groups, GROUPS_PER_BATCH)} groups and each needs at least 2 samples "
                          "for a variance; use a larger batch")


def latent_groups_refusal(overrides: list[str]) -> str | None:
    """Why the config of ``overrides`` (``KEY=VALUE``) would be refused for its latent groups (None: it
    would not): the recipe asks before it chooses them."""
    try:
        check_latent_groups(_build(Config, apply_overrides({}, overrides)))
    except ConfigError as e:
        return str(e)
    return None


#: How many latent groups a training batch holds (model.latent_groups): each group's moments are
#: measured on its share of the batch, so few groups per batch, several samples each.
GROUPS_PER_BATCH = 4


def group_block_sizes(n: int, blocks: int) -> list[int]:
    """How a batch of ``n`` is split between ``blocks`` groups, as evenly as possible (the first
    ``n % blocks`` one larger).  G's grouped latents and the loader's grouped real batches
    (``data.group_batches``) both split this way, so a fake's block and the real block it is paired
    with have the same size."""
    return [n // blocks + (i < n % blocks) for i in range(blocks)]


def _check_fastgan(cfg: Config) -> None:
    """The few-shot family's own keys (model.fastgan_decoder, loss.recon) and what it does not have."""
    m = cfg.model
    if m.name != "fastgan":
        return
    if m.attention:
        raise ConfigError("model.name=fastgan has no self-attention block (skip-layer excitation gives it global "
                          "context): set model.attention=0, or use model.name=dcgan or resnet for attention")
    dec = m.fastgan_decoder
    if dec and (dec < 8 or dec & (dec - 1) or dec > cfg.data.image_size):
        raise ConfigError(f"model.fastgan_decoder={dec}: the decoders rebuild images from 8x8 features, so give a "
                          f"power of two from 8 to data.image_size ({cfg.data.image_size}), or 0 for no decoders")
    if dec and cfg.loss.recon == "none":
        raise ConfigError("model.fastgan_decoder > 0 builds D's decoders but loss.recon=none never trains them: "
                          "set loss.recon=mse (or l1), or model.fastgan_decoder=0 for no self-supervision")
