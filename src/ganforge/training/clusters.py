"""Latent groups' clusters (``model.latent_groups``): the training images split into K clusters of equal size,
which the trainer works out once when training starts, before the G terms read the data, and hands to
feature matching (each group of G matches one cluster's statistics).

Each image is described by what it shows (EfficientNet-Lite1's deepest depth averaged over positions) and
how it looks (its colours at 4x4), each part standardised and weighing alike; balanced k-means on those
rows, seeded: the same images give the same clusters.

Where the folder has classes and the run reads them (``data.labels=true`` with ``model.latent_groups``, no
``model.num_classes``), every cluster lies inside one class: the K groups are shared among the classes in
proportion to their images (each class at least one), and each class is split by balanced k-means into its
share.  Each group of G then matches the statistics of images of one kind a person named, not a mix that
only the features put together.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.modules.pretrained import TRAINING_VARIANT, FeatureStages

#: The most training images the real statistics and the clusters are worked out on (a spread sample).
MAX_IMAGES = 10_000


def real_batches(dataset, device: torch.device, picks=None, batch_size: int = 128):
    """Batches of the good images of ``picks`` (default: a spread sample of ``MAX_IMAGES`` of a larger
    set), in [-1, 1], each with the images' indices in ``dataset`` and their class labels (0 without
    ``data.labels``)."""
    n = len(dataset)
    picks = range(0, n, max(1, n // MAX_IMAGES)) if picks is None else picks
    for batch, indices, labels in _good_images(dataset, picks, batch_size):
        yield torch.stack(batch).to(device).float() / 127.5 - 1.0, indices, torch.tensor(labels, dtype=torch.long)


def _good_images(dataset, picks, batch_size: int):
    """The images of ``picks`` that decode, in lists of up to ``batch_size``, each with its indices and labels."""
    batch, indices, labels = [], [], []
    for i in picks:
        image, label, bad = dataset[i]
        if bad == i:  # file i is broken; the source handed over the next good one, already counted
            continue
        batch.append(image)
        indices.append(i)
        labels.append(int(label))
        if len(batch) == batch_size:
            yield batch, indices, labels
            batch, indices, labels = [], [], []
    if batch:
        yield batch, indices, labels


@torch.no_grad()
def latent_clusters(cfg: Config, dataset, device: torch.device) -> torch.Tensor | None:
    """Each good image's cluster (in :func:`real_batches`' order) when ``model.latent_groups`` is on, else None."""
    k = cfg.model.latent_groups
    if not k:
        return None
    net = FeatureStages(TRAINING_VARIANT).to(device)
    parts, classes = [], []
    for x, _, labels in real_batches(dataset, device):
        deepest = net(net.prepare(x.float(), cfg.loss.feature_match_size))[-1].float()
        parts.append([deepest.mean((2, 3)).double().cpu(), F.adaptive_avg_pool2d(x, 4).flatten(1).double().cpu()])
        classes.append(labels)
    rows = torch.cat([(p - p.mean(0)) / (p.std(0).clamp_min(1e-6) * p.shape[1] ** 0.5)
                      for p in (torch.cat(part) for part in zip(*parts))], 1)
    if len(rows) < 2 * k:
        raise ConfigError(f"model.latent_groups={k} needs at least 2 training images per group, and the set "
                          f"has {len(rows)}: use fewer groups (at most {len(rows) // 2})")
    if cfg.data.labels:
        return class_clusters(rows, torch.cat(classes), k).to(device)
    return balanced_kmeans(rows, k).to(device)


def class_shares(counts: list[int], k: int) -> list[int]:
    """How many of the k groups each class gets: in proportion to its images (largest remainders), at least
    one each, and never more than half its images (a group needs two)."""
    total = sum(counts)
    exact = [k * c / total for c in counts]
    shares = [max(1, min(int(e), c // 2)) for e, c in zip(exact, counts)]
    while sum(shares) > k:  # the floor of one lifted small classes: take back where a share is most over
        over = [i for i in range(len(shares)) if shares[i] > 1]
        shares[max(over, key=lambda i: shares[i] - exact[i])] -= 1
    while sum(shares) < k:  # the largest remainders first, among classes with images to spare
        room = [i for i, c in enumerate(counts) if shares[i] < c // 2]
        if not room:
            raise ConfigError(f"model.latent_groups={k} groups of at least 2 images each do not fit in the "
                              f"classes' {counts} images: use at most {sum(c // 2 for c in counts)} groups")
        shares[max(room, key=lambda i: exact[i] - shares[i])] += 1
    return shares


def class_clusters(rows: torch.Tensor, classes: torch.Tensor, k: int) -> torch.Tensor:
    """Labels 0..k-1 of ``rows`` in k clusters that each lie inside one class of ``classes``: the classes
    take :func:`class_shares` of the groups, in class order, and each is split by :func:`balanced_kmeans`."""
    names = classes.unique().tolist()
    counts = [int((classes == c).sum()) for c in names]
    small = [c for c, n in zip(names, counts) if n < 2]
    if len(names) > k or small:
        raise ConfigError(f"data.labels=true with model.latent_groups={k} splits every class into groups of at "
                          f"least 2 images, and the set has {len(names)} classes" +
                          (f", {len(small)} of them with a single image" if small else "") +
                          f": use model.latent_groups >= {len(names)} with at least 2 images a class, "
                          f"or data.labels=false for clusters across classes")
    labels = torch.empty(len(rows), dtype=torch.long)
    first = 0
    for c, share in zip(names, class_shares(counts, k)):
        members = (classes == c).nonzero().squeeze(1)
        labels[members] = first + (balanced_kmeans(rows[members], share) if share > 1
                                   else torch.zeros(len(members), dtype=torch.long))
        first += share
    return labels


def balanced_kmeans(rows: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """Labels 0..k-1 of ``rows`` in k clusters of equal size (the first ``n % k`` one larger): k-means++
    seeding (seeded: the same rows give the same clusters), then Lloyd's iterations in which each row
    goes to the nearest centre that still has room."""
    g = torch.Generator().manual_seed(seed)
    centres = rows[torch.randint(len(rows), (1,), generator=g)]
    for _ in range(k - 1):
        nearest = torch.cdist(rows, centres).min(1).values.pow(2)
        centres = torch.cat([centres, rows[torch.multinomial(nearest / nearest.sum(), 1, generator=g)]])
    labels = torch.full((len(rows),), -1, dtype=torch.long)
    for _ in range(iterations):
        new = _balanced_assignment(torch.cdist(rows, centres), k)
        if torch.equal(new, labels):
            break
        labels = new
        centres = torch.stack([rows[labels == c].mean(0) for c in range(k)])
    return labels


def _balanced_assignment(distance: torch.Tensor, k: int) -> torch.Tensor:
    """Each row to a centre, every centre taking its share: in rounds, each unplaced row asks for its
    nearest centre with room, and a centre takes the nearest of those who ask, up to its room."""
    n = distance.shape[0]
    room = torch.full((k,), n // k, dtype=torch.long)
    room[:n % k] += 1
    labels = torch.full((n,), -1, dtype=torch.long)
    while (labels < 0).any():
        free = (labels < 0).nonzero().squeeze(1)
        wanted = distance[free].masked_fill(room[None, :] == 0, float("inf")).argmin(1)
        for c in wanted.unique().tolist():
            asking = free[wanted == c]
            taken = asking[distance[asking, c].argsort()[:int(room[c])]]
            labels[taken] = c
            room[c] -= len(taken)
    return labels
