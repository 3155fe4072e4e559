"""Attribution: which named image descriptors a counterfactual changed, and by how much.

Latent descriptor predictors h_k(ws) are fitted once per generator; an explanation ranks
descriptors by the standardised change h_k(ws_cf) - h_k(ws0), and measures the same
descriptors on the two decoded images.

Modules: `changes` (DescriptorChange rows and their order), `predictors` (LatentDescriptorModel
and its ``cfattack.descriptors/1`` file), `fitting` (fit_descriptor_model, fit_from_latents),
`sampling` (generator latents, generator_fingerprint), `regression` and `mlp` (the solvers),
`measured` (measured_changes on decoded images), `spread` (descriptor_spread: the spread over
generator samples that standardises measured changes, cached per generator), `labelled`
(fit_labelled_predictors: predictors of a user's image labels, fitted on their inversions).
"""

from cfattack.attribution.changes import DescriptorChange
from cfattack.attribution.fitting import fit_descriptor_model, fit_from_latents
from cfattack.attribution.labelled import fit_labelled_predictors
from cfattack.attribution.measured import measured_changes
from cfattack.attribution.predictors import (
    DESCRIPTOR_MODEL_FORMAT,
    LatentDescriptorModel,
    PredictorFit,
    load_descriptor_model,
)
from cfattack.attribution.sampling import generator_fingerprint, sample_latents
from cfattack.attribution.spread import DescriptorSpread, descriptor_spread, spread_cache_dir

__all__ = [
    "DESCRIPTOR_MODEL_FORMAT",
    "DescriptorChange",
    "DescriptorSpread",
    "LatentDescriptorModel",
    "PredictorFit",
    "descriptor_spread",
    "fit_descriptor_model",
    "fit_from_latents",
    "fit_labelled_predictors",
    "generator_fingerprint",
    "load_descriptor_model",
    "measured_changes",
    "sample_latents",
    "spread_cache_dir",
]
