"""The trust model: bundles that carry code load only with trust, under a time limit; links may not leave the folder.

Every hostile case is rebuilt here from scratch: bundle.json files whose factories would run
commands, TorchScript programs (one that loops forever), and symbolic links out of the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import cfattack
from cfattack.bundle import load_bundle
from cfattack.bundle.classifier import BundleClassifier
from cfattack.bundle.loader import DEFAULT_BUNDLE_DIR, bundle_file
from cfattack.bundle.spec import BundleError
from cfattack.classifiers import build_classifier
from cfattack.classifiers.backbone import Classifier
from cfattack.classifiers.checkpoint import load_classifier_checkpoint, save_classifier_checkpoint
from cfattack.errors import CfattackError, InvalidInputError, UntrustedCodeError
from cfattack.pipeline.explainer import Explainer, explain
from tests.cfattack.bundle.test_bundle import CH, FACTORIES, K, RES, _bundle_dir, _one_line_error, _spec, assets  # noqa: F401
from tests.cfattack.bundle_factories import ScriptedForever, TinyNet
from tests.cfattack.cli.test_cli import assert_one_line_failure, run_cli

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "examples"
TRUST_HINT = ("--trust-code", "trust_code=True")


def _only(classifier: dict) -> dict:
    return _spec(classifiers={"c": classifier}, default_classifier="c")


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch >= 2.9 deprecates TorchScript with a FutureWarning; users still ship such files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the backbone's shape assert, constant when traced
        yield


# ---------------------------------------------------------------------------------------------
# Factories that would run commands.


def _os_system(marker: Path, tmp_path: Path) -> tuple[dict, str]:
    return {"factory": "os:system", "kwargs": {"command": f"touch {marker}"}}, "os:system"


def _subprocess_run(marker: Path, tmp_path: Path) -> tuple[dict, str]:
    return {"factory": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}}, "subprocess:run"


def _runpy_run_path(marker: Path, tmp_path: Path) -> tuple[dict, str]:
    script = tmp_path / "payload.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    return {"factory": "runpy:run_path", "kwargs": {"path_name": str(script)}}, "runpy:run_path"


@pytest.mark.parametrize("payload", [_os_system, _subprocess_run, _runpy_run_path])
def test_factories_that_run_commands_are_refused_without_trust(tmp_path, assets, payload):
    marker = tmp_path / "ran"
    fields, reference = payload(marker, tmp_path)
    directory = _bundle_dir(tmp_path, assets, _only({"kind": "factory", "file": "classifiers/tiny_state.pt", **fields}))

    with pytest.raises(UntrustedCodeError) as info:
        load_bundle(directory)
    message = _one_line_error(info)
    assert "classifier 'c'" in message and f"the factory '{reference}'" in message and "nothing was loaded" in message
    assert all(hint in message for hint in TRUST_HINT)
    assert isinstance(info.value, CfattackError) and not marker.exists()

    # The trust gate is what stopped it: trusted, the same bundle runs the command (then fails: not a network).
    with pytest.raises(BundleError, match="not a torch.nn.Module"):
        load_bundle(directory, trust_code=True)
    assert marker.exists()


def test_factory_module_is_not_even_imported_without_trust(tmp_path, assets, monkeypatch):
    module = f"cfattack_trust_probe_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom {FACTORIES} import make_net\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    classifier = {"kind": "factory", "file": "classifiers/tiny_state.pt", "factory": f"{module}:make_net",
                  "kwargs": {"in_channels": CH, "resolution": RES, "num_classes": K}}
    directory = _bundle_dir(tmp_path, assets, _only(classifier))

    with pytest.raises(UntrustedCodeError, match=f"the factory '{module}:make_net' with "):
        load_bundle(directory)
    assert module not in sys.modules and not marker.exists()

    b = load_bundle(directory, trust_code=True)
    assert module in sys.modules and marker.exists()
    reference = TinyNet(CH, RES, K)
    reference.load_state_dict(torch.load(assets / "classifiers" / "tiny_state.pt", weights_only=True))
    images = torch.rand(2, CH, RES, RES) * 2 - 1
    assert torch.allclose(b.classifier()(images), reference(images))


def test_every_code_classifier_is_named_in_one_line(tmp_path, assets):
    with pytest.raises(UntrustedCodeError) as info:
        load_bundle(_bundle_dir(tmp_path, assets, _spec()))  # one cfattack, one TorchScript, one factory classifier
    message = _one_line_error(info)
    assert "classifier 'scripted' would run the TorchScript program classifiers/tiny.ts" in message
    assert f"classifier 'factory' would run the factory '{FACTORIES}:make_net' with {{\"in_channels\": 1" in message
    assert "'baseline'" not in message


# ---------------------------------------------------------------------------------------------
# TorchScript.


def test_torchscript_is_refused_without_trust_and_loaded_with_it(tmp_path, assets, monkeypatch):
    calls = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    directory = _bundle_dir(tmp_path, assets, _only({"kind": "torchscript", "file": "classifiers/tiny.ts"}))

    with pytest.raises(UntrustedCodeError) as info:
        load_bundle(directory)
    message = _one_line_error(info)
    assert "classifier 'c' would run the TorchScript program classifiers/tiny.ts" in message
    assert all(hint in message for hint in TRUST_HINT) and calls == []

    b = load_bundle(directory, trust_code=True)
    assert len(calls) == 1 and b.classifier().verified  # trusted code is test-run at load time
    reference = TinyNet(CH, RES, K)
    reference.load_state_dict(torch.load(assets / "classifiers" / "tiny_state.pt", weights_only=True))
    images = torch.rand(3, CH, RES, RES) * 2 - 1
    assert torch.allclose(b.classifier()(images), reference(images), atol=1e-6)


_LOOP_SCRIPT = """
import sys, time
from cfattack.bundle import load_bundle, trust
from cfattack.errors import NetworkLoadError
for directory in sys.argv[1:]:
    began = time.monotonic()
    try:
        load_bundle(directory, trust_code=True, code_time_limit=1.0)
    except NetworkLoadError as exc:
        print(f"{time.monotonic() - began:.2f} {exc}", flush=True)
    else:
        sys.exit(4)
print("running", trust.runaway_threads(), flush=True)
trust.exit_if_code_still_runs(3)
sys.exit(5)
"""


def _looping_bundles(tmp_path: Path, assets: Path) -> tuple[Path, Path]:
    scripted = _bundle_dir(tmp_path, assets, _only({"kind": "torchscript", "file": "forever.ts"}), "scripted")
    with _quiet_jit():
        torch.jit.script(ScriptedForever()).save(str(scripted / "forever.ts"))
    factory = _bundle_dir(tmp_path, assets, _only({"kind": "factory", "file": "forever.pt",
                                                   "factory": f"{FACTORIES}:make_forever"}), "factory")
    torch.save({"weight": torch.ones(1)}, factory / "forever.pt")
    return scripted, factory


def _run_python(code: str, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return result, time.monotonic() - began


def test_trusted_code_that_loops_forever_fails_within_the_time_limit(tmp_path, assets):
    # In a child process: a thread running code that never returns cannot be stopped, only outlived.
    scripted, factory = _looping_bundles(tmp_path, assets)
    result, seconds = _run_python(_LOOP_SCRIPT, scripted, factory)
    lines = result.stdout.splitlines()
    assert result.returncode == 3, result.stdout + result.stderr  # ended by exit_if_code_still_runs, no abort
    assert len(lines) == 3 and lines[2] == "running 2", result.stdout
    for line, name in zip(lines, ("scripted", "factory")):
        elapsed, message = line.split(" ", 1)
        assert float(elapsed) < 5, line  # 1 s limit, measured around the whole load
        assert message.startswith("bundle 'tiny': classifier 'c': its code did not finish within 1 s"), line
        assert "cannot be stopped" in message
    assert "Traceback" not in result.stderr and "terminate called" not in result.stderr
    assert seconds < 60


def test_cli_exits_1_with_one_line_when_trusted_code_overruns(tmp_path, assets):
    scripted, _ = _looping_bundles(tmp_path, assets)
    code = ("import sys; from cfattack.bundle import trust; trust.TRUSTED_CODE_TIME_LIMIT_S = 1.0; "
            "from cfattack.cli.root import main; sys.exit(main(sys.argv[1:]))")
    result, seconds = _run_python(code, "explain", EXAMPLES / "coat-1.png", "--target", "bag", "--bundle", scripted,
                                  "--trust-code", "--quiet")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfattack: error: bundle 'tiny': classifier 'c': its code did not "
                                                   "finish within 1 s"), result.stderr
    assert seconds < 60


@pytest.mark.parametrize("limit", [0, -1.0, float("nan"), float("inf"), "10"])
def test_code_time_limit_must_be_positive_and_finite(tmp_path, assets, limit):
    with pytest.raises(InvalidInputError, match="code_time_limit must be a positive, finite number"):
        load_bundle(_bundle_dir(tmp_path, assets, _spec()), trust_code=True, code_time_limit=limit)


# ---------------------------------------------------------------------------------------------
# Weights-only networks: no trust, nothing run at load time.


def test_weights_only_bundle_needs_no_trust_and_runs_nothing_at_load(tmp_path, assets, monkeypatch):
    calls = []
    real_forward = Classifier.forward
    monkeypatch.setattr(Classifier, "forward", lambda self, x: calls.append(x.shape) or real_forward(self, x))
    spec = _spec(generator={"file": "generator.pkl", "kind": "stylegan3-pkl"},
                 classifiers={"baseline": {"kind": "cfattack", "file": "classifiers/baseline.pt"},
                              "aliased": {"kind": "cfattack", "file": "classifiers/aliased.pt"}})
    b = load_bundle(_bundle_dir(tmp_path, assets, spec))
    assert calls == [] and not any(clf.verified for clf in b.classifiers.values())
    assert b.classifier()(torch.zeros(2, CH, RES, RES)).shape == (2, K)
    assert calls == [(2, CH, RES, RES)] and b.classifier().verified


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 7}, "the checkpoint has 7 outputs per image for 10 classes"),
        ({"num_classes": K, "in_channels": 3}, "reads 3-channel images but the bundle's have 1"),
        ({"num_classes": K, "backbone": "mlp", "image_size": 32}, "reads 32x32 images but the bundle's are 16x16"),
    ],
)
def test_cfattack_classifier_shapes_are_checked_without_running_it(tmp_path, assets, kwargs, match):
    directory = _bundle_dir(tmp_path, assets, _only({"kind": "cfattack", "file": "odd.pt"}))
    save_classifier_checkpoint(build_classifier(embedding_dim=8, width=4, **kwargs), directory / "odd.pt", metadata={})
    with pytest.raises(BundleError, match=match) as info:
        load_bundle(directory)
    assert _one_line_error(info).startswith("bundle 'tiny': classifier 'c'")


def test_first_call_failure_is_one_line_then_errors_pass_through():
    clf = BundleClassifier(TinyNet(3, RES, K), name="rgb", num_classes=K, img_channels=CH, img_resolution=RES)
    with pytest.raises(BundleError, match=r"classifier 'rgb' fails on images of shape \[2, 1, 16, 16\] \(RuntimeError: ") \
            as info:
        clf(torch.zeros(2, CH, RES, RES))
    _one_line_error(info)
    assert not clf.verified
    good = BundleClassifier(TinyNet(CH, RES, K), name="ok", num_classes=K, img_channels=CH, img_resolution=RES)
    good(torch.zeros(1, CH, RES, RES))
    assert good.verified


# ---------------------------------------------------------------------------------------------
# Symbolic links.


def test_links_that_leave_the_bundle_folder_are_refused(tmp_path, assets):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(assets / "classifiers" / "baseline.pt", outside / "baseline.pt")
    spec = _spec(classifiers={"baseline": {"kind": "cfattack", "file": "classifiers/linked.pt"}})
    directory = _bundle_dir(tmp_path, assets, spec)
    (directory / "classifiers" / "linked.pt").symlink_to(outside / "baseline.pt")
    with pytest.raises(BundleError) as info:
        load_bundle(directory)
    message = _one_line_error(info)
    assert (f"classifier 'baseline' (classifiers/linked.pt) is a link to {outside / 'baseline.pt'}, outside the "
            "bundle folder; paths may not leave it") in message

    # The same file linked from inside the folder is fine.
    (directory / "classifiers" / "linked.pt").unlink()
    (directory / "classifiers" / "linked.pt").symlink_to("baseline.pt")
    assert load_bundle(directory).classifier().name == "baseline"


def test_linked_folders_devices_and_loops_are_refused(tmp_path, assets):
    directory = _bundle_dir(tmp_path, assets, _spec(classifiers={"baseline": {"kind": "cfattack",
                                                                               "file": "nets/baseline.pt"}}))
    (directory / "nets").symlink_to(assets / "classifiers", target_is_directory=True)
    (directory / "descriptors.pt").unlink()
    (directory / "descriptors.pt").symlink_to("/dev/zero")
    (directory / "encoder.pt").unlink()
    (directory / "encoder.pt").symlink_to(directory / "encoder.pt")  # a link to itself
    with pytest.raises(BundleError) as info:
        load_bundle(directory)
    message = _one_line_error(info)
    assert "encoder (encoder.pt) cannot be resolved" in message
    assert f"classifier 'baseline' (nets/baseline.pt) is a link to {assets / 'classifiers' / 'baseline.pt'}" in message
    assert "descriptor model (descriptors.pt) is a link to /dev/zero" in message


def test_single_file_readers_refuse_links_out_too(tmp_path, assets):
    directory = _bundle_dir(tmp_path, assets, _spec(classifiers={"b": {"kind": "cfattack",
                                                                        "file": "classifiers/baseline.pt"}},
                                                    default_classifier="b"))
    b = load_bundle(directory)
    (directory / "generator.pt").unlink()
    (directory / "generator.pt").symlink_to(assets / "generator.pt")
    with pytest.raises(BundleError, match="generator.pt is a link to .*outside the bundle folder"):
        bundle_file(directory / "bundle.json", "generator.pt")
    with pytest.raises(InvalidInputError, match="generator.pt is a link to .*outside the bundle folder"):
        b.path("generator.pt")
    result = run_cli("generate", "--network", directory, "--seeds", "0", "--out", tmp_path / "out")
    assert_one_line_failure(result, "generator.pt is a link to", "outside the bundle folder")


# ---------------------------------------------------------------------------------------------
# The default bundle's networks behind a TorchScript classifier: explain, Explainer, bundle create.


@pytest.fixture(scope="module")
def scripted_default(tmp_path_factory) -> Path:
    """The default bundle with its baseline classifier as a (benign) TorchScript program."""
    directory = tmp_path_factory.mktemp("scripted_default")
    spec = json.loads((DEFAULT_BUNDLE_DIR / "bundle.json").read_text(encoding="utf-8"))
    for name in ("generator.pt", "encoder.pt", "descriptors.pt"):
        shutil.copy(DEFAULT_BUNDLE_DIR / name, directory / name)
    net, _ = load_classifier_checkpoint(DEFAULT_BUNDLE_DIR / "classifiers" / "baseline.pt")
    with _quiet_jit():
        torch.jit.trace(net, torch.zeros(2, 1, 32, 32)).save(str(directory / "scripted.ts"))
    spec["classifiers"] = {"scripted": {"kind": "torchscript", "file": "scripted.ts"}}
    spec["default_classifier"] = "scripted"
    (directory / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    return directory


@pytest.mark.usefixtures("one_thread")
def test_cli_explain_needs_trust_code_for_a_torchscript_bundle(tmp_path, scripted_default):
    args = ("explain", EXAMPLES / "trouser-1.png", "--target", "dress", "--bundle", scripted_default,
            "--inversion-steps", "5", "--quiet")
    refused = run_cli(*args, "--out", tmp_path / "refused")
    line = assert_one_line_failure(refused, "classifier 'scripted' would run the TorchScript program scripted.ts",
                                   "--trust-code")
    assert refused.exit_code == 1 and "trust_code=True" in line and not (tmp_path / "refused").exists()

    result = run_cli(*args, "--out", tmp_path / "report", "--trust-code")
    assert result.exit_code == 0, result.output + result.stderr
    assert "-> dress" in result.stdout.splitlines()[0]
    report = json.loads((tmp_path / "report" / "explanation.json").read_text())
    assert report["classifier"] == "scripted"


@pytest.mark.usefixtures("one_thread")
def test_cli_batch_and_compare_need_trust_code_too(tmp_path, scripted_default):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(EXAMPLES / "trouser-1.png", images / "trouser-1.png")
    batch = ("batch", images, "--target", "dress", "--out", tmp_path / "job", "--bundle", scripted_default,
             "--inversion-steps", "5", "--quiet")
    compare = ("compare", EXAMPLES / "trouser-1.png", "--targets", "dress", "--bundle", scripted_default,
               "--no-realism", "--out", tmp_path / "compare", "--quiet")
    for args in (batch, compare):
        assert_one_line_failure(run_cli(*args), "classifier 'scripted' would run the TorchScript program", "--trust-code")
    result = run_cli(*batch, "--trust-code")
    assert result.exit_code == 0, result.output + result.stderr
    assert len((tmp_path / "job" / "results.jsonl").read_text().splitlines()) == 1


def test_explainer_threads_trust_code(scripted_default):
    with pytest.raises(UntrustedCodeError, match="classifier 'scripted'"):
        Explainer(scripted_default)
    with pytest.raises(UntrustedCodeError):
        explain(EXAMPLES / "trouser-1.png", "dress", bundle=scripted_default)
    explainer = Explainer(scripted_default, trust_code=True)
    assert explainer.bundle.classifier().verified and explainer.bundle.default_classifier == "scripted"
    assert cfattack.UntrustedCodeError is UntrustedCodeError


def test_bundle_create_takes_code_classifiers_only_with_trust(tmp_path, scripted_default):
    state = tmp_path / "tiny_state.pt"
    torch.save(TinyNet(1, 32, 10).state_dict(), state)
    base = ("bundle", "create", tmp_path / "made", "--generator", DEFAULT_BUNDLE_DIR / "generator.pt",
            "--data", "fashion-mnist", "--name", "made", "--classifier", f"scripted={scripted_default / 'scripted.ts'}",
            "--classifier", f"tiny={state}", "--classifier-spec",
            'tiny={"kind": "factory", "factory": "' + FACTORIES + ':make_net", "kwargs": {"resolution": 32}}')
    refused = run_cli(*base)
    line = assert_one_line_failure(refused, "classifier 'scripted'", "classifier 'tiny'", "--trust-code")
    assert "nothing was written" in line and not (tmp_path / "made").exists()

    result = run_cli(*base, "--trust-code")
    assert result.exit_code == 0, result.output + result.stderr
    spec = json.loads((tmp_path / "made" / "bundle.json").read_text())
    assert spec["classifiers"]["scripted"]["kind"] == "torchscript" and spec["default_classifier"] == "scripted"
    assert spec["classifiers"]["tiny"]["factory"] == f"{FACTORIES}:make_net"
    assert load_bundle(tmp_path / "made", trust_code=True).classifier("tiny").verified

    bad = run_cli(*base[:-1], "tiny=[1, 2]", "--trust-code")
    assert_one_line_failure(bad, "--classifier-spec tiny: expected a JSON object")
    plain = run_cli(*base[:-2], "--trust-code")  # a state dict without its factory
    assert_one_line_failure(plain, "classifier 'tiny'", "needs kind 'factory'")
