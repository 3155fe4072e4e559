"""One command line: --device auto|cpu|cuda[:N], --threads and --quiet everywhere, one --out rule, progress.

Progress goes to stderr: under CliRunner stderr is not a terminal, so a command prints exactly one
summary line there (none with --quiet), and stdout holds only the results.
"""

from __future__ import annotations

import filecmp
import json
import re
from pathlib import Path

import click
import pytest
import torch

from cfattack.cli.common import DEVICE, default_out, resolve_device
from cfattack.cli.compare import EXAMPLE_IMAGES
from cfattack.cli.explain import format_summary
from cfattack.cli.root import cli
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import Explanation
from tests.cfattack.cli.test_cli import REPO_ROOT, assert_one_line_failure, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = REPO_ROOT / "examples"
FAST = ("--inversion-steps", "3", "--steps", "30", "--lr", "0.05")

# command path -> whether it runs networks on a device / writes into an --out folder
RUNTIME = {
    ("explain",): True, ("batch",): True, ("compare",): True, ("generate",): True, ("metrics", "fd"): True,
    ("train", "gan"): True, ("train", "encoder"): True, ("train", "classifier"): True,
    ("train", "descriptors"): True, ("bundle", "create"): False, ("doctor",): False,
}
OUT_FOLDERS = [("batch",), ("compare",), ("generate",), ("train", "gan"), ("train", "encoder"),
               ("train", "classifier")]


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _option(path: tuple[str, ...], name: str) -> click.Option | None:
    return next((p for p in _command(path).params if p.name == name), None)


@pytest.mark.parametrize("path", list(RUNTIME))
def test_every_command_takes_the_same_device_and_threads(path):
    threads = _option(path, "threads")
    assert threads is not None and threads.default is None and "CFATTACK_THREADS" in threads.help
    device = _option(path, "device")
    if RUNTIME[path]:
        assert device is not None and device.default == "auto" and device.type is DEVICE, path
    else:
        assert device is None


@pytest.mark.parametrize("path", OUT_FOLDERS)
def test_out_defaults_to_a_folder_named_after_the_command(path):
    assert _option(path, "out").default == default_out(" ".join(path)) == Path("-".join(path))
    assert not _option(path, "out").required


def test_explain_and_descriptors_follow_the_rule_too():
    from cfattack.cli.explain import default_out_dir

    assert default_out_dir(Path("x/coat-1.png"), "T-shirt/top") == Path("explain/coat-1-to-T-shirt-top")
    assert _option(("train", "descriptors"), "out").default == Path("train-descriptors/descriptors.pt")


def test_device_values():
    assert DEVICE.convert("AUTO", None, None) == "auto"
    assert DEVICE.convert("cuda:1", None, None) == "cuda:1"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"


def test_auto_wants_a_gpu_per_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(torch.cuda.device_count() + 1))
    assert resolve_device("auto") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_is_one_line_before_any_work(tmp_path):
    with pytest.raises(InvalidInputError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    for args in (["explain", EXAMPLES / "coat-1.png", "--target", "bag"], ["batch", EXAMPLES, "--target", "bag"],
                 ["compare"], ["generate", "--network", "default", "--seeds", "0"], ["train", "gan"]):
        result = run_cli(*args, "--out", tmp_path / "o", "--device", "cuda:1")
        assert_one_line_failure(result, "--device cuda:1", "no CUDA GPU")
        assert result.exit_code == 1 and not (tmp_path / "o").exists()


def test_bad_device_and_thread_values(tmp_path, monkeypatch):
    result = run_cli("compare", "--out", tmp_path / "o", "--device", "gpu")
    assert_one_line_failure(result, "--device", "use auto, cpu, cuda, cuda:N or mps")
    assert result.exit_code == 2
    result = run_cli("generate", "--network", "default", "--seeds", "0", "--out", tmp_path / "o", "--threads", "0")
    assert_one_line_failure(result, "--threads")
    assert result.exit_code == 2
    monkeypatch.setenv("CFATTACK_THREADS", "lots")
    result = run_cli("generate", "--network", "default", "--seeds", "0", "--out", tmp_path / "o")
    assert_one_line_failure(result, "CFATTACK_THREADS='lots'")
    assert result.exit_code == 1 and not (tmp_path / "o").exists()


def _summary_line(result, command: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("target, steps", [("sneaker", "500"), ("bag", "3")])
def test_explain_summary_counts_the_real_steps(tmp_path, monkeypatch, target, steps):
    monkeypatch.chdir(tmp_path)
    args = ("explain", EXAMPLES / "ankle-boot-1.png", "--target", target, "--inversion-steps", "4", "--steps", steps)
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "explain" / f"ankle-boot-1-to-{target}"
    explanation = Explanation.model_validate(json.loads((out / "explanation.json").read_text()))
    line = _summary_line(result, "explain")
    assert re.search(r"explain: 1 image in [\d.]+ s \(load bundle [\d.]+ s, classify [\d.]+ s, invert ", line)
    assert f"attack {explanation.steps} steps " in line and "write report" in line
    # stdout: the results only, as before
    assert result.stdout.splitlines()[:-1] == format_summary(explanation)
    assert result.stdout.splitlines()[-1].startswith(f"report: {Path('explain') / out.name / 'explanation.html'}")
    quiet = run_cli(*args, "--quiet", "--out", tmp_path / "q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout.splitlines()[0] == result.stdout.splitlines()[0]


def test_explain_summary_counts_inversion_steps(tmp_path):
    result = run_cli("explain", EXAMPLES / "bag-1.png", "--target", "coat", "--out", tmp_path, *FAST)
    assert result.exit_code == 0, result.stderr
    assert "invert 3 steps " in _summary_line(result, "explain")


def test_batch_writes_into_its_default_folder_with_a_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("batch", EXAMPLES, "--target", "pullover", "--limit", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "batch" / "results.jsonl").is_file() and (tmp_path / "batch" / "global.html").is_file()
    assert re.fullmatch(r"batch: 2 items in [\d.]+ s \([\d.]+ items/s\); 0 failed, 0 finished before",
                        _summary_line(result, "batch"))
    assert result.stdout.startswith("done: 2 explained")


def test_compare_ships_its_example_images_and_reports_per_classifier(tmp_path, monkeypatch):
    shipped = sorted(p.name for p in EXAMPLE_IMAGES.glob("*.png"))
    assert shipped == sorted(p.name for p in EXAMPLES.glob("*.png")) and len(shipped) == 20
    assert all(filecmp.cmp(EXAMPLE_IMAGES / name, EXAMPLES / name, shallow=False) for name in shipped)
    assert EXAMPLE_IMAGES.parent.parent == Path(__import__("cfattack").__file__).parent  # inside the package
    monkeypatch.chdir(tmp_path)  # no examples/ here: the package's own images are used
    result = run_cli("compare", "--images", "2", "--classifiers", "baseline", "--no-realism", *FAST)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "compare" / "comparison.html").is_file()
    report = json.loads((tmp_path / "compare" / "comparison.json").read_text())
    assert [Path(p).name for p in report["images"]] == shipped[:2]
    assert re.fullmatch(r"compare: 1 classifiers x 2 images in [\d.]+ s \(baseline \d+ s\)",
                        _summary_line(result, "compare"))
