"""DiffAugment and adaptive augmentation: shapes, gradients, the transform family, ADA's probability."""
from __future__ import annotations

import pytest
import torch

from ganforge.config import ConfigError
from ganforge.training.augment import AdaptiveAugment, DiffAugment, TRANSFORMS, cutout, translation
from ganforge.training.build import build_d_input


@pytest.mark.parametrize("policy", [["color"], ["translation"], ["cutout"], ["color", "translation", "cutout"]])
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_keeps_shapes_and_is_differentiable(real_batches, policy, channels):
    x = real_batches(1, channels=channels)[0][0].requires_grad_(True)
    out = DiffAugment(policy)(x, step=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transform_passes_gradcheck(name):
    x = torch.rand(2, 3, 4, 4, dtype=torch.double, requires_grad=True)

    def fixed_draw(inp):  # the same random parameters on every call gradcheck makes
        torch.manual_seed(0)
        return TRANSFORMS[name](inp)
    assert torch.autograd.gradcheck(fixed_draw, (x,))


def _holes(out: torch.Tensor, x: torch.Tensor) -> list[tuple[int, int]]:
    """(height, width) of the zeroed region of each image, checking it is one axis-aligned rectangle."""
    sizes = []
    for o, i in zip(out, x):
        zero = (o == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols), "cutout must zero one rectangle"
        assert torch.equal(o[:, ~zero], i[:, ~zero]), "cutout must leave the rest alone"
        sizes.append((len(rows), len(cols)))
    return sizes


def test_cutout_cuts_the_same_kind_of_hole_in_real_and_fake_batches(real_batches):
    torch.manual_seed(0)
    real = real_batches(1)[0][0] * 0.5 + 0.6  # no zero pixels of their own
    fake = torch.rand_like(real) * 0.5 + 0.25
    augment = DiffAugment(["cutout"])
    out_real, out_fake = augment(real, 0), augment(fake, 0)
    for out, x in ((out_real, real), (out_fake, fake)):
        for h, w in _holes(out, x):
            assert 8 <= h <= 16 and 8 <= w <= 16  # a 16x16 square, possibly overhanging the border
    # Each batch and each image draws its own hole.
    assert not torch.equal((out_real == 0), (out_fake == 0))


def _shift_of(out: torch.Tensor, x: torch.Tensor, max_shift: int = 4) -> tuple[int, int] | None:
    padded = torch.nn.functional.pad(x, [max_shift] * 4)
    h, w = x.shape[-2:]
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            window = padded[:, max_shift + dy:max_shift + dy + h, max_shift + dx:max_shift + dx + w]
            if torch.equal(window, out):
                return dy, dx
    return None


def test_translation_shifts_real_and_fake_images_by_at_most_an_eighth(real_batches):
    torch.manual_seed(1)
    real = real_batches(1)[0][0]
    fake = torch.rand_like(real) * 2 - 1
    augment = DiffAugment(["translation"])
    shifts = []
    for x in (real, fake):
        out = augment(x, 0)
        for o, i in zip(out, x):
            shift = _shift_of(o, i)
            assert shift is not None, "translation must be a whole-pixel shift with zero padding"
            shifts.append(shift)
    assert len(set(shifts)) > 5  # per-image draws


def test_color_is_a_per_image_affine_change_of_grayscale(real_batches):
    torch.manual_seed(2)
    x = real_batches(1, channels=1)[0][0]
    out = DiffAugment(["color"])(x, 0)
    for o, i in zip(out, x):
        # brightness + contrast on one channel: o = a * i + b exactly
        A = torch.stack([i.flatten(), torch.ones(i.numel())], 1).double()
        coef = torch.linalg.lstsq(A, o.flatten().double().unsqueeze(1)).solution
        assert torch.allclose(A @ coef, o.flatten().double().unsqueeze(1), atol=1e-4)
        assert not torch.allclose(coef.flatten(), torch.tensor([1.0, 0.0], dtype=torch.double), atol=1e-3)


def test_probability_zero_is_the_identity_and_one_always_augments(real_batches):
    x = real_batches(1)[0][0] * 0.5 + 0.6
    assert torch.equal(DiffAugment(["cutout"], p=0.0)(x, 0), x)
    out = DiffAugment(["cutout"], p=1.0)(x, 0)
    assert all((o == 0).any() for o in out)


def test_ada_moves_p_by_the_sign_of_d_on_reals():
    ada = AdaptiveAugment(["translation"], p=0.5, target=0.6, interval=4, kimg=0.064)  # 64 images per unit
    overfit = torch.full((16,), 3.0)  # D calls every real "real": r_t = 1 > 0.6, so p must rise
    for _ in range(3):
        ada.observe(overfit)
    assert float(ada.p) == 0.5  # adjusted only every `interval` D steps
    ada.observe(overfit)
    assert float(ada.p) == pytest.approx(1.0)  # +64 images / 64 per unit
    ada.observe(overfit)
    state = ada.state_dict()
    fresh = AdaptiveAugment(["translation"], p=0.0, target=0.6, interval=4, kimg=0.064)
    fresh.load_state_dict(state)
    underfit = torch.tensor([-1.0] * 12 + [1.0] * 4)  # r_t = -0.5 < 0.6: p falls
    for _ in range(3):
        fresh.observe(underfit)
    # 1 pending + 3 new observations: one adjustment of 64 images, clamped into [0, 1]
    assert float(fresh.p) == pytest.approx(0.0)
    assert fresh.log() == {"augment_p": 0.0}


def test_bad_augment_settings_are_refused(tiny, image_folder):
    with pytest.raises(ConfigError, match="augment.policy"):
        build_d_input(tiny(image_folder, "augment.name=diffaugment", "augment.policy=[color,blur]"))
    with pytest.raises(ConfigError, match="empty augment.policy"):
        build_d_input(tiny(image_folder, "augment.name=ada", "augment.policy=[]"))


def test_translation_and_cutout_helpers_work_for_odd_sizes():
    x = torch.ones(3, 1, 7, 9)
    assert translation(x).shape == x.shape and cutout(x).shape == x.shape
