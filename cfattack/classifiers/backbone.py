"""A small CNN for [N, C, 32, 32] images in [-1, 1] with an explicit embedding layer.

    image --Backbone--> embedding [N, D] --head--> logits [N, K]

The embedding is a named, documented layer (not "whatever comes before the last Linear")
because the latent-structuring losses (Latent Boost, LCC) act on it, the Fréchet distance of
`cfattack.quality.metrics` is measured in it, and OffsetL2 heads measure distances in it.

Layout (``width`` w): three stages of two 3x3 conv + batchnorm + ReLU, each followed by 2x2
max pooling (32 -> 16 -> 8 -> 4; channels w, 2w, 4w); adaptive average pooling to 4x4 (so other
resolutions work too), dropout, Linear to D, batchnorm, ReLU. With w = 32 and D = 128 it has
about 0.55 M parameters and runs forward+backward in a few ms per image on one CPU core.

`MLPBackbone` is the one-hidden-layer perceptron of Oursland (arXiv 2502.02103): flattened
pixels -> Linear -> ReLU or Abs = the embedding (784 -> 128 there; 1024 -> D for our 32x32
images). With a linear head it is the paper's "ReLU"/"Abs" model, with an OffsetL2 head its
"ReLU-L2"/"Abs-L2" model.
"""

from __future__ import annotations

import torch
from torch import nn

from cfattack.classifiers.heads import HEADS

__all__ = ["Backbone", "MLPBackbone", "Classifier", "build_classifier", "FACTORY_NAME", "BACKBONES", "ACTIVATIONS"]

FACTORY_NAME = "cfattack.classifiers:build_classifier"
"""How checkpoints name the function that rebuilds a classifier from its kwargs."""


def _conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Backbone(nn.Module):
    """Images [N, C, H, W] in [-1, 1] -> embedding [N, embedding_dim] (non-negative: ReLU last).

    Args:
        in_channels: C (1 grey, 3 RGB).
        width: channels of the first stage; the second and third have 2x and 4x.
        embedding_dim: D.
        dropout: dropout probability before the embedding projection (training only).
    """

    def __init__(self, in_channels: int = 1, width: int = 32, embedding_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.embedding_dim = embedding_dim
        self.features = nn.Sequential(
            _conv_stage(in_channels, width), _conv_stage(width, 2 * width), _conv_stage(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(4),
        )
        self.project = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(4 * width * 16, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> embedding [N, D]."""
        assert x.ndim == 4 and x.shape[1] == self.in_channels, x.shape
        return self.project(self.features(x))


class _Abs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


ACTIVATIONS = {"relu": nn.ReLU, "abs": _Abs}
"""Hidden activations of `MLPBackbone` by name."""


class MLPBackbone(nn.Module):
    """Images [N, C, S, S] -> embedding act(W x + b) [N, embedding_dim], x the flattened pixels.

    Args:
        in_channels: C.
        image_size: S (the Linear layer reads C * S * S values).
        embedding_dim: D, the hidden width.
        activation: ``"relu"`` or ``"abs"``.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 32, embedding_dim: int = 128,
                 activation: str = "relu") -> None:
        super().__init__()
        self.in_channels, self.image_size, self.embedding_dim = in_channels, image_size, embedding_dim
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, embedding_dim),
                                     ACTIVATIONS[activation]())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, S, S] -> embedding [N, D]."""
        assert x.ndim == 4 and x.shape[1:] == (self.in_channels, self.image_size, self.image_size), x.shape
        return self.project(x)


BACKBONES = ("cnn", "mlp")
"""Backbone names `build_classifier` accepts."""


class Classifier(nn.Module):
    """``backbone`` then ``head``: images [N, C, H, W] in [-1, 1] -> logits [N, K].

    Takes images exactly as `cfattack.images` and the datasets produce them (float, [-1, 1]);
    callers add no normalisation. Build one with `build_classifier`, which also records the
    arguments a checkpoint needs to rebuild it (``factory_kwargs``).

    Example::

        clf = build_classifier(10).eval()
        x = torch.rand(8, 1, 32, 32) * 2 - 1
        clf(x).shape, clf.embed(x).shape        # [8, 10], [8, 128]
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, factory_kwargs: dict | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.factory_kwargs = dict(factory_kwargs) if factory_kwargs is not None else None

    @property
    def num_classes(self) -> int:
        return int(self.head.num_classes)

    @property
    def embedding_dim(self) -> int:
        return int(self.head.embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> embedding [N, D]."""
        return self.backbone(x)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, C, H, W] -> (logits [N, K], embedding [N, D]) from one pass (for embedding losses)."""
        embedding = self.backbone(x)
        return self.head(embedding), embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> logits [N, K]."""
        return self.head(self.backbone(x))


def build_classifier(
    num_classes: int,
    in_channels: int = 1,
    embedding_dim: int = 128,
    head: str = "linear",
    width: int = 32,
    dropout: float = 0.3,
    backbone: str = "cnn",
    activation: str = "relu",
    image_size: int = 32,
) -> Classifier:
    """A freshly initialised `Classifier` (in training mode).

    Args:
        num_classes: K, number of logits.
        in_channels: image channels C.
        embedding_dim: D, size of the explicit embedding.
        head: ``"linear"`` or ``"offset_l2"`` (see `cfattack.classifiers.heads`).
        width: channels of the first conv stage (then 2x, 4x); CNN only.
        dropout: dropout probability before the embedding projection; CNN only.
        backbone: ``"cnn"`` (`Backbone`) or ``"mlp"`` (`MLPBackbone`).
        activation: hidden activation of the MLP, ``"relu"`` or ``"abs"`` (the CNN uses ReLU).
        image_size: input side length the MLP reads (the CNN takes any size).

    Checkpoints record ``backbone``, ``activation`` and ``image_size`` only for an MLP, so
    CNN checkpoints keep the keyword arguments they always had.

    Raises:
        ValueError: an argument is out of range or ``head`` is unknown.
    """
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                        ("embedding_dim", embedding_dim), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(sorted(HEADS))}; got {head!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(sorted(ACTIVATIONS))}; got {activation!r}")
    if backbone == "cnn" and activation != "relu":
        raise ValueError(f"the cnn backbone uses relu; activation {activation!r} needs backbone='mlp'")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    kwargs = dict(num_classes=num_classes, in_channels=in_channels, embedding_dim=embedding_dim,
                  head=head, width=width, dropout=float(dropout))
    if backbone == "mlp":
        kwargs |= dict(backbone=backbone, activation=activation, image_size=image_size)
        net: nn.Module = MLPBackbone(in_channels=in_channels, image_size=image_size, embedding_dim=embedding_dim,
                                     activation=activation)
    else:
        net = Backbone(in_channels=in_channels, width=width, embedding_dim=embedding_dim, dropout=float(dropout))
    return Classifier(net, HEADS[head](embedding_dim, num_classes), factory_kwargs=kwargs)
