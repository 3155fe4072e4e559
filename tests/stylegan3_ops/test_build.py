"""Tests of the CUDA ops' build machinery and of the kernels' index maths, without a GPU.

* The kernels' tile/polyphase arithmetic (csrc/resample_core.h, csrc/bias_act_core.h) is
  compiled for the CPU with the host C++ compiler (csrc/emulate.cpp runs one thread block
  at a time) and checked against the reference ops, forward and backward, for random
  shapes, factors, paddings and filters and for the generator's layer configurations.
* The build: cache key, cache location, arch flags, the file lock, concurrent builds,
  the report of a failed compile (naming its log), the policy's fallback and
  ``cfattack doctor --build``.
* The real extension is compiled whenever nvcc, ninja and a CUDA build of torch are
  present, GPU or not, so that CI catches compile errors (slow: minutes on 2 cores;
  cached afterwards).
"""

from __future__ import annotations

import ctypes
import math
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan3_ops import OpsBackendError, _build, _kernels, resolve_impl
from stylegan3_ops.bias_act import ACTIVATIONS, _bias_act_ref
from stylegan3_ops.filtered_lrelu import _filtered_lrelu_ref
from stylegan3_ops.upfirdn2d import _upfirdn2d_ref

_policy = sys.modules["stylegan3_ops._policy"]
CSRC = _build.CSRC_DIR
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# CPU emulation of the kernels.


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The kernels' shared headers compiled for the CPU (csrc/emulate.cpp) and loaded with ctypes."""
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no host C++ compiler (c++, g++ or clang++) on PATH to build the CPU emulation")
    lib_path = tmp_path_factory.mktemp("emu") / "sg3emu.so"
    result = subprocess.run(
        [cxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(lib_path), str(CSRC / "emulate.cpp")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lib = ctypes.CDLL(str(lib_path))
    P, F, I = ctypes.c_void_p, ctypes.c_float, ctypes.c_int  # noqa: E741
    lib.sg3_resample_f32.argtypes = [P, P, P, P, P, P, P, F, F, F, I, I, P, I]
    lib.sg3_resample_f32.restype = I
    L = ctypes.c_longlong
    lib.sg3_bias_act_f32.argtypes = [P, P, P, P, P, L, L, L, I, I, F, F, F]
    lib.sg3_bias_act_f32.restype = None
    lib.sg3_bias_act_vec_f32.argtypes = [P, P, P, P, P, L, L, L, I, I, F, F, F]
    lib.sg3_bias_act_vec_f32.restype = None
    return lib


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.ascontiguousarray(t.detach().to(torch.float32).numpy())


def emulate_resample(lib, plan, src, bias=None, mask=None, tile=(8, 8), tile_used=None):
    """Run ``plan`` on the CPU emulation: ``(dst, mask written by a forward pass or None)``.

    ``tile=None``: the tile the GPU launcher would pick (csrc/resample_core.h's pick_tile);
    ``tile_used``, a list, receives the tile that ran."""
    tile = (0, 0) if tile is None else tile
    n, c, h, w = src.shape
    s, b = _np(src), _np(bias)
    ints = np.array([n * c, c, h, w, *plan.ints], dtype=np.int64)
    dst = np.zeros((n, c, plan.dst_h, plan.dst_w), np.float32)
    f1, f3 = _np(plan.f1.values), _np(plan.f3.values)
    dims = np.zeros(4, np.int32)

    def call(m, query):
        return lib.sg3_resample_f32(
            _ptr(s), _ptr(dst), _ptr(b), _ptr(m), _ptr(f1), _ptr(f3), _ptr(ints),
            plan.slope, plan.gain, plan.clamp, tile[0], tile[1], _ptr(dims), query,
        )  # fmt: skip

    mode, write_mask = plan.ints[16], plan.ints[17]
    out_mask = None
    if mode == _kernels.LRELU_FORWARD and write_mask:
        call(None, 1)
        out_mask = np.full((n * c, dims[0], dims[1]), 0xAA, np.uint8)  # garbage: every byte must be written
        call(out_mask, 0)
    elif mode == _kernels.MASK_BACKWARD:
        mask = np.ascontiguousarray(mask)
        dims[:2] = mask.shape[1:]
        call(mask, 0)
    else:
        call(None, 0)
    if tile_used is not None:
        tile_used[:] = [int(dims[2]), int(dims[3])]
    return torch.from_numpy(dst), out_mask


def _filter(kind: str, taps: int, rng: random.Random) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "1d":
        return torch.randn(taps, dtype=torch.float64)
    return torch.randn(taps, taps + rng.choice([0, 1]), dtype=torch.float64)


def _size(f):
    return (1, 1) if f is None else (int(f.shape[-1]), int(f.shape[0]))


def _close(actual, expected, what, rtol=1e-4):
    scale = max(1.0, expected.abs().max().item())
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rtol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def _upfirdn2d_cases(count: int, seed: int):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        if len(cases) % 4 == 3:  # the kernel's specialised passes: 12 taps at 2x, 24 taps at 4x
            factor = rng.choice([2, 4])
            f = torch.randn(6 * factor, dtype=torch.float64)
            up, down = rng.choice([([factor, factor], [1, 1]), ([1, 1], [factor, factor]), ([factor, 1], [1, 2])])
        else:
            f = _filter(rng.choice(["none", "1d", "2d"]), rng.randint(1, 7), rng)
            up = [rng.randint(1, 3), rng.randint(1, 3)]
            down = [rng.randint(1, 3), rng.randint(1, 3)]
        pad = [rng.randint(-3, 5) for _ in range(4)]
        h, w = rng.randint(3, 30), rng.randint(3, 30)
        fw, fh = _size(f)
        if w * up[0] + pad[0] + pad[1] < fw or h * up[1] + pad[2] + pad[3] < fh:
            continue
        if w * up[0] + min(pad[0], 0) + min(pad[1], 0) <= 0 or h * up[1] + min(pad[2], 0) + min(pad[3], 0) <= 0:
            continue
        cases.append((f, up, down, pad, h, w, rng.random() < 0.5, rng.choice([1.0, 4.0, -1.5]), rng.choice([(4, 4), (8, 4), (16, 8)])))
    return cases


@pytest.mark.parametrize("case", _upfirdn2d_cases(60, 0), ids=lambda c: f"up{c[1]}-down{c[2]}-pad{c[3]}")
def test_emulated_upfirdn2d_matches_reference(emu, case):
    f, (upx, upy), (downx, downy), pad, h, w, flip, gain, tile = case
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    ref = _upfirdn2d_ref(x, f, upx, upy, downx, downy, *pad, flip, gain)
    plan = _kernels.upfirdn2d_plan(h, w, f, upx, upy, downx, downy, *pad, flip, gain, CPU)
    y, _ = emulate_resample(emu, plan, x, tile=tile)
    _close(y, ref, "forward")
    # The backward plan the CUDA op uses: upfirdn2d with swapped factors and flipped filter.
    out_h, out_w = ref.shape[2:]
    fw, fh = _size(f)
    p = [fw - pad[0] - 1, w * upx - out_w * downx + pad[0] - upx + 1, fh - pad[2] - 1, h * upy - out_h * downy + pad[2] - upy + 1]
    dy = torch.randn_like(ref)
    (dx_ref,) = torch.autograd.grad(ref, x, dy)
    back = _kernels.upfirdn2d_plan(out_h, out_w, f, downx, downy, upx, upy, *p, not flip, gain, CPU)
    dx, _ = emulate_resample(emu, back, dy, tile=tile)
    _close(dx, dx_ref, "backward")


def _filtered_lrelu_cases(seed: int):
    rng = random.Random(seed)
    cases = []
    # The generator's layers (512px T and R, smaller sizes): fu 1-D, fd 1-D or radial 2-D.
    for up, taps, pad, size in [(2, 12, [9, 8, 9, 8], 20), (4, 24, [-6, -9, -6, -9], 14), (2, 12, [-11, -12, -11, -12], 30),
                                (2, 12, [11, 10, 11, 10], 18), (4, 24, [-2, -5, -2, -5], 16)]:  # fmt: skip
        for radial in (False, True):
            fd = torch.randn(12, 12, dtype=torch.float64) if radial else torch.randn(12, dtype=torch.float64)
            cases.append((torch.randn(taps, dtype=torch.float64), fd, up, 2, pad, size, size + 1, False, math.sqrt(2), 0.2, 256.0))
    cases.append((None, None, 1, 1, [0, 0, 0, 0], 9, 11, False, 1.0, 1.0, 256.0))  # ToRGB
    while len(cases) < 70:
        up, down = rng.choice([1, 2, 4]), rng.choice([1, 2, 3])
        fu = _filter(rng.choice(["none", "1d", "2d"]), rng.randint(1, 3 * up + 2), rng)
        fd = _filter(rng.choice(["none", "1d", "2d"]), rng.randint(1, 3 * down + 2), rng)
        pad = [rng.randint(-3, 8) for _ in range(4)]
        h, w = rng.randint(3, 14), rng.randint(3, 14)
        (fu_w, fu_h), (fd_w, fd_h) = _size(fu), _size(fd)
        if w * up + pad[0] + pad[1] - fu_w + 1 < fd_w or h * up + pad[2] + pad[3] - fu_h + 1 < fd_h:
            continue
        if w * up + min(pad[0], 0) + min(pad[1], 0) <= 0 or h * up + min(pad[2], 0) + min(pad[3], 0) <= 0:
            continue
        cases.append((fu, fd, up, down, pad, h, w, rng.random() < 0.5, rng.choice([1.0, math.sqrt(2)]),
                      rng.choice([0.2, 1.0, 0.0]), rng.choice([None, 0.5, 256.0])))  # fmt: skip
    return cases


@pytest.mark.parametrize("case", _filtered_lrelu_cases(1), ids=lambda c: f"up{c[2]}-down{c[3]}-pad{c[4]}-{c[5]}x{c[6]}")
def test_emulated_filtered_lrelu_matches_reference(emu, case):
    fu, fd, up, down, pad, h, w, flip, gain, slope, clamp = case
    rng = random.Random(h * 100 + w)
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    ref = _filtered_lrelu_ref(x, fu, fd, b, up, down, *pad, gain, slope, clamp, flip)
    plan = _kernels.filtered_lrelu_forward_plan(h, w, fu, fd, up, down, *pad, gain, slope, clamp, flip, True, CPU)
    y, mask = emulate_resample(emu, plan, x, bias=b, tile=rng.choice([(4, 4), (8, 4), (12, 12), (16, 8), (20, 20), (32, 32)]))
    _close(y, ref, "forward")
    dy = torch.randn_like(ref)
    dx_ref, db_ref = torch.autograd.grad(ref, (x, b), dy)
    back = _kernels.filtered_lrelu_backward_plan(
        h, w, ref.shape[2], ref.shape[3], fu, fd, up, down, pad[0], pad[2], gain, slope, flip, CPU
    )
    dx, _ = emulate_resample(emu, back, dy, mask=mask, tile=rng.choice([(4, 4), (8, 8), (12, 12), (16, 16), (36, 36)]))
    _close(dx, dx_ref, "dx")
    _close(dx.double().sum([0, 2, 3]), db_ref, "db", rtol=1e-3)


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_emulated_bias_act_matches_reference_to_second_order(emu, act, clamp):
    spec = ACTIVATIONS[act]
    alpha, gain = spec.def_alpha, spec.def_gain
    x = (torch.randn(3, 5, 4, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(5, dtype=torch.float64)
    dy = torch.randn(3, 5, 4, dtype=torch.float64)
    ggx = torch.randn(3, 5, 4, dtype=torch.float64)
    ref = _bias_act_ref(x, b, 1, spec, alpha, gain, clamp)
    (dx_ref,) = torch.autograd.grad(ref, x, dy, create_graph=True)
    g2_ref = None
    if dx_ref.requires_grad:  # not for piecewise-linear activations without a clamp
        (g2_ref,) = torch.autograd.grad(dx_ref, x, ggx, allow_unused=True)
    g2_ref = torch.zeros_like(x) if g2_ref is None else g2_ref

    def run(mode, a=None, c=None):
        out = np.zeros(x.shape, np.float32)
        emu.sg3_bias_act_f32(_ptr(_np(x)), _ptr(_np(b)), _ptr(_np(a)), _ptr(_np(c)), _ptr(out), x.numel(),
                             4, 5, mode, _kernels.ACT_INDEX[act], alpha, gain, -1.0 if clamp is None else clamp)  # fmt: skip
        return torch.from_numpy(out)

    _close(run(_kernels.BIAS_ACT_FORWARD), ref.detach(), "forward")
    _close(run(_kernels.BIAS_ACT_GRAD, dy), dx_ref.detach(), "gradient")
    _close(run(_kernels.BIAS_ACT_GRAD2, dy, ggx), g2_ref, "second-order gradient", rtol=1e-3)


@pytest.mark.parametrize(
    "shape, dim, channels_last",
    [((3, 5, 4), 1, False), ((2, 7, 3, 5), 1, False), ((2, 6, 3, 3), 1, True), ((5, 7), -1, False), ((4, 8, 2, 2), 1, False),
     ((4, 3, 2), 1, False), ((3, 2, 3, 50), 1, False)],
)
def test_emulated_bias_act_vector_chunks(emu, shape, dim, channels_last):
    """The kernel's 16-byte chunking (one division per chunk, then the channel walked along
    the chunk, wrapping at the bias size; a scalar tail) equals the per-element loop: bias
    strides that are multiples of the chunk, that are not (1, 2, 15, 150), channels-last."""
    torch.manual_seed(len(shape) * 10 + dim)
    x = torch.randn(shape, dtype=torch.float32) * 2
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    dim = dim % x.ndim
    b, dy, ggx = torch.randn(x.shape[dim]), torch.randn_like(x), torch.randn_like(x)

    def memory(t):
        return np.ascontiguousarray(torch.as_strided(t, (t.numel(),), (1,)).numpy())

    for act in ("lrelu", "linear", "swish"):
        spec = ACTIVATIONS[act]
        for mode, a, c in ((_kernels.BIAS_ACT_FORWARD, None, None), (_kernels.BIAS_ACT_GRAD, dy, None),
                           (_kernels.BIAS_ACT_GRAD2, dy, ggx)):  # fmt: skip
            outs = []
            for fn in (emu.sg3_bias_act_f32, emu.sg3_bias_act_vec_f32):
                out = np.zeros(x.numel(), np.float32)
                args = [None if t is None else memory(t) for t in (x, a, c)]
                fn(_ptr(args[0]), _ptr(b.numpy()), _ptr(args[1]), _ptr(args[2]), _ptr(out), x.numel(), x.stride(dim),
                   x.size(dim), mode, _kernels.ACT_INDEX[act], spec.def_alpha, spec.def_gain, 1.5)  # fmt: skip
                outs.append(out)
            np.testing.assert_array_equal(outs[1], outs[0], err_msg=f"{act} mode {mode}")
        ref = _bias_act_ref(x, b, dim, spec, spec.def_alpha, spec.def_gain, 1.5)
        out = np.zeros(x.numel(), np.float32)
        emu.sg3_bias_act_vec_f32(_ptr(memory(x)), _ptr(b.numpy()), None, None, _ptr(out), x.numel(), x.stride(dim),
                                 x.size(dim), 0, _kernels.ACT_INDEX[act], spec.def_alpha, spec.def_gain, 1.5)  # fmt: skip
        _close(torch.from_numpy(out), torch.as_strided(ref.contiguous(memory_format=torch.contiguous_format)
               if not channels_last else ref, (ref.numel(),), (1,)), f"{act} vs reference")  # fmt: skip


# The configuration of the one failure of the first H200 run (test_cuda_ops.py::
# test_filtered_lrelu_generator_layers[3-dtype0-up2-fd1d-pad9-38]: batch 3, 6 channels,
# 38x39, up 2, fu/fd 12 taps, padding [9, 8, 9, 8], clamp 2) and its neighbours, with the
# tiles the GPU launcher picks. The emulation matches the float64 reference here to ~1e-6:
# the kernels' index maths is right for these shapes; see _kink_free_input in
# test_cuda_ops.py for what the GPU failure was.
def _h200_layer_case(batch, width, seed=0):
    from cfattack.stylegan.layers import design_lowpass_filter

    g = torch.Generator().manual_seed(seed * 100 + batch * 10 + width)
    f = design_lowpass_filter(numtaps=12, cutoff=8.0, width=6.0, fs=64).double()
    x = (torch.randn(batch, 6, 38, width, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    b = torch.randn(6, generator=g, dtype=torch.float64).requires_grad_(True)
    return f, x, b, dict(up=2, down=2, pad=[9, 8, 9, 8], gain=math.sqrt(2), slope=0.2, clamp=2.0)


def _emulated_filtered_lrelu(emu, f, x, b, k, dy, tiles=(None, None), used=None):
    h, w = x.shape[2:]
    plan = _kernels.filtered_lrelu_forward_plan(h, w, f, f, k["up"], k["down"], *k["pad"], k["gain"], k["slope"],
                                                k["clamp"], False, True, CPU)  # fmt: skip
    y, mask = emulate_resample(emu, plan, x, bias=b, tile=tiles[0], tile_used=used)
    back = _kernels.filtered_lrelu_backward_plan(h, w, y.shape[2], y.shape[3], f, f, k["up"], k["down"], k["pad"][0],
                                                 k["pad"][2], k["gain"], k["slope"], False, CPU)  # fmt: skip
    dx, _ = emulate_resample(emu, back, dy, mask=mask, tile=tiles[1])
    return y, mask, dx


@pytest.mark.parametrize("width", [37, 38, 39, 40, 41])
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_emulated_filtered_lrelu_h200_failure_config(emu, batch, width):
    f, x, b, k = _h200_layer_case(batch, width)
    ref = _filtered_lrelu_ref(x, f, f, b, k["up"], k["down"], *k["pad"], k["gain"], k["slope"], k["clamp"], False)
    dy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(width), dtype=torch.float64)
    dx_ref, db_ref = torch.autograd.grad(ref, (x, b), dy)
    used = []
    y, _, dx = _emulated_filtered_lrelu(emu, f, x, b, k, dy, used=used)
    assert used[0] in (20, 36)  # the GPU's tile for these shapes
    _close(y, ref, "forward")
    _close(dx, dx_ref, "dx")
    _close(dx.double().sum([0, 2, 3]), db_ref, "db", rtol=1e-3)


def test_emulated_mask_codes_do_not_depend_on_the_tiling(emu):
    """Neighbouring forward tiles overlap and write the same mask bytes, in any order on the
    GPU: each sample's code must not depend on which tile computes it."""
    f, x, b, k = _h200_layer_case(3, 39)
    dy = torch.randn(3, 6, 36, 37, dtype=torch.float64)
    used_w, used_h = (37 - 1) * 2 + 12, (36 - 1) * 2 + 12
    masks, dxs = [], []
    for tile in ((20, 20), (36, 36), (8, 8), (64, 32), (12, 12)):
        _, mask, dx = _emulated_filtered_lrelu(emu, f, x, b, k, dy, tiles=(tile, tile))
        masks.append(mask[:, :used_h, : used_w // 4])
        dxs.append(dx)
    for mask, dx in zip(masks[1:], dxs[1:]):
        np.testing.assert_array_equal(mask, masks[0])
        _close(dx, dxs[0], "dx across tilings", rtol=1e-5)


def test_one_flipped_mask_code_exceeds_the_float32_tolerance(emu):
    """Why the float32 CUDA tests keep the intermediate away from the leaky-ReLU and clamp
    kinks: a sample within float32 rounding of a kink may take the other branch in the kernel
    than in the reference, and that one code moves dx by far more than the tolerance (the
    H200 failure: max error 0.0336 at scale 1.57)."""
    f, x, b, k = _h200_layer_case(3, 39)
    dy = torch.randn(3, 6, 36, 37, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, mask, dx0 = _emulated_filtered_lrelu(emu, f, x, b, k, dy, tiles=((20, 20), (20, 20)))
    h, w = x.shape[2:]
    back = _kernels.filtered_lrelu_backward_plan(h, w, 36, 37, f, f, 2, 2, 9, 9, k["gain"], k["slope"], False, CPU)
    changes = []
    for plane, row, col, j in ((4, 40, 10, 1), (11, 30, 8, 2), (17, 50, 12, 0), (0, 20, 6, 3)):
        flipped = mask.copy()
        flipped[plane, row, col] ^= np.uint8(2 << (2 * j))  # the clamp bit of one sample
        dx, _ = emulate_resample(emu, back, dy, mask=flipped, tile=(20, 20))
        changes.append((dx - dx0).abs().max().item())
    tolerance = 2e-4 * max(1.0, dx0.abs().max().item())  # test_cuda_ops' float32 tolerance
    assert max(changes) > 10 * tolerance, (changes, tolerance)


# ---------------------------------------------------------------------------------------------
# Build machinery.


@pytest.fixture
def fresh_build_state(monkeypatch):
    """No module, no remembered status, a fresh warn-once record, CFATTACK_OPS unset."""
    monkeypatch.setattr(_build, "_module", None)
    monkeypatch.setattr(_build, "_status", None)
    monkeypatch.setattr(_policy, "_warned_ops", set())
    monkeypatch.delenv("CFATTACK_OPS", raising=False)


def _fake_spec(tmp_path: Path, sources=(), name="fake_ext") -> _build.BuildSpec:
    return _build.BuildSpec(
        name=name, sources=tuple(sources), include_dir=tmp_path, cache_dir=tmp_path / "cache" / "sg3ops-test",
        archs=("9.0",), cuda_home=_build.find_cuda_home() or Path("/usr/local/cuda"),
        ninja=_build.find_ninja() or "ninja", key="0" * 64,
    )  # fmt: skip


def test_cache_key_depends_on_sources_and_toolchain(tmp_path):
    a = tmp_path / "a.cu"
    a.write_text("int x;")
    toolchain = {"torch": "2.0", "torch_cuda": "12.1", "nvcc": "12.1", "archs": ["9.0"]}
    key = _build.build_key((a,), toolchain)
    assert key == _build.build_key((a,), dict(toolchain)) and len(key) == 64
    assert key != _build.build_key((a,), {**toolchain, "archs": ["8.0"]})
    assert key != _build.build_key((a,), {**toolchain, "torch": "2.1"})
    assert key != _build.build_key((a,), {**toolchain, "nvcc": "12.4"})
    a.write_text("int y;")
    assert key != _build.build_key((a,), toolchain)


def test_sources_hashed_are_the_kernels_not_the_emulation():
    names = {p.name for p in _build._source_files()}
    assert {"ops.cu", "bindings.cpp", "resample_core.h", "bias_act_core.h", "common.h"} <= names
    assert "emulate.cpp" not in names
    for source in _build.COMPILED_SOURCES:
        assert (CSRC / source).is_file()


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CFATTACK_CACHE", raising=False)
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert _build.cache_root() == Path.home() / ".cache" / "cfattack" / "ops"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "te"))
    assert _build.cache_root() == tmp_path / "te" / "cfattack_ops"
    monkeypatch.setenv("CFATTACK_CACHE", str(tmp_path / "cf"))
    assert _build.cache_root() == tmp_path / "cf" / "ops"


def test_arch_list_and_gencode_flags(monkeypatch):
    assert _build.gencode_flags(("9.0",)) == ["-gencode=arch=compute_90,code=sm_90"]
    assert _build.gencode_flags(("8.6+PTX", "9.0a")) == [
        "-gencode=arch=compute_86,code=sm_86",
        "-gencode=arch=compute_86,code=compute_86",
        "-gencode=arch=compute_90a,code=sm_90a",
    ]
    with pytest.raises(_build.OpsBuildError, match="TORCH_CUDA_ARCH_LIST"):
        _build.gencode_flags(("Hopper",))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    assert _build.target_archs() == ("8.0", "9.0+PTX")
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    if not torch.cuda.is_available():
        assert _build.target_archs() == (_build.DEFAULT_ARCH,) == ("9.0",)


def test_prerequisites_name_what_is_missing(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    ok, why = _build.prerequisites()
    assert not ok and "CPU-only" in why
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(_build, "find_cuda_home", lambda: None)
    ok, why = _build.prerequisites()
    assert not ok and "nvcc" in why and "CUDA_HOME" in why
    monkeypatch.setattr(_build, "find_cuda_home", lambda: Path("/opt/cuda"))
    monkeypatch.setattr(_build, "find_ninja", lambda: None)
    ok, why = _build.prerequisites()
    assert not ok and "ninja" in why
    monkeypatch.setattr(_build, "find_ninja", lambda: "/usr/bin/ninja")
    monkeypatch.setattr(_build, "nvcc_release", lambda home: "11.8")
    ok, why = _build.prerequisites()
    assert not ok and "11.8" in why and "13.0" in why


def test_file_lock_times_out_naming_the_file_and_holder(tmp_path):
    path = tmp_path / "x.lock"
    holding, release = threading.Event(), threading.Event()

    def hold():
        with _build.FileLock(path):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        start = time.monotonic()
        with pytest.raises(_build.LockTimeout) as info:
            with _build.FileLock(path, timeout=0.3, poll=0.05):
                pass
        assert time.monotonic() - start < 5
        message = str(info.value)
        assert str(path) in message and "held by process" in message
    finally:
        release.set()
        thread.join()
    with _build.FileLock(path, timeout=1):  # free again
        pass


def test_concurrent_builds_compile_once(tmp_path, monkeypatch):
    spec = _fake_spec(tmp_path)
    compiles = []

    def fake_compile(spec, log_path, timeout=0):
        compiles.append(1)
        time.sleep(0.3)
        log_path.write_text("fake build\n")
        (spec.cache_dir / f"{spec.name}.so").write_text("")
        return True, ""

    monkeypatch.setattr(_build, "_compile", fake_compile)
    monkeypatch.setattr(_build, "_load_module", lambda name, path: object())
    results = []
    threads = [threading.Thread(target=lambda: results.append(_build.build(spec))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compiles) == 1
    assert len(results) == 3 and all(status.ok for status, module in results)
    assert sum(status.cached for status, _ in results) == 2
    assert all(status.log_path == spec.cache_dir / "build.log" for status, _ in results)


def _can_compile_cuda() -> tuple[bool, str]:
    ok, why = _build.prerequisites()
    return ok, why or ""


def test_broken_source_reports_the_log(tmp_path):
    ok, why = _can_compile_cuda()
    if not ok:
        pytest.skip(f"cannot compile CUDA here: {why}")
    broken = tmp_path / "broken.cu"
    broken.write_text("__global__ void kernel(float* x) { x[0] = this is not cuda; }\n")
    status, module = _build.build(_fake_spec(tmp_path, [broken], name="cfattack_broken_test"))
    assert module is None and not status.ok
    assert status.log_path is not None and str(status.log_path) in status.reason
    assert "failed" in status.reason
    log = status.log_path.read_text()
    assert "error" in log and "broken.cu" in log


def test_policy_falls_back_with_the_build_failure(fresh_build_state, monkeypatch):
    reason = "building the CUDA kernels failed after 3 s: boom; full log: /tmp/x/build.log"

    def failing_build(verbose=False, force=False):
        _build._status = _build.BuildStatus(False, reason)
        raise _build.OpsBuildError(reason)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_build, "build_extension", failing_build)
    x = _FakeCudaTensor()
    with pytest.warns(RuntimeWarning, match="full log: /tmp/x/build.log"):
        assert resolve_impl("upfirdn2d", "auto", x) == "ref"
    with pytest.raises(OpsBackendError, match="boom.*build.log"):
        resolve_impl("upfirdn2d", "cuda", x)


class _FakeCudaTensor:
    """Only its device matters to the policy."""

    device = torch.device("cuda", 0)


def test_doctor_build_reports_outcome_time_and_log(monkeypatch, tmp_path):
    CliRunner = pytest.importorskip("click.testing").CliRunner
    from cfattack.cli.root import cli

    log = tmp_path / "build.log"
    good = _build.BuildStatus(True, "CUDA kernels built in 42 s (/c)", 42.0, log, tmp_path, False)
    bad = _build.BuildStatus(False, f"building the CUDA kernels failed after 5 s: x; full log: {log}", 5.0, log, tmp_path)
    calls = []

    def status(build=False):
        calls.append(build)
        return current[0]

    monkeypatch.setattr(_build, "build_status", status)
    current = [good]
    result = CliRunner().invoke(cli, ["doctor", "--build"], env={"CFATTACK_OPS": None})
    assert result.exit_code == 0, result.output
    assert calls == [True]
    for fragment in ("ops build", "ok: CUDA kernels built", "42.0 s", str(log), "ops cache"):
        assert fragment in result.output
    current = [bad]
    result = CliRunner().invoke(cli, ["doctor", "--build"], env={"CFATTACK_OPS": None})
    assert result.exit_code == 1
    assert "FAILED" in result.output and str(log) in result.output and "ops-troubleshooting" in result.output
    calls.clear()
    result = CliRunner().invoke(cli, ["doctor"], env={"CFATTACK_OPS": None})
    assert calls == [False]  # plain doctor never compiles


# ---------------------------------------------------------------------------------------------
# The real extension.


@pytest.mark.slow
def test_extension_compiles(fresh_build_state):
    """Compile csrc/ for the target archs (TORCH_CUDA_ARCH_LIST, the GPUs, or 9.0) and load it."""
    ok, why = _can_compile_cuda()
    if not ok:
        pytest.skip(f"cannot compile the CUDA ops here: {why}")
    module = _build.build_extension(verbose=True)
    status = _build.build_status()
    assert status.ok, status.reason
    assert status.log_path is not None and status.log_path.exists()
    assert hasattr(module, "bias_act") and hasattr(module, "resample")


# ---------------------------------------------------------------------------------------------
# The CUDA path's Python side (autograd functions, plans, masks, second order) on the CPU,
# with the compiled module replaced by the emulation.


class _EmulatedExtension:
    """Stands in for the compiled module: same functions, computed by csrc/emulate.cpp (float32)."""

    def __init__(self, lib):
        self.lib = lib

    def resample(self, src, bias, mask, f1, f3, ints, slope, gain, clamp):
        from types import SimpleNamespace

        plan = SimpleNamespace(
            ints=list(ints), f1=SimpleNamespace(values=f1), f3=SimpleNamespace(values=f3),
            slope=slope, gain=gain, clamp=clamp, dst_h=ints[0], dst_w=ints[1],
        )  # fmt: skip
        assert src.is_contiguous() and (bias is None or bias.dtype == src.dtype)
        dst, out_mask = emulate_resample(
            self.lib, plan, src, bias=bias, mask=None if mask is None else mask.numpy(), tile=(16, 8)
        )
        return dst.to(src.dtype), None if out_mask is None else torch.from_numpy(out_mask)

    def bias_act(self, x, b, a, c, dim, mode, act, alpha, gain, clamp):
        for t in (a, c):
            assert t is None or t.stride() == x.stride()

        def memory(t):  # the elements in memory order (x is dense)
            return None if t is None else _np(torch.as_strided(t, (t.numel(),), (1,)))

        assert b is None or (b.is_contiguous() and b.dtype in (torch.float32, x.dtype))
        buf = np.zeros(x.numel(), np.float32)
        xs, bs, as_, cs = memory(x), _np(b), memory(a), memory(c)
        self.lib.sg3_bias_act_vec_f32(_ptr(xs), _ptr(bs), _ptr(as_), _ptr(cs), _ptr(buf), x.numel(),
                                  x.stride(dim), x.size(dim), mode, act, alpha, gain, clamp)  # fmt: skip
        out = torch.empty_like(x)
        torch.as_strided(out, (out.numel(),), (1,)).copy_(torch.from_numpy(buf))
        return out


@pytest.fixture
def emulated_cuda_path(emu, monkeypatch, fresh_build_state):
    """Every op takes its CUDA path on CPU tensors, running on the emulated kernels."""
    monkeypatch.setattr(_build, "_module", _EmulatedExtension(emu))
    for name in ("bias_act", "filtered_lrelu", "upfirdn2d"):  # the modules (the package rebinds the names)
        monkeypatch.setattr(sys.modules[f"stylegan3_ops.{name}"], "resolve_impl", lambda op, impl, x: impl or "cuda")


def _grads(out, inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(out.shape, generator=g)
    return torch.autograd.grad(out, inputs, dy, retain_graph=True)


@pytest.mark.parametrize("act", ["lrelu", "tanh", "swish", "softplus"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cuda_path_bias_act_to_second_order(emulated_cuda_path, act, layout):
    from stylegan3_ops import bias_act

    x0 = torch.randn(2, 5, 4, 3) * 2
    if layout == "channels_last":
        x0 = x0.to(memory_format=torch.channels_last)
    b0 = torch.randn(5)
    results = {}
    for impl in ("cuda", "ref"):
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = bias_act(x, b, act=act, clamp=2.5, impl=impl)
        first = _grads(y, (x, b))
        (gx,) = torch.autograd.grad((y * x.detach().cos()).sum(), x, create_graph=True)
        second = (None, None)
        if gx.requires_grad:
            second = torch.autograd.grad(gx.square().sum(), (x, b), allow_unused=True)
        results[impl] = (y, *first, gx, *second)
    for got, want, what in zip(results["cuda"], results["ref"], ("y", "dx", "db", "gx", "ggx", "ggb")):
        if want is None:
            want = torch.zeros_like(got)
        _close(got, want, what, rtol=1e-3 if what.startswith("gg") else 1e-4)
    if layout == "channels_last":
        assert results["cuda"][0].is_contiguous(memory_format=torch.channels_last)


def test_cuda_path_upfirdn2d_to_second_order(emulated_cuda_path):
    from stylegan3_ops import setup_filter, upfirdn2d

    f = setup_filter(torch.randn(12), separable=True)
    results = {}
    for impl in ("cuda", "ref"):
        x = torch.randn(2, 3, 11, 13, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        y = upfirdn2d(x, f, up=2, down=[1, 2], padding=[5, 4, 6, 3], gain=4, impl=impl)
        first = _grads(y, (x,))
        (gx,) = torch.autograd.grad((y * y.detach().sin()).square().sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad((gx * x).sum() + gx.square().sum(), x)
        results[impl] = (y, *first, gx, ggx)
    for got, want, what in zip(results["cuda"], results["ref"], ("y", "dx", "gx", "ggx")):
        _close(got, want, what, rtol=1e-3)


@pytest.mark.parametrize("radial", [False, True], ids=["fd1d", "fd2d"])
@pytest.mark.parametrize("up", [2, 4])
def test_cuda_path_filtered_lrelu(emulated_cuda_path, radial, up):
    from stylegan3_ops import filtered_lrelu

    g = torch.Generator().manual_seed(up)
    fu = torch.randn(6 * up, generator=g)
    fd = torch.randn(12, 12, generator=g) if radial else torch.randn(12, generator=g)
    x0 = torch.randn(2, 3, 14, 15, generator=g) * 3
    b0 = torch.randn(3, generator=g)
    kwargs = dict(up=up, down=2, padding=[9, 8, 7, 10], gain=math.sqrt(2), slope=0.2, clamp=4.0)
    results = {}
    for impl in ("cuda", "ref"):
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = filtered_lrelu(x, fu, fd, b, impl=impl, **kwargs)
        results[impl] = (y, *_grads(y, (x, b)))
        with torch.no_grad():  # no mask written, same values
            _close(filtered_lrelu(x, fu, fd, b, impl=impl, **kwargs), y, "no_grad forward")
    for got, want, what in zip(results["cuda"], results["ref"], ("y", "dx", "db")):
        _close(got, want, what, rtol=1e-4 if what != "db" else 1e-3)
