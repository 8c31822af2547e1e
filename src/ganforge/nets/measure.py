"""What a config's networks cost: parameters, FLOPs per image, and the memory a training step needs.

Everything is measured on the ``meta`` device (tensors with shapes and no data), so measuring a 1024 px
model takes a second and no memory.  ``ganforge describe`` prints these figures, ``ganforge train
--dry-run`` the memory per step on the run's device, and the recipe chooses a batch that fits a GPU with
them (:mod:`ganforge.gpu_plan`):

- FLOPs: one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
  counts 2; convolutions, matrix multiplies and attention; element-wise operations are not counted);
- activation memory: the tensors autograd keeps for the backward pass of a *training* forward (train
  mode, gradients on), counted through ``torch.autograd.graph.saved_tensors_hooks``, each storage once
  and parameters left out.  It is measured at batch 2 and 3 and the difference taken, so what does not
  grow with the batch (spectral norm's normalised weights) is not charged to each image.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ganforge.config import Config, ConfigError

#: Adam keeps two moments per parameter, training one gradient: 4 float32 copies of the weights.
BYTES_PER_PARAMETER_TRAINING = 4 * 4
#: Under autocast (``train.amp`` bf16 or fp16) the convolutions' outputs, most of what autograd keeps,
#: are 16-bit: the activations take about half their float32 memory (weights, gradients and Adam's
#: moments stay float32).
AMP_ACTIVATION_SHARE = 0.5


def count_parameters(module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def forward_flops(module, *inputs) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), in eval mode, no grad."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return counter.get_total_flops()


def saved_activation_bytes(module, *inputs) -> int:
    """Bytes of the tensors autograd saves for backward in one training-mode forward of ``module``.

    Each storage counts once (a tensor saved by two operations, or views of one tensor, are one
    allocation); the module's own parameters are not activations and are left out.
    """
    params = {p.untyped_storage()._cdata for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in params:
            seen[storage._cdata] = storage.nbytes()
        return t

    was_training = module.training
    module.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(*inputs)
    finally:
        module.train(was_training)
    return sum(seen.values())


def activation_bytes_per_image(module, make_inputs) -> int:
    """Activation memory of one more image in a training batch: measured at batch 3 minus batch 2.

    ``make_inputs(batch)`` gives the module's inputs for that batch size (train-mode BatchNorm needs at
    least 2 images)."""
    return saved_activation_bytes(module, *make_inputs(3)) - saved_activation_bytes(module, *make_inputs(2))


def measure(cfg: Config, flops: bool = True) -> dict:
    """Parameters, forward FLOPs per image (``flops``) and activation bytes per image of the config's G and D."""
    from ganforge import nets

    G, D = nets.build(cfg)
    G, D = G.to("meta"), D.to("meta")
    nz, c, s, k = cfg.model.nz, cfg.data.channels, cfg.data.image_size, cfg.model.num_classes
    z = lambda b: torch.zeros(b, nz, device="meta")  # noqa: E731
    y = lambda b: torch.zeros(b, dtype=torch.long, device="meta") if k else None  # noqa: E731
    x = lambda b: torch.zeros(b, c, s, s, device="meta")  # noqa: E731
    return {
        "G": G, "D": D,
        "g_params": count_parameters(G), "d_params": count_parameters(D),
        "g_trained": count_parameters(G, True), "d_trained": count_parameters(D, True),
        **({"g_flops": forward_flops(G, z(1), y(1)), "d_flops": forward_flops(D, x(1), y(1))} if flops else {}),
        "g_act": activation_bytes_per_image(G, lambda b: (z(b), y(b))),
        "d_act": activation_bytes_per_image(D, lambda b: (x(b), y(b))),
    }


@functools.lru_cache(maxsize=8)  # the same network at each size: building it reads its weights
def feature_network_cost(size: int) -> tuple[int, int] | None:
    """(parameters, activation bytes per image) of the frozen ImageNet network that feature matching
    (``loss.feature_match``) passes G's samples through at ``size`` px; G's gradient flows back through
    it, so autograd keeps its activations.  None without its weights (the extra 'projected')."""
    from ganforge.modules.pretrained import TRAINING_VARIANT, FeatureStages
    try:
        net = FeatureStages(TRAINING_VARIANT).to("meta")
    except ConfigError:
        return None
    x = lambda b: (torch.zeros(b, 3, size, size, device="meta", requires_grad=True),)  # noqa: E731
    return count_parameters(net), activation_bytes_per_image(net, x)


def format_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class TrainingMemory:
    """What one training step keeps on its device, estimated from the networks' measured activations.

    ``fixed``: bytes whatever the batch (G's and D's weights with their gradients and Adam's moments,
    frozen weights, the EMA copy of G); ``per_image``: float32 bytes of activations per image of the
    batch at the step's peak.  Left out: the device's own context (CUDA's is about half a GiB), the
    convolution algorithms' scratch space, the allocator's caching, augmentation's intermediate
    tensors and the real batches themselves; whoever compares the estimate with a device's memory
    leaves room for them.
    """

    fixed: int
    per_image: int
    parts: str  # what ``per_image`` is the peak of, in words

    def per_step(self, batch: int, amp: str = "off") -> int:
        """Bytes for a step at ``batch`` images, with ``amp`` (off, bf16, fp16) as ``train.amp`` resolves."""
        share = AMP_ACTIVATION_SHARE if amp in ("bf16", "fp16") else 1.0
        return int(self.fixed + batch * self.per_image * share)


def training_memory(cfg: Config, measured: dict | None = None) -> TrainingMemory:
    """The memory a training step of ``cfg`` needs (``measured``: :func:`measure`'s figures, if at hand).

    G's step keeps G's and D's activations of the same images, and those of the feature-matching
    network where ``loss.feature_match`` is on; D's step keeps D's activations of a real and a fake
    batch, plus about one more pass of D for each gradient penalty (R1, R2, WGAN-GP), whose graph
    autograd keeps for the penalty's own backward.  The larger of the two steps is the peak.
    """
    m = measured or measure(cfg, flops=False)
    g_step, parts = m["g_act"] + m["d_act"], ["G's step: G and D"]
    frozen = m["g_params"] + m["d_params"] - m["g_trained"] - m["d_trained"]
    if cfg.loss.feature_match:
        cost = feature_network_cost(cfg.loss.feature_match_size)
        if cost is not None:
            frozen += cost[0]
            g_step += cost[1]
            parts[0] += " and the feature-matching network"
    penalties = (bool(cfg.loss.r1_gamma) + bool(cfg.loss.r2_gamma) + (cfg.loss.name == "wgan-gp"))
    d_step = (2 + penalties) * m["d_act"]
    parts.append("D's step: D on reals and fakes" + (f" and {penalties} gradient penalt{'y' if penalties == 1 else 'ies'}"
                                                    if penalties else ""))
    trained = m["g_trained"] + m["d_trained"]  # frozen weights have no gradients and no Adam moments
    fixed = trained * BYTES_PER_PARAMETER_TRAINING + frozen * 4 + (m["g_params"] * 4 if cfg.ema.enabled else 0)
    peak = parts[0] if g_step >= d_step else parts[1]
    return TrainingMemory(fixed=fixed, per_image=max(g_step, d_step), parts=peak)
