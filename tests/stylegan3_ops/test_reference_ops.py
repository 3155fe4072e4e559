"""Tests of the reference StyleGAN3 ops: golden cases from NVIDIA's code, policy, arguments.

The golden cases (``tests/data/golden/ops.{npz,json}``) were produced by NVIDIA's
StyleGAN3 reference ops on CPU; every case is checked here, forward and input
gradients. ``design_lowpass_filter`` cases belong to the generator's tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stylegan3_ops
from stylegan3_ops import (
    OPS,
    OpsBackendError,
    backend_report,
    bias_act,
    downsample2d,
    filter2d,
    filtered_lrelu,
    requested_impl,
    resolve_impl,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

_policy = sys.modules["stylegan3_ops._policy"]
_bias_act_module = sys.modules["stylegan3_ops.bias_act"]

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO_ROOT / "tests" / "data" / "golden"
OPS_JSON = json.loads((GOLDEN_DIR / "ops.json").read_text())
CASES = OPS_JSON["cases"]
TESTED_HERE = ("bias_act", "setup_filter", "upfirdn2d", "filtered_lrelu")
NOT_TESTED_HERE = ("design_lowpass_filter",)  # the generator's tests cover it

FWD_TOL = dict(atol=1e-5, rtol=1e-5)
GRAD_TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / "ops.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    """Every test starts from an unset CFATTACK_OPS and a fresh warn-once record."""
    monkeypatch.delenv("CFATTACK_OPS", raising=False)
    monkeypatch.setattr(_policy, "_warned_ops", set())


@pytest.fixture
def no_cuda_device(monkeypatch):
    """The fallback as on a machine without a GPU, also on one with a GPU where the kernels build:
    torch.cuda.is_available() reads False, so the policy never uses (or builds) the kernels."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _get(golden, op: str, index: int, field: str, requires_grad: bool = False) -> torch.Tensor | None:
    key = f"{op}/{index:03d}/{field}"
    if key not in golden:
        return None
    return torch.from_numpy(golden[key].copy()).requires_grad_(requires_grad)


def _case_id(op: str):
    def make_id(case: dict) -> str:
        detail = case.get("act") or case.get("filter_name") or case.get("source") or ""
        return f"{case['index']:03d}-{detail}" if detail else f"{case['index']:03d}"

    return make_id


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: dict) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {list(actual.shape)} != {list(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual, expected, **tol, msg=lambda m: f"{what}: {m}")


# --- golden data bookkeeping ---------------------------------------------------------


def test_golden_file_holds_the_expected_ops(golden):
    assert set(CASES) == set(TESTED_HERE) | set(NOT_TESTED_HERE)
    ops_in_npz = {key.split("/")[0] for key in golden}
    assert ops_in_npz <= set(CASES)
    for key, array in golden.items():
        assert array.dtype == np.float32, key
        op, index, _field = key.split("/")
        assert int(index) < len(CASES[op]), key


def test_activation_defaults_match_golden_table():
    table = OPS_JSON["bias_act_defaults"]
    assert set(table) == set(_bias_act_module.ACTIVATIONS)
    for act, defaults in table.items():
        spec = _bias_act_module.ACTIVATIONS[act]
        assert spec.def_alpha == pytest.approx(defaults["def_alpha"]), act
        assert spec.def_gain == pytest.approx(defaults["def_gain"]), act


# --- bias_act ------------------------------------------------------------------------


def _run_bias_act(golden, case):
    op, i = "bias_act", case["index"]
    x = _get(golden, op, i, "x", requires_grad=True)
    b = _get(golden, op, i, "b", requires_grad=True)
    assert (b is not None) == case["has_b"]
    y = bias_act(
        x, b, dim=case["dim"], act=case["act"], alpha=case["alpha"], gain=case["gain"], clamp=case["clamp"]
    )
    return x, b, y


@pytest.mark.parametrize("case", CASES["bias_act"], ids=_case_id("bias_act"))
def test_bias_act_forward(golden, case):
    _x, _b, y = _run_bias_act(golden, case)
    _assert_close(y, _get(golden, "bias_act", case["index"], "y"), "y", FWD_TOL)


@pytest.mark.parametrize("case", CASES["bias_act"], ids=_case_id("bias_act"))
def test_bias_act_gradients(golden, case):
    i = case["index"]
    x, b, y = _run_bias_act(golden, case)
    inputs = [x] if b is None else [x, b]
    grads = torch.autograd.grad(y, inputs, _get(golden, "bias_act", i, "dy"))
    _assert_close(grads[0], _get(golden, "bias_act", i, "dx"), "dx", GRAD_TOL)
    if b is not None:
        _assert_close(grads[1], _get(golden, "bias_act", i, "db"), "db", GRAD_TOL)


def test_bias_act_clamp_zero_gives_zeros():
    y = bias_act(torch.randn(2, 3, 4, 4), torch.randn(3), act="lrelu", clamp=0)
    assert torch.count_nonzero(y) == 0


def test_bias_act_negative_dim_matches_positive_dim():
    x, b = torch.randn(2, 3, 4, 5), torch.randn(5)
    torch.testing.assert_close(bias_act(x, b, dim=-1, act="tanh"), bias_act(x, b, dim=3, act="tanh"))


# --- setup_filter ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["setup_filter"], ids=_case_id("setup_filter"))
def test_setup_filter(golden, case):
    i = case["index"]
    f_in = _get(golden, "setup_filter", i, "f_in")
    assert (f_in is None) == (case["f_in"] is None)
    f = setup_filter(
        f_in,
        normalize=case["normalize"],
        flip_filter=case["flip_filter"],
        gain=case["gain"],
        separable=case["separable"],
    )
    assert list(f.shape) == case["f_out_shape"]
    _assert_close(f, _get(golden, "setup_filter", i, "f_out"), "f", FWD_TOL)
    # The same taps given as a plain list give the same filter.
    if case["f_in"] is not None:
        again = setup_filter(
            case["f_in"],
            normalize=case["normalize"],
            flip_filter=case["flip_filter"],
            gain=case["gain"],
            separable=case["separable"],
        )
        torch.testing.assert_close(again, f)


# --- upfirdn2d ------------------------------------------------------------------------


def _run_upfirdn2d(golden, case):
    i = case["index"]
    x = _get(golden, "upfirdn2d", i, "x", requires_grad=True)
    f = _get(golden, "upfirdn2d", i, "f")
    assert (f is not None) == case["has_f"]
    y = upfirdn2d(
        x,
        f,
        up=case["up"],
        down=case["down"],
        padding=case["padding"],
        flip_filter=case["flip_filter"],
        gain=case["gain"],
    )
    return x, y


@pytest.mark.parametrize("case", CASES["upfirdn2d"], ids=_case_id("upfirdn2d"))
def test_upfirdn2d_forward(golden, case):
    _x, y = _run_upfirdn2d(golden, case)
    assert list(y.shape) == case["y_shape"]
    _assert_close(y, _get(golden, "upfirdn2d", case["index"], "y"), "y", FWD_TOL)


@pytest.mark.parametrize("case", CASES["upfirdn2d"], ids=_case_id("upfirdn2d"))
def test_upfirdn2d_gradients(golden, case):
    i = case["index"]
    x, y = _run_upfirdn2d(golden, case)
    (dx,) = torch.autograd.grad(y, [x], _get(golden, "upfirdn2d", i, "dy"))
    _assert_close(dx, _get(golden, "upfirdn2d", i, "dx"), "dx", GRAD_TOL)


def _naive_upfirdn2d(x, f, upx, upy, downx, downy, pads, flip_filter, gain):
    """Textbook upfirdn2d, written independently: explicit zero stuffing, 2-D filter."""
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, h * upy, w * upx)
    stuffed[:, :, ::upy, ::upx] = x
    padx0, padx1, pady0, pady1 = pads
    padded = F.pad(stuffed, [padx0, padx1, pady0, pady1])
    kernel = f if f.ndim == 2 else torch.outer(f, f)
    kernel = kernel * gain
    if not flip_filter:
        kernel = kernel.flip([0, 1])
    weight = kernel[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(padded, weight, groups=c)[:, :, ::downy, ::downx]


@pytest.mark.parametrize("separable", [True, False], ids=["1d", "2d"])
@pytest.mark.parametrize(
    ("up", "down", "padding"),
    [
        (1, 1, [2, 1, 0, 3]),
        (2, 1, [3, 2, 4, 1]),
        (3, 1, [-2, 5, 1, -1]),
        (1, 2, [2, 2, 1, 3]),
        (1, 3, [0, -1, 3, 2]),
        (2, 2, [-3, 1, 2, 2]),
        ([2, 1], [1, 3], [1, 4, 2, 0]),
        ([1, 4], [2, 1], [5, -2, -6, 3]),
    ],
)
def test_upfirdn2d_matches_naive_zero_stuffing(up, down, padding, separable):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 7, 9, generator=gen, dtype=torch.float64)
    f = torch.randn(5, generator=gen, dtype=torch.float64)
    if not separable:
        f = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    for flip_filter, gain in [(False, 1.0), (True, 2.5)]:
        y = upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
        expected = _naive_upfirdn2d(x, f, upx, upy, downx, downy, padding, flip_filter, gain)
        torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)


def test_upfirdn2d_identity_without_filter():
    x = torch.randn(2, 3, 5, 6)
    assert torch.equal(upfirdn2d(x, None), x)


def test_upfirdn2d_padding_forms_agree():
    x, f = torch.randn(1, 2, 6, 6), setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(upfirdn2d(x, f, padding=2), upfirdn2d(x, f, padding=[2, 2, 2, 2]))
    torch.testing.assert_close(upfirdn2d(x, f, padding=[1, 3]), upfirdn2d(x, f, padding=[1, 1, 3, 3]))


def test_resampling_helpers_shapes_and_levels():
    x = torch.full((2, 3, 8, 10), 0.5)
    f = setup_filter([1, 3, 3, 1])
    f_sep = setup_filter([1, 2, 3, 4, 4, 3, 2, 1])
    assert f_sep.ndim == 1
    for filt in (f, f_sep):
        # A constant image stays constant away from the borders.
        up = upsample2d(x, filt)
        assert up.shape == (2, 3, 16, 20)
        torch.testing.assert_close(up[:, :, 4:-4, 4:-4], torch.full_like(up[:, :, 4:-4, 4:-4], 0.5))
        down = downsample2d(x, filt)
        assert down.shape == (2, 3, 4, 5)
        torch.testing.assert_close(down[:, :, 2:-2, 2:-2], torch.full_like(down[:, :, 2:-2, 2:-2], 0.5))
        same = filter2d(x, filt)
        assert same.shape == x.shape
        torch.testing.assert_close(same[:, :, 4:-4, 4:-4], x[:, :, 4:-4, 4:-4])
    # Without a filter: zero stuffing with gain up**2 keeps the mean, plain subsampling.
    up = upsample2d(x, None)
    assert up.shape == (2, 3, 16, 20)
    torch.testing.assert_close(up.mean(), torch.tensor(0.5))
    assert torch.equal(downsample2d(x, None), x[:, :, ::2, ::2])
    assert torch.equal(filter2d(x, None), x)
    assert upsample2d(x, f, up=[2, 3], padding=[1, 0, 0, 2]).shape == (2, 3, 26, 21)
    assert filter2d(x, f, padding=1).shape == (2, 3, 10, 12)


# --- filtered_lrelu -------------------------------------------------------------------


def _run_filtered_lrelu(golden, case):
    op, i = "filtered_lrelu", case["index"]
    x = _get(golden, op, i, "x", requires_grad=True)
    b = _get(golden, op, i, "b", requires_grad=True)
    fu, fd = _get(golden, op, i, "fu"), _get(golden, op, i, "fd")
    assert (b is not None, fu is not None, fd is not None) == (case["has_b"], case["has_fu"], case["has_fd"])
    y = filtered_lrelu(
        x,
        fu,
        fd,
        b,
        up=case["up"],
        down=case["down"],
        padding=case["padding"],
        gain=case["gain"],
        slope=case["slope"],
        clamp=case["clamp"],
        flip_filter=case["flip_filter"],
    )
    return x, b, y


@pytest.mark.parametrize("case", CASES["filtered_lrelu"], ids=_case_id("filtered_lrelu"))
def test_filtered_lrelu_forward(golden, case):
    _x, _b, y = _run_filtered_lrelu(golden, case)
    assert list(y.shape) == case["y_shape"]
    _assert_close(y, _get(golden, "filtered_lrelu", case["index"], "y"), "y", FWD_TOL)


@pytest.mark.parametrize("case", CASES["filtered_lrelu"], ids=_case_id("filtered_lrelu"))
def test_filtered_lrelu_gradients(golden, case):
    i = case["index"]
    x, b, y = _run_filtered_lrelu(golden, case)
    inputs = [x] if b is None else [x, b]
    grads = torch.autograd.grad(y, inputs, _get(golden, "filtered_lrelu", i, "dy"))
    _assert_close(grads[0], _get(golden, "filtered_lrelu", i, "dx"), "dx", GRAD_TOL)
    if b is not None:
        _assert_close(grads[1], _get(golden, "filtered_lrelu", i, "db"), "db", GRAD_TOL)


def test_filtered_lrelu_default_gain_is_sqrt2():
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(filtered_lrelu(x), F.leaky_relu(x, 0.2) * math.sqrt(2))


# --- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float16, 2e-2), (torch.bfloat16, 1e-1), (torch.float64, 1e-6)]
)
def test_ops_work_in_input_dtype(dtype, tol):
    gen = torch.Generator().manual_seed(3)
    x32 = torch.randn(2, 4, 12, 12, generator=gen)
    b32 = torch.randn(4, generator=gen) * 0.1
    fu = setup_filter(torch.rand(12, generator=gen) + 0.1)
    fd = setup_filter(torch.rand(6, 6, generator=gen) + 0.1)
    calls = {
        "bias_act": lambda x, b: bias_act(x, b, act="lrelu", clamp=2.0),
        "upfirdn2d": lambda x, b: upfirdn2d(x, fu, up=2, padding=[6, 5, 6, 5], gain=4),
        "upsample2d": lambda x, b: upsample2d(x, fd),
        "filtered_lrelu": lambda x, b: filtered_lrelu(
            x, fu, fd, b, up=2, down=2, padding=[8, 8, 8, 8], clamp=4.0
        ),
    }
    for name, call in calls.items():
        x = x32.to(dtype).requires_grad_()
        y = call(x, b32)  # the bias stays float32: it is cast to the dtype of x
        assert y.dtype == dtype, name
        y.float().square().sum().backward()
        assert x.grad is not None and x.grad.dtype == dtype, name
        expected = call(x32.double(), b32.double())
        torch.testing.assert_close(y.double(), expected, atol=tol, rtol=tol, msg=lambda m: f"{name}: {m}")


# --- bad arguments ------------------------------------------------------------------------

_X = torch.zeros(1, 2, 8, 8)
_F = torch.ones(4) / 4

BAD_CALLS = {
    "bias_act act": (lambda: bias_act(_X, act="gelu"), "act"),
    "bias_act dim": (lambda: bias_act(_X, torch.zeros(2), dim=4), "dim"),
    "bias_act b shape": (lambda: bias_act(_X, torch.zeros(3)), "b"),
    "bias_act clamp": (lambda: bias_act(_X, clamp=-1), "clamp"),
    "bias_act x int": (lambda: bias_act(torch.zeros(2, 2, dtype=torch.int64)), "x"),
    "bias_act impl": (lambda: bias_act(_X, impl="fast"), "impl"),
    "setup_filter 3d": (lambda: setup_filter(torch.ones(2, 2, 2)), "f"),
    "setup_filter empty": (lambda: setup_filter([]), "f"),
    "setup_filter separable 2d": (lambda: setup_filter(torch.ones(2, 2), separable=True), "separable"),
    "upfirdn2d x 3d": (lambda: upfirdn2d(torch.zeros(2, 8, 8), _F), "x"),
    "upfirdn2d f 3d": (lambda: upfirdn2d(_X, torch.ones(2, 2, 2)), "f"),
    "upfirdn2d up 0": (lambda: upfirdn2d(_X, _F, up=0), "up"),
    "upfirdn2d down 3-list": (lambda: upfirdn2d(_X, _F, down=[1, 2, 3]), "down"),
    "upfirdn2d up float": (lambda: upfirdn2d(_X, _F, up=1.5), "up"),
    "upfirdn2d padding 3-list": (lambda: upfirdn2d(_X, _F, padding=[1, 2, 3]), "padding"),
    "upfirdn2d padding float": (lambda: upfirdn2d(_X, _F, padding=1.0), "padding"),
    "upfirdn2d empty output": (lambda: upfirdn2d(_X, _F, padding=-3), "padding"),
    "upsample2d up": (lambda: upsample2d(_X, _F, up=0), "up"),
    "downsample2d padding": (lambda: downsample2d(_X, _F, padding="same"), "padding"),
    "filtered_lrelu b": (lambda: filtered_lrelu(_X, b=torch.zeros(3)), "b"),
    "filtered_lrelu fu": (lambda: filtered_lrelu(_X, fu=torch.ones(1, 1, 1)), "fu"),
    "filtered_lrelu fd": (lambda: filtered_lrelu(_X, fd=torch.ones(0)), "fd"),
    "filtered_lrelu up list": (lambda: filtered_lrelu(_X, up=[2, 2]), "up"),
    "filtered_lrelu down 0": (lambda: filtered_lrelu(_X, down=0), "down"),
    "filtered_lrelu gain": (lambda: filtered_lrelu(_X, gain=0), "gain"),
    "filtered_lrelu slope": (lambda: filtered_lrelu(_X, slope=-0.2), "slope"),
    "filtered_lrelu clamp": (lambda: filtered_lrelu(_X, clamp=-1), "clamp"),
    "filtered_lrelu padding": (lambda: filtered_lrelu(_X, _F, _F, padding=-4), "padding"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_arguments_raise_value_error_naming_them(name):
    call, argument = BAD_CALLS[name]
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call()


# --- backend policy ---------------------------------------------------------------------


def _fake_cuda_input() -> types.SimpleNamespace:
    # The policy only looks at the device; a stand-in avoids needing a GPU.
    return types.SimpleNamespace(device=torch.device("cuda", 0))


def test_requested_impl_reads_environment(monkeypatch):
    assert requested_impl(None) == "auto"
    for value in ("auto", "cuda", "ref"):
        monkeypatch.setenv("CFATTACK_OPS", value)
        assert requested_impl(None) == value
    monkeypatch.setenv("CFATTACK_OPS", " REF ")
    assert requested_impl(None) == "ref"
    monkeypatch.setenv("CFATTACK_OPS", "")
    assert requested_impl(None) == "auto"
    # An explicit impl wins over the environment.
    monkeypatch.setenv("CFATTACK_OPS", "cuda")
    assert requested_impl("ref") == "ref"


def test_invalid_impl_values_raise(monkeypatch):
    with pytest.raises(ValueError, match="impl.*'auto', 'cuda', 'ref'"):
        requested_impl("gpu")
    monkeypatch.setenv("CFATTACK_OPS", "gpu")
    with pytest.raises(ValueError, match="CFATTACK_OPS.*auto, cuda, ref.*'gpu'"):
        requested_impl(None)
    with pytest.raises(ValueError, match="CFATTACK_OPS"):
        bias_act(_X)


@pytest.mark.parametrize("op", OPS)
def test_resolve_impl_on_cpu(op, monkeypatch, recwarn):
    assert resolve_impl(op, None, _X) == "ref"
    assert resolve_impl(op, "auto", _X) == "ref"
    assert resolve_impl(op, "ref", _X) == "ref"
    monkeypatch.setenv("CFATTACK_OPS", "ref")
    assert resolve_impl(op, None, _X) == "ref"
    monkeypatch.setenv("CFATTACK_OPS", "auto")
    assert resolve_impl(op, None, _X) == "ref"
    assert not recwarn.list  # falling back on CPU inputs is the normal case: no warning
    with pytest.raises(ValueError, match="op"):
        resolve_impl("conv2d", None, _X)


@pytest.mark.parametrize("op", OPS)
def test_cuda_request_raises_backend_error(op, monkeypatch, no_cuda_device):
    for x in (_X, _fake_cuda_input()):
        with pytest.raises(OpsBackendError, match="docs/ops-troubleshooting.md"):
            resolve_impl(op, "cuda", x)
    monkeypatch.setenv("CFATTACK_OPS", "cuda")
    with pytest.raises(OpsBackendError, match="not built"):
        resolve_impl(op, None, _fake_cuda_input())
    assert issubclass(OpsBackendError, RuntimeError)


def test_ops_honour_cuda_request():
    with pytest.raises(OpsBackendError):
        bias_act(_X, impl="cuda")
    with pytest.raises(OpsBackendError):
        upfirdn2d(_X, _F, impl="cuda")
    with pytest.raises(OpsBackendError):
        upsample2d(_X, _F, impl="cuda")
    with pytest.raises(OpsBackendError):
        filtered_lrelu(_X, impl="cuda")


def test_auto_on_cuda_device_warns_once_per_op(no_cuda_device):
    with pytest.warns(RuntimeWarning, match="CUDA kernels are not built") as record:
        for _ in range(3):
            for op in OPS:
                assert resolve_impl(op, "auto", _fake_cuda_input()) == "ref"
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == len(OPS)
    for op in OPS:
        assert sum(f"stylegan3_ops.{op}:" in m for m in messages) == 1


def test_backend_report(monkeypatch, no_cuda_device):
    rows = backend_report()
    assert [row["op"] for row in rows] == list(OPS)
    for row in rows:
        assert set(row) == {"op", "requested", "backend", "reason"}
        assert (row["requested"], row["backend"]) == ("auto", "ref")
        assert isinstance(row["reason"], str) and row["reason"]
    for row in backend_report("cuda:0"):
        assert row["backend"] == "ref"
        assert "not built" in row["reason"]
    monkeypatch.setenv("CFATTACK_OPS", "cuda")
    for row in backend_report("cuda"):
        assert (row["requested"], row["backend"]) == ("cuda", "unavailable")
    monkeypatch.setenv("CFATTACK_OPS", "ref")
    assert {row["backend"] for row in backend_report("cuda")} == {"ref"}


def test_cuda_available_says_why_not(no_cuda_device):
    for op in OPS:
        ok, reason = _policy.cuda_available(op)
        assert ok is False and "not built" in reason


def test_public_api():
    assert set(stylegan3_ops.__all__) >= {"bias_act", "upfirdn2d", "filtered_lrelu", "setup_filter"}
    for name in stylegan3_ops.__all__:
        assert hasattr(stylegan3_ops, name), name


def test_import_is_free():
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "import stylegan3_ops\n"
        "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
