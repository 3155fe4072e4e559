"""Model bundles: a folder with ``bundle.json`` naming a generator, an encoder, classifiers and
descriptor predictors; `load_bundle("default")` is the one shipped inside the package.
Classifiers that are code (factory, TorchScript) load only with ``trust_code=True``."""

from cfattack.bundle.classifier import BundleClassifier, resolve_factory
from cfattack.bundle.custom import bundle_from_networks
from cfattack.bundle.loader import DEFAULT_BUNDLE_DIR, Bundle, bundle_file, bundle_spec_path, load_bundle
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
from cfattack.bundle.trust import CODE_KINDS, TRUSTED_CODE_TIME_LIMIT_S

__all__ = [
    "BUNDLE_FORMAT",
    "SPEC_FILENAME",
    "DEFAULT_BUNDLE_DIR",
    "CODE_KINDS",
    "TRUSTED_CODE_TIME_LIMIT_S",
    "BundleError",
    "ImageSpec",
    "GeneratorSpec",
    "InputNormalization",
    "ClassifierSpec",
    "Provenance",
    "BundleSpec",
    "BundleClassifier",
    "Bundle",
    "bundle_file",
    "bundle_spec_path",
    "read_bundle_spec",
    "write_bundle_spec",
    "resolve_factory",
    "load_bundle",
    "bundle_from_networks",
]
