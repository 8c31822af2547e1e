"""Layers that several architectures share: spectral norm, self-attention, conditioning, ResBlocks."""
from ganforge.modules.attention import SelfAttention  # noqa: F401
from ganforge.modules.conditional import (ClassProjection, ConditionalBatchNorm, CondSequential,  # noqa: F401
                                          batchnorm)
from ganforge.modules.resblocks import DiscriminatorBlock, GeneratorBlock  # noqa: F401
from ganforge.modules.spectral import (maybe_spectral_norm, refresh_spectral_norm,  # noqa: F401
                                       spectral_norm_layers, trainable_weight)
