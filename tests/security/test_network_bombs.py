"""Hostile network files are refused quickly, cheaply and in one line (issue 18, bounded loading).

Every file is built here by `tests.security.hostile_networks` (kilobytes; no binary is
committed) and loaded in ONE child process (`tests.security.load_probe`) that reports each
outcome with its wall time and the growth of the process's peak resident memory
(``ru_maxrss``): the bounds are measured, not assumed. Without them these files cost from
3 GB to hundreds of GB, or hang for minutes, or crash Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cfattack.cli.root import cli
from tests.security.hostile_networks import write_hostile_networks
from tests.tools.malicious_pickles import write_malicious_pickles

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_SECONDS = 10
MAX_EXTRA_MB = 1024

# (file, loader, exception type, what the one line must say)
CASES = [
    ("shared_references.pkl", "network_pkl", "NetworkLoadError", "holds more than 100,000 values"),
    ("settings_bomb.pkl", "network_pkl", "NetworkLoadError", "holds more than 100,000 values"),
    ("module_tree_bomb.pkl", "network_pkl", "NetworkLoadError", "a module appears twice in the tree"),
    ("zero_stride_weights.pkl", "network_pkl", "NetworkLoadError", "has a zero stride"),
    ("zero_stride_weights.pkl", "generator", "NetworkLoadError", "has a zero stride"),
    ("overlapping_stride_weights.pkl", "network_pkl", "NetworkLoadError", "has overlapping strides"),
    ("huge_margin.pkl", "network_pkl", "NetworkLoadError", "margin_size=4096 is not an int in [0, 256]"),
    ("huge_activations.pkl", "generator", "NetworkLoadError", "would need 2,201,293,952 values per image"),
    ("ordered_dict_attributes.pkl", "network_pkl", "NetworkLoadError", "set attributes on an OrderedDict"),
    ("memo_index.pkl", "network_pkl", "NetworkLoadError", "expected a dict of networks"),
    ("bytearray8.pkl", "network_pkl", "NetworkLoadError", "protocol-5 bytearrays"),
    ("deep_tuples.pkl", "network_pkl", "NetworkLoadError", "nests tuples more than 256 levels deep"),
    ("many_objects.pkl", "generator", "NetworkLoadError", "more than 500,000 objects and references"),
    ("classifier_width.pt", "classifier", "NetworkLoadError", "weights do not fit the recorded architecture"),
    ("classifier_zero_stride.pt", "classifier", "NetworkLoadError", "has a zero stride"),
    ("checkpoint_zero_stride.pt", "generator", "NetworkLoadError", "has a zero stride"),
    ("checkpoint_zero_stride.pt", "encoder", "NetworkLoadError", "has a zero stride"),
    ("storage_size_lie.pt", "generator_checkpoint", "NetworkLoadError", "declares 1,000,000,000 elements"),
    ("storage_size_lie.pt", "descriptors", "NetworkLoadError", "declares 1,000,000,000 elements"),
    ("compressed_record.pt", "generator_checkpoint", "NetworkLoadError", "is compressed"),
    ("checkpoint_ordered_dict_attributes.pt", "generator_checkpoint", "NetworkLoadError",
     "set attributes on an OrderedDict"),
]
# Protocol 0/1 pickles calling a dangerous global: named as such, not "not a network".
UNSAFE = [("posix_system_protocol0", "posix.system"), ("nt_system_protocol0", "nt.system"),
          ("os_system_protocol1", "os.system"), ("builtins_eval_protocol0", "builtins.eval"),
          ("subprocess_popen_protocol0", "subprocess.Popen")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    found = {name: str(path) for name, path in write_hostile_networks(root / "networks").items()}
    for case in write_malicious_pickles(root / "pickles", root / "markers"):
        found[case.name] = str(case.path)
    return found


@pytest.fixture(scope="module")
def outcomes(files):
    cases = [[loader, files[name]] for name, loader, _, _ in CASES]
    cases += [[loader, files[name]] for name, _ in UNSAFE for loader in ("network_pkl", "generator")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CFATTACK_MAX_NETWORK_BYTES", None)
    done = subprocess.run([sys.executable, "-m", "tests.security.load_probe", json.dumps(cases)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {(r["loader"], os.path.basename(r["path"])): r for r in json.loads(done.stdout)}


def _assert_bounded(outcome: dict) -> None:
    assert outcome["seconds"] < MAX_SECONDS, outcome
    assert outcome["extra_mb"] < MAX_EXTRA_MB, outcome


@pytest.mark.parametrize(("name", "loader", "error", "fragment"), CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_hostile_file_is_refused_in_one_line_within_bounds(outcomes, name, loader, error, fragment):
    outcome = outcomes[(loader, name)]
    assert "loaded" not in outcome, outcome
    assert outcome["error"][0] == error and "CfattackError" in outcome["error"], outcome
    message = outcome["message"]
    assert fragment in message and name in message and "\n" not in message, message
    _assert_bounded(outcome)


@pytest.mark.parametrize(("name", "global_name"), UNSAFE)
@pytest.mark.parametrize("loader", ["network_pkl", "generator"])
def test_old_protocol_pickles_name_the_unsafe_global(outcomes, files, loader, name, global_name):
    outcome = outcomes[(loader, f"{name}.pkl")]
    assert outcome["error"][0] == "UnsafePickleError", outcome
    assert f"disallowed global {global_name!r}" in outcome["message"] and "\n" not in outcome["message"]
    _assert_bounded(outcome)
    marker = os.path.join(os.path.dirname(os.path.dirname(files[name])), "markers", f"{name}.marker")
    assert not os.path.exists(marker), "the payload ran"


def _cli():
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


@pytest.mark.parametrize(("name", "fragment"), [("module_tree_bomb.pkl", "appears twice"),
                                                ("huge_margin.pkl", "margin_size=4096"),
                                                ("posix_system_protocol0", "posix.system")])
def test_cli_generate_refuses_in_one_line(files, tmp_path, name, fragment):
    result = _cli().invoke(cli, ["generate", "--network", files[name], "--seeds", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfattack: error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_generate_refuses_in_a_real_process(files, tmp_path):
    done = subprocess.run([sys.executable, "-m", "cfattack", "generate", "--network", files["zero_stride_weights.pkl"],
                           "--seeds", "0", "--out", str(tmp_path / "o")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfattack: error: ") and "zero stride" in lines[0], done.stderr
