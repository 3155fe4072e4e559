"""What a batch job keeps on disk: job.json, the results and failures journals, and their merge.

Layout of the output folder ``DIR``::

    DIR/job.json                 the settings and config hash the folder belongs to
    DIR/results.jsonl            one `ResultRecord` per finished item
    DIR/failures.jsonl           one `FailureRecord` per failed item (stage, error type, message)
    DIR/results.rank<R>.jsonl    under torchrun: rank R's journals, merged into the two above
    DIR/failures.rank<R>.jsonl     by rank 0 at the end of the job, then removed
    DIR/<item folder>/           explanation.json, counterfactual.png, strip.png, explanation.html
    DIR/.file-hashes.json        cached hashes of the bundle's files (`cfattack.batch.file_hashes`)

How the journals stay whole across a kill: a batch's lines are appended in one ``write`` of
complete lines to a file opened with ``O_APPEND`` and then fsync'ed, after every file of the
batch's item folders is in place (each written atomically by `cfattack.reports.write_report`).
A kill can interrupt that one write only in the middle of a line at the end of the file; the
readers here ignore such a torn tail, and the next writer cuts it off (rewriting the complete
lines atomically) before it appends. So a line present is a finished item, and an item in
flight is simply absent and done again. Appending keeps the cost of a record constant; the
merged ``results.jsonl`` and ``failures.jsonl`` written at the end of every run are rewritten
whole, atomically, in item order, so a finished job's files do not depend on how it got there
(interrupted, resumed, on one rank or many). Everything else (job.json, global.*) is written
with `cfattack.atomic` (temporary file + rename); a kill leaves at most such temporary files,
which the next run removes before it starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from cfattack.atomic import atomic_write, atomic_write_text, fsync_directory
from cfattack.config import FrozenConfig
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig

__all__ = [
    "JOB_FORMAT",
    "AttributionRow",
    "FailureRecord",
    "FailureStage",
    "JobSpec",
    "JobStore",
    "Journal",
    "ResultRecord",
    "read_jsonl",
    "record_line",
]

JOB_FORMAT = "cfattack.batch-job/1"
FailureStage = Literal["load", "target", "explain"]

# atomic_write's temporary files: ".<name>.<16 hex digits>.tmp" next to the destination.
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")
_RANK_JOURNAL = re.compile(r"^(results|failures)\.rank(\d+)\.jsonl$")

Record = TypeVar("Record", bound=BaseModel)


class AttributionRow(FrozenConfig):
    """One descriptor change of a finished item (the numbers of `cfattack.attribution.changes.DescriptorChange`)."""

    name: str = Field(description="Descriptor name.")
    unit: str = Field(description="Unit of before, after and change.")
    before: float = Field(description="Value for the start image.")
    after: float = Field(description="Value for the counterfactual.")
    change: float = Field(description="after - before, in the unit.")
    standardized_change: float = Field(description="change / the descriptor's standard deviation.")
    reliable: bool = Field(description="Whether the latent predictor met the quality bar.")


class ResultRecord(FrozenConfig):
    """One line of ``results.jsonl``: a finished item (its full report is in ``DIR/<folder>/``)."""

    key: str = Field(description="The item's key: image content, target and config hash.")
    image: str = Field(description="The image as the input listed it.")
    image_sha256: str = Field(description="SHA-256 of the image file.")
    folder: str = Field(description="The item's report folder, relative to the job folder.")
    source_class: str = Field(description="The classifier's label for the image.")
    source_index: int = Field(ge=0)
    source_probability: float = Field(description="Probability of source_class for the image.")
    target: str = Field(description="The target class.")
    target_index: int = Field(ge=0)
    reached: bool = Field(description="The target probability passed the threshold.")
    reason: str = Field(description="Why the attack stopped.")
    steps: int = Field(ge=0, description="Attack steps taken.")
    target_probability: float = Field(description="Target probability of the counterfactual.")
    counterfactual_class: str = Field(description="The classifier's label for the counterfactual.")
    latent_distance: float | None = Field(description="||ws_cf - ws0|| (None in pixel space).")
    pixel_rms: float = Field(description="RMS pixel change, in [-1, 1] units.")
    inversion_psnr: float | None = Field(description="PSNR (dB) of the reconstruction (None in pixel space).")
    inversion_flagged: bool | None = Field(description="The reconstruction was flagged as poor.")
    attribution_source: Literal["predicted", "measured"] = Field(description="Where attributions come from.")
    attributions: list[AttributionRow] = Field(description="Descriptor changes, largest first.")

    @classmethod
    def from_explanation(cls, key: str, image: str, image_sha256: str, folder: str, explanation: Any) -> ResultRecord:
        """The record of one `cfattack.pipeline.explanation.Explanation`."""
        e = explanation
        return cls(
            key=key, image=image, image_sha256=image_sha256, folder=folder,
            source_class=e.source_class, source_index=e.source_index, source_probability=e.source_probability,
            target=e.target, target_index=e.target_index, reached=e.reached, reason=e.reason, steps=e.steps,
            target_probability=e.target_probability, counterfactual_class=e.counterfactual_class,
            latent_distance=e.latent_distance, pixel_rms=e.pixel_rms,
            inversion_psnr=None if e.inversion is None else e.inversion.psnr,
            inversion_flagged=None if e.inversion is None else e.inversion.flagged,
            attribution_source=e.attribution_source,
            attributions=[
                AttributionRow(name=a.name, unit=a.unit, before=a.before, after=a.after, change=a.change,
                               standardized_change=a.standardized_change, reliable=a.reliable)
                for a in e.attributions
            ],
        )


class FailureRecord(FrozenConfig):
    """One line of ``failures.jsonl``: an item that could not be explained, and why."""

    key: str = Field(description="The item's key.")
    image: str = Field(description="The image as the input listed it.")
    target: str | None = Field(description="The target as resolved or given (None: none given).")
    stage: FailureStage = Field(
        description="load: the image cannot be read; target: unknown, missing or already the predicted class; "
                    "explain: the batch it was in raised an error."
    )
    error: str = Field(description="The exception type.")
    message: str = Field(description="The error message, one line.")


class JobSpec(FrozenConfig):
    """``job.json``: what a job folder's results were computed with."""

    format_version: Literal["cfattack.batch-job/1"] = JOB_FORMAT
    config_hash: str = Field(
        description="Hash of the explain settings, bundle (its bundle.json and network contents) and classifier "
                    "(see config_hash)."
    )
    bundle: str = Field(description="Name of the bundle.")
    classifier: str = Field(description="Name of the explained classifier.")
    batch_size: int = Field(ge=1, description="Items per device batch (fixes the batches' composition).")
    config: ExplainConfig = Field(description="The explain settings.")
    bundle_files: dict[str, str | None] | None = Field(
        None,
        description="SHA-256 of bundle.json and of each network file the job uses, by role (None: unreadable); "
                    "absent in job.json files written before content hashes entered the config hash.",
    )


def record_line(record: BaseModel) -> str:
    """A record as one compact JSON line (floats written so that they read back exactly)."""
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))


def read_jsonl(path: str | os.PathLike, model: type[Record]) -> list[Record]:
    """The complete, valid records of a journal; a missing file has none.

    A torn last line (no newline: a kill during the append) is ignored, and so is any line that
    does not parse as ``model``.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for raw in data.split(b"\n")[:-1]:  # the piece after the last newline is empty or torn
        if not raw.strip():
            continue
        try:
            records.append(model.model_validate(json.loads(raw)))
        except (ValueError, ValidationError):
            continue
    return records


class Journal:
    """An append-only JSON-lines file with one writer (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._checked = False

    def repair(self) -> bool:
        """Cut off a torn last line (atomically); True if there was one."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        if not data or data.endswith(b"\n"):
            return False
        whole = data[: data.rfind(b"\n") + 1]
        atomic_write(self.path, lambda fh: fh.write(whole))
        return True

    def append(self, records: Iterable[BaseModel]) -> None:
        """Append complete lines in one write, then fsync (creating the file if needed)."""
        data = "".join(record_line(r) + "\n" for r in records).encode("utf-8")
        if not data:
            return
        if not self._checked:
            self.repair()
            self._checked = True
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)


class JobStore:
    """The files of one job folder, seen from one rank.

    Args:
        root: the job folder (``--out``).
        rank, world_size: this process's place under torchrun; a single process journals
            straight into ``results.jsonl`` / ``failures.jsonl``, rank R of many into
            ``results.rankR.jsonl`` / ``failures.rankR.jsonl``.
    """

    def __init__(self, root: str | os.PathLike, rank: int = 0, world_size: int = 1) -> None:
        self.root = Path(root)
        self.rank = rank
        self.world_size = world_size
        suffix = "" if world_size == 1 else f".rank{rank}"
        self.results = Journal(self.root / f"results{suffix}.jsonl")
        self.failures = Journal(self.root / f"failures{suffix}.jsonl")

    @property
    def job_path(self) -> Path:
        return self.root / "job.json"

    @property
    def results_path(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def failures_path(self) -> Path:
        return self.root / "failures.jsonl"

    # --- job.json ---------------------------------------------------------------------------

    def read_job(self) -> JobSpec | None:
        """The folder's job.json, None when there is none."""
        try:
            text = self.job_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return JobSpec.model_validate_json(text)
        except ValidationError as exc:
            raise InvalidInputError(
                f"{self.job_path} is not a cfattack batch job file ({exc.error_count()} problems); "
                "use --restart to start the folder over, or another --out"
            ) from None

    def check_job(self, job: JobSpec) -> JobSpec | None:
        """Raise if the folder belongs to a job with another config; returns the folder's job (or None)."""
        previous = self.read_job()
        if previous is not None and previous.config_hash != job.config_hash:
            changes = _differences(previous, job)
            raise InvalidInputError(
                f"{self.root} was run with a different config ({changes}); use --restart to discard its "
                "results and start over, or choose another --out"
            )
        return previous

    def write_job(self, job: JobSpec) -> None:
        atomic_write_text(self.job_path, job.model_dump_json(indent=2) + "\n")

    # --- reading and merging ----------------------------------------------------------------

    def _journal_files(self, kind: str) -> list[Path]:
        """``<kind>.jsonl`` then every ``<kind>.rankR.jsonl`` by rank: the order records are read in."""
        ranks = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                match = _RANK_JOURNAL.match(path.name)
                if match and match.group(1) == kind:
                    ranks.append((int(match.group(2)), path))
        return [self.root / f"{kind}.jsonl"] + [path for _, path in sorted(ranks)]

    def read_results(self) -> dict[str, ResultRecord]:
        """Every finished item of the folder by key (all journals; the first record of a key wins)."""
        found: dict[str, ResultRecord] = {}
        for path in self._journal_files("results"):
            for record in read_jsonl(path, ResultRecord):
                found.setdefault(record.key, record)
        return found

    def read_failures(self) -> dict[str, FailureRecord]:
        """Every failed item by key (the latest record of a key wins, e.g. after --retry-failed)."""
        found: dict[str, FailureRecord] = {}
        for path in self._journal_files("failures"):
            for record in read_jsonl(path, FailureRecord):
                found[record.key] = record
        return found

    def merge(self, order: list[str]) -> tuple[list[ResultRecord], list[FailureRecord]]:
        """Rewrite results.jsonl and failures.jsonl whole, in item order, and remove the rank journals.

        ``order``: the keys of the job's items; records of other keys (from earlier runs over
        other inputs) follow, sorted by key. A failure whose item has since succeeded is dropped.
        Returns the merged records.
        """
        results, failures = self.read_results(), self.read_failures()
        position = {key: i for i, key in enumerate(order)}

        def sort_key(key: str) -> tuple[int, int, str]:
            return (0, position[key], "") if key in position else (1, 0, key)

        merged_results = [results[k] for k in sorted(results, key=sort_key)]
        merged_failures = [failures[k] for k in sorted(failures, key=sort_key) if k not in results]
        atomic_write_text(self.results_path, "".join(record_line(r) + "\n" for r in merged_results))
        atomic_write_text(self.failures_path, "".join(record_line(r) + "\n" for r in merged_failures))
        for kind in ("results", "failures"):
            for path in self._journal_files(kind)[1:]:
                path.unlink(missing_ok=True)
        return merged_results, merged_failures

    # --- housekeeping -----------------------------------------------------------------------

    def remove_temporaries(self) -> int:
        """Delete temporary files left by a killed atomic write (in the folder and its item folders)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        folders = [self.root] + [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        for folder in folders:
            for path in folder.iterdir():
                if _TEMPORARY.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def clear(self) -> None:
        """Forget the folder's job (``--restart``): job.json, journals and their CSVs, global report, item folders."""
        folders = {r.folder for r in self.read_results().values()}
        for kind in ("results", "failures"):
            for path in self._journal_files(kind):
                path.unlink(missing_ok=True)
        for name in ("job.json", "global.json", "global.html", "results.csv", "attributions.csv", "failures.csv"):
            (self.root / name).unlink(missing_ok=True)
        for folder in folders:
            path = self.root / folder
            # Only a plain child folder holding a report: never follow a record out of the job folder.
            if path.parent == self.root and path.is_dir() and (path / "explanation.json").is_file():
                shutil.rmtree(path)


def _differences(old: JobSpec, new: JobSpec, limit: int = 4) -> str:
    """``attack.steps 500 -> 20, bundle a -> b``: what changed between two jobs' settings."""
    before = _flatten({"bundle": old.bundle, "classifier": old.classifier, **old.config.model_dump(mode="json")})
    after = _flatten({"bundle": new.bundle, "classifier": new.classifier, **new.config.model_dump(mode="json")})
    changed = [f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    if old.bundle_files is None and new.bundle_files is not None:
        changed.append("its job.json predates content hashes of the bundle's files")
    elif old.bundle_files is not None and new.bundle_files is not None:
        changed += [f"bundle file {role} changed" for role in sorted(set(old.bundle_files) | set(new.bundle_files))
                    if old.bundle_files.get(role) != new.bundle_files.get(role)]
    if not changed:
        return "the bundle's files differ"
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return ", ".join(changed[:limit]) + more


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}
