"""Small network files that would cost huge amounts of memory or time to a trusting reader.

Each builder writes one file (kilobytes) into a folder and returns its path; nothing here is
committed as a binary. What each would cost without the bounds is in its docstring.

    python -m tests.security.hostile_networks OUT_DIR     # write them all, for manual tries
"""

from __future__ import annotations

import argparse
import io
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cfattack.classifiers.backbone import FACTORY_NAME, build_classifier
from cfattack.classifiers.checkpoint import CLASSIFIER_FORMAT
from cfattack.stylegan.checkpoint import CHECKPOINT_FORMAT
from cfattack.stylegan.generator import Generator
from tests.tools.make_official_pickle import (
    Call,
    GlobalRef,
    NamePickler,
    _Persistent,
    module_record,
    official_pickle_bytes,
    snapshot_dumps,
    storage_blob,
    tensor_call,
)

__all__ = ["BUILDERS", "write_hostile_networks"]

# A 1024 px generator with 2048 channels: about 0.8 G weights, 3.2 GB as float32.
BIG_GENERATOR = dict(z_dim=1024, c_dim=0, w_dim=1024, img_resolution=1024, img_channels=3,
                     channel_base=1 << 21, channel_max=2048, mapping_kwargs={"num_layers": 8})
# ... and with 4096 channels at 256 px: about 2.4 G weights, 9.6 GB.
HUGE_GENERATOR = dict(z_dim=1024, c_dim=0, w_dim=1024, img_resolution=256, img_channels=3,
                      channel_base=1 << 22, channel_max=4096, mapping_kwargs={"num_layers": 8})


def _tiny_generator(**changes: Any) -> Generator:
    torch.manual_seed(0)
    kwargs = dict(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=1, channel_base=64, channel_max=4,
                  num_layers=2, num_critical=1, margin_size=2, mapping_kwargs={"num_layers": 1})
    return Generator(**{**kwargs, **changes})


def _bare_generator_records(mapping_children: dict[str, Any] | None = None) -> _Persistent:
    """Records of a tensor-free module tree that passes the StyleGAN3 shape check."""

    def record(class_name: str, children: dict[str, Any]) -> _Persistent:
        rec = module_record(torch.nn.Module(), init_kwargs={})
        rec.meta["class_name"] = class_name
        rec.meta["state"]["_modules"] = dict(children)
        return rec

    synthesis = record("SynthesisNetwork", {"input": record("SynthesisInput", {})})
    mapping = record("MappingNetwork", mapping_children or {})
    return record("Generator", {"synthesis": synthesis, "mapping": mapping})


def _snapshot(G_ema: Any, training_set_kwargs: Any = None) -> bytes:
    return snapshot_dumps({"G": None, "D": None, "G_ema": G_ema, "augment_pipe": None,
                           "training_set_kwargs": training_set_kwargs})


# ---------------------------------------------------------------------------------------------
# Official pickles.


def shared_references(path: Path) -> Path:
    """~1 KB: settings whose list at level k holds level k-1 twice; copied as a tree, 2**40 values."""
    level: Any = [0]
    for _ in range(40):
        level = [level, level]
    path.write_bytes(_snapshot(_bare_generator_records(), {"class_name": "x", "path": level}))
    return path


def settings_bomb(path: Path) -> Path:
    """~40 KB: 3,000 settings keys that all hold the same 3,000-entry list: 9 M values once copied."""
    shared = [f"v{i}" for i in range(3000)]
    kwargs = {f"k{i}": shared for i in range(3000)}
    path.write_bytes(_snapshot(_bare_generator_records(), kwargs))
    return path


def module_tree_bomb(path: Path) -> Path:
    """~40 KB: 40 levels of modules, each holding the level below twice, with a tensor at the
    bottom: walked as a tree, 2**40 modules and tensors."""
    leaf = module_record(torch.nn.Linear(2, 2))
    leaf.meta["class_name"] = "FullyConnectedLayer"
    level = leaf
    for _ in range(40):
        node = module_record(torch.nn.Module())
        node.meta["state"]["_modules"] = {"a": level, "b": level}
        level = node
    path.write_bytes(_snapshot(_bare_generator_records({"fc0": level})))
    return path


def _strided_generator(path: Path, kwargs: dict[str, Any], strides: Callable[[tuple], tuple], numel: int) -> Path:
    """A generator built from ``kwargs`` on the meta device, every tensor a view of one tiny storage."""
    with torch.device("meta"):
        G = Generator(**kwargs)
    blob = storage_blob(torch.zeros(numel))
    record = module_record(G, init_kwargs=G.init_kwargs,
                           tensor_form=lambda t, parameter: tensor_call(blob, tuple(t.shape), strides(tuple(t.shape)),
                                                                        parameter=parameter))
    path.write_bytes(_snapshot(record, {}))
    return path


def zero_stride_weights(path: Path) -> Path:
    """~40 KB: the 3.2 GB generator of `BIG_GENERATOR`, every weight a zero-stride view of one value."""
    return _strided_generator(path, BIG_GENERATOR, lambda shape: (0,) * len(shape), 1)


def overlapping_stride_weights(path: Path) -> Path:
    """~40 KB: the 9.6 GB generator of `HUGE_GENERATOR`, every weight a view with all strides 1
    over 8,200 stored values (overlapping rows)."""
    return _strided_generator(path, HUGE_GENERATOR, lambda shape: (1,) * len(shape), 8200)


def huge_margin(path: Path) -> Path:
    """~20 KB: consistent weights, ``margin_size=4096``: every layer works on 8,200 px squares."""
    path.write_bytes(official_pickle_bytes(_tiny_generator(margin_size=4096)))
    return path


def huge_activations(path: Path) -> Path:
    """~40 KB: consistent weights of an 8192 px generator: one layer needs 2 G values per image."""
    G = _tiny_generator(img_resolution=8192, channel_base=1 << 16, channel_max=8, num_layers=4)
    path.write_bytes(official_pickle_bytes(G))
    return path


def ordered_dict_attributes(path: Path) -> Path:
    """A snapshot dict (an OrderedDict) whose BUILD sets ``get`` and ``items`` attributes."""
    stream = (b"\x80\x02ccollections\nOrderedDict\n)R}(X\x03\x00\x00\x00getK\x01"
              b"X\x05\x00\x00\x00itemsK\x02ub.")
    path.write_bytes(stream)
    return path


def memo_index(path: Path) -> Path:
    """8 bytes: LONG_BINPUT 2**31 - 1 (the C unpickler allocates a 32 GB memo table for it)."""
    path.write_bytes(b"\x80\x04N" + b"r" + struct.pack("<I", 2**31 - 1) + b".")
    return path


def bytearray8(path: Path) -> Path:
    """11 bytes: BYTEARRAY8 of 1 TiB (allocated before a single byte is read)."""
    path.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".")
    return path


def deep_tuples(path: Path) -> Path:
    """1 MB: a tuple nested a million levels deep (hashing it as a key crashes Python)."""
    path.write_bytes(b"\x80\x04)" + b"\x85" * 1_000_000 + b"}\x94\x8c\x01k\x94\x8c\x01v\x94s0.")
    return path


def many_objects(path: Path) -> Path:
    """3 MB: three million EMPTY_LIST opcodes kept on the stack (~200 MB of Python lists)."""
    path.write_bytes(b"\x80\x04" + b"]" * 3_000_000 + b".")
    return path


# ---------------------------------------------------------------------------------------------
# Our checkpoints (torch.save zips).


def classifier_width(path: Path) -> Path:
    """~100 KB: a classifier checkpoint declaring width 100,000 (360 GB) over a width-8 state dict."""
    model = build_classifier(3, width=8)
    payload = {"format": CLASSIFIER_FORMAT, "factory": FACTORY_NAME,
               "kwargs": {**model.factory_kwargs, "width": 100_000}, "storage_dtype": "float32",
               "state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "metadata": {}}
    torch.save(payload, path)
    return path


def classifier_zero_stride(path: Path) -> Path:
    """~10 KB: a width-2048 classifier (4.8 GB) whose weights are zero-stride views of one value."""
    with torch.device("meta"):
        model = build_classifier(3, width=2048)
    one = torch.zeros(())
    state = {k: (one.expand(v.shape) if v.is_floating_point() else torch.zeros((), dtype=v.dtype))
             for k, v in model.state_dict().items()}
    payload = {"format": CLASSIFIER_FORMAT, "factory": FACTORY_NAME, "kwargs": model.factory_kwargs,
               "storage_dtype": "float32", "state_dict": state, "metadata": {}}
    torch.save(payload, path)
    return path


def checkpoint_zero_stride(path: Path) -> Path:
    """~20 KB: a cfattack generator checkpoint of `BIG_GENERATOR` (3.2 GB) from one stored value."""
    with torch.device("meta"):
        G = Generator(**BIG_GENERATOR)
    one = torch.zeros(())
    payload = {"format": CHECKPOINT_FORMAT, "class": "Generator", "init_kwargs": G.init_kwargs,
               "state_dict": {k: one.expand(v.shape) for k, v in G.state_dict().items()}, "extra": {}}
    torch.save(payload, path)
    return path


def _zip_with(path: Path, data_pkl: bytes, records: dict[str, bytes], compress: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", b"little")
        for name, data in records.items():
            z.writestr(f"archive/data/{name}", data)
    return path


def _checkpoint_pickle(obj: Any, storages: dict[Any, tuple]) -> bytes:
    """Protocol 2 data.pkl where objects in ``storages`` become storage persistent ids."""

    class Pickler(NamePickler):
        def persistent_id(self, obj: Any) -> Any:
            return storages.get(id(obj))

    buf = io.BytesIO()
    Pickler(buf, 2).dump(obj)
    return buf.getvalue()


def storage_size_lie(path: Path) -> Path:
    """~1 KB: a storage id declaring a billion floats over a record of 16 bytes."""
    marker = object()
    tensor = Call(GlobalRef("torch._utils", "_rebuild_tensor_v2"), (marker, 0, (10**9,), (1,), False, OrderedDict()))
    data = _checkpoint_pickle({"format": CHECKPOINT_FORMAT, "w": tensor},
                              {id(marker): ("storage", GlobalRef("torch", "FloatStorage"), "0", "cpu", 10**9)})
    return _zip_with(path, data, {"0": bytes(16)})


def compressed_record(path: Path) -> Path:
    """A checkpoint whose records are deflate-compressed (a zip bomb inflates without limit)."""
    payload = {"format": CHECKPOINT_FORMAT, "w": torch.zeros(4)}
    plain = path.with_suffix(".plain")
    torch.save(payload, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain.unlink()
    return path


def checkpoint_ordered_dict_attributes(path: Path) -> Path:
    """A checkpoint whose payload OrderedDict gets ``get``/``items`` attributes by BUILD."""
    stream = (b"\x80\x02ccollections\nOrderedDict\n)R}(X\x03\x00\x00\x00getK\x01"
              b"X\x05\x00\x00\x00itemsK\x02ub.")
    return _zip_with(path, stream, {})


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "shared_references.pkl": shared_references,
    "settings_bomb.pkl": settings_bomb,
    "module_tree_bomb.pkl": module_tree_bomb,
    "zero_stride_weights.pkl": zero_stride_weights,
    "overlapping_stride_weights.pkl": overlapping_stride_weights,
    "huge_margin.pkl": huge_margin,
    "huge_activations.pkl": huge_activations,
    "ordered_dict_attributes.pkl": ordered_dict_attributes,
    "memo_index.pkl": memo_index,
    "bytearray8.pkl": bytearray8,
    "deep_tuples.pkl": deep_tuples,
    "many_objects.pkl": many_objects,
    "classifier_width.pt": classifier_width,
    "classifier_zero_stride.pt": classifier_zero_stride,
    "checkpoint_zero_stride.pt": checkpoint_zero_stride,
    "storage_size_lie.pt": storage_size_lie,
    "compressed_record.pt": compressed_record,
    "checkpoint_ordered_dict_attributes.pt": checkpoint_ordered_dict_attributes,
}


def write_hostile_networks(out_dir: str | Path) -> dict[str, Path]:
    """Every hostile file, by name, written into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: build(out_dir / name) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    for name, path in write_hostile_networks(args.out_dir).items():
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
