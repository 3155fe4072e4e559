"""Import paths from before the layout change keep working for one release (README notes it)."""

import subprocess
import sys

import cfattack


def test_old_module_paths_reexport_the_same_objects():
    from cfattack.attack import LatentAttack
    from cfattack.explainer import Explainer
    from cfattack.legacy import UnsafePickleError, load_generator, load_network_pkl

    assert Explainer is cfattack.Explainer
    assert LatentAttack is cfattack.LatentAttack
    assert load_network_pkl is cfattack.load_network_pkl
    assert load_generator is cfattack.load_generator
    assert UnsafePickleError is cfattack.UnsafePickleError


def test_old_torchrun_module_path_runs_the_batch_command():
    out = subprocess.run([sys.executable, "-m", "cfattack.cli_batch", "--help"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "--target" in out.stdout


def test_no_subpackage_shadows_a_public_name():
    # Importing a subpackage sets it as an attribute of `cfattack`; one named like a public
    # function (as `cfattack/explain/` once was) would replace that function.
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(cfattack.__path__):
        if info.name.startswith("_"):  # __main__ would run the command line
            continue
        importlib.import_module(f"cfattack.{info.name}")
        assert info.name not in cfattack._LAZY_EXPORTS, f"cfattack/{info.name} shadows cfattack.{info.name}"
    assert callable(cfattack.explain)
