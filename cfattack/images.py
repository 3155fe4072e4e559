"""Image files in and out: the only module of cfattack that reads or writes them.

Tensors use the generator's convention: float ``[C, H, W]`` with values in ``[-1, 1]``,
``C`` = 1 (grey) or 3 (RGB). Pixel values map as in NVIDIA's ``gen_images.py``:
``uint8 = clamp(floor(x * 127.5 + 128), 0, 255)`` on save and ``x = uint8 / 127.5 - 1`` on load,
so a PNG read and written again comes back byte for byte.

Example::

    img = load_image("cat.png", channels=3, size=256)   # [3, 256, 256] in [-1, 1]
    save_image(img, "out/cat_copy.png")                  # written atomically
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cfattack.atomic import atomic_write
from cfattack.errors import InvalidInputError
from cfattack.regular_files import open_regular_file

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_IMAGE_FILE_BYTES", "image_from_pil", "load_image", "save_image",
           "save_image_grid", "quantize_8bit"]

PathLike = Union[str, os.PathLike]

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest image (width * height) `load_image` decodes; bigger ones are refused before decoding
(a small compressed file can claim a huge size: a decompression bomb)."""

MAX_IMAGE_FILE_BYTES = 1 << 30
"""Largest image file `load_image` opens (1 GiB: an uncompressed 8192 x 8192 16-bit RGBA image
is half of it); bigger files are refused before reading."""

# What Pillow's decoders raise on damaged data, besides UnidentifiedImageError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError)


# ---------------------------------------------------------------------------------------------
# Writing.


def _to_uint8_hwc(image: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """[C, H, W] in [-1, 1] (C = 1 or 3) -> uint8 [H, W, C]."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise InvalidInputError(f"{what} must be a torch.Tensor or numpy array; got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.shape[1] < 1 or image.shape[2] < 1:
        raise InvalidInputError(
            f"{what} must have shape [C, H, W] with C = 1 or 3 and H, W >= 1; got {list(image.shape)}"
        )
    image = image.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(image).all()):
        raise InvalidInputError(f"{what} contains NaN or infinite values; refusing to write it")
    pixels = (image * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # floor, as gen_images.py
    return pixels.permute(1, 2, 0).numpy()


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Images as a saved PNG holds them: ``floor(x * 127.5 + 128)`` clipped to 0..255, read back to [-1, 1].

    Works on any shape and keeps the device and dtype; the attack judges its stop on this, so
    the counterfactual still passes after it is written to disk.
    """
    return (images * 127.5 + 128).floor().clamp(0, 255) / 127.5 - 1


def _write_png_atomic(pixels_hwc: np.ndarray, path: PathLike) -> Path:
    """Write uint8 [H, W, 1|3] as a PNG at ``path`` via a temporary file and ``os.replace``.

    A reader never sees a half-written file, and a failure (full disk) leaves any old file intact.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidInputError(f"images are written as PNG; the path must end in .png, got {str(path)!r}")
    if pixels_hwc.shape[2] == 1:
        pil = Image.fromarray(pixels_hwc[:, :, 0])  # 2-D uint8 -> "L"
    else:
        pil = Image.fromarray(pixels_hwc)  # [H, W, 3] uint8 -> "RGB"
    return atomic_write(path, lambda f: pil.save(f, format="PNG"))


def save_image(image: torch.Tensor | np.ndarray, path: PathLike) -> Path:
    """Save one image as a PNG, atomically.

    Args:
        image: float [C, H, W] in [-1, 1], C = 1 (saved as mode "L") or 3 (mode "RGB"); any
            device, gradients are ignored; values outside [-1, 1] are clipped.
        path: destination ending in ``.png``; missing parent directories are created.

    Returns:
        The path written.

    Raises:
        InvalidInputError: wrong shape, NaN/inf values, or a path not ending in ``.png``.
        OSError: the file system refused (permission, full disk); no partial file is left.
    """
    return _write_png_atomic(_to_uint8_hwc(image, "image"), path)


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: PathLike,
    ncols: int | None = None,
    padding: int = 0,
    pad_value: float = -1.0,
) -> Path:
    """Save a batch of images tiled row by row into one PNG, atomically.

    Args:
        images: float [N, C, H, W] in [-1, 1], N >= 1, C = 1 or 3.
        path: destination ending in ``.png``.
        ncols: images per row; default ``ceil(sqrt(N))``.
        padding: pixels between neighbouring images (and none around the border).
        pad_value: value of the padding pixels, in [-1, 1] (-1 = black).

    Returns:
        The path written.

    Example::

        save_image_grid(G.synthesis(ws), "out/grid.png", ncols=8, padding=2)
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 1:
        shape = list(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise InvalidInputError(f"images must be a tensor of shape [N, C, H, W] with N >= 1; got {shape}")
    if padding < 0:
        raise InvalidInputError(f"padding must be >= 0; got {padding}")
    n, c, h, w = images.shape
    ncols = math.ceil(math.sqrt(n)) if ncols is None else int(ncols)
    if ncols < 1:
        raise InvalidInputError(f"ncols must be >= 1; got {ncols}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    grid = torch.full(
        (c, nrows * h + (nrows - 1) * padding, ncols * w + (ncols - 1) * padding),
        float(pad_value),
        dtype=torch.float32,
    )
    images = images.detach().to("cpu", torch.float32)
    for i in range(n):
        top, left = (i // ncols) * (h + padding), (i % ncols) * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return _write_png_atomic(_to_uint8_hwc(grid, "images"), path)


# ---------------------------------------------------------------------------------------------
# Reading.


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``size`` argument -> (height, width) or None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        height, width = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidInputError(f"size must be an int or a (height, width) pair; got {size!r}") from None
    if height < 1 or width < 1:
        raise InvalidInputError(f"size must be positive; got {size!r}")
    return height, width


def _open_checked(path: Path, max_pixels: int) -> tuple[Image.Image, BinaryIO]:
    """Open ``path`` with Pillow (header only), turning every way it can fail into an InvalidInputError.

    Returns the image and its open file, which the caller closes after decoding. The file is
    opened without blocking and must be a regular file: a FIFO, device or socket, a loop of
    links or a file over `MAX_IMAGE_FILE_BYTES` is refused before a byte is read.
    """
    fh = open_regular_file(path, what="image file", max_bytes=MAX_IMAGE_FILE_BYTES)
    try:
        return _read_header(fh, path, max_pixels), fh
    except BaseException:
        fh.close()
        raise


def _read_header(fh: BinaryIO, path: Path, max_pixels: int) -> Image.Image:
    """The Pillow image of an open file, its size checked against ``max_pixels`` (nothing decoded yet)."""
    if os.fstat(fh.fileno()).st_size == 0:
        raise InvalidInputError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil = Image.open(fh)  # reads the header only
    except Image.DecompressionBombError as e:
        raise InvalidInputError(f"image is too large to decode safely ({e}): {path}") from None
    except UnidentifiedImageError:
        raise InvalidInputError(f"not a readable image (unknown or corrupt format): {path}") from None
    except PermissionError:
        raise InvalidInputError(f"cannot read image file (permission denied): {path}") from None
    except _DECODE_ERRORS as e:
        raise InvalidInputError(f"cannot read image file {path}: {e}") from None
    width, height = pil.size
    if width < 1 or height < 1:
        pil.close()
        raise InvalidInputError(f"image has zero size ({width}x{height}): {path}")
    if width * height > max_pixels:
        pil.close()
        raise InvalidInputError(
            f"image is too large: {width}x{height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} (a possible decompression bomb); resize it first: {path}"
        )
    return pil


def _to_mode(pil: Image.Image, channels: int | None) -> Image.Image:
    """Decoded image in mode "L" or "RGB". Transparency is composited over black."""
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: Pillow's convert("L") clips instead of rescaling, so rescale ourselves.
        values = np.asarray(pil, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
        pil = Image.fromarray(np.clip(np.rint(values / scale), 0, 255).astype(np.uint8))
    elif mode == "P" and "transparency" in pil.info:
        pil = pil.convert("RGBA")
    mode = pil.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        pil = Image.alpha_composite(background, rgba).convert("RGB")
        if mode in ("LA", "La"):
            pil = pil.convert("L")
    grey_source = pil.mode in ("1", "L", "F")
    if channels is None:
        channels = 1 if grey_source else 3
    return pil.convert("L" if channels == 1 else "RGB")


def _fit(pil: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop to the aspect ratio of ``size`` (height, width), then resample (Lanczos)."""
    height, width = size
    if pil.size == (width, height):
        return pil
    return ImageOps.fit(pil, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_image(
    path: PathLike,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    pad_from: int | None = None,
) -> torch.Tensor:
    """Read an image file into a float tensor [C, H, W] in [-1, 1].

    The EXIF orientation is applied; the first frame of an animation is used; transparent
    pixels are composited over black; 16-bit grey is rescaled to 8 bits.

    Args:
        path: any format Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
        channels: 1 (grey) or 3 (RGB) to convert to; None keeps grey images grey and makes
            everything else RGB.
        size: output size, an int for square or (height, width); None keeps the file's size.
            An image of another aspect ratio is centre-cropped to it, then resampled (Lanczos).
        max_pixels: refuse files whose width * height exceeds this, before decoding them.
        pad_from: a square image of exactly this size is centred on black at ``size`` instead
            of resampled (how a bundle's training data was placed, e.g. Fashion-MNIST's 28 px
            in 32 px); other sizes are resized as usual.

    Returns:
        float32 tensor [C, H, W] on the CPU, values ``uint8 / 127.5 - 1``.

    Raises:
        InvalidInputError: the file is missing, not a regular file (a folder, FIFO, device,
            socket or a loop of links: never opened for reading, so never a hang), unreadable,
            empty, not an image, corrupt or truncated, too large, or an argument is invalid.
            The message names the file.

    Example::

        x = load_image("examples/shirt.png", channels=1, size=32)   # [1, 32, 32]
    """
    if channels not in (None, 1, 3):
        raise InvalidInputError(f"channels must be 1, 3 or None; got {channels!r}")
    target_size = _parse_size(size)
    path = Path(path)
    pil, fh = _open_checked(path, max_pixels)
    try:
        with fh, pil:
            try:
                pil.load()  # decode now, so corrupt or truncated data fails here, with the path
                pil = ImageOps.exif_transpose(pil) or pil
                pil = _to_mode(pil, channels)
            except _DECODE_ERRORS as e:
                raise InvalidInputError(f"corrupt or truncated image file {path}: {e}") from None
            if pad_from is not None and target_size is not None and pil.size == (pad_from, pad_from) \
                    and target_size[0] >= pad_from and target_size[1] >= pad_from:
                return _pad_to(_pil_to_tensor(pil, None), target_size)
            return _pil_to_tensor(pil, target_size)
    except Image.DecompressionBombError as e:  # some formats only learn their size while decoding
        raise InvalidInputError(f"image is too large to decode safely ({e}): {path}") from None


def _pad_to(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, h, w] in [-1, 1] centred on a black (-1) canvas of ``size`` (height, width)."""
    height, width = size
    top, left = (height - tensor.shape[1]) // 2, (width - tensor.shape[2]) // 2
    canvas = torch.full((tensor.shape[0], height, width), -1.0)
    canvas[:, top:top + tensor.shape[1], left:left + tensor.shape[2]] = tensor
    return canvas


def _pil_to_tensor(pil: Image.Image, size: tuple[int, int] | None) -> torch.Tensor:
    """Decoded "L"/"RGB" image -> float tensor [C, H, W] in [-1, 1], resized to ``size`` if given."""
    if size is not None:
        pil = _fit(pil, size)
    pixels = np.array(pil, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32)
    return tensor / 127.5 - 1.0


def image_from_pil(
    pil: Image.Image, channels: int | None = None, size: int | tuple[int, int] | None = None,
    pad_from: int | None = None,
) -> torch.Tensor:
    """An in-memory Pillow image -> float tensor [C, H, W] in [-1, 1], converted as `load_image` does.

    Raises:
        InvalidInputError: not a Pillow image, an empty one, or one that cannot be decoded.
    """
    if not isinstance(pil, Image.Image):
        raise InvalidInputError(f"expected a PIL image, got {type(pil).__name__}")
    if channels not in (None, 1, 3):
        raise InvalidInputError(f"channels must be 1, 3 or None; got {channels!r}")
    if pil.width < 1 or pil.height < 1:
        raise InvalidInputError(f"image has zero size ({pil.width}x{pil.height})")
    try:
        converted = _to_mode(ImageOps.exif_transpose(pil) or pil, channels)
    except _DECODE_ERRORS as e:
        raise InvalidInputError(f"cannot convert the image: {e}") from None
    target_size = _parse_size(size)
    if pad_from is not None and target_size is not None and converted.size == (pad_from, pad_from) \
            and min(target_size) >= pad_from:
        return _pad_to(_pil_to_tensor(converted, None), target_size)
    return _pil_to_tensor(converted, target_size)
