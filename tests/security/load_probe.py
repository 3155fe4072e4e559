"""Child process of the hostile-input tests: load files, report each outcome, time and memory.

    python -m tests.security.load_probe '[["network_pkl", "bomb.pkl"], ...]'

Prints one JSON list: per file the loader's outcome (``error`` type names along the MRO and
the message, or ``loaded``), its wall time, and the growth of the process's peak resident
memory (``ru_maxrss``) since just before the first load. The peak only grows, so each value is
an upper bound for that file. An address-space cap (baseline + 4 GB) turns a regression into
a MemoryError here instead of exhausting the machine.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any, Callable


def _loaders() -> dict[str, Callable[[str], Any]]:
    from cfattack.attribution.predictors import load_descriptor_model
    from cfattack.classifiers.checkpoint import load_classifier_checkpoint
    from cfattack.inversion.encoder import load_encoder_checkpoint
    from cfattack.stylegan.checkpoint import load_generator_checkpoint
    from cfattack.stylegan.loading import load_generator
    from cfattack.stylegan.official_pickle import load_network_pkl

    return {
        "network_pkl": load_network_pkl,
        "generator": load_generator,
        "generator_checkpoint": load_generator_checkpoint,
        "classifier": load_classifier_checkpoint,
        "encoder": load_encoder_checkpoint,
        "descriptors": load_descriptor_model,
    }


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def main(argv: list[str]) -> int:
    cases = json.loads(argv[0])
    loaders = _loaders()
    import scipy.special  # noqa: F401  (radial filters import it lazily; not a cost of the file)

    cap = _vm_bytes() + 4 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    for loader, path in cases:
        start = time.perf_counter()
        outcome: dict[str, Any] = {"loader": loader, "path": path}
        try:
            loaders[loader](path)
            outcome["loaded"] = True
        except BaseException as exc:  # report everything, including what should never escape
            outcome["error"] = [cls.__name__ for cls in type(exc).__mro__]
            outcome["message"] = str(exc)
        outcome["seconds"] = time.perf_counter() - start
        outcome["extra_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
        results.append(outcome)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
