"""Global explanation: what changes, on average, when the classifier's mind is changed from A to B.

For each (source class -> target class) pair, over the explanations that reached their target,
the mean standardised change of every descriptor: the attack always goes from source to target,
so the sign means the same thing in every explanation of a pair ("to look like a pullover, a
coat loses ink area"). Each mean comes with a percentile bootstrap confidence interval and the
number of explanations behind it; descriptors are ranked by the size of the mean.

Each unordered pair {A, B} (A before B in class order) also gets a merged summary, in the
direction A -> B: the A -> B changes as they are, the B -> A changes with their sign flipped.

The result depends only on the set of records, not their order or how the job was split: the
values are sorted by item key before the seeded bootstrap draws from them::

    g = aggregate(records, seed=0)
    g.pairs[0].source, g.pairs[0].target, g.pairs[0].descriptors[0]    # name, mean, ci_low, ci_high, count
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from pydantic import Field

from cfattack.batch.store import ResultRecord
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError

__all__ = [
    "GLOBAL_FORMAT",
    "DescriptorEffect",
    "PairExplanation",
    "GlobalExplanation",
    "aggregate",
    "bootstrap_ci",
]

GLOBAL_FORMAT = "cfattack.global/1"


class DescriptorEffect(FrozenConfig):
    """The average change of one descriptor over the explanations of one pair."""

    name: str = Field(description="Descriptor name.")
    unit: str = Field(description="Unit of mean_change.")
    mean: float = Field(description="Mean standardised change (in standard deviations), in the pair's direction.")
    ci_low: float = Field(description="Lower end of the bootstrap confidence interval of the mean.")
    ci_high: float = Field(description="Upper end of the bootstrap confidence interval of the mean.")
    count: int = Field(ge=1, description="Explanations that report this descriptor.")
    mean_change: float = Field(description="Mean change in the descriptor's unit, in the pair's direction.")
    consistent: bool = Field(
        description="At least two explanations and a confidence interval that excludes zero: the direction is clear."
    )


class PairExplanation(FrozenConfig):
    """The descriptors that change from ``source`` to ``target``, ranked by the size of their mean change.

    For a merged pair, ``source`` and ``target`` are the two classes in class order and
    ``merged`` is True: the changes of target -> source explanations enter with their sign flipped.
    """

    source: str = Field(description="Source class (the classifier's label of the inputs).")
    target: str = Field(description="Target class.")
    merged: bool = Field(False, description="Both directions, target -> source flipped in sign.")
    explanations: int = Field(ge=0, description="Reached explanations behind the means.")
    attempted: int = Field(ge=0, description="All finished explanations of the pair, reached or not.")
    forward: int = Field(ge=0, description="Reached explanations in the source -> target direction.")
    backward: int = Field(0, ge=0, description="Merged pairs: reached target -> source explanations (sign-flipped).")
    descriptors: list[DescriptorEffect] = Field(description="Descriptor effects, largest |mean| first.")


class GlobalExplanation(FrozenConfig):
    """``global.json``: the per-pair summaries of a batch job."""

    format_version: Literal["cfattack.global/1"] = GLOBAL_FORMAT
    bundle: str = Field(description="Bundle of the explanations.")
    classifier: str = Field(description="The explained classifier.")
    config_hash: str = Field(description="The job's config hash.")
    explanations: int = Field(ge=0, description="Finished explanations aggregated over.")
    reached: int = Field(ge=0, description="Of them, those that reached their target (the ones averaged).")
    confidence: float = Field(gt=0, lt=1, description="Level of the bootstrap confidence intervals.")
    resamples: int = Field(ge=1, description="Bootstrap resamples per interval.")
    seed: int = Field(description="Seed of the bootstrap.")
    pairs: list[PairExplanation] = Field(description="Ordered pairs, most explanations first.")
    merged_pairs: list[PairExplanation] = Field(description="Unordered pairs, both directions merged.")

    def plot(self, top_k: int = 8, max_pairs: int = 6, merged: bool = False) -> Any:
        """A matplotlib ``Figure``: per pair, the mean change of its ``top_k`` descriptors with intervals.

        Needs matplotlib (``pip install 'cfattack[plot]'``); see `cfattack.reports.figures.global_figure`.
        """
        from cfattack.reports.figures import global_figure

        return global_figure(self, top_k=top_k, max_pairs=max_pairs, merged=merged)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` [n].

    Draws ``resamples`` samples of size n with replacement and returns the (1 - confidence)/2
    and (1 + confidence)/2 quantiles of their means. One value gives the interval (v, v).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        raise InvalidInputError("bootstrap_ci needs at least one value")
    if n == 1:
        return float(values[0]), float(values[0])
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 4_000_000 // n)  # bound the index matrix to ~32 MB
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _effects(
    rows: list[tuple[str, float, ResultRecord]],
    label: str,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> list[DescriptorEffect]:
    """Descriptor effects from (key, sign, record) rows, sorted by key first so order never matters."""
    per_name: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    units: dict[str, str] = {}
    for key, sign, record in sorted(rows, key=lambda row: row[0]):
        for a in record.attributions:
            per_name[a.name].append((key, sign * a.standardized_change, sign * a.change))
            units.setdefault(a.name, a.unit)
    effects = []
    for name in sorted(per_name):
        standardized = np.array([s for _, s, _ in per_name[name]], dtype=np.float64)
        raw = np.array([c for _, _, c in per_name[name]], dtype=np.float64)
        rng = np.random.default_rng([seed, zlib.crc32(f"{label}|{name}".encode("utf-8"))])
        low, high = bootstrap_ci(standardized, resamples=resamples, confidence=confidence, rng=rng)
        effects.append(DescriptorEffect(
            name=name, unit=units[name], mean=float(standardized.mean()), ci_low=low, ci_high=high,
            count=int(standardized.size), mean_change=float(raw.mean()),
            consistent=bool(standardized.size > 1 and (low > 0 or high < 0)),
        ))
    effects.sort(key=lambda e: (-abs(e.mean), e.name))
    return effects


def aggregate(
    records: Iterable[ResultRecord],
    *,
    bundle: str = "",
    classifier: str = "",
    config_hash: str = "",
    class_names: Sequence[str] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GlobalExplanation:
    """Aggregate finished explanations into a `GlobalExplanation`.

    Args:
        records: the job's results (any order; only reached ones enter the means).
        class_names: the bundle's classes, to order merged pairs by class index (default: by
            the indices stored in the records).
        resamples, confidence, seed: the bootstrap.

    Example::

        g = aggregate(store.read_results().values(), bundle="fashion-mnist", seed=0)
    """
    if resamples < 1:
        raise InvalidInputError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence}")
    records = list(records)
    index = {name: i for i, name in enumerate(class_names)} if class_names is not None else {}
    for r in records:
        index.setdefault(r.source_class, r.source_index)
        index.setdefault(r.target, r.target_index)

    attempted: dict[tuple[str, str], int] = defaultdict(int)
    reached: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for r in records:
        attempted[(r.source_class, r.target)] += 1
        if r.reached:
            reached[(r.source_class, r.target)].append(r)
    options = dict(resamples=resamples, confidence=confidence, seed=seed)

    pairs = []
    for (source, target), count in attempted.items():
        rows = [(r.key, 1.0, r) for r in reached[(source, target)]]
        pairs.append(PairExplanation(
            source=source, target=target, explanations=len(rows), attempted=count, forward=len(rows),
            descriptors=_effects(rows, f"{source}->{target}", **options),
        ))
    pairs.sort(key=lambda p: (-p.explanations, -p.attempted, index[p.source], index[p.target]))

    merged = []
    unordered = {tuple(sorted(pair, key=lambda c: index[c])) for pair in attempted}
    for a, b in unordered:
        forward = [(r.key, 1.0, r) for r in reached.get((a, b), [])]
        backward = [(r.key, -1.0, r) for r in reached.get((b, a), [])] if a != b else []
        merged.append(PairExplanation(
            source=a, target=b, merged=True, explanations=len(forward) + len(backward),
            attempted=attempted.get((a, b), 0) + attempted.get((b, a), 0),
            forward=len(forward), backward=len(backward),
            descriptors=_effects(forward + backward, f"{a}<->{b}", **options),
        ))
    merged.sort(key=lambda p: (-p.explanations, -p.attempted, index[p.source], index[p.target]))

    return GlobalExplanation(
        bundle=bundle, classifier=classifier, config_hash=config_hash, explanations=len(records),
        reached=sum(r.reached for r in records), confidence=confidence, resamples=resamples, seed=seed,
        pairs=pairs, merged_pairs=merged,
    )
