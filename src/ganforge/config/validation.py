"""Checks of a :class:`~.schema.Config`'s values and combinations, before any data is read; each error
names the key and the fix."""
from __future__ import annotations

import re

from ganforge.config.schema import Config, ConfigError


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
              "guard.max_recoveries", "data.timeout_seconds", allow_zero=True)
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
    if cfg.train.cuda_graphs and cfg.loss.r1_every > 1 and (cfg.loss.r1_gamma > 0 or cfg.loss.r2_gamma > 0):
        # A captured D step replays one fixed sequence of kernels; a lazy penalty changes that sequence
        # (its second-order pass, through the eager D) every r1_every-th step.
        raise ConfigError(f"train.cuda_graphs=true cannot run with lazy R1/R2 (loss.r1_every={cfg.loss.r1_every}): "
                          "CUDA graphs replay the same D step every time, and a lazy penalty adds its "
                          "second-order pass on every r1_every-th step only; set loss.r1_every=1 (the "
                          "penalty on every D step), or train.cuda_graphs=false")


def validate(cfg: Config) -> None:
    _check_limits_and_devices(cfg)
    _positive(cfg, "model.nz", "model.ngf", "model.ndf", "data.batch_size", "data.image_size",
              "optim.g.lr", "optim.d.lr", "train.d_steps", "train.n_fixed_noise", "train.log_every",
              "loss.r1_every", "augment.ada_interval")
    _positive(cfg, "train.epochs", "train.max_steps", "train.sample_every", "train.midsave_steps",
              "train.midsave_minutes", "train.max_minutes", "data.limit", "optim.g.weight_decay", "optim.d.weight_decay",
              "optim.g.l1", "optim.d.l1", "noise.std", "loss.r1_gamma", "loss.gp_weight", "loss.r2_gamma",
              "loss.lecam", "loss.recon_weight", "ema.half_life_images", "ema.rampup", "model.fastgan_decoder",
              "model.num_classes", "model.latent_groups", "eval.every", "train.keep_checkpoints", "model.attention",
              allow_zero=True)
    _positive(cfg, "train.save_every_minutes", allow_zero=True)
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
    _check_fastgan(cfg)
    check_latent_groups(cfg)


def check_latent_groups(cfg: Config) -> None:
    """model.latent_groups: a generator condition of its own, meaningful only through feature matching."""
    m, l = cfg.model, cfg.loss
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
    if not l.feature_match:
        raise ConfigError("model.latent_groups gets its meaning from feature matching, which fits each group to one "
                          "cluster of the real set: set loss.feature_match (for example 1), or model.latent_groups=0")
    if cfg.data.batch_size < 2 * min(m.latent_groups, GROUPS_PER_BATCH):
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is too small for model.latent_groups: a batch "
                          f"holds {min(m.latent_groups, GROUPS_PER_BATCH)} groups and each needs at least 2 samples "
                          "for a variance; use a larger batch")


#: How many latent groups a training batch holds (model.latent_groups): each group's moments are
#: measured on its share of the batch, so few groups per batch, several samples each.  Its user is
#: training/build.py, but the batch-size check above needs it before anything is built, and the config
#: layer imports no layer above it (tests/test_layers.py): so it lives here, below both.
GROUPS_PER_BATCH = 4


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
