"""The batch loader: seeded order, exact resume, worker seeding, labels, and broken-file bookkeeping."""
from __future__ import annotations

import pytest
import torch

from ganforge.data import DataError, build_loader

CPU = torch.device("cpu")


def _epoch(loader, epoch, start=0):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start)]


def test_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch(image_folder, tiny):
    a = build_loader(tiny(image_folder, "data.hflip=0"), CPU)
    b = build_loader(tiny(image_folder, "data.hflip=0"), CPU)
    e0, e1 = _epoch(a, 0), _epoch(a, 1)
    assert len(e0) == a.batches_per_epoch == 4
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(e0, _epoch(b, 0)))
    assert not torch.equal(e0[0][0], e1[0][0])
    tail = _epoch(b, 1, start=2)
    assert len(tail) == 2 and all(torch.equal(x, y) for (x, _), (y, _) in zip(e1[2:], tail))
    other_seed = build_loader(tiny(image_folder, "data.hflip=0", "train.seed=1"), CPU)
    assert not torch.equal(e0[0][0], _epoch(other_seed, 0)[0][0])


def test_workers_leave_the_global_rng_alone_and_persistent_workers_see_each_epoch(image_folder, tiny):
    crops = ("data.crop=random", "data.image_size=32", "data.hflip=0")
    in_process = build_loader(tiny(image_folder, *crops), CPU)
    workers = build_loader(tiny(image_folder, *crops, "data.num_workers=2", "data.persistent_workers=true"), CPU)
    assert workers.loader.persistent_workers
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for epoch in (0, 1):
        expected = _epoch(in_process, epoch)
        got = _epoch(workers, epoch)
        # Random crops come from (seed, epoch, index): the same whichever process decodes the image.
        assert all(torch.equal(x, y) for (x, _), (y, _) in zip(expected, got)), f"epoch {epoch}"
    assert torch.equal(state, torch.get_rng_state())


def test_images_are_scaled_to_minus_one_one_and_flipped_by_a_checkpointed_generator(image_folder, tiny):
    plain = _epoch(build_loader(tiny(image_folder, "data.hflip=0"), CPU), 0)
    loader = build_loader(tiny(image_folder, "data.hflip=1"), CPU)
    flipped = _epoch(loader, 0)
    assert plain[0][0].min() >= -1 and plain[0][0].max() <= 1 and plain[0][0].min() < -0.9
    assert torch.equal(flipped[0][0], plain[0][0].flip(-1))
    half = build_loader(tiny(image_folder, "data.hflip=0.5"), CPU)
    state = half.state_dict()
    first = _epoch(half, 0)
    half.load_state_dict(state)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(first, _epoch(half, 0)))


def test_labels_come_from_the_first_folder_level(messy, tiny):
    loader = build_loader(tiny(messy.root, "data.labels=true", "model.num_classes=3"), CPU)
    assert loader.classes == sorted(["shirts", "schuhe_äöü", "バッグ"])
    ds = loader.dataset
    for name, label in zip(ds.files, ds.labels):
        assert loader.classes[label] == name.split("/")[0]
    labels = torch.cat([y for _, y in loader.epoch(0)])
    assert set(labels.tolist()) == {0, 1, 2}


def test_label_problems_are_clear_errors(messy, image_folder, tiny):
    with pytest.raises(DataError, match="model.num_classes=3"):
        build_loader(tiny(messy.root, "data.labels=true", "model.num_classes=5"), CPU)
    with pytest.raises(DataError, match="in no class folder"):
        build_loader(tiny(image_folder, "data.labels=true"), CPU)


def test_an_epoch_keeps_its_size_and_broken_files_are_listed_once_even_across_resume(messy, tiny):
    cfg = tiny(messy.root, "data.hflip=0")
    loader = build_loader(cfg, CPU)
    assert loader.num_images == 93 and loader.batches_per_epoch == 93 // 16
    assert sum(x.shape[0] for x, _ in loader.epoch(0)) == 5 * 16
    found = loader.drain_errors()
    assert sorted(n for n, _ in found) == messy.broken
    assert loader.drain_errors() == []
    state = loader.state_dict()
    resumed = build_loader(cfg, CPU)
    resumed.load_state_dict(state)
    list(resumed.epoch(1))
    assert resumed.drain_errors() == []  # already listed before the interruption


def test_missing_and_empty_sources_name_the_problem(tmp_path, tiny):
    with pytest.raises(DataError, match="(?i)nowhere.*check the path"):
        build_loader(tiny(tmp_path / "nowhere"), CPU)
    (tmp_path / "notes.txt").write_text("a file, but not images")
    with pytest.raises(DataError, match="neither a folder"):
        build_loader(tiny(tmp_path / "notes.txt"), CPU)
    with pytest.raises(DataError, match="does not exist"):
        build_loader(tiny(tmp_path / "nowhere.zip"), CPU)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no image files under"):
        build_loader(tiny(tmp_path / "empty"), CPU)
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        build_loader(tiny(tmp_path / "broken.zip"), CPU)


def test_a_damaged_zip_member_is_caught_by_its_crc(image_folder, tmp_path, tiny):
    import zipfile
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(image_folder.iterdir()):
            zf.write(p, p.name)
        info = zf.getinfo("img_00003.jpg")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # one flipped byte inside the JPEG: it might still decode
    archive.write_bytes(bytes(data))
    loader = build_loader(tiny(archive), CPU)
    assert loader.drain_errors() == [("img_00003.jpg", "zip member is damaged (size or CRC mismatch)")]
    assert sum(x.shape[0] for x, _ in loader.epoch(0)) == 64
