"""Tests of the ``cfattack`` command line: CliRunner in process, plus real subprocess runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import cfattack
from cfattack.cli.common import parse_seeds, parse_vec2
from cfattack.cli.root import cli, main
from cfattack.errors import InvalidInputError
from cfattack.stylegan.generator import Generator, make_transform
from cfattack.stylegan.checkpoint import save_generator_checkpoint
from tests.golden import build_golden_generator

REPO_ROOT = Path(__file__).resolve().parents[3]


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2 mixes stderr into output otherwise
    except TypeError:
        return CliRunner()  # click >= 8.2 keeps result.stderr apart always


def run_cli(*args: str, env: dict[str, str] | None = None):
    return _runner().invoke(cli, [str(a) for a in args], env=env)


def assert_one_line_failure(result, *fragments: str) -> str:
    """Non-zero exit, exactly one line on stderr naming the problem, no traceback anywhere."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cfattack: error: "), lines[0]
    assert "Traceback" not in result.output + result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] in [-1, 1] -> uint8 [H, W] or [H, W, 3], the mapping save_image uses."""
    pixels = (img[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _expected_image(G, seed: int, class_idx: int | None = None, psi: float = 1.0, translate=(0, 0), rotate=0.0):
    """What `cfattack generate` should write for one seed, computed directly."""
    G.synthesis.input.transform.copy_(torch.from_numpy(np.linalg.inv(make_transform(translate, rotate))))
    c = torch.zeros([1, G.c_dim])
    if class_idx is not None:
        c[0, class_idx] = 1
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return _to_uint8(G.synthesis(G.mapping(z, c, truncation_psi=psi), noise_mode="const", force_fp32=True))


# ---------------------------------------------------------------------------------------------
# Networks on disk.


@pytest.fixture(scope="module")
def golden_net(tmp_path_factory):
    """The golden conditional T32 grey generator (10 classes) saved as a cfattack checkpoint."""
    G, _ = build_golden_generator("T32_c10_gray")
    path = tmp_path_factory.mktemp("nets") / "golden_T32_c10_gray.pt"
    save_generator_checkpoint(G, path)
    return G, path


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    """A small random unconditional RGB generator (fast), saved as a cfattack checkpoint."""
    torch.manual_seed(0)
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        channel_base=64, channel_max=8, num_layers=4, mapping_kwargs={"num_layers": 1},
    ).eval()
    path = tmp_path_factory.mktemp("nets") / "tiny_uncond.pt"
    save_generator_checkpoint(G, path)
    return G, path


# ---------------------------------------------------------------------------------------------
# Option parsers.


@pytest.mark.parametrize(
    "text, seeds",
    [("0-7", list(range(8))), ("1,3,5-6", [1, 3, 5, 6]), ("5", [5]), (" 2 , 0-1 ", [2, 0, 1]), ("1,1,0-1", [1, 0]),
     ("4294967295", [2**32 - 1])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", ",", "a", "1-", "-1", "1.5", "3-1", "1,,2", "4294967296", "0-200000"])
def test_parse_seeds_rejects(text):
    with pytest.raises(InvalidInputError):
        parse_seeds(text)


def test_parse_vec2():
    assert parse_vec2("0.1,-0.2") == (0.1, -0.2)
    for bad in ("1", "1,2,3", "a,b", "nan,0", "inf,1"):
        with pytest.raises(InvalidInputError):
            parse_vec2(bad)


# ---------------------------------------------------------------------------------------------
# --version, --help, doctor.


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cfattack {cfattack.__version__}"


def test_main_returns_exit_code(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cfattack {cfattack.__version__}"
    assert main(["generate", "--seeds", "x"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("command", [[], ["doctor"], ["generate"]])
def test_help_has_examples(command):
    result = run_cli(*command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout


def test_bare_command_shows_help():
    result = run_cli()
    assert result.exit_code == 0
    assert "Commands:" in result.stdout and "generate" in result.stdout


def test_doctor_reports_versions_and_backends():
    result = run_cli("doctor", env={"CFATTACK_OPS": None})
    assert result.exit_code == 0, result.output  # with or without a GPU
    out = result.stdout
    for word in ("python", "numpy", "torch", "cuda available", "nvcc", "CFATTACK_OPS", "unset (means auto)"):
        assert word in out
    for op in ("bias_act", "upfirdn2d", "filtered_lrelu"):
        rows = [line.split() for line in out.splitlines() if line.split()[1:2] == [op]]
        assert [r[0] for r in rows] == ["cpu", "cuda"], out
        assert rows[0][2:4] == ["auto", "ref"]  # CPU tensors always use the reference
    if torch.version.cuda is None:
        assert "CPU-only build" in out
    if not torch.cuda.is_available():
        assert "cuda available  no" in out


def test_doctor_with_ref_policy():
    result = run_cli("doctor", env={"CFATTACK_OPS": "ref"})
    assert result.exit_code == 0
    assert "'ref'" in result.stdout
    assert "reference implementation was requested" in result.stdout


def test_doctor_flags_invalid_ops_setting():
    result = run_cli("doctor", env={"CFATTACK_OPS": "bogus"})
    assert result.exit_code == 1
    assert "invalid setting" in result.stdout and "bogus" in result.stdout
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# generate: real networks, real files.


def test_generate_golden_checkpoint_matches_direct_call(golden_net, tmp_path):
    G, path = golden_net
    out = tmp_path / "out"
    result = run_cli("generate", "--network", path, "--seeds", "0,3", "--class", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0003.png"]
    for seed in (0, 3):
        with Image.open(out / f"seed{seed:04d}.png") as pil:
            assert (pil.format, pil.mode, pil.size) == ("PNG", "L", (32, 32))
            pixels = np.asarray(pil)
        np.testing.assert_allclose(pixels, _expected_image(G, seed, class_idx=4), atol=1)
    assert "seed0003.png" in result.stdout


def test_generate_from_official_format_pickle(golden_net, tmp_path):
    from tests.tools.make_official_pickle import write_official_pickle

    G, _ = golden_net
    pkl = write_official_pickle(tmp_path / "network-snapshot.pkl", G)
    result = run_cli("generate", "--network", pkl, "--seeds", "5", "--class", "9", "--trunc", "0.7",
                     "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "seed0005.png") as pil:
        assert (pil.mode, pil.size) == ("L", (32, 32))
        np.testing.assert_allclose(np.asarray(pil), _expected_image(G, 5, class_idx=9, psi=0.7), atol=1)


def test_hostile_pickles_are_refused_in_one_line(tmp_path):
    from tests.tools.malicious_pickles import write_malicious_pickles

    cases = write_malicious_pickles(tmp_path / "pkl", tmp_path / "markers")
    assert cases
    for case in cases:
        result = run_cli("generate", "--network", case.path, "--seeds", "0", "--out", tmp_path / "out")
        if case.expected_global is not None:
            line = assert_one_line_failure(result)
            assert case.expected_global in line, (case.name, line)
        elif result.exit_code != 0:  # only allowed globals: it may fail, but in one line
            assert_one_line_failure(result)
        assert not case.marker.exists(), case.name


def test_generate_truncation_and_transform(tiny_net, tmp_path):
    G, path = tiny_net
    args = ["generate", "--network", path, "--seeds", "7", "--trunc", "0.5", "--translate", "0.1,-0.05",
            "--rotate", "15", "--out", tmp_path]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "seed0007.png") as pil:
        assert (pil.mode, pil.size) == ("RGB", (16, 16))
        pixels = np.asarray(pil)
    np.testing.assert_allclose(pixels, _expected_image(G, 7, psi=0.5, translate=(0.1, -0.05), rotate=15), atol=1)
    # The transform matters: without it the image differs.
    assert np.abs(pixels.astype(int) - _expected_image(G, 7, psi=0.5).astype(int)).max() > 5


def test_generate_into_existing_directory_overwrites(tiny_net, tmp_path):
    _, path = tiny_net
    for _ in range(2):
        assert run_cli("generate", "--network", path, "--seeds", "1", "--out", tmp_path).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0001.png"]


# ---------------------------------------------------------------------------------------------
# generate: every failure is one line, a non-zero exit code and no traceback.


def test_bad_seeds(tiny_net, tmp_path):
    _, path = tiny_net
    result = run_cli("generate", "--network", path, "--seeds", "3-1", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert_one_line_failure(result, "--seeds", "backwards")
    assert not (tmp_path / "o").exists()


def test_missing_network_file(tmp_path):
    result = run_cli("generate", "--network", tmp_path / "nope.pkl", "--seeds", "0", "--out", tmp_path / "o")
    assert_one_line_failure(result, "nope.pkl")


def test_missing_required_option(tmp_path):
    assert_one_line_failure(run_cli("generate", "--seeds", "0", "--out", tmp_path), "--network")


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"\x80\x04garbage", b"hello world\n"],
                         ids=["empty", "random", "bad-pickle", "text"])
def test_corrupt_network_file(tmp_path, content):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(content)
    result = run_cli("generate", "--network", bad, "--seeds", "0", "--out", tmp_path / "o")
    assert_one_line_failure(result)
    assert "unexpected" not in result.stderr  # a NetworkLoadError, not a crash


def test_conditional_network_without_class_draws_seed_mod_classes(golden_net, tmp_path):
    G, path = golden_net
    result = run_cli("generate", "--network", path, "--seeds", "3,14", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for seed in (3, 14):
        with Image.open(tmp_path / f"seed{seed:04d}.png") as pil:
            np.testing.assert_allclose(np.asarray(pil), _expected_image(G, seed, class_idx=seed % 10), atol=1)


def test_class_out_of_range(golden_net, tmp_path):
    _, path = golden_net
    result = run_cli("generate", "--network", path, "--seeds", "0", "--class", "10", "--out", tmp_path)
    assert_one_line_failure(result, "--class 10", "0..9")


def test_unconditional_network_refuses_class(tiny_net, tmp_path):
    _, path = tiny_net
    result = run_cli("generate", "--network", path, "--seeds", "0", "--class", "1", "--out", tmp_path)
    assert_one_line_failure(result, "unconditional")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tiny_net, tmp_path):
    _, path = tiny_net
    result = run_cli("generate", "--network", path, "--seeds", "0", "--device", "cuda", "--out", tmp_path)
    assert_one_line_failure(result, "cuda")


def test_out_is_a_file(tiny_net, tmp_path):
    _, path = tiny_net
    (tmp_path / "file").write_text("x")
    result = run_cli("generate", "--network", path, "--seeds", "0", "--out", tmp_path / "file")
    assert_one_line_failure(result, "file")


def test_disk_full_is_one_line(tiny_net, tmp_path, monkeypatch):
    _, path = tiny_net

    def disk_full(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    result = run_cli("generate", "--network", path, "--seeds", "0", "--out", tmp_path)
    assert_one_line_failure(result, "No space left on device", "seed0000.png")
    assert list(tmp_path.iterdir()) == []  # the temporary file was removed


def test_unexpected_error_suggests_debug(tiny_net, tmp_path, monkeypatch):
    _, path = tiny_net

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("cfattack.stylegan.loading.load_generator", boom)
    result = run_cli("generate", "--network", path, "--seeds", "0", "--out", tmp_path, env={"CFATTACK_DEBUG": None})
    line = assert_one_line_failure(result, "RuntimeError", "boom", "--debug", "CFATTACK_DEBUG=1")
    assert "unexpected" in line

    # With --debug (or CFATTACK_DEBUG=1) the exception is not swallowed.
    for args, env in ((("--debug",), {"CFATTACK_DEBUG": None}), ((), {"CFATTACK_DEBUG": "1"})):
        result = run_cli(*args, "generate", "--network", path, "--seeds", "0", "--out", tmp_path, env=env)
        assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom"


# ---------------------------------------------------------------------------------------------
# Real processes: the console script / python -m cfattack.


def _command() -> list[str]:
    script = shutil.which("cfattack", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cfattack"]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    full_env.pop("CFATTACK_DEBUG", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=full_env, cwd=REPO_ROOT)


def test_subprocess_version_and_module_entry_point():
    for command in (_command(), [sys.executable, "-m", "cfattack"]):
        proc = _run([*command, "--version"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"cfattack {cfattack.__version__}"


def test_subprocess_generate_and_failure(tiny_net, tmp_path):
    _, path = tiny_net
    proc = _run([*_command(), "generate", "--network", str(path), "--seeds", "0-1", "--out", str(tmp_path / "o")])
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["seed0000.png", "seed0001.png"]

    bad = tmp_path / "corrupt.pkl"
    bad.write_bytes(os.urandom(1000))
    proc = _run([*_command(), "generate", "--network", str(bad), "--seeds", "0", "--out", str(tmp_path / "o")])
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("cfattack: error: ")


def test_package_surface_is_lazy_but_complete():
    import cfattack.errors
    import cfattack.stylegan.generator
    import cfattack.stylegan.loading
    import cfattack.stylegan.official_pickle

    assert cfattack.Generator is cfattack.stylegan.generator.Generator
    assert cfattack.load_generator is cfattack.stylegan.loading.load_generator
    assert cfattack.load_network_pkl is cfattack.stylegan.official_pickle.load_network_pkl
    assert cfattack.UnsafePickleError is cfattack.errors.UnsafePickleError
    assert set(cfattack.__all__) <= set(dir(cfattack))
    for name in cfattack.__all__:
        assert getattr(cfattack, name) is not None
    with pytest.raises(AttributeError, match="no_such_name"):
        cfattack.no_such_name  # noqa: B018


def test_import_is_light():
    code = "import sys, cfattack, cfattack.cli.root; print(sorted({'torch', 'PIL', 'numpy'} & set(sys.modules)))"
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
