"""cfattack.bounded_pickle: the metered unpickler, tensor layouts, the byte limit, settings copies."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

from cfattack.bounded_pickle import (
    MAX_NETWORK_BYTES,
    MAX_NETWORK_BYTES_ENV,
    BoundedReader,
    BoundedUnpickler,
    FormatError,
    LimitError,
    TruncatedError,
    check_strided,
    network_bytes_limit,
    new_ordered_dict,
    plain_copy,
)
from cfattack.errors import InvalidInputError, NetworkLoadError, UnsafePickleError
from cfattack.stylegan.official_pickle import load_network_pkl


def _load(stream: bytes, allowed=None, **kwargs):
    return BoundedUnpickler(BoundedReader(io.BytesIO(stream), len(stream)), allowed or {}, **kwargs).load()


@pytest.mark.parametrize(("size", "stride", "offset", "storage", "numel"), [
    ((4, 6), (6, 1), 0, 24, 24),          # contiguous
    ((6, 4), (1, 6), 0, 24, 24),          # transposed
    ((3, 3), (6, 1), 8, 24, 9),           # a window with an offset
    ((1, 5), (0, 1), 0, 5, 5),            # zero stride on a size-1 dimension repeats nothing
    ((0, 7), (0, 0), 0, 0, 0),            # empty
    ((), (), 3, 4, 1),                    # a scalar
])
def test_fair_views_are_accepted(size, stride, offset, storage, numel):
    assert check_strided(size, stride, offset, storage) == numel


@pytest.mark.parametrize(("size", "stride", "offset", "storage", "problem"), [
    ((1000, 1000), (0, 1), 0, 1000, "zero stride"),
    ((1000, 1000), (1, 1), 0, 1999, "overlapping strides"),
    ((4, 6), (6, 1), 1, 24, "past the end"),
    ((4, 6), (6, 1), -1, 24, "offset"),
    ((4,), (1, 1), 0, 24, "sizes but"),
    ((True,), (1,), 0, 24, "non-negative ints"),
    (tuple(range(1, 40)), (1,) * 39, 0, 24, "at most 32"),
])
def test_unfair_views_are_refused(size, stride, offset, storage, problem):
    with pytest.raises(FormatError, match=problem):
        check_strided(size, stride, offset, storage)


def test_globals_come_from_the_allow_list_only():
    marker = object()
    assert _load(b"\x80\x02cmod\nname\n.", {("mod", "name"): marker}) is marker
    with pytest.raises(UnsafePickleError) as info:
        _load(b"cposix\nsystem\n(S'true'\ntR.")  # protocol 0 has no header; still named
    assert info.value.global_name == "posix.system"


@pytest.mark.parametrize(("stream", "problem"), [
    (b"\x80\x04" + b"N" * 600_000 + b".", "more than 500,000 objects"),
    (b"\x80\x04" + b"(" * 300 + b".", "nested more than 256"),
    (b"\x80\x04)" + b"\x85" * 300 + b".", "nests tuples more than 256"),
    (b"\x80\x05\x96" + (1 << 40).to_bytes(8, "little") + b".", "protocol-5 bytearrays"),
    (b"\x80\x02\x82\x01.", "extension codes"),
    (b"\x80\x02\xff.", "unknown opcode 0xff"),
    (b"\x80\x02(K\x01\x85Q.", "persistent ids"),
    (b"I" + b"1" * 70_000 + b"\n.", "text field is longer"),
])
def test_growth_is_metered(stream, problem):
    with pytest.raises(FormatError, match=problem):
        _load(stream)


def test_memo_is_a_dict_not_a_table():
    # LONG_BINPUT 2**31-1 makes the C unpickler allocate 16 GB; here it is one dict entry.
    assert _load(b"\x80\x04Nr\xff\xff\xff\x7f.") is None


def test_a_small_budget_is_enough_for_ordinary_streams():
    value = {"a": [1, 2.5, "x", (1, 2)], "b": {"c": None, "d": True}}
    assert _load(pickle.dumps(value, protocol=4), max_ops=200) == value


def test_ordered_dicts_cannot_get_attributes():
    ordered = new_ordered_dict()
    ordered.__setstate__({"_metadata": {"": {"version": 1}}})  # torch's state_dict bookkeeping: dropped
    assert not vars(ordered)
    with pytest.raises(FormatError, match="attributes on an OrderedDict"):
        ordered.__setstate__({"get": 1, "items": 2})
    with pytest.raises(FormatError, match="constructor arguments"):
        new_ordered_dict([("a", 1)])


def test_reader_refuses_reads_past_the_end_and_chunks_unknown_ends():
    reader = BoundedReader(io.BytesIO(b"abcdef"), 6)
    assert reader.read(4) == b"abcd"
    with pytest.raises(TruncatedError):
        reader.read(3)

    class Unseekable(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.reads = data, []

        def read(self, n: int = -1) -> bytes:
            self.reads.append(n)
            out, self.data = self.data[:n], self.data[n:]
            return out

    raw = Unseekable(b"x" * 10)
    with pytest.raises(TruncatedError):
        BoundedReader(raw, None).read(1 << 40)  # a lying length: memory follows the real bytes
    assert max(raw.reads) <= 1 << 20


def test_plain_copy_counts_shared_references():
    level = [0]
    for _ in range(40):
        level = [level, level]
    with pytest.raises(LimitError, match="more than 100,000 values"):
        plain_copy(level, "settings")
    assert plain_copy({"a": [1, (2, "x")], "b": None}, "settings") == {"a": [1, (2, "x")], "b": None}
    with pytest.raises(LimitError, match="nested more than 64"):
        deep: list = []
        for _ in range(100):
            deep = [deep]
        plain_copy(deep, "settings")
    with pytest.raises(FormatError, match="non-string key"):
        plain_copy({1: 2}, "settings")
    with pytest.raises(FormatError, match="unsupported value of type Tensor"):
        plain_copy({"t": torch.zeros(1)}, "settings")


def test_the_byte_limit_comes_from_the_argument_the_environment_or_the_default(monkeypatch):
    monkeypatch.delenv(MAX_NETWORK_BYTES_ENV, raising=False)
    assert network_bytes_limit() == MAX_NETWORK_BYTES == 4 * 1024**3
    monkeypatch.setenv(MAX_NETWORK_BYTES_ENV, "8e9")
    assert network_bytes_limit() == 8_000_000_000
    assert network_bytes_limit(1000) == 1000  # the argument wins
    for bad in ("lots", "-5", "1.5", "inf"):
        monkeypatch.setenv(MAX_NETWORK_BYTES_ENV, bad)
        with pytest.raises(InvalidInputError, match=MAX_NETWORK_BYTES_ENV):
            network_bytes_limit()
    with pytest.raises(InvalidInputError, match="max_bytes"):
        network_bytes_limit(0)


def test_the_limit_applies_to_a_real_network_and_can_be_raised(monkeypatch, t32_pickle_file):
    monkeypatch.delenv(MAX_NETWORK_BYTES_ENV, raising=False)
    with pytest.raises(NetworkLoadError, match=r"refusing to load: .*the limit for one network file \(raise it"):
        load_network_pkl(t32_pickle_file, max_bytes=100_000)
    monkeypatch.setenv(MAX_NETWORK_BYTES_ENV, "100000")
    with pytest.raises(NetworkLoadError, match="limit"):
        load_network_pkl(t32_pickle_file, load=("G_ema",))
    assert load_network_pkl(t32_pickle_file, load=("G_ema",), max_bytes=10**9)["G_ema"] is not None


@pytest.fixture(scope="module")
def t32_pickle_file(tmp_path_factory):
    from tests.golden import build_golden_generator
    from tests.tools.make_official_pickle import write_official_pickle

    G, _ = build_golden_generator("T32_c10_gray")
    return write_official_pickle(tmp_path_factory.mktemp("pkl") / "t32.pkl", G)
