"""cfattack: counterfactual explanations of image classifiers through a StyleGAN3 latent space.

An image is inverted into the generator's W space, the latent is pushed by gradient ascent
toward a target class (the Counterfactual Attack), and the change is explained by ranked
image descriptors. This release holds the foundation: the StyleGAN3 generator, its ops,
a safe loader for official network pickles, image I/O and the ``cfattack`` command line.

Importing ``cfattack`` is cheap: the names below are loaded on first use, so neither torch
nor any network code is imported until it is needed.

Example::

    import cfattack
    exp = cfattack.explain("examples/coat-1.png", target="pullover", out="report/")
    exp.reached, exp.steps, [a.name for a in exp.top(5)]

    from cfattack import load_generator
    G = load_generator("stylegan3-t-afhqv2-512x512.pkl")   # never executes pickled code
    ws = G.mapping(z, None, truncation_psi=0.7)             # z: [N, G.z_dim]
    img = G.synthesis(ws)                                    # [N, C, H, W] in [-1, 1]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it. Resolved by __getattr__ on first access.
_LAZY_EXPORTS: dict[str, str] = {
    "Generator": "cfattack.stylegan.generator",
    "load_generator": "cfattack.stylegan.loading",
    "load_network_pkl": "cfattack.stylegan.official_pickle",
    "save_generator_checkpoint": "cfattack.stylegan.checkpoint",
    "load_image": "cfattack.images",
    "save_image": "cfattack.images",
    "CfattackError": "cfattack.errors",
    "InvalidInputError": "cfattack.errors",
    "NetworkLoadError": "cfattack.errors",
    "UnsafePickleError": "cfattack.errors",
    "UntrustedCodeError": "cfattack.errors",
    "Bundle": "cfattack.bundle.loader",
    "BundleError": "cfattack.bundle.spec",
    "BundleSpec": "cfattack.bundle.spec",
    "load_bundle": "cfattack.bundle.loader",
    "Explainer": "cfattack.pipeline.explainer",
    "explain": "cfattack.pipeline.explainer",
    "Explanation": "cfattack.pipeline.explanation",
    "ExplainConfig": "cfattack.pipeline.explanation",
    "AttackConfig": "cfattack.config",
    "InversionConfig": "cfattack.config",
    "LatentAttack": "cfattack.attack.latent_attack",
    "Inverter": "cfattack.inversion.inverter",
    "LatentDescriptorModel": "cfattack.attribution.predictors",
    "load_descriptor_model": "cfattack.attribution.predictors",
}

__all__ = ["__version__", *_LAZY_EXPORTS]

if TYPE_CHECKING:  # static analysers and IDEs see the real names; runtime stays lazy
    from cfattack.attack.latent_attack import LatentAttack
    from cfattack.attribution.predictors import LatentDescriptorModel, load_descriptor_model
    from cfattack.bundle.loader import Bundle, load_bundle
    from cfattack.bundle.spec import BundleError, BundleSpec
    from cfattack.config import AttackConfig, InversionConfig
    from cfattack.pipeline.explainer import Explainer, explain
    from cfattack.pipeline.explanation import ExplainConfig, Explanation
    from cfattack.inversion.inverter import Inverter
    from cfattack.errors import (
        CfattackError, InvalidInputError, NetworkLoadError, UnsafePickleError, UntrustedCodeError,
    )
    from cfattack.stylegan.generator import Generator
    from cfattack.images import load_image, save_image
    from cfattack.stylegan.checkpoint import save_generator_checkpoint
    from cfattack.stylegan.loading import load_generator
    from cfattack.stylegan.official_pickle import load_network_pkl


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cfattack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
