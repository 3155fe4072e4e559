"""matplotlib figures of results, for notebooks and scripts: `Explanation.plot` and `GlobalExplanation.plot`.

matplotlib is the optional extra ``plot`` and is imported on the first call. Figures are made
with ``matplotlib.figure.Figure``, not pyplot, so nothing is left open in pyplot's global list:
save one with ``fig.savefig("x.png")``. In Jupyter a figure shows once, when it is a cell's
value (or with ``display(fig)``): there it is made through pyplot, so that the inline backend
registers how figures display, and closed at once, so that the backend does not show it again::

    fig = exp.plot()              # the path's images, the top changes, p(target) along the path
    fig = g.plot(max_pairs=4)     # mean change per descriptor with its interval, one panel per pair
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cfattack.errors import InvalidInputError
from cfattack.reports.optional import in_notebook, require
from cfattack.reports.pixels import NEGATIVE_RGB, POSITIVE_RGB

if TYPE_CHECKING:
    from cfattack.batch.global_explanation import GlobalExplanation
    from cfattack.pipeline.explanation import Explanation

__all__ = ["explanation_figure", "global_figure"]

_POSITIVE = tuple(c / 255 for c in POSITIVE_RGB)
_NEGATIVE = tuple(c / 255 for c in NEGATIVE_RGB)
_CURVE = "#1b6ca8"


def _new_figure(feature: str, size: tuple[float, float]) -> Any:
    figure_module = require("matplotlib.figure", extra="plot", feature=feature)
    if in_notebook():
        # pyplot makes the kernel's inline backend register how figures display; closing the
        # figure at once keeps that backend from showing it a second time at the end of the cell.
        pyplot = require("matplotlib.pyplot", extra="plot", feature=feature)
        fig = pyplot.figure(figsize=size, layout="constrained")
        pyplot.close(fig)
        return fig
    return figure_module.Figure(figsize=size, layout="constrained")


def _sign_colors(values: list[float], pale: list[bool]) -> list[tuple[float, float, float, float]]:
    return [(*(_POSITIVE if v >= 0 else _NEGATIVE), 0.35 if p else 1.0) for v, p in zip(values, pale)]


def explanation_figure(explanation: Explanation, *, top_k: int = 8, width: float = 11.0) -> Any:
    """One explanation as a matplotlib ``Figure``.

    Top row (when the explanation has its images): original | reconstruction | counterfactual |
    difference. Bottom row: the ``top_k`` attributions as bars (red increased, blue decreased,
    pale: unreliable predictor) and the target probability along the path with the threshold.

    Raises:
        MissingDependencyError: matplotlib is not installed (extra ``plot``).
        InvalidInputError: ``top_k`` < 1.
    """
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1; got {top_k}")
    from cfattack.reports.strip import strip_panels

    panels = [p for p in strip_panels(explanation, max_frames=0)] if explanation.has_images else []
    rows = 2 if panels else 1
    fig = _new_figure("Explanation.plot", (width, 3.6 * rows))
    fig.suptitle(explanation.summary_line())
    grid = fig.add_gridspec(rows, max(len(panels), 2) * 2)
    half = max(len(panels), 2)

    # 1. The images, each with the strip's caption.
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        ax.imshow(panel.pixels, interpolation="nearest")
        ax.set_title(panel.caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])  # the frame stays: a white difference panel still shows its edges

    # 2. The top attributions.
    ax = fig.add_subplot(grid[rows - 1, :half])
    top = explanation.top(top_k)
    if top:
        names = [a.name if a.reliable else f"{a.name} (unreliable)" for a in top][::-1]
        values = [a.standardized_change for a in top][::-1]
        ax.barh(names, values, color=_sign_colors(values, [not a.reliable for a in top][::-1]))
        ax.axvline(0.0, color="#888888", linewidth=0.8)
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.text(0.5, 0.5, "no descriptor changes", ha="center", va="center", transform=ax.transAxes)
    source = "predicted" if explanation.attribution_source == "predicted" else "measured"
    ax.set_xlabel(f"standardised change ({source})")
    ax.set_title(f"Top {len(top)} descriptor changes", fontsize=10)

    # 3. The target probability along the path.
    ax = fig.add_subplot(grid[rows - 1, half:])
    curve = list(explanation.probability_curve)
    ax.plot(range(len(curve)), curve, color=_CURVE)
    ax.axhline(explanation.threshold, color="#222222", linestyle="--", linewidth=1,
               label=f"threshold {explanation.threshold:g}")
    if curve:
        stop = min(explanation.steps, len(curve) - 1)
        ax.plot([stop], [curve[stop]], marker="o", markerfacecolor="white", color="#222222")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("attack step")
    ax.set_ylabel(f"p({explanation.target})")
    ax.set_title("Target probability along the path", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def global_figure(
    g: GlobalExplanation,
    *,
    top_k: int = 8,
    max_pairs: int = 6,
    merged: bool = False,
    width: float = 11.0,
) -> Any:
    """Mean standardised change per descriptor with its bootstrap interval, one panel per pair.

    Args:
        g: the global explanation of a batch job.
        top_k: descriptors per panel (largest mean first).
        max_pairs: panels drawn: the pairs with the most reached explanations (those without any
            are skipped).
        merged: draw the pairs with both directions merged instead of the ordered pairs.

    Bars are pale unless at least two explanations agree and the interval excludes 0
    (`DescriptorEffect.consistent`); the whiskers are the interval.

    Raises:
        MissingDependencyError: matplotlib is not installed (extra ``plot``).
        InvalidInputError: no pair has a reached explanation, or a bad ``top_k`` / ``max_pairs``.
    """
    if top_k < 1 or max_pairs < 1:
        raise InvalidInputError(f"top_k and max_pairs must be >= 1; got {top_k} and {max_pairs}")
    pairs = [p for p in (g.merged_pairs if merged else g.pairs) if p.descriptors][:max_pairs]
    if not pairs:
        raise InvalidInputError("no pair has a reached explanation: nothing to plot")
    columns = min(2, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    fig = _new_figure("GlobalExplanation.plot", (width, 0.35 * top_k * rows + 1.4 * rows))
    fig.suptitle(f"{g.bundle} / {g.classifier}: mean standardised change ({g.confidence:.0%} intervals)")
    for i, pair in enumerate(pairs):
        ax = fig.add_subplot(rows, columns, i + 1)
        effects = pair.descriptors[:top_k][::-1]
        means = [d.mean for d in effects]
        errors = [[max(d.mean - d.ci_low, 0.0) for d in effects], [max(d.ci_high - d.mean, 0.0) for d in effects]]
        ax.barh([d.name for d in effects], means, xerr=errors, ecolor="#444444", capsize=2,
                color=_sign_colors(means, [not d.consistent for d in effects]))
        ax.axvline(0.0, color="#888888", linewidth=0.8)
        ax.tick_params(axis="y", labelsize=8)
        arrow = "\u2194" if pair.merged else "\u2192"
        ax.set_title(f"{pair.source} {arrow} {pair.target} ({pair.explanations} reached of {pair.attempted})",
                     fontsize=10)
        ax.set_xlabel("standard deviations")
    return fig
