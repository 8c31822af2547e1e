"""Image data: sources (folders, zips, prepared sets, named datasets), decoding, and the batch loader.

The training loop sees only :func:`build_loader` and the :class:`BatchLoader` it returns:

- ``loader.batches_per_epoch``: full batches per epoch (the last partial batch is dropped, as the
  tutorial's loader with a sampler does not, but a fixed batch shape keeps BatchNorm and compiled
  graphs steady).
- ``loader.epoch(epoch, start_batch)``: the batches of one epoch, from ``start_batch`` on, as
  ``(images, labels)`` on the training device, images float in [-1, 1].  The order depends only on
  ``(seed, epoch)``, so a resumed run sees exactly the batches the uninterrupted run would have.
- ``loader.drain_errors()``: files found broken since the last call, as ``(name, reason)`` pairs.
"""
from ganforge.data.loader import BatchLoader, build_loader  # noqa: F401
from ganforge.data.sources import DataError, open_source  # noqa: F401
