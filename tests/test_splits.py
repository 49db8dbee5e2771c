"""The probes' splits (train/splits.py): validation carved from the labelled
train split, disjoint from what the probes train on and from test, fixed for
every run; and a real run records its validation scores apart from test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from train.datasets import load_dataset
from train.run import main
from train.splits import probe_splits, validation_indices


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, "/tmp", 8)


def test_validation_is_disjoint_from_probe_train_and_from_test(digits):
    s = probe_splits(digits, 0.1)
    val, train = set(s.val.indices.tolist()), set(s.train.indices.tolist())
    assert not val & train  # no image both chosen on and trained on
    assert val | train == set(range(len(digits.train_images)))  # by default the probes get all the rest
    assert len(s.val) == round(0.1 * len(digits.train_images)) and len(s.test) == len(digits.test_images)
    # the images themselves: validation and probe-train come from the train split, test from the test split
    assert torch.equal(s.val.images, digits.train_images[torch.from_numpy(s.val.indices)])
    assert torch.equal(s.test.images, digits.test_images)
    assert torch.equal(s.train.labels, digits.train_labels[torch.from_numpy(s.train.indices)])


def test_subsets_come_from_the_rest_and_are_fixed(digits):
    s = probe_splits(digits, 0.1, train_subset=300, test_subset=100)
    assert len(s.train) == 300 and len(s.test) == 100
    assert not set(s.train.indices.tolist()) & set(s.val.indices.tolist())
    again = probe_splits(digits.with_pretrain_subset(64, seed=7), 0.1, train_subset=300, test_subset=100)
    for a, b in ((s.train, again.train), (s.val, again.val), (s.test, again.test)):
        assert np.array_equal(a.indices, b.indices)  # not the run's seed: every run is probed on the same images


def test_validation_is_stratified():
    labels = np.repeat(np.arange(5), [100, 40, 40, 10, 10])
    val = validation_indices(labels, 0.1)
    assert len(val) == 20
    assert np.bincount(labels[val], minlength=5).tolist() == [10, 4, 4, 1, 1]
    with pytest.raises(ValueError, match="fraction"):
        validation_indices(labels, 1.0)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on the shared 2 cores (test_paper_grid.py)
    yield
    torch.set_num_threads(threads)


def test_a_run_records_validation_and_test_apart(tmp_path, one_thread):
    out = tmp_path / "run"
    code = main(["--dataset", "digits", "--method", "simclr", "--epochs", "1", "--train-subset", "64",
                 "--batch-size", "32", "--image-size", "8", "--probe-epochs", "2", "--val-fraction", "0.2",
                 "--geometry-points", "60", "--knn-every", "1", "--num-workers", "1", "--out", str(out)])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["budget"]["val_images"] == round(0.2 * 1347) and r["budget"]["probe_train_images"] == 1347 - 269
    assert set(r["val"]) == {"linear", "mlp", "knn"} and all(0 <= v <= 100 for v in r["val"].values())
    g = r["geometry"]
    assert g["points"] == 60 and -4 <= g["uniformity"] <= 0 and 1 <= g["effective_rank"] <= 60
    assert r["code"] is None or len(r["code"]["commit"]) == 40
    monitor = float((out / "metrics.csv").read_text().splitlines()[-1].split(",")[-1])
    assert monitor == pytest.approx(r["val"]["knn"])  # the per-epoch kNN monitor reads validation, never test
