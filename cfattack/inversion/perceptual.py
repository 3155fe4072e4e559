"""A perceptual distance read from the explained classifier's own intermediate features.

Pixel error alone rewards blurry reconstructions at 256-1024 px; a perceptual term compares
images by what a network sees in them. LPIPS uses a downloaded VGG; cfattack must not fetch
anything at run time, and the network that matters is the classifier being explained anyway,
so the features come from it, through forward hooks (nothing about the classifier changes).

Which layers (`feature_layers`), first match wins:

1. the names the user lists (``InversionConfig.perceptual_layers``, dotted module names as in
   ``named_modules()``, e.g. ``("net.layer1", "net.layer2", "net.layer3")`` for a ResNet);
2. cfattack classifiers: a submodule called ``backbone`` with a ``features`` Sequential: each
   of its convolution stages, plus the backbone's output (the embedding); a ``backbone``
   without stages (the MLP) gives its embedding;
3. any other ``nn.Module``: up to four ``Conv2d`` modules spread evenly over depth, the last
   one included (registration order, which is execution order in ordinary CNNs). Evenly
   spread, not the last few, because the last few convolutions of a ResNet all sit at 7 x 7
   in its final stage: the early ones carry the edges and texture that pixel error misses at
   high resolution, the late ones the shapes the classifier decides on. Without any Conv2d
   (MLPs, transformers): up to three ``Linear`` modules before the last one (the logits);
4. nothing hookable (a plain callable, a TorchScript program, whose submodules take no hooks,
   or a ``torch.export`` module, which keeps no submodules): the classifier's output logits.

Each layer's activation is normalised to unit length over channels at every position (over
all values for a flat vector), as LPIPS does, so every layer counts alike whatever its scale;
the distance is the squared difference summed over channels, averaged over positions and then
over layers: 0 for identical inputs, at most 4::

    features = ClassifierFeatures(classifier, preprocess=resize_to_224)
    d = features.distance(features(a), features(b))        # [N]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cfattack.errors import InvalidInputError

__all__ = ["ClassifierFeatures", "FeatureSet", "feature_layers"]

_MAX_CONV_LAYERS = 4
_MAX_LINEAR_LAYERS = 3


def _hookable(module: object) -> bool:
    return isinstance(module, torch.nn.Module) and not isinstance(module, torch.jit.ScriptModule)


def _spread(items: list, count: int) -> list:
    """Up to ``count`` items evenly spaced over ``items``, the last one included."""
    if len(items) <= count:
        return list(items)
    last = len(items) - 1
    picks = sorted({round(last * (k + 1) / count) for k in range(count)})
    return [items[i] for i in picks]


def feature_layers(
    classifier: object, names: Sequence[str] | None = None
) -> list[tuple[str, torch.nn.Module]]:
    """The (name, module) pairs whose outputs are the features; [] means "use the logits".

    See the module docstring for the rule. Raises `InvalidInputError` when ``names`` lists a
    module the classifier does not have (or the classifier takes no hooks).
    """
    if names:
        if not _hookable(classifier):
            raise InvalidInputError(
                f"perceptual_layers {list(names)} given, but the classifier ({type(classifier).__name__}) "
                "takes no forward hooks (TorchScript, torch.export and plain functions do not)")
        modules = dict(classifier.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            known = ", ".join(n for n in list(modules)[:12] if n)
            raise InvalidInputError(f"perceptual_layers: no module named {missing} in the classifier; "
                                    f"some that exist: {known}")
        return [(n, modules[n]) for n in names]
    if not _hookable(classifier):
        return []
    named = [(n, m) for n, m in classifier.named_modules() if _hookable(m)]
    for name, module in named:
        if name.split(".")[-1] == "backbone":
            stages = getattr(module, "features", None)
            picked = []
            if isinstance(stages, torch.nn.Sequential):
                picked = [(f"{name}.features.{i}", stage) for i, stage in enumerate(stages)
                          if any(isinstance(m, torch.nn.Conv2d) for m in stage.modules())]
            return picked + [(name, module)]
    convs = [(n, m) for n, m in named if isinstance(m, torch.nn.Conv2d)]
    if convs:
        return _spread(convs, _MAX_CONV_LAYERS)
    linears = [(n, m) for n, m in named if isinstance(m, torch.nn.Linear)][:-1]
    return linears[-_MAX_LINEAR_LAYERS:]


@dataclass
class FeatureSet:
    """Normalised features of N images: per layer a flat [N, F] tensor and its position count."""

    flat: list[torch.Tensor]
    positions: list[int]

    def __len__(self) -> int:
        return int(self.flat[0].shape[0])

    def select(self, index: torch.Tensor) -> FeatureSet:
        """The features of the images at ``index``."""
        return FeatureSet([f[index] for f in self.flat], list(self.positions))


def _normalise(feature: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, int]:
    """An activation [N, C, *positions] (or [N, ...]) -> (unit vectors flattened [N, F], positions)."""
    feature = feature.float()
    if per_channel and feature.ndim > 2:
        positions = int(feature[0, 0].numel())
        unit = F.normalize(feature, dim=1, eps=1e-10)
    else:
        positions = 1
        unit = F.normalize(feature.reshape(feature.shape[0], -1), dim=1, eps=1e-10)
    return unit.reshape(unit.shape[0], -1), positions


class ClassifierFeatures:
    """The classifier's intermediate activations as features; see the module docstring.

    Args:
        classifier: the explained classifier, images (after ``preprocess``) -> logits [N, K].
        preprocess: applied to generator-space images [N, C, R, R] in [-1, 1] before the
            classifier (resize, normalisation); the identity when None.
        layers: module names to hook instead of the automatic choice.
    """

    def __init__(
        self,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        layers: Sequence[str] | None = None,
    ) -> None:
        self.classifier = classifier
        self.preprocess = preprocess
        self.layers = feature_layers(classifier, layers)

    @property
    def layer_names(self) -> list[str]:
        """The hooked modules' names, or ``["logits"]``."""
        return [n for n, _ in self.layers] or ["logits"]

    def __call__(self, images: torch.Tensor) -> FeatureSet:
        """images [N, C, R, R] -> their normalised features (differentiable)."""
        x = images if self.preprocess is None else self.preprocess(images)
        captured: dict[int, torch.Tensor] = {}
        handles = []

        def keep(index: int):
            def hook(_module, _inputs, output):
                if isinstance(output, torch.Tensor):
                    captured[index] = output
            return hook

        try:
            for index, (_, module) in enumerate(self.layers):
                handles.append(module.register_forward_hook(keep(index)))
            logits = self.classifier(x)
        finally:
            for handle in handles:
                handle.remove()
        if not captured:  # no layers, or none ran: the logits are what is left
            flat, positions = _normalise(logits, per_channel=False)
            return FeatureSet([flat], [positions])
        pairs = [_normalise(captured[i], isinstance(self.layers[i][1], torch.nn.Conv2d) or captured[i].ndim == 4)
                 for i in sorted(captured)]
        return FeatureSet([f for f, _ in pairs], [p for _, p in pairs])

    @staticmethod
    def distance(a: FeatureSet, b: FeatureSet) -> torch.Tensor:
        """Per-image distance [N] between two feature sets of the same N images."""
        total = sum((fa - fb).square().sum(dim=1) / p for fa, fb, p in zip(a.flat, b.flat, a.positions))
        return total / len(a.flat)

    @staticmethod
    def pairwise(a: FeatureSet, b: FeatureSet) -> torch.Tensor:
        """Distances [len(a), len(b)] between every image of ``a`` and every image of ``b``."""
        total = 0
        for fa, fb, p in zip(a.flat, b.flat, a.positions):
            sq = fa.square().sum(dim=1, keepdim=True) + fb.square().sum(dim=1).unsqueeze(0) - 2 * fa @ fb.T
            total = total + sq.clamp_min(0) / p
        return total / len(a.flat)
