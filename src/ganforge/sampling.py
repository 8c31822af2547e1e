"""Generating images from a trained generator, consistently with how training showed them.

BatchNorm generators are deliberate about their statistics: by default they sample with batch
statistics (as the training loop's progress grids do, and as the tutorial does) but without touching
the running statistics, so sampling never changes the model.  An EMA generator is used when the run
has one.

Truncation (``psi`` < 1) pulls samples towards the average one, and two things would quietly undo it:

- **Batch statistics.** A generator's first layer is linear in z and BatchNorm follows it, so a batch of
  latents all scaled by ``psi`` is normalised right back to the scale it had.  Truncated sampling
  therefore uses BigGAN's *standing statistics* (``bn_mode='standing'``): BatchNorm's statistics
  averaged over batches of untruncated latents, fixed while the truncated ones pass.
- **A normalised latent.** FastGAN puts z on the unit sphere before its first layer, which undoes any
  scale.  A generator that does this names the layer its normalised latent enters
  (``truncation_input``) and the scaling happens there, on the latent the network really uses.
"""
from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.utils import make_grid, save_image

from ganforge.export import load_generator  # noqa: F401  (generators are loaded in ganforge.export)
from ganforge.storage import atomic_write_bytes

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)


@contextlib.contextmanager
def batch_stats_frozen(G: nn.Module):
    """Train-mode BatchNorm (batch statistics) whose running statistics stay untouched."""
    saved = []
    for m in G.modules():
        if isinstance(m, _BN):
            saved.append((m, m.training, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None))
            m.train()
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield G
    finally:
        for m, training, momentum, nbt in saved:
            m.train(training)
            m.momentum = momentum
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)


def has_batchnorm(G: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in G.modules())


#: How BatchNorm generators may sample (see :func:`generate`).
BN_MODES = ("batch", "running", "standing")
#: Standing statistics are averaged over this many batches of this many untruncated latents.
STANDING_BATCHES, STANDING_BATCH = 16, 64


def bn_mode_for(bn_mode: str | None, truncated: bool) -> str:
    """The BatchNorm mode to sample with: the one asked for ('batch' when none is), except that truncated
    latents get 'standing' statistics instead of batch ones, which would undo the truncation."""
    from ganforge.config import ConfigError

    if bn_mode is not None and bn_mode not in BN_MODES:
        raise ConfigError(f"BatchNorm mode '{bn_mode}': choose one of {', '.join(BN_MODES)}")
    if bn_mode in (None, "batch"):
        return "standing" if truncated else "batch"
    return bn_mode


@contextlib.contextmanager
def standing_statistics(G: nn.Module, nz: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """BigGAN's standing statistics: G's BatchNorm layers in eval mode with statistics averaged over
    ``STANDING_BATCHES`` batches of untruncated latents (a fixed draw, so the same model always gets the
    same statistics; random classes for a conditional model).  G's own statistics are restored after."""
    bns = [m for m in G.modules() if isinstance(m, _BN)]
    saved = [(m, m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in bns]
    embedding = next((m for m in G.modules() if isinstance(m, nn.Embedding)), None)
    was_training = G.training
    g = torch.Generator().manual_seed(STANDING_SEED)
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: every batch counts alike
            m.train()
        # Layers that draw noise draw it from a seeded stream of their own here too.
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(STANDING_SEED)
            for _ in range(STANDING_BATCHES):
                z = torch.randn(STANDING_BATCH, nz, generator=g).to(device, dtype)
                y = None if embedding is None else \
                    torch.randint(0, embedding.num_embeddings, (STANDING_BATCH,), generator=g).to(device)
                G(z, y)
        G.eval()
        yield G
    finally:
        for m, momentum, state in saved:
            m.momentum = momentum
            m.load_state_dict(state)
        G.train(was_training)


@contextlib.contextmanager
def truncated(G: nn.Module, psi: float):
    """A function that scales latents by ``psi``, for a generator that uses z as drawn; for one that
    normalises z first (``truncation_input``: the name of the layer the normalised latent enters), the
    scaling happens at that layer's input instead and the function leaves z alone."""
    where = getattr(G, "truncation_input", None) if psi != 1.0 else None
    if where is None:
        yield lambda z: z * psi if psi != 1.0 else z
        return
    handle = G.get_submodule(where).register_forward_pre_hook(lambda module, args: (args[0] * psi, *args[1:]))
    try:
        yield lambda z: z
    finally:
        handle.remove()


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, bn_mode: str = "batch",
             chunk: int = 256, psi: float = 1.0) -> torch.Tensor:
    """Images in [-1, 1] for latents ``z``, truncated by ``psi`` (1: not at all; see the module's notes).
    ``bn_mode``: 'batch' (batch statistics, frozen running statistics), 'running' (eval mode, the running
    statistics) or 'standing' (eval mode, statistics averaged over batches of untruncated latents).
    Truncating with batch statistics would undo the truncation, so ``psi`` < 1 makes 'batch' 'standing'.

    With batch statistics, an image must not depend on how few others share its batch: a chunk smaller
    than ``MIN_STATS_BATCH`` is padded with fixed reference latents (a seeded draw), so one sample
    looks like it does in a grid of 64 instead of collapsing to the mean of a batch of one.
    """
    if psi != 1.0:
        truncate(z[:0], psi)  # the range check
    bn_mode = bn_mode_for(bn_mode, psi != 1.0)
    was_training = G.training
    batch_mode = bn_mode == "batch" and has_batchnorm(G)
    outs = []
    try:
        if batch_mode:
            ctx = batch_stats_frozen(G)
        elif bn_mode == "standing" and has_batchnorm(G):
            ctx = standing_statistics(G, z.shape[1], z.device, z.dtype)
        else:
            G.eval()
            ctx = contextlib.nullcontext()
        # Layers that draw noise (FastGAN's noise injection) draw it from a stream of their own here: a
        # latent gives the same image on every call, and sampling mid-run leaves training's random
        # stream where it was, so a resumed run continues exactly.
        devices = [z.device.index or 0] if z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), ctx, truncated(G, psi) as scale:
            torch.manual_seed(SAMPLING_NOISE_SEED)
            z = scale(z)
            for i in range(0, z.shape[0], chunk):
                zc = z[i:i + chunk]
                y = None if labels is None else labels[i:i + chunk]
                n = zc.shape[0]
                if batch_mode and n < MIN_STATS_BATCH:
                    zc, y = _pad_with_reference(zc, y, MIN_STATS_BATCH)
                outs.append(G(zc, y)[:n].float())
    finally:
        G.train(was_training)
    return torch.cat(outs)


#: Seed of the noise that noise-injecting generators draw while sampling.
SAMPLING_NOISE_SEED = 20261201
#: Seed of the latents that standing statistics are measured on.
STANDING_SEED = 20261205

#: The smallest batch whose statistics BatchNorm generators sample with (training used 64 or more).
MIN_STATS_BATCH = 64


def _pad_with_reference(z: torch.Tensor, y: torch.Tensor | None, size: int):
    g = torch.Generator().manual_seed(20261122)
    extra = torch.randn(size - z.shape[0], z.shape[1], generator=g).to(z.device, z.dtype)
    if y is not None:
        num = int(y.max()) + 1
        y = torch.cat([y, torch.randint(0, num, (extra.shape[0],), generator=g).to(y.device)])
    return torch.cat([z, extra]), y


def truncate(z: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick: latents pulled towards the prior's mean (0) by ``psi``.

    ``psi = 1`` leaves them as drawn; smaller values trade variety for typical, cleaner images
    (StyleGAN's ``w_avg + psi * (w - w_avg)``, with the mean of z's normal prior, which is 0).
    """
    from ganforge.config import ConfigError

    if not 0.0 < psi <= 1.0:
        raise ConfigError(f"--truncation {psi}: psi must be in (0, 1]; 1 means no truncation, 0.7 is a usual choice")
    return z * psi


def truncate_resample(z: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """BigGAN's truncation trick: every entry of ``z`` whose magnitude exceeds ``threshold`` is drawn again
    (from ``generator``, until none does), so the latents follow a normal distribution truncated to
    [-threshold, threshold].  Unlike :func:`truncate` it keeps the shape of the prior inside that range;
    smaller thresholds give more typical, less varied images (BigGAN shows 0.04 to 2).
    """
    from ganforge.config import ConfigError

    if not 0 < threshold < float("inf"):
        raise ConfigError(f"--truncation-resample {threshold}: the threshold must be positive (BigGAN uses 0.04 to 2; "
                          "values above 4 change almost nothing)")
    z = z.detach().cpu().clone()
    flat = z.view(-1)
    outside = (flat.abs() > threshold).nonzero().squeeze(1)
    while outside.numel():
        flat[outside] = torch.randn(outside.numel(), generator=generator, dtype=flat.dtype)
        outside = outside[flat[outside].abs() > threshold]
    return z


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``"0-35,100"`` -> [0, 1, ..., 35, 100]: single seeds and inclusive ranges, in the order given
    (a seed given twice is kept once)."""
    from ganforge.config import ConfigError

    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ConfigError(f"{flag} {text}: '{part}' is not a seed or a range; give numbers and ranges such as "
                              f"{flag} 0-35,100") from None
        if b < a:
            raise ConfigError(f"{flag} {text}: the range {part} runs backwards; write it as {b}-{a}")
        if b >= MAX_SEED:
            raise ConfigError(f"{flag} {text}: seeds must be below 2**32 ({b} is not)")
        if b - a >= MAX_SEEDS or len(seeds) + b - a >= MAX_SEEDS:
            raise ConfigError(f"{flag} {text}: more than {MAX_SEEDS:,} seeds; ask for fewer at a time")
        seeds.extend(range(a, b + 1))
    if not seeds:
        raise ConfigError(f"{flag}: no seeds given; for example {flag} 0-35,100")
    return list(dict.fromkeys(seeds))


#: Seeds are below 2**32 (as stylegan2-ada's ``np.random.RandomState``), and at most this many at once.
MAX_SEED = 2 ** 32
MAX_SEEDS = 100_000


def seed_generator(seed: int) -> torch.Generator:
    """The random generator of one seed: on the CPU, so a seed means the same latent on every device."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def seed_latents(seeds: list[int], nz: int, num_classes: int = 0,
                 resample: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One latent per seed, each drawn from that seed alone (stylegan2-ada's generate.py convention), on
    the CPU: the same seed gives the same latent whatever else is asked for and whatever the device.

    For each seed: ``z ~ N(0, 1)^nz``; with ``resample``, BigGAN's truncation (entries beyond it drawn
    again from the same generator); then a class, when the model has classes.  Truncation by scaling is
    :func:`generate`'s ``psi``, where the generator's latent really is.
    Returns ``(z, labels)``, labels None for unconditional models.
    """
    zs, labels = [], []
    for seed in seeds:
        g = seed_generator(seed)
        z = torch.randn(1, nz, generator=g)
        if resample is not None:
            z = truncate_resample(z, resample, g)
        zs.append(z)
        if num_classes:
            labels.append(torch.randint(0, num_classes, (1,), generator=g))
    return torch.cat(zs), (torch.cat(labels) if num_classes else None)


@torch.no_grad()
def generate_each(G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None, bn_mode: str = "batch",
                  chunk: int = 256, psi: float = 1.0) -> torch.Tensor:
    """Images for latents ``z`` where each image depends on its own latent only, not on the others asked
    for at the same time: one latent at a time (layers that draw noise draw it per position in a batch),
    with batch statistics padded with :func:`generate`'s fixed reference latents.  Standing statistics
    are measured once for all of them."""
    del chunk  # one at a time; kept so both functions take the same arguments
    bn_mode = bn_mode_for(bn_mode, psi != 1.0)

    def each(mode: str) -> torch.Tensor:
        return torch.cat([generate(G, z[i:i + 1], None if labels is None else labels[i:i + 1], bn_mode=mode, psi=psi)
                          for i in range(z.shape[0])])

    if bn_mode == "standing" and has_batchnorm(G):
        with standing_statistics(G, z.shape[1], z.device, z.dtype):
            return each("running")  # the standing statistics are the running ones meanwhile
    return each(bn_mode)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (shape (N, nz)) at fractions ``t`` (shape (T,)).

    Returns (N, T, nz).  Along a great circle the norm stays typical of the Gaussian prior, where a
    straight line would pass through low-norm latents the generator never saw (White, 2016).
    """
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1.0, 1.0))[:, None]  # (N, 1)
    t = t[None, :].to(a)  # (1, T)
    so = torch.sin(omega)
    # Nearly parallel latents: sin(omega) ~ 0, and the straight line is the same path.
    parallel = so.abs() < 1e-6
    so = torch.where(parallel, torch.ones_like(so), so)
    wa = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / so)
    wb = torch.where(parallel, t, torch.sin(t * omega) / so)
    return wa[..., None] * a[:, None, :] + wb[..., None] * b[:, None, :]


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """A grid of images in [-1, 1], as the tutorial shows them (padding 2, normalised)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    # Encoded in memory and renamed into place: a report or a reader polling the run never sees half a
    # PNG, and a kill or a full disk mid-write leaves the previous grid.
    buf = io.BytesIO()
    save_image(images.cpu(), buf, format=image_format(path), nrow=nrow, padding=2, normalize=True,
               value_range=(-1, 1))
    atomic_write_bytes(path, buf.getvalue())
    return path


def image_format(path: Path) -> str:
    """Pillow's format name for ``path``'s suffix ('.png' -> 'PNG'); a clear error for one it cannot write."""
    from PIL import Image
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write an image named {path.name}: use a suffix such as .png or .jpg")
    return fmt


def grid_tensor(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    nrow = nrow or max(1, int(math.sqrt(images.shape[0])))
    return make_grid(images.cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))


def save_each(images: torch.Tensor, folder: Path, names: list[str] | None = None) -> list[Path]:
    """One PNG per image in ``folder``: ``sample_00000.png``, ... or the file ``names`` given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images.cpu()):
        p = folder / (names[i] if names else f"sample_{i:05d}.png")
        save_image(img, p, normalize=True, value_range=(-1, 1))
        paths.append(p)
    return paths

