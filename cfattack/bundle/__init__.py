"""Model bundles: a folder with ``bundle.json`` naming a generator, an encoder, classifiers and
descriptor predictors; `load_bundle("default")` is the one shipped inside the package."""

from cfattack.bundle.classifier import BundleClassifier, resolve_factory
from cfattack.bundle.loader import DEFAULT_BUNDLE_DIR, Bundle, bundle_spec_path, load_bundle
from cfattack.bundle.spec import (
    BUNDLE_FORMAT,
    SPEC_FILENAME,
    BundleError,
    BundleSpec,
    ClassifierSpec,
    GeneratorSpec,
    ImageSpec,
    InputNormalization,
    Provenance,
    read_bundle_spec,
    write_bundle_spec,
)

__all__ = [
    "BUNDLE_FORMAT",
    "SPEC_FILENAME",
    "DEFAULT_BUNDLE_DIR",
    "BundleError",
    "ImageSpec",
    "GeneratorSpec",
    "InputNormalization",
    "ClassifierSpec",
    "Provenance",
    "BundleSpec",
    "BundleClassifier",
    "Bundle",
    "bundle_spec_path",
    "read_bundle_spec",
    "write_bundle_spec",
    "resolve_factory",
    "load_bundle",
]
