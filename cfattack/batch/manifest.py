"""The items of a batch job: which image goes toward which target, in a fixed order, under a stable key.

A job's input is a folder of images (searched recursively, sorted by path) or a manifest, a
CSV file with a header or a JSON-lines file, with an ``image`` column and an optional
``target`` column (relative image paths are relative to the manifest's folder)::

    image,target
    shoes/a.png,sandal
    shoes/b.png,

A row's own target wins; otherwise the targets come from ``targets_from`` (a second manifest
mapping images to targets, one item per row) or the single ``target`` given for all. Items
keep this order; it fixes how they are batched and sharded, so it must not depend on anything
but the input.

Each item has a key, ``sha256(image bytes, target, config hash)`` cut to 16 hex digits: a
resumed job recognises finished items by it (a renamed file is still done, an edited one is
new), and an item listed twice is explained once. The config hash covers the settings and the
content of the bundle's networks (`cfattack.batch.file_hashes`).

Nothing about one listed file can stop or hang the job: files are hashed through
`cfattack.regular_files` (opened without blocking, regular files only, at most
`cfattack.images.MAX_IMAGE_FILE_BYTES`), and an item whose path is not valid UTF-8, whose name is
over `MAX_NAME_BYTES`, or that is a FIFO, device, socket, folder or loop of links carries a
``refusal`` and fails on its own, under the printable form of its name::

    items = collect_items("images/", spec, config_hash=h, target="pullover")
    items.items[0].key, items.items[0].folder     # '3fa9c0...', 'coat-1-to-pullover-3fa9c0de'
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from cfattack.batch.file_hashes import FileHashCache, bundle_file_hashes
from cfattack.bundle.spec import BundleSpec
from cfattack.classes import resolve_class
from cfattack.errors import CfattackError, InvalidInputError
from cfattack.images import MAX_IMAGE_FILE_BYTES
from cfattack.regular_files import printable_path, read_regular_file, sha256_regular_file

__all__ = [
    "IMAGE_SUFFIXES",
    "MANIFEST_SUFFIXES",
    "MAX_NAME_BYTES",
    "BatchItem",
    "ItemList",
    "ManifestRow",
    "collect_items",
    "config_hash",
    "file_sha256",
    "list_images",
    "read_manifest",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
"""Files of a folder input that are items (case-insensitive); a manifest may name any file."""

MANIFEST_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

KEY_DIGITS = 16  # 64 bits: collisions are negligible for any job that fits on a disk

MAX_NAME_BYTES = 200
"""Longest file name (its last part, in UTF-8 bytes) an item may have: its report folder
``<stem>-to-<target>-<key8>`` is named after it and must stay under the usual 255-byte limit."""
MAX_MANIFEST_BYTES = 1 << 28  # 256 MiB: millions of rows; read whole, so bounded
_MAX_TARGET_CHARS = 40  # of the target in a folder name: 200 + 4 + 40 + 9 <= 255


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest: the image as written, where it is, and its target (None: not given)."""

    image: str
    path: Path
    target: str | None
    line: int


@dataclass(frozen=True)
class BatchItem:
    """One unit of work: explain ``image`` toward ``target``.

    Attributes:
        position: index in the job's full ordered item list (fixes its batch and its rank).
        image: the image path as the input gave it (shown in records and reports).
        path: where the file is.
        target: the canonical class name; the text as given when it is unknown; None when no
            target was given.
        target_index: the class index, or None when ``target_error`` says why not.
        target_error: why the target cannot be used (unknown class, none given), else None.
        image_sha256: hash of the file's bytes, None when the file cannot be read.
        key: the item's identity across runs (see the module docstring).
        refusal: why the file is refused without being read (missing, not a regular file, a
            path that is not UTF-8, a name over `MAX_NAME_BYTES`), else None.
    """

    position: int
    image: str
    path: Path
    target: str | None
    target_index: int | None
    target_error: str | None
    image_sha256: str | None
    key: str
    refusal: str | None = None

    @property
    def folder(self) -> str:
        """Name of the item's report folder: ``<image stem>-to-<target>-<key[:8]>`` (at most 253 bytes)."""
        stem = _safe(Path(self.image).stem)[:MAX_NAME_BYTES]
        return f"{stem}-to-{_safe(self.target or 'none')[:_MAX_TARGET_CHARS]}-{self.key[:8]}"


@dataclass
class ItemList:
    """The ordered, de-duplicated items of a job, and how many listed items repeated an earlier one."""

    items: list[BatchItem] = field(default_factory=list)
    duplicates: int = 0


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of an image file's bytes, or None when it is refused or cannot be read.

    Only a regular file of at most `MAX_IMAGE_FILE_BYTES` is read, opened without blocking
    (`cfattack.regular_files.sha256_regular_file`): a FIFO or ``/dev/zero`` never hangs it.
    """
    try:
        return sha256_regular_file(path, what="image file", max_bytes=MAX_IMAGE_FILE_BYTES)
    except InvalidInputError:
        return None


def config_hash(
    config_json: str,
    spec: BundleSpec,
    spec_path: Path | None,
    classifier: str,
    file_hashes: dict[str, str | None] | None = None,
) -> str:
    """Hash of everything that changes an explanation's numbers: settings, bundle, classifier.

    The bundle enters through its ``bundle.json`` text and the content hashes of its files
    (`cfattack.batch.file_hashes.bundle_file_hashes`: unchanged by copying the bundle
    elsewhere, changed by new weights of the same size). Not included: the device and the
    cfattack version, which can change the last bits of results; see docs/batch.md.

    Args:
        config_json: ``ExplainConfig.model_dump_json()``.
        spec: the bundle's spec; ``spec_path`` its ``bundle.json`` (None: a bundle built in memory).
        classifier: the canonical name of the explained classifier.
        file_hashes: the bundle's file hashes when already computed (None: hash them now, uncached).
    """
    if file_hashes is None:
        file_hashes = bundle_file_hashes(spec, spec_path, classifier, FileHashCache())
    payload = {
        "explain_config": json.loads(config_json),
        "bundle": spec.name,
        "bundle_spec": json.loads(spec.to_json()),
        "bundle_file_sha256": file_hashes,
        "classifier": classifier,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:KEY_DIGITS]


# ---------------------------------------------------------------------------------------------
# Reading inputs.


def list_images(folder: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden ones skipped), sorted by relative path.

    ``exclude``: folders to leave out, e.g. the job's own output folder inside the input.
    """
    folder = Path(folder)
    skip = [_resolved(Path(p)) for p in exclude]
    found = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and _resolved(root_path / d) not in skip]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(root_path / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Rows of a CSV (with a header) or JSON-lines manifest with ``image`` and optional ``target``.

    Column names are matched ignoring case and surrounding spaces; other columns are ignored;
    an empty target means "not given". Relative image paths are relative to the manifest's folder.

    Raises:
        InvalidInputError: the file cannot be read (missing, not a regular file, over 256 MiB,
            not UTF-8), has no ``image`` column, or a row is malformed (the message names the line).
    """
    path = Path(path)
    kind = MANIFEST_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"{path}: a manifest must be a .csv or .jsonl file (got {path.suffix or 'no suffix'})"
        )
    try:
        text = read_regular_file(path, what="manifest", max_bytes=MAX_MANIFEST_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"cannot read manifest {printable_path(path)}: not UTF-8 text ({exc.reason} "
                                f"at byte {exc.start})") from None
    raw_rows = _csv_rows(text, path) if kind == "csv" else _jsonl_rows(text, path)
    rows = []
    for line, image, target in raw_rows:
        if not image:
            raise InvalidInputError(f"{path}, line {line}: the image is empty")
        image_path = Path(image).expanduser()
        shown = image if image_path.is_absolute() else str(path.parent / image)
        rows.append(ManifestRow(shown, image_path if image_path.is_absolute() else path.parent / image_path,
                                target or None, line))
    return rows


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, str, str | None]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise InvalidInputError(f"{path}: the manifest is empty (expected a header with an 'image' column)")
    columns = [c.strip().lower() for c in header]
    if "image" not in columns:
        raise InvalidInputError(f"{path}: the CSV header has no 'image' column (it has {', '.join(header) or 'none'})")
    image_col = columns.index("image")
    target_col = columns.index("target") if "target" in columns else None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= image_col:
            raise InvalidInputError(f"{path}, line {line}: the row has no image")
        target = row[target_col].strip() if target_col is not None and target_col < len(row) else None
        yield line, row[image_col].strip(), target


def _jsonl_rows(text: str, path: Path) -> Iterator[tuple[int, str, str | None]]:
    for line, content in enumerate(text.splitlines(), 1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}, line {line}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}, line {line}: expected a JSON object with an 'image' field")
        fields = {str(k).strip().lower(): v for k, v in row.items()}
        image, target = fields.get("image"), fields.get("target")
        if not isinstance(image, str):
            raise InvalidInputError(f"{path}, line {line}: 'image' must be a string path, got {image!r}")
        if isinstance(target, bool) or (target is not None and not isinstance(target, (str, int))):
            raise InvalidInputError(f"{path}, line {line}: 'target' must be a class name or index, got {target!r}")
        yield line, image.strip(), None if target is None else str(target).strip()


# ---------------------------------------------------------------------------------------------
# The item list.


def collect_items(
    source: str | os.PathLike,
    spec: BundleSpec,
    *,
    config_hash: str,
    target: str | None = None,
    targets_from: str | os.PathLike | None = None,
    limit: int | None = None,
    exclude: Sequence[str | os.PathLike] = (),
) -> ItemList:
    """The job's items in their fixed order, each with its key; at most ``limit`` of them.

    Args:
        source: a folder of images or a manifest (.csv / .jsonl).
        spec: the bundle's spec, to resolve target names to canonical class names.
        config_hash: the job's `config_hash`, part of every key.
        target: the target of every image that has no target of its own.
        targets_from: a manifest whose rows give targets to the images of ``source`` (matched by
            resolved path); an image listed in several rows becomes several items.
        limit: keep only the first ``limit`` distinct items.
        exclude: folders of a folder ``source`` to skip (the job's output folder).

    A bad target is not an error here: the item carries ``target_error`` and fails on its own;
    nor is a bad file: it carries a ``refusal`` (see `BatchItem`), and a file that cannot be
    hashed is keyed by its path.

    Raises:
        InvalidInputError: ``source`` is neither a folder nor a manifest, a manifest is malformed,
            ``target`` is not a class of the bundle, or ``target`` and ``targets_from`` are both given.
    """
    if target is not None and targets_from is not None:
        raise InvalidInputError("give either --target or --targets-from, not both")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be >= 1, got {limit}")
    default_target = None
    if target is not None:
        default_target = spec.class_names[resolve_class(target, spec.class_names, spec.class_aliases)]
    lookup: dict[Path, list[str | None]] | None = None
    if targets_from is not None:
        lookup = {}
        for row in read_manifest(targets_from):
            lookup.setdefault(_resolved(row.path), []).append(row.target)

    result = ItemList()
    seen: set[str] = set()
    for image, path, given in _listed(Path(source), exclude):
        if given is not None:
            targets: list[str | None] = [given]
        elif lookup is not None:
            targets = lookup.get(_resolved(path), [None])
        else:
            targets = [default_target]
        shown = printable_path(image)
        refusal = _name_problem(path, shown)
        digest = None
        if refusal is None:
            try:
                digest = sha256_regular_file(path, what="image file", max_bytes=MAX_IMAGE_FILE_BYTES)
            except InvalidInputError as exc:
                refusal = str(exc)
        for wanted in targets:
            name, index, error = _resolve_target(wanted, spec, lookup is not None)
            content = digest if digest is not None else f"unreadable:{printable_path(_resolved(path))}"
            key = hashlib.sha256(f"{content}|{name}|{config_hash}".encode("utf-8")).hexdigest()[:KEY_DIGITS]
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            result.items.append(BatchItem(len(result.items), shown, path, name, index, error, digest, key, refusal))
            if limit is not None and len(result.items) >= limit:
                return result
    return result


def _listed(source: Path, exclude: Sequence[str | os.PathLike]) -> Iterator[tuple[str, Path, str | None]]:
    """(image as shown, path, the row's own target) for every listed image, in input order."""
    if source.is_dir():
        for path in list_images(source, exclude):
            yield str(path), path, None
    elif source.suffix.lower() in MANIFEST_SUFFIXES:
        for row in read_manifest(source):
            yield row.image, row.path, row.target
    elif source.exists():
        raise InvalidInputError(
            f"{source}: INPUT must be a folder of images or a manifest (.csv or .jsonl with an 'image' column)"
        )
    else:
        raise InvalidInputError(f"input not found: {source}")


def _resolved(path: Path) -> Path:
    """The absolute path with links resolved as far as they go (a loop of links stays as it is)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop of symbolic links (Python < 3.13)
        return path.absolute()


def _name_problem(path: Path, shown: str) -> str | None:
    """Why a path is refused for its name alone, else None (see `MAX_NAME_BYTES`)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return (f"{shown}: the path is not valid UTF-8, so the records and reports cannot name the file "
                "as it is; rename it")
    size = len(path.name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"{shown}: the file name is {size} bytes long, over the limit of {MAX_NAME_BYTES} (the "
                "item's report folder is named after it); rename it")
    return None


def _resolve_target(
    wanted: str | None, spec: BundleSpec, from_manifest: bool
) -> tuple[str | None, int | None, str | None]:
    """(canonical name or the text given, index or None, error or None)."""
    if wanted is None:
        where = "in --targets-from" if from_manifest else "(give --target, or a target column in the manifest)"
        return None, None, f"no target for this image {where}"
    wanted = printable_path(wanted)  # text from a JSON manifest may hold lone surrogates
    try:
        index = resolve_class(wanted, spec.class_names, spec.class_aliases)
    except CfattackError as exc:
        return wanted, None, str(exc)
    return spec.class_names[index], index, None
