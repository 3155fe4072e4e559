"""The result of one explanation: what the classifier thought, where the attack went, what changed.

`Explanation` is the boundary object between the explainer and everything that consumes it
(reports, batch jobs, notebooks): a pydantic model whose JSON form is ``explanation.json``,
plus the images of the path, which JSON leaves out and `Explanation.save` writes as PNGs::

    exp = Explainer(bundle).explain("examples/coat-1.png", target="pullover")
    exp.reached, exp.steps, exp.attributions[0].name
    exp.save("out/")          # explanation.json, counterfactual.png, strip.png, start.png, path.gif, explanation.html
    exp.images.counterfactual  # tensor [C, H, W] in [-1, 1]
    exp                        # one line in a REPL; the strip and top changes in a notebook
    exp.plot(), exp.to_dataframe()   # a matplotlib figure, a pandas table (extras "plot", "table")
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from cfattack.attribution.changes import DescriptorChange
from cfattack.config import AttackConfig, FrozenConfig, InversionConfig
from cfattack.errors import InvalidInputError

__all__ = ["Agreement", "AlternativeCounterfactual", "ExplainConfig", "InversionReport", "Explanation",
           "ExplanationImages", "EXPLANATION_FORMAT", "agreement_of"]

EXPLANATION_FORMAT = "cfattack.explanation/1"


class ExplainConfig(FrozenConfig):
    """Settings of `cfattack.pipeline.explainer.Explainer`: inversion, attack and attribution."""

    inversion: InversionConfig = Field(
        default_factory=InversionConfig, description="Encoder start plus optimisation refinement of the input image."
    )
    attack: AttackConfig = Field(default_factory=AttackConfig, description="The counterfactual attack in latent space.")
    measured: bool = Field(
        True, description="Also compute the descriptors on the original and counterfactual images directly."
    )
    include_unreliable: bool = Field(
        False, description="Rank descriptors whose latent predictor scored below the quality bar too."
    )
    spread_samples: int = Field(
        256, ge=8, le=100_000,
        description="Generator samples that measure each descriptor's spread, the unit of a measured change, when "
        "the bundle's descriptor model does not give it (computed once per generator and cached).",
    )
    allow_same_class: bool = Field(
        False, description="Accept a target equal to the class the classifier already predicts (else an error)."
    )
    jitter: float = Field(
        0.1, gt=0, le=4,
        description="With k > 1 counterfactuals per input: each extra path starts from the inversion plus Gaussian "
        "noise of this many times the generator's per-coordinate spread of w (seeded: seed + 1, seed + 2, ...).",
    )
    batch_invariant: bool = Field(
        True,
        description="Compute every image on its own, so its explanation is bit for bit the same alone, in a "
        "batch of any size and through `cfattack batch`. Batched convolutions and matrix products round "
        "differently by batch shape, and the optimisers amplify those last bits into other paths and "
        "other top descriptors. False batches the networks' work: faster per image on large batches, "
        "but an explanation can then change with the batch it shares.",
    )


class InversionReport(FrozenConfig):
    """How well the input was reconstructed by the generator: the honesty part of the report."""

    psnr: float = Field(description="PSNR (dB) of the reconstruction against the input.")
    ssim: float = Field(description="SSIM of the reconstruction against the input.")
    encoder_psnr: float = Field(description="PSNR (dB) of the encoder's guess before refinement.")
    steps: int = Field(ge=0, description="Refinement steps taken after the encoder.")
    label_match: bool | None = Field(description="The classifier labels the reconstruction as the input (None: unknown).")
    flagged: bool = Field(description="The reconstruction is poor; the counterfactual explains a different image.")
    reasons: list[str] = Field(default_factory=list, description="Why it is flagged, one line each.")


class AlternativeCounterfactual(FrozenConfig):
    """Another counterfactual of the same input, from a jittered start (``Explainer.explain(..., k=K)``).

    Distances and attributions are measured from the inversion itself (not the jittered start),
    so they compare directly with the main counterfactual's.
    """

    index: int = Field(ge=1, description="1..K-1; the main explanation is counterfactual 0.")
    jitter_seed: int = Field(description="Seed of the noise added to the inversion's latents.")
    reached: bool
    reason: str
    steps: int = Field(ge=0)
    target_probability: float
    class_step: float | None = None
    latent_distance: float | None = Field(None, description="||ws_cf - ws_inversion||_2.")
    pixel_rms: float = Field(description="RMS pixel change from the reconstruction.")
    attributions: list[DescriptorChange] = Field(description="The top changes, ranked as the main attributions.")


class Agreement(FrozenConfig):
    """How much K counterfactuals of one input agree on what changed: the stability a user can see."""

    counterfactuals: int = Field(ge=2, description="K, the main counterfactual included.")
    top1_share: float = Field(description="Share of the K whose largest change is the main counterfactual's.")
    top3_overlap: float = Field(description="Mean over pairs of the K of |top-3 A & top-3 B| / |top-3 A | top-3 B|.")
    consensus: list[str] = Field(description="Descriptors in the top 3 of at least half the K, most frequent first.")


def agreement_of(tops: list[list[str]]) -> Agreement:
    """`Agreement` of K ranked descriptor-name lists (the main one first)."""
    sets = [set(t[:3]) for t in tops]
    pairs = [(a, b) for i, a in enumerate(sets) for b in sets[i + 1:]]
    overlap = sum(len(a & b) / max(len(a | b), 1) for a, b in pairs) / max(len(pairs), 1)
    first = tops[0][0] if tops and tops[0] else None
    counts: dict[str, int] = {}
    for t in tops:
        for name in t[:3]:
            counts[name] = counts.get(name, 0) + 1
    consensus = sorted((n for n, c in counts.items() if 2 * c >= len(tops)), key=lambda n: (-counts[n], n))
    return Agreement(counterfactuals=len(tops), top1_share=sum(bool(t) and t[0] == first for t in tops) / len(tops),
                     top3_overlap=overlap, consensus=consensus)


@dataclass
class ExplanationImages:
    """The pictures of one explanation, CPU float tensors [C, H, W] in [-1, 1].

    ``frames`` [F, C, H, W] are evenly spaced iterates of the attack, start and end included
    (their steps are `Explanation.frame_steps`); ``reconstruction`` is None in pixel space,
    where nothing is inverted.
    """

    original: torch.Tensor
    reconstruction: torch.Tensor | None
    frames: torch.Tensor
    counterfactual: torch.Tensor
    alternatives: list[torch.Tensor] = dataclasses.field(default_factory=list)  # k > 1: counterfactuals 1..K-1

    @property
    def difference(self) -> torch.Tensor:
        """Signed change counterfactual - start image (the reconstruction, or the original in pixel space)."""
        start = self.reconstruction if self.reconstruction is not None else self.original
        return self.counterfactual - start


class Explanation(BaseModel):
    """One counterfactual explanation. Its JSON form is ``explanation.json``.

    Class fields hold canonical class names (``source_class``, ``target``) next to their
    indices. ``attributions`` are ranked by the size of their standardised change; in latent
    space they come from the bundle's fitted latent predictors (``attribution_source ==
    "predicted"``), otherwise (pixel space, or a bundle without predictors) they are the
    descriptors measured on the two images. ``measured`` always holds the measured values
    when `ExplainConfig.measured` is on, so the predicted ranking can be checked against them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal["cfattack.explanation/1"] = EXPLANATION_FORMAT
    image: str | None = Field(None, description="The input file, when the input was a path.")
    bundle: str = Field(description="Name of the bundle used.")
    classifier: str = Field(description="Name of the explained classifier in the bundle.")
    class_names: list[str] = Field(description="All class names in logit order.")
    source_class: str = Field(description="The classifier's label for the input image.")
    source_index: int = Field(ge=0)
    source_probability: float = Field(description="The classifier's probability of source_class for the input image.")
    start_class: str = Field(description="The classifier's label for the attack's start image (the reconstruction).")
    target: str = Field(description="The class the counterfactual should be classified as.")
    target_index: int = Field(ge=0)
    reached: bool = Field(description="The target probability passed the threshold.")
    reason: str = Field(description="Why the attack stopped: reached, max_steps, zero_gradient or non_finite.")
    steps: int = Field(ge=0, description="Attack steps taken (the index of the counterfactual iterate).")
    threshold: float = Field(description="Target probability the attack had to pass.")
    target_probability: float = Field(description="Target probability of the counterfactual.")
    counterfactual_class: str = Field(description="The classifier's label for the counterfactual.")
    space: Literal["w", "w+", "pixel"] = Field(description="What the attack moved.")
    latent_distance: float | None = Field(description="||ws_cf - ws0||_2 (None in pixel space).")
    pixel_rms: float = Field(description="Root mean square pixel change start -> counterfactual, in [-1, 1] units.")
    shift_px: tuple[float, float] | None = Field(
        None, description="With the attack's shift_lr: (right, down) pixels the object was moved as a whole."
    )
    class_step: float | None = Field(
        None, description="The step along the generator's class direction (target class mean w minus the source's) "
        "taken before the ascent, in units of that whole difference (class_search_steps; None = off)."
    )
    probability_curve: list[float] = Field(description="Target probability at attack iterates 0..steps.")
    frame_steps: list[int] = Field(description="Attack iterates shown as frames.")
    inversion: InversionReport | None = Field(description="Reconstruction quality (None in pixel space).")
    attribution_source: Literal["predicted", "measured"] = Field(
        description="Where `attributions` come from: latent predictors or descriptors measured on the images."
    )
    attributions: list[DescriptorChange] = Field(description="Descriptor changes, largest standardised change first.")
    measured: list[DescriptorChange] = Field(
        default_factory=list, description="Descriptors measured on start and counterfactual images, ranked."
    )
    alternatives: list[AlternativeCounterfactual] = Field(
        default_factory=list, description="With k > 1: the other counterfactuals of this input, from jittered starts.")
    agreement: Agreement | None = Field(None, description="With k > 1: how much the K counterfactuals' top changes agree.")
    warnings: list[str] = Field(default_factory=list, description="Things the reader should know (poor inversion, ...).")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    config: ExplainConfig = Field(description="The settings used.")

    _images: ExplanationImages | None = PrivateAttr(default=None)

    @property
    def images(self) -> ExplanationImages:
        """The images of the explanation; absent on an explanation read back from JSON."""
        if self._images is None:
            raise AttributeError("this explanation has no images (it was read from JSON)")
        return self._images

    @property
    def has_images(self) -> bool:
        return self._images is not None

    def with_images(self, images: ExplanationImages) -> Explanation:
        """Attach the images (returns self)."""
        self._images = images
        return self

    def top(self, k: int = 5) -> list[DescriptorChange]:
        """The k highest-ranked attributions."""
        return self.attributions[:k]

    def to_json(self, indent: int | None = 2) -> str:
        """The ``explanation.json`` text."""
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Explanation:
        """Read an ``explanation.json`` text back (without images)."""
        return cls.model_validate_json(text)

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """Write the report files into ``directory``; see `cfattack.reports.write_report`."""
        from cfattack.reports import write_report

        return write_report(self, directory)

    def __repr__(self) -> str:
        """One line: classes, outcome, steps, p(target), the three largest changes (not the 10 kB field dump)."""
        from cfattack.reports.notebook import explanation_repr

        return explanation_repr(self)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        """Jupyter's view: the outcome, the strip at half size and the top five changes."""
        from cfattack.reports.notebook import explanation_html

        return explanation_html(self)

    def plot(self, top_k: int = 8) -> Any:
        """A matplotlib ``Figure``: the images, the ``top_k`` changes and p(target) along the path.

        Needs matplotlib (``pip install 'cfattack[plot]'``; `MissingDependencyError` otherwise).
        Save it with ``fig.savefig(path)``; a notebook shows it. See `cfattack.reports.figures`.
        """
        from cfattack.reports.figures import explanation_figure

        return explanation_figure(self, top_k=top_k)

    def to_dataframe(self, which: Literal["attributions", "measured"] = "attributions") -> Any:
        """The ranked ``attributions`` (or the ``measured`` changes) as a ``pandas.DataFrame``, index ``rank``.

        Needs pandas (``pip install 'cfattack[table]'``; `MissingDependencyError` otherwise).
        """
        from cfattack.reports.tables import changes_dataframe

        if which not in ("attributions", "measured"):
            raise InvalidInputError(f"which must be 'attributions' or 'measured'; got {which!r}")
        return changes_dataframe(self.attributions if which == "attributions" else self.measured)

    def first_move(self) -> str:
        """What the attack did before its steps: ``" after a class step of 0.375"``, a shift, or ``""``."""
        parts = []
        if self.shift_px is not None and any(abs(v) > 0 for v in self.shift_px):
            parts.append(f"a shift of {self.shift_px[0]:+.1f} px right, {self.shift_px[1]:+.1f} px down")
        if self.class_step:
            parts.append(f"a class step of {self.class_step:.3g}")
        return f" after {' and '.join(parts)}" if parts else ""

    def summary_line(self) -> str:
        """One line: ``coat -> pullover: reached in 3 steps after a class step of 0.75 (p=0.93)``."""
        outcome = f"reached in {self.steps} steps" if self.reached else f"not reached ({self.reason}, {self.steps} steps)"
        return f"{self.source_class} -> {self.target}: {outcome}{self.first_move()} (p={self.target_probability:.2f})"
