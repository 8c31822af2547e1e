"""benchmarks/domain_classifier.py's scores and ``quality.py --rescore``, on real emoji with a small classifier
at random weights saved where the benchmark's cache looks (training it needs OpenMoji from npm: not in a test)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import domain_classifier as dc  # noqa: E402
import quality  # noqa: E402
import quality_table  # noqa: E402

DOMAIN_KEYS = {"domain_fd", "domain_confidence", "domain_spread", "domain_confidence_ratio"}


@pytest.fixture
def tiny_emoji_classifier(tmp_path, monkeypatch) -> dc.DomainNet:
    """A two-block classifier of the 9 emoji groups at random weights, saved in a cache under tmp_path."""
    monkeypatch.setattr(dc, "CACHE", tmp_path / "domain")
    monkeypatch.setitem(dc.RECIPES, "emoji", {**dc.RECIPES["emoji"], "widths": [8, 16]})
    monkeypatch.setattr(quality, "_DOMAIN", {})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = dc.build(dc.RECIPES["emoji"]).eval()
    recipe = dc.RECIPES["emoji"]
    dc.save("emoji", net, {"recipe": recipe, "recipe_hash": dc.recipe_hash(recipe), "train_images": 0,
                           "test_images": 0, "test_accuracy": 0.0})
    return net


def emoji_reals(emoji_dir: Path) -> torch.Tensor:
    return quality.real_images(quality.tutorial_config(str(emoji_dir), 64, 3, []))


def test_confidence_and_spread_span_their_ranges():
    k = 9
    sure = torch.eye(k).double().numpy() * 50  # each image certain of a different class
    assert dc.confidence(sure) == pytest.approx(1.0)
    assert dc.spread(sure) == pytest.approx(k, rel=1e-6)
    same = np.tile(sure[:1], (k, 1))  # all certain of one class: recognisable, no spread
    assert dc.spread(same) == pytest.approx(1.0)
    unsure = np.zeros((k, k))
    assert dc.confidence(unsure) == pytest.approx(1 / k)
    assert dc.spread(unsure) == pytest.approx(1.0)


def test_real_emoji_scored_against_themselves(emoji_dir, tiny_emoji_classifier):
    reals = emoji_reals(emoji_dir)
    assert reals.dtype == torch.uint8 and reals.shape == (64, 3, 64, 64)
    feats, reference = dc.real_reference(tiny_emoji_classifier, reals, reals)
    assert feats.shape == (64, 16)
    own = dc.domain_scores(tiny_emoji_classifier, reals, feats)
    assert abs(own["domain_fd"]) < 1e-6
    assert own["domain_confidence"] == pytest.approx(reference["real_domain_confidence"])
    assert 1 / 9 <= own["domain_confidence"] <= 1 and 1 <= own["domain_spread"] <= 9
    # Grey noise is further from the emoji than one half of them is from the other.
    noise = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert dc.domain_scores(tiny_emoji_classifier, noise, feats)["domain_fd"] > reference["real_domain_fd_half_vs_half"]


@pytest.mark.slow  # SWD of 64 emoji and the reals read from PNG: about 35 s on the shared 2-core machine under load
def test_rescore_adds_domain_scores_to_a_curve_file(tmp_path, emoji_dir, tiny_emoji_classifier, monkeypatch, capsys):
    reals = emoji_reals(emoji_dir)
    samples = tmp_path / "samples_1min.npy"
    np.save(samples, reals.flip(3).numpy())  # mirrored reals: uint8 (N, C, H, W) as quality.py keeps samples
    fid = {"fid_effnet_lite0": 50.0, "kid_effnet_lite0": 0.05, "fid_effnet_lite2": 60.0, "kid_effnet_lite2": 0.06}
    results = {"mode": "curve", "machine": {"threads": 1, "device": "cpu"}, "points": [1, 2], "n": 64, "seed": 0,
               "datasets": {"emoji": {"source": str(emoji_dir), "real_images": 64, "systems": [
                   {"system": "auto-v7", "seed": 0, "status": "finished", "notes": [], "points": [
                       {"minutes": 1, "step": 10, **fid, "swd_mean": 999.0, "samples": str(samples)},
                       {"minutes": 2, "step": 20, **fid, "samples": str(tmp_path / "gone.npy")}]}]}}}
    path = tmp_path / "quality-curve-x-20260101-000000.json"
    path.write_text(json.dumps(results))

    quality.rescore(path)
    out = json.loads(path.read_text())
    block = out["datasets"]["emoji"]
    first, second = block["systems"][0]["points"]
    assert DOMAIN_KEYS <= set(first) and first["swd_mean"] != 999.0  # scored again, not only added
    assert first["independent_reference"] == quality.INDEPENDENT_REFERENCE
    assert first["fid_effnet_lite0"] == 50.0 and first["samples"] == str(samples)  # the rest kept as it was
    assert second == results["datasets"]["emoji"]["systems"][0]["points"][1]  # no samples: untouched
    real = block["domain"]
    assert 1 / 9 <= real["real_domain_confidence"] <= 1 and 1 <= real["real_domain_spread"] <= 9
    assert first["domain_confidence_ratio"] == pytest.approx(first["domain_confidence"] / real["real_domain_confidence"])
    assert math.isfinite(first["domain_fd"]) and first["domain_fd"] >= 0
    assert real["classifier"]["recipe_hash"] == dc.recipe_hash(dc.RECIPES["emoji"])
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, nothing left beside it

    quality.print_curve_table([out])
    printed = capsys.readouterr().out
    assert "conf/re" in printed and "real images" in printed

    # quality_table folds the new scores and shows the reals' row.
    monkeypatch.setattr(quality_table, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    quality_table.add([path], None, None)
    table = quality_table.summary(quality_table.load("emoji"))
    assert "| confidence | spread | conf. / real |" in table
    assert f"{real['real_domain_confidence']:.3f}" in table.splitlines()[-1]

    # The folded file keeps each point's samples, so it can be scored again in place; a point scored against
    # another reference (no ``independent_reference``) shows its FID but not its independent scores.
    folded_path = quality_table.dataset_file("emoji")
    folded = json.loads(folded_path.read_text())
    kept = folded["runs"][0]["points"][0]
    assert kept["samples"] == str(samples)
    kept.pop("independent_reference")
    kept["domain_confidence"] = 0.0123
    folded_path.write_text(json.dumps(folded))
    assert "0.012" not in quality_table.summary(quality_table.load("emoji"))
    quality.rescore(folded_path)
    again = json.loads(folded_path.read_text())["runs"][0]["points"][0]
    assert again["domain_confidence"] == pytest.approx(first["domain_confidence"])
    assert again["independent_reference"] == quality.INDEPENDENT_REFERENCE


def test_rescore_refuses_a_file_that_is_not_a_curve(tmp_path):
    path = tmp_path / "quality-1.json"
    path.write_text(json.dumps({"minutes": 12, "datasets": {}}))
    with pytest.raises(SystemExit, match="not a --curve result file"):
        quality.rescore(path)


def test_a_pinned_judge_is_preferred_to_the_cache_and_named_by_its_digest(tmp_path, tiny_emoji_classifier,
                                                                         monkeypatch):
    monkeypatch.setattr(dc, "JUDGES", tmp_path / "judges")
    _, cached = dc.load("emoji")
    assert cached["weights_digest"] == dc.weights_digest(dc.weights_path("emoji"))
    pinned = dc.pin("emoji")
    assert pinned.parent == tmp_path / "judges" and pinned.with_suffix(".json").is_file()
    # The cache then holds other weights (trained again on another machine): the pinned judge still scores.
    with torch.random.fork_rng():
        torch.manual_seed(1)
        other = dc.build(dc.RECIPES["emoji"]).eval()
    dc.save("emoji", other, cached)
    assert dc.weights_digest(dc.weights_path("emoji")) != cached["weights_digest"]
    net, facts = dc.load("emoji")
    assert facts["weights_digest"] == cached["weights_digest"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), tiny_emoji_classifier.state_dict().values()))
    assert dc.facts_summary(facts)["weights_digest"] == cached["weights_digest"]  # what a result records
    # The digest is the file's own, computed on load; the facts beside it do not carry another one.
    assert "weights_digest" not in json.loads(dc.weights_path("emoji").with_suffix(".json").read_text())


def curve_file(tmp_path: Path, name: str, judge: str, real_confidence: float, confidence: float) -> Path:
    """A --curve result of one auto-v7 point, scored by the domain classifier whose weights' digest is ``judge``."""
    point = {"minutes": 12, "step": 100, "fid_effnet_lite0": 90.0, "swd_mean": 30.0, "domain_fd": 4.0,
             "domain_confidence": confidence, "domain_spread": 1.6,
             "domain_confidence_ratio": confidence / real_confidence, "independent_reference": "evaluation subset"}
    domain = {"real_domain_fd_half_vs_half": 1.0, "real_domain_confidence": real_confidence,
              "real_domain_spread": 1.9, "classifier": {"data": "openmoji", "weights_digest": judge}}
    path = tmp_path / name
    path.write_text(json.dumps({"mode": "curve", "machine": {"threads": 1, "device": "cpu"}, "seed": 0, "datasets": {
        "emoji": {"source": "x", "domain": domain, "systems": [{"system": "auto-v7", "seed": 0, "points": [point]}]}}}))
    return path


def test_the_tables_show_domain_scores_of_one_judge_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quality_table, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    quality_table.add([curve_file(tmp_path, "quality-curve-a.json", "aaaaaaaaaaaa", 0.511, 0.4321)], None, None)
    quality_table.add([curve_file(tmp_path, "quality-curve-b.json", "bbbbbbbbbbbb", 0.530, 0.4987)], None, None)
    assert "kept but not shown" in capsys.readouterr().out
    data = quality_table.load("emoji")
    assert [p["judge"] for r in data["runs"] for p in r["points"]] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert data["real_domain"]["real_domain_confidence"] == 0.511  # the first judge's reals stay
    table = quality_table.summary(data)
    assert "0.432" in table and "0.499" not in table and "| 0.511 |" in table
    assert "30.0" in table  # SWD owes nothing to the classifier: both runs' are shown
