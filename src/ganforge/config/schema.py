"""The run configuration's schema: one dataclass per concern, nested in :class:`Config`, with each key's
type and default (and a comment saying what it does).  Strictness and merging: :mod:`.parsing`; checks of
values and combinations: :mod:`.validation`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


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
    num_workers: int = -1  # -1: as many as the cores available (0 loads in the main process)
    prefetch_factor: int = 2
    persistent_workers: bool = True
    max_bad_fraction: float = 0.05  # stop before training if more of the files are broken than this
    timeout_seconds: float = 120.0  # stop (saving) when loader workers deliver no batch for this long (0: wait forever)
    on_gpu: bool = False  # hold a prepared dataset on the GPU whole
    index_cache: str = "~/.cache/ganforge/index"  # where folder/zip name indexes are cached ("": no cache)


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
    feature_match: float = 0.0  # weight of the feature-matching term in G's loss: ImageNet-feature statistics (0: off)
    feature_match_size: int = 64  # the images reach the feature network at this size (a multiple of 32)
    feature_match_gram: float = 0.0  # weight of matching each depth's channel co-occurrence (Gram matrices; 0: off)
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
    log_every: int = 50  # steps between metrics.jsonl lines
    midsave_steps: int = 0  # also checkpoint every N steps (0: off)
    midsave_minutes: float = 0.0  # also checkpoint every N minutes (0: off)
    save_every_minutes: float = 0.0  # epoch ends save (checkpoint, grid, report) only N minutes after the last (0: each)
    keep_checkpoints: int = 3  # keep the last K step checkpoints (the best is kept too)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    compile: Literal["auto", "off", "on"] = "auto"
    channels_last: Literal["auto", "off", "on"] = "auto"
    cuda_graphs: bool = False
    sync_bn: bool = False
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"  # under torchrun: lr x processes, x sqrt(processes)
    tensorboard: bool = True
    report: bool = True  # refresh report.html at every epoch end


@dataclass
class EvalConfig:
    every: int = 0  # evaluate every N steps (0: off)
    metrics: list[str] = field(default_factory=lambda: ["fid"])
    features: str = "effnet-lite0"  # inception (needs its weights), effnet-lite0 or -lite2 (offline), dinov2 (FD-DINOv2), swd (no network)
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
