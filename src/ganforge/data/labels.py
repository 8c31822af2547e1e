"""Labels held as one tensor beside the images (in-memory named sets, prepared datasets).

Training may give the images labels of its own: the clusters that ``model.latent_groups_in_d``
conditions D on and that ``data.group_batches`` draws batches by.
"""
from __future__ import annotations

import torch


class TensorLabels:
    """``relabel`` and ``image_labels`` for a source whose labels are the tensor ``labels_t``."""

    labels_t: torch.Tensor

    def relabel(self, labels: torch.Tensor) -> None:
        """Give image i the label ``labels[i]`` from now on (training's own labels: the clusters that
        ``model.latent_groups_in_d`` conditions D on)."""
        self.labels_t = labels.long().to(self.labels_t.device)

    def image_labels(self) -> torch.Tensor:
        """Every image's label, by index (the loader's ``data.group_batches`` groups the batches by them)."""
        return self.labels_t.cpu()
