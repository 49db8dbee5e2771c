"""Dataset loaders on small files written here in each real format, and on the
shared copies in ../shared/data when they are present."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


from train.datasets import DatasetError, folder, load_dataset
from train.datasets import mnist as mnist_loader

SHARED = Path(os.environ.get("SINSIM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RNG = np.random.default_rng(0)


def load(name, data_dir, tmp_path, size, **kw):
    return load_dataset(name, data_dir, tmp_path / "cache", size, download=False, num_workers=2, **kw)


# ---------------------------------------------------------------- MNIST (IDX)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def write_mnist(root: Path, n_train=12, n_test=7, compress=True):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train_images": RNG.integers(0, 256, (n_train, 28, 28)),
        "train_labels": RNG.integers(0, 10, n_train),
        "test_images": RNG.integers(0, 256, (n_test, 28, 28)),
        "test_labels": RNG.integers(0, 10, n_test),
    }
    for key, stem in mnist_loader.FILES.items():
        write_idx(raw / (stem + (".gz" if compress else "")), arrays[key], compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress=compress)
    data = load("mnist", tmp_path, tmp_path, 28)
    assert data.train_images.shape == (12, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert np.array_equal(data.train_images[:, 0].numpy(), arrays["train_images"])
    assert np.array_equal(data.test_images[:, 0].numpy(), arrays["test_images"])
    assert np.array_equal(data.train_labels.numpy(), arrays["train_labels"])
    assert np.array_equal(data.test_labels.numpy(), arrays["test_labels"])
    assert torch.equal(data.pretrain, data.train_images)


def test_mnist_missing_names_the_expected_path_and_flag(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("mnist", tmp_path / "nothing", tmp_path, 28)
    message = str(err.value)
    assert str(tmp_path / "nothing" / "MNIST" / "raw") in message and "--data-dir" in message
    assert "train-images-idx3-ubyte" in message


def test_mnist_truncated_file_is_reported_as_corrupt(tmp_path):
    write_mnist(tmp_path, compress=False)
    victim = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load("mnist", tmp_path, tmp_path, 28)


# ------------------------------------------------------- CIFAR (python pickle)


def write_cifar(root: Path, name: str, per_batch=4):
    if name == "cifar10":
        folder_path, batches, label_key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels"
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
        tests, n_classes = ["test_batch"], 10
    else:
        folder_path, batches, label_key = root / "cifar-100-python", ["train"], "fine_labels"
        meta = ("meta", {"fine_label_names": [f"fine{i:02d}" for i in range(100)]})
        tests, n_classes = ["test"], 100
    folder_path.mkdir(parents=True)
    written = {"train": [], "test": []}
    for split, names in (("train", batches), ("test", tests)):
        for b in names:
            x = RNG.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
            y = RNG.integers(0, n_classes, per_batch).tolist()
            with open(folder_path / b, "wb") as f:
                pickle.dump({"data": x, label_key: y, "batch_label": b}, f)
            written[split].append((x, y))
    with open(folder_path / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return written, meta[1]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_python_pickles(tmp_path, name):
    written, meta = write_cifar(tmp_path, name)
    data = load(name, tmp_path, tmp_path, 32)
    x_train = np.concatenate([x for x, _ in written["train"]]).reshape(-1, 3, 32, 32)
    y_train = sum((y for _, y in written["train"]), [])
    assert np.array_equal(data.train_images.numpy(), x_train)
    assert data.train_labels.tolist() == y_train
    assert np.array_equal(data.test_images.numpy(), written["test"][0][0].reshape(-1, 3, 32, 32))
    assert data.classes == list(meta.values())[0]


def test_cifar_corrupt_pickle_and_missing_data(tmp_path):
    write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3 is corrupt"):
        load("cifar10", tmp_path, tmp_path, 32)
    with pytest.raises(DatasetError) as err:
        load("cifar100", tmp_path / "empty", tmp_path, 32)
    assert "cifar-100-python" in str(err.value) and "cifar100-jpeg.tar.gz" in str(err.value)
    assert "--data-dir" in str(err.value)


# ---------------------------------------------------------- STL-10 (binary)


def test_stl10_reads_the_binary_format(tmp_path):
    folder_path = tmp_path / "stl10_binary"
    folder_path.mkdir()
    images = {s: RNG.integers(0, 256, (n, 3, 96, 96)).astype(np.uint8) for s, n in (("train", 5), ("test", 3), ("unlabeled", 4))}
    labels = {"train": np.array([1, 10, 3, 3, 7], np.uint8), "test": np.array([2, 2, 9], np.uint8)}
    for split, x in images.items():
        # the official files store each channel column-major (Matlab order)
        x.transpose(0, 1, 3, 2).tofile(folder_path / f"{split}_X.bin")
    for split, y in labels.items():
        y.tofile(folder_path / f"{split}_y.bin")
    (folder_path / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    data = load("stl10", tmp_path, tmp_path, 96)
    assert np.array_equal(data.train_images.numpy(), images["train"])
    assert np.array_equal(data.test_images.numpy(), images["test"])
    assert data.train_labels.tolist() == [0, 9, 2, 2, 6]
    # pretraining sees train + unlabeled; the probes only the labelled splits
    assert np.array_equal(data.pretrain.numpy(), np.concatenate([images["train"], images["unlabeled"]]))
    assert data.classes == [f"c{i}" for i in range(10)]
    (folder_path / "test_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetError, match="not a whole number"):
        load("stl10", tmp_path, tmp_path, 96)
    (folder_path / "unlabeled_X.bin").unlink()
    with pytest.raises(DatasetError, match="unlabeled_X.bin"):
        load("stl10", tmp_path, tmp_path, 96)


# ------------------------------------------------------------- image folder


def write_folder(root: Path, size=8):
    """PNG (lossless) images in train/<class>/ and test/<class>/."""
    expected = {"train": [], "test": []}
    for split, per_class in (("train", 3), ("test", 2)):
        for cls in ("zebra", "ant", "moth"):  # sorted: ant=0, moth=1, zebra=2
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                x = RNG.integers(0, 256, (size, size, 3)).astype(np.uint8)
                Image.fromarray(x).save(root / split / cls / f"{i}.png")
                expected[split].append((cls, i, x))
    return expected


def check_folder(data, expected):
    index = {"ant": 0, "moth": 1, "zebra": 2}
    for split, images, labels in (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels)):
        ordered = sorted(expected[split], key=lambda e: (e[0], e[1]))
        assert labels.tolist() == [index[c] for c, _, _ in ordered]
        assert np.array_equal(images.numpy(), np.stack([x.transpose(2, 0, 1) for _, _, x in ordered]))
    assert data.classes == ["ant", "moth", "zebra"]


def test_image_folder_decodes_once_and_then_reads_the_cache(tmp_path, monkeypatch):
    expected = write_folder(tmp_path / "imgs")
    check_folder(load("folder", tmp_path / "imgs", tmp_path, 8), expected)
    cached = list((tmp_path / "cache" / "decoded").iterdir())
    assert len(cached) == 1 and (cached[0] / "train_x.npy").is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds the arrays")

    monkeypatch.setattr(folder, "decode_source", no_decoding)
    check_folder(load("folder", tmp_path / "imgs", tmp_path, 8), expected)


def test_image_folder_from_a_tar_gz_archive(tmp_path):
    expected = write_folder(tmp_path / "mydata")
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "mydata", arcname="mydata")
    check_folder(load("folder", archive, tmp_path, 8), expected)


def test_image_folder_resizes_to_the_image_size(tmp_path):
    write_folder(tmp_path / "imgs", size=20)
    data = load("folder", tmp_path / "imgs", tmp_path, 12)
    assert data.train_images.shape == (9, 3, 12, 12) and data.test_images.shape == (6, 3, 12, 12)


def test_image_folder_errors_say_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load("folder", tmp_path / "missing", tmp_path, 8)
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="train/ and test/"):
        load("folder", tmp_path / "flat", tmp_path, 8)
    write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "test" / "ant" / "0.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load("folder", tmp_path / "broken", tmp_path, 8)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 64)
    with pytest.raises(DatasetError, match="corrupt or not a tar archive"):
        load("folder", bad, tmp_path, 8)


@pytest.mark.parametrize("suffix", [".png", ".pgm"])  # Pillow modes I;16 and I
def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path, suffix):
    grey = {split: RNG.integers(0, 65536, (8, 8)).astype(np.uint16) for split in ("train", "test")}
    for split, values in grey.items():
        (tmp_path / "imgs" / split / "x").mkdir(parents=True)
        Image.fromarray(values).save(tmp_path / "imgs" / split / "x" / f"0{suffix}")
    data = load("folder", tmp_path / "imgs", tmp_path, 8)
    expected = np.rint(grey["train"] / 257.0).astype(np.uint8)  # 65535 -> 255
    assert np.array_equal(data.train_images[0].numpy(), np.stack([expected] * 3))
    assert (data.train_images == 255).float().mean() < 0.05  # clipping made 98% of it white


def test_an_empty_class_folder_is_an_error_not_a_label_shift(tmp_path):
    write_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "bee").mkdir()  # would sort first and shift every label
    (tmp_path / "imgs" / "train" / "bee" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"class folder\(s\) train/bee hold no images"):
        load("folder", tmp_path / "imgs", tmp_path, 8)
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname="imgs")
    with pytest.raises(DatasetError, match="train/bee hold no images"):
        load("folder", archive, tmp_path, 8)


def test_the_label_mapping_is_shown_and_untested_classes_named(tmp_path):
    write_folder(tmp_path / "imgs")
    for f in (tmp_path / "imgs" / "test" / "moth").iterdir():
        f.unlink()
    (tmp_path / "imgs" / "test" / "moth").rmdir()
    data = load("folder", tmp_path / "imgs", tmp_path, 8)
    assert data.classes == ["ant", "moth", "zebra"]
    assert any("labels 0 ant, 1 moth, 2 zebra" in note for note in data.notes), data.notes
    assert any("moth have no test images" in note for note in data.notes), data.notes


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("name,classes,missing", [
    ("cifar10", CIFAR10_CLASSES, "bird"), ("cifar100", [f"c{i:02d}" for i in range(100)], "c42")])
def test_a_cifar_folder_missing_a_class_everywhere_is_refused(tmp_path, name, classes, missing):
    for split in ("train", "test"):
        for cls in classes:
            if cls != missing:
                (tmp_path / name / split / cls).mkdir(parents=True)
                Image.fromarray(RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(
                    tmp_path / name / split / cls / "0.png")
    with pytest.raises(DatasetError) as err:
        load(name, tmp_path, tmp_path, 32)
    message = str(err.value)
    assert ("missing: bird" in message) if name == "cifar10" else ("has 99 class folders, not cifar100's 100" in message)
    assert "labels would not" in message or "shifts every later label" in message
    assert f"0 {classes[0]}, 1 {classes[1]}" in message  # the mapping it would have used


# ------------------------------------------------------------ digits, subsets


def test_digits_split_and_upsampling(tmp_path):
    data = load("digits", None, tmp_path, 16)
    assert (len(data.train_images), len(data.test_images)) == (1347, 450)
    assert data.train_images.shape[1:] == (1, 16, 16) and data.num_classes == 10
    everything = torch.bincount(torch.cat([data.train_labels, data.test_labels]))
    assert (torch.bincount(data.test_labels) - everything * 0.25).abs().max() <= 1  # stratified
    assert data.train_images.max() == 255
    sub = data.with_pretrain_subset(100, seed=3)
    assert len(sub.pretrain) == 100 and len(sub.train_images) == 1347
    assert torch.equal(sub.pretrain, data.with_pretrain_subset(100, seed=3).pretrain)
    with pytest.raises(DatasetError, match="--train-subset"):
        data.with_pretrain_subset(5000, seed=0)


# ----------------------------------------------------- shared copies (offline)


def shared(path):
    if not (SHARED / path).exists():
        pytest.skip(f"{SHARED / path} is not present (the shared offline data of this project)")
    return SHARED


def test_shared_mnist(tmp_path):
    data = load("mnist", shared("MNIST/raw"), tmp_path, 28)
    assert (len(data.train_images), len(data.test_images)) == (60000, 10000)
    assert torch.bincount(data.train_labels).tolist()[:2] == [5923, 6742]
    assert data.channel_stats()[0][0] == pytest.approx(0.1307, abs=1e-3)
    assert data.channel_stats()[1][0] == pytest.approx(0.3081, abs=1e-3)


@pytest.mark.slow  # decodes 60,000 JPEGs per archive
@pytest.mark.parametrize("name,classes,first", [("cifar10", 10, "airplane"), ("cifar100", 100, "apple")])
def test_shared_cifar_jpeg_archives(tmp_path, name, classes, first):
    data = load(name, shared(f"{name}-jpeg.tar.gz"), tmp_path, 32)
    assert (len(data.train_images), len(data.test_images)) == (50000, 10000)
    assert data.num_classes == classes and data.classes[0] == first
    assert torch.bincount(data.train_labels).tolist() == [50000 // classes] * classes
    assert data.train_images.shape[1:] == (3, 32, 32)
    assert any("JPEG copy" in note for note in data.notes)


# ------------------------------------------------- channel statistics


def test_a_constant_channel_normalises_to_zero_not_to_nan():
    """Per-channel standardisation divides by the channel's std: a channel
    that is the same value in every image (std 0) is centred and left at
    scale 1 (it becomes 0), as scikit-learn's StandardScaler does, instead of
    0/0 = NaN in every view."""
    from train.augment import TwoViews, view_specs
    from train.datasets.base import ImageData

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 3, 8, 8)).astype(np.uint8)
    images[:, 1] = 200  # green: constant
    t = torch.from_numpy(images)
    data = ImageData("const", t, t, torch.zeros(32, dtype=torch.int64), t[:4], torch.zeros(4, dtype=torch.int64),
                     classes=["a"])
    mean, std = data.channel_stats()
    assert mean[1] == pytest.approx(200 / 255, rel=1e-6) and std[1] == 1.0
    assert std[0] == pytest.approx(images[:, 0].astype(np.float64).std(ddof=1) / 255, rel=1e-6)
    plain = TwoViews(view_specs("simclr", 8), mean, std).plain(t)
    assert torch.isfinite(plain).all() and torch.all(plain[:, 1] == 0)


def test_a_dataset_with_a_constant_colour_channel_trains(tmp_path, capsys):
    """A folder of images whose blue channel is 0 everywhere: the run trains
    (finite losses), and says which channel is constant."""
    import csv

    from runs import folder_args, write_image_folder
    from train.run import main

    source = write_image_folder(tmp_path / "no-blue", constant_channel=2)
    out = tmp_path / "run"
    assert main(folder_args(source, out)) == 0, capsys.readouterr().err
    assert "channel 2 of the pretraining images is constant" in capsys.readouterr().out
    losses = [float(r["loss"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert losses and all(np.isfinite(losses))
