"""Hostile network pickles: each would create a marker file if anything in it were executed.

A safe loader must refuse every one (`UnsafePickleError` naming ``expected_global``, or a
`NetworkLoadError` where no forbidden global is involved) and the marker must never appear.
``armed`` cases are proven live by the tests: a plain ``pickle.load`` in this environment does
create their marker. The others need NVIDIA's modules (``torch_utils``, ``dnnlib``) to fire.

    python -m tests.tools.malicious_pickles OUT_DIR MARKER_DIR
"""

from __future__ import annotations

import argparse
import pickle
import shlex
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cfattack.stylegan.generator import Generator
from tests.tools.make_official_pickle import (
    LEGACY_MAGIC,
    Call,
    GlobalRef,
    dumps,
    legacy_storage_stream,
    module_record,
    official_pickle_bytes,
    snapshot_dumps,
)

__all__ = ["MaliciousCase", "write_malicious_pickles"]


@dataclass(frozen=True)
class MaliciousCase:
    """One hostile pickle.

    Attributes:
        name: short identifier (also the file stem).
        path: the pickle file.
        marker: the file the payload would create if executed (must not exist after loading).
        expected_global: the ``module.name`` the restricted loader must name; None when the file
            only uses allowed globals and must fail (or load) without executing anything.
        armed: True when a plain ``pickle.load`` here would run the payload.
    """

    name: str
    path: Path
    marker: Path
    expected_global: str | None
    armed: bool


def _sh(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _py(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _os_system(marker: Path) -> Call:
    return Call(GlobalRef("os", "system"), (_sh(marker),))


def _binunicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _tiny_generator() -> Generator:
    return Generator(
        z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=1, channel_base=64, channel_max=4,
        num_layers=2, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1},
    )


def _payloads() -> list[tuple[str, str | None, bool, Callable[[Path], object]]]:
    """(name, expected global, armed, build) where build(marker) gives the object or raw bytes."""
    magic_len = len(pickle.dumps(LEGACY_MAGIC, protocol=2))

    def evil_bytes(marker: Path) -> bytes:
        return dumps(_os_system(marker), protocol=2)

    return [
        ("os_system", "os.system", True, _os_system),
        ("posix_system", "posix.system", True, lambda m: Call(GlobalRef("posix", "system"), (_sh(m),))),
        ("subprocess_popen", "subprocess.Popen", True,
         lambda m: Call(GlobalRef("subprocess", "Popen"), (["touch", str(m)],))),
        ("subprocess_check_call", "subprocess.check_call", True,
         lambda m: Call(GlobalRef("subprocess", "check_call"), (["touch", str(m)],))),
        ("builtins_eval", "builtins.eval", True, lambda m: Call(GlobalRef("builtins", "eval"), (_py(m),))),
        ("builtins_exec", "builtins.exec", True, lambda m: Call(GlobalRef("builtins", "exec"), (_py(m),))),
        ("builtins_open", "builtins.open", True, lambda m: Call(GlobalRef("builtins", "open"), (str(m), "w"))),
        # getattr(__import__('os'), 'system')(cmd)
        ("getattr_import_chain", "builtins.getattr", True,
         lambda m: Call(
             Call(GlobalRef("builtins", "getattr"), (Call(GlobalRef("builtins", "__import__"), ("os",)), "system")),
             (_sh(m),),
         )),
        # methodcaller('system', cmd)(importlib.import_module('os'))
        ("methodcaller_import_module", "operator.methodcaller", True,
         lambda m: Call(
             Call(GlobalRef("operator", "methodcaller"), ("system", _sh(m))),
             (Call(GlobalRef("importlib", "import_module"), ("os",)),),
         )),
        # The Python-2 spelling, which pickle's default find_class maps to builtins.
        ("py2_builtin_eval", "__builtin__.eval", True,
         lambda m: b"\x80\x02c__builtin__\neval\n" + _binunicode(_py(m)) + b"\x85R."),
        # INST opcode: MARK, args, 'i module\nname\n' calls module.name(*args).
        ("inst_opcode", "os.system", True, lambda m: b"\x80\x02(" + _binunicode(_sh(m)) + b"ios\nsystem\n."),
        # OBJ opcode: MARK, callable, args, 'o' calls callable(*args).
        ("obj_opcode", "subprocess.check_call", True,
         lambda m: b"\x80\x02(csubprocess\ncheck_call\n]" + _binunicode("touch") + b"a"
         + _binunicode(str(m)) + b"ao."),
        ("numpy_runstring", "numpy.testing._private.utils.runstring", True,
         lambda m: Call(GlobalRef("numpy.testing._private.utils", "runstring"), (_py(m), {}))),
        # numpy.load(file, mmap_mode=None, allow_pickle=True) of a pickle that runs os.system.
        ("numpy_load", "numpy.load", True,
         lambda m: Call(GlobalRef("numpy", "load"), (Call(GlobalRef("io", "BytesIO"), (evil_bytes(m),)), None, True))),
        # An object-dtype array built from allowed names only, whose element calls os.system.
        ("numpy_object_array", None, True,
         lambda m: Call(
             GlobalRef("numpy._core.multiarray", "_reconstruct"),
             (GlobalRef("numpy", "ndarray"), (0,), b"b"),
             state=(
                 1, (1,),
                 Call(GlobalRef("numpy", "dtype"), ("O8", False, True), state=(3, "|", None, None, None, -1, -1, 63)),
                 False, [_os_system(m)],
             ),
         )),
        ("torch_load", "torch.load", False,
         lambda m: Call(GlobalRef("torch", "load"), (Call(GlobalRef("io", "BytesIO"), (evil_bytes(m),)),))),
        # The nested storage stream (read by torch.load in NVIDIA's loader) carries the payload ...
        ("storage_stream_object", "os.system", True,
         lambda m: Call(
             GlobalRef("torch.storage", "_load_from_bytes"),
             (legacy_storage_stream(torch.ones(3), object_payload=_os_system(m)),),
         )),
        # ... in its first pickle (the magic number) ...
        ("storage_stream_magic", "builtins.eval", True,
         lambda m: Call(
             GlobalRef("torch.storage", "_load_from_bytes"),
             (dumps(Call(GlobalRef("builtins", "eval"), (_py(m),)), protocol=2)
              + legacy_storage_stream(torch.ones(3))[magic_len:],),
         )),
        # ... or as the storage type of its persistent id.
        ("storage_type_global", "os.system", False,
         lambda m: Call(
             GlobalRef("torch.storage", "_load_from_bytes"),
             (legacy_storage_stream(torch.ones(3)).replace(b"ctorch\nFloatStorage\n", b"cos\nsystem\n"),),
         )),
        # Helpers of NVIDIA's own modules that execute source or resolve names.
        ("persistence_src_to_module", "torch_utils.persistence._src_to_module", False,
         lambda m: Call(GlobalRef("torch_utils.persistence", "_src_to_module"), (_py(m),))),
        ("dnnlib_get_obj_by_name", "dnnlib.util.get_obj_by_name", False,
         lambda m: Call(Call(GlobalRef("dnnlib.util", "get_obj_by_name"), ("os.system",)), (_sh(m),))),
        ("copyreg_reconstructor", "copyreg._reconstructor", False,
         lambda m: Call(GlobalRef("copyreg", "_reconstructor"), (GlobalRef("os", "system"), object, _sh(m)))),
    ]


def _nested_in_network(marker: Path) -> bytes:
    """A well-formed snapshot of a real (tiny) Generator with a REDUCE of os.system deep inside."""

    def inject(path: str, state: dict) -> None:
        if path == "mapping.fc0":
            state["_buffers"]["w_avg_evil"] = _os_system(marker)

    return official_pickle_bytes(_tiny_generator(), edit_state=inject)


def _hook_in_tensor(marker: Path) -> bytes:
    """A tensor whose backward_hooks dict holds a call to os.system."""

    def inject(path: str, state: dict) -> None:
        if path == "synthesis.input":
            state["_parameters"]["weight"] = Call(
                GlobalRef("torch._utils", "_rebuild_tensor_v2"),
                (Call(GlobalRef("torch.storage", "_load_from_bytes"), (legacy_storage_stream(torch.ones(4)),)),
                 0, (2, 2), (2, 1), False, {"hook": _os_system(marker)}),
            )

    return official_pickle_bytes(_tiny_generator(), edit_state=inject)


def _module_src_record(marker: Path) -> bytes:
    """Only allowed globals; the embedded 'module source' would create the marker if executed."""
    record = module_record(torch.nn.Module(), module_src=f"{_py(marker)}\n", init_kwargs={})
    record.meta["class_name"] = "Generator"
    return snapshot_dumps({"G": record, "D": None, "G_ema": record, "augment_pipe": None, "training_set_kwargs": {}})


_OLD_PROTOCOL_CASES = ("os_system", "posix_system", "subprocess_popen", "builtins_eval")


def write_malicious_pickles(out_dir: str | Path, marker_dir: str | Path) -> list[MaliciousCase]:
    """Write every hostile pickle into ``out_dir``; their markers point into ``marker_dir``."""
    out_dir, marker_dir = Path(out_dir), Path(marker_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(name: str, data: bytes, expected: str | None, armed: bool) -> None:
        path = out_dir / f"{name}.pkl"
        path.write_bytes(data)
        cases.append(MaliciousCase(name, path, marker_dir / f"{name}.marker", expected, armed))

    for name, expected, armed, build in _payloads():
        obj = build(marker_dir / f"{name}.marker")
        add(name, obj if isinstance(obj, bytes) else dumps(obj, protocol=4), expected, armed)
    # Protocols 0 and 1 have no header: the reader must still name the global, not say "not a network".
    old_protocol = [*(c for c in _payloads() if c[0] in _OLD_PROTOCOL_CASES),
                    ("nt_system", "nt.system", False, lambda m: Call(GlobalRef("nt", "system"), (_sh(m),)))]
    for name, expected, armed, build in old_protocol:
        for protocol in (0, 1):
            variant = f"{name}_protocol{protocol}"
            add(variant, dumps(build(marker_dir / f"{variant}.marker"), protocol=protocol), expected, armed)
    add("nested_in_network", _nested_in_network(marker_dir / "nested_in_network.marker"), "os.system", False)
    add("hook_in_tensor", _hook_in_tensor(marker_dir / "hook_in_tensor.marker"), "os.system", False)
    add("module_src_record", _module_src_record(marker_dir / "module_src_record.marker"), None, False)
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("marker_dir", type=Path)
    args = parser.parse_args(argv)
    for case in write_malicious_pickles(args.out_dir, args.marker_dir):
        print(f"{case.path}  expects {case.expected_global or 'NetworkLoadError'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
