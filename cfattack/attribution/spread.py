"""Descriptor spread over generator samples: the standard deviations that turn measured changes into "sd".

A measured change (`cfattack.attribution.measured`) is in each descriptor's own unit: pixels,
fractions, degrees. To rank descriptors against each other it is divided by the descriptor's
spread. With fitted predictors that spread comes from their fitting samples; without them,
`descriptor_spread` measures it on a few hundred images sampled from the generator, once per
generator and descriptor set, and keeps it in a small JSON file so the next explanation reads it
instead of sampling again::

    spread = descriptor_spread(G, default_descriptors(3, kind="photos"))   # 256 samples, cached
    spread.std                      # {"mean_intensity": 0.081, "hue": 37.2, ...}
    rows = measured_changes(descriptors, images0, images_cf, std=spread)

The cache lives in ``$CFATTACK_CACHE/spread/`` (default ``~/.cache/cfattack/spread/``); a file's
name starts with the generator's fingerprint (`generator_fingerprint`, a hash of its weights)
and ends with a hash of everything else the numbers depend on (the descriptors' records and
source code, the sample count, truncation and seed), so another generator, another descriptor
set or a changed descriptor never reads a stale file. Files are written atomically; an
unreadable or mismatched file is recomputed and replaced, an unwritable cache folder only
costs the reuse.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError

from cfattack.atomic import atomic_write_text
from cfattack.attribution.sampling import descriptor_values, generator_fingerprint, sample_latents
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError

__all__ = ["SPREAD_FORMAT", "DescriptorSpread", "descriptor_spread", "spread_cache_dir"]

SPREAD_FORMAT = "cfattack.spread/1"
_MAX_CACHE_BYTES = 1 << 20            # a spread file is a few kB; anything larger is not ours
_MIN_DEFINED = 0.5                    # a descriptor undefined (NaN) on more samples has no spread


class DescriptorSpread(FrozenConfig):
    """How much each descriptor varies over a generator's samples (one cache file)."""

    format: Literal["cfattack.spread/1"] = Field(SPREAD_FORMAT, description="File format tag.")
    generator_fingerprint: str = Field(description="`generator_fingerprint` of the generator sampled.")
    key: str = Field(description="Hash of the descriptor set, sample count, truncation, seed and code measured.")
    num_samples: int = Field(ge=2, description="Generator samples the spread was measured on.")
    truncation_psi: float = Field(description="Truncation of the sampled latents.")
    seed: int = Field(description="Seed of the sampled latents.")
    std: dict[str, float] = Field(
        description="Standard deviation per descriptor, in its unit (circular standard deviation for circular "
        "descriptors such as hue). Only descriptors with a positive, finite spread are listed."
    )
    mean: dict[str, float] = Field(description="Mean per descriptor (circular mean for circular descriptors).")
    dropped: dict[str, str] = Field(description="Descriptors without a usable spread, and why.")
    seconds: float = Field(ge=0, description="Time the measurement took.")

    def __getitem__(self, name: str) -> float:
        return self.std[name]


def spread_cache_dir() -> Path:
    """Where spreads are cached: ``$CFATTACK_CACHE/spread`` or ``~/.cache/cfattack/spread``."""
    root = os.environ.get("CFATTACK_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "cfattack") / "spread"


def _fn_identity(fn: Any, sources: dict[str, str]) -> Any:
    """A stable description of a descriptor's function: its name, bound arguments and its module's source hash."""
    if isinstance(fn, functools.partial):
        return {"fn": _fn_identity(fn.func, sources), "args": repr(fn.args),
                "kwargs": repr(sorted(fn.keywords.items()))}
    module = getattr(fn, "__module__", None) or "?"
    if module not in sources:
        path = getattr(sys.modules.get(module), "__file__", None)
        try:
            sources[module] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else ""
        except OSError:
            sources[module] = ""
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}@{sources[module]}"


def _cache_key(descriptors: Any, num_samples: int, truncation_psi: float, seed: int) -> str:
    from cfattack import __version__

    sources: dict[str, str] = {}
    rows = [{**d.to_dict(), "fn": _fn_identity(d.fn, sources)} for d in descriptors]
    text = json.dumps({"descriptors": rows, "num_samples": num_samples, "truncation_psi": truncation_psi,
                       "seed": seed, "cfattack": __version__, "format": SPREAD_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _summary(values: np.ndarray, period: float | None) -> tuple[float, float] | str:
    """(mean, std) of the finite values, circular when ``period`` is set; a reason string when there is no spread."""
    finite = values[np.isfinite(values)]
    if finite.size < max(2, _MIN_DEFINED * values.size):
        return f"undefined (NaN) on {1 - finite.size / max(values.size, 1):.0%} of the samples"
    if period is None:
        mean, std = float(finite.mean()), float(finite.std())
        if not std > 1e-12 * max(1.0, abs(mean)):
            return f"constant ({mean:.6g}) on the samples"
        return mean, std
    angle = finite * (2.0 * math.pi / period)
    s, c = float(np.sin(angle).mean()), float(np.cos(angle).mean())
    length = math.hypot(s, c)
    if length <= 1e-12:
        return "spread evenly around the circle"
    if length >= 1.0 - 1e-15:
        return f"constant ({float(finite[0]):.6g}) on the samples"
    mean = (math.atan2(s, c) * period / (2.0 * math.pi)) % period
    # The circular standard deviation sqrt(-2 ln R), back in the descriptor's unit.
    return mean, math.sqrt(-2.0 * math.log(length)) * period / (2.0 * math.pi)


def _read_cached(path: Path, fingerprint: str, key: str) -> DescriptorSpread | None:
    try:
        if not path.is_file() or path.stat().st_size > _MAX_CACHE_BYTES:
            return None
        spread = DescriptorSpread.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValidationError):
        return None
    if spread.generator_fingerprint != fingerprint or spread.key != key:
        return None
    return spread


def _default_batch(resolution: int) -> int:
    # About 4 Mpx of output per batch: 64 images up to 256 px, 16 at 512 px, 4 at 1024 px.
    return max(1, min(64, (4 << 20) // max(1, resolution * resolution)))


def descriptor_spread(
    G: torch.nn.Module,
    descriptors: Any,
    samples: int = 256,
    *,
    truncation_psi: float = 1.0,
    seed: int = 0,
    batch: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> DescriptorSpread:
    """The spread of each descriptor over ``samples`` images from ``G``, measured once and cached.

    Args:
        G: a StyleGAN3 generator (``mapping``, ``synthesis``, ``z_dim``, ``c_dim``, ``img_channels``,
            ``img_resolution``); conditional generators get uniformly drawn classes.
        descriptors: a ``descriptors.DescriptorSet``; descriptors that do not apply to G's channel
            count are listed in ``dropped``.
        samples: generator samples to measure, at least 8. The standard deviation of n samples
            is off by about 1 / sqrt(2 n): 4 % at the default 256, 25 % at 8. Each costs one
            synthesis: on a GPU 256 samples at 512 px take seconds, on a CPU a full-size
            generator needs several seconds per image even at 64 px, so pass fewer there.
        truncation_psi: truncation of the sampled latents (use the bundle's).
        seed: seed of the latents (the same ws on any device).
        batch: images synthesised at a time (default by resolution: 64 up to 256 px, 16 at 512 px).
        cache: read and write the cache (False: always measure, write nothing).
        cache_dir: the cache folder (default `spread_cache_dir()`).
        progress: show a progress bar while sampling.

    Returns:
        A `DescriptorSpread`; ``std`` holds every descriptor with a positive spread, ``dropped``
        the others with the reason (constant or undefined on the samples, wrong channel count).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 8:
        raise InvalidInputError(f"samples must be an integer of at least 8, got {samples!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
    if not (isinstance(truncation_psi, (int, float)) and math.isfinite(truncation_psi)):
        raise InvalidInputError(f"truncation_psi must be a finite number, got {truncation_psi!r}")
    channels = int(G.img_channels)
    applicable = [d for d in descriptors if d.applies_to(channels)]
    skipped = {d.name: f"does not apply to {channels}-channel images" for d in descriptors if not d.applies_to(channels)}
    if not applicable:
        raise InvalidInputError(f"none of the descriptors applies to {channels}-channel images")

    fingerprint = generator_fingerprint(G)
    key = _cache_key(descriptors, samples, float(truncation_psi), int(seed))
    path = Path(cache_dir if cache_dir is not None else spread_cache_dir()) / f"{fingerprint}-{key}.json"
    if cache:
        cached = _read_cached(path, fingerprint, key)
        if cached is not None:
            return cached

    # 1. Sample, synthesise and measure, one batch at a time.
    start = time.perf_counter()
    ws = sample_latents(G, samples, truncation_psi=float(truncation_psi), seed=int(seed))
    values = descriptor_values(G, ws, descriptors.select([d.name for d in applicable]),
                               batch=batch or _default_batch(int(G.img_resolution)), progress=progress,
                               desc="descriptor spread")

    # 2. Summarise.
    std, mean, dropped = {}, {}, dict(skipped)
    for d in applicable:
        summary = _summary(values[d.name], d.period)
        if isinstance(summary, str):
            dropped[d.name] = summary
        else:
            mean[d.name], std[d.name] = summary
    spread = DescriptorSpread(generator_fingerprint=fingerprint, key=key, num_samples=samples,
                              truncation_psi=float(truncation_psi), seed=int(seed), std=std, mean=mean,
                              dropped=dropped, seconds=round(time.perf_counter() - start, 3))
    if cache:
        try:
            atomic_write_text(path, spread.model_dump_json(indent=1))
        except OSError as exc:
            warnings.warn(f"could not cache the descriptor spread in {path.parent} ({exc.strerror or exc}); "
                          "it will be measured again next time", RuntimeWarning, stacklevel=2)
    return spread
