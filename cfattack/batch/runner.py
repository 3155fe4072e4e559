"""A batch job: explain many images in device batches, resumably, on one process or many.

`BatchJob.run` does, in order:

1. (rank 0) hash the bundle's networks (`cfattack.batch.file_hashes`, cached in the folder) into
   the config hash, list the items (`cfattack.batch.manifest`), refuse a folder that holds
   another config's results unless ``restart``, remove temporaries left by a kill, write
   ``job.json``; every rank receives the same item list.
2. Cut the FULL item list into batches by position, batch k = items[k*B:(k+1)*B], and give
   batch k to rank k % world_size. Both are fixed before anything is skipped, so a batch always
   has the same composition however often the job was interrupted and on however many ranks it
   runs; batched convolutions round differently for different batch compositions, and this is
   what makes a resumed or sharded job give exactly the numbers of one uninterrupted process.
3. For each of this rank's batches with an unfinished item: load every item, drop those that
   were refused when listed (a FIFO, a device, a name that is not UTF-8 ...) or fail to load
   or have no usable target (failures "load" / "target"), drop those whose target
   the classifier already predicts (failure "target"), explain the rest in ONE
   `Explainer.explain_many` call (an error there fails the batch's items, stage "explain", and
   the job goes on), write the report folders of the unfinished items, then append their
   records to the journals. A partly finished batch is recomputed whole and only its missing
   items are written.
4. Wait for all ranks; rank 0 merges the journals into ``results.jsonl`` / ``failures.jsonl``
   (item order), writes them as CSV too (``results.csv``, ``attributions.csv``, ``failures.csv``)
   and writes ``global.json`` / ``global.html``.

Example::

    summary = BatchJob("examples/", "report/", target="pullover",
                       config=ExplainConfig(inversion=InversionConfig(steps=10))).run()
    print("\\n".join(summary.lines()))
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cfattack.attack.objectives import class_probabilities
from cfattack.batch.distributed import Distributed
from cfattack.batch.file_hashes import CACHE_NAME, FileHashCache, bundle_file_hashes
from cfattack.batch.global_explanation import aggregate
from cfattack.batch.manifest import IMAGE_SUFFIXES, BatchItem, ItemList, collect_items, config_hash
from cfattack.batch.report import write_global
from cfattack.batch.table import write_tables
from cfattack.batch.store import FailureRecord, FailureStage, JobSpec, JobStore, ResultRecord
from cfattack.bundle import Bundle, BundleSpec, bundle_spec_path, read_bundle_spec
from cfattack.classes import resolve_choice
from cfattack.errors import InvalidInputError
from cfattack.pipeline.explanation import ExplainConfig
from cfattack.progress import ExplainProgress, Progress
from cfattack.regular_files import printable_path

__all__ = ["BatchJob", "BatchSummary", "run_batch", "batches_of"]


def batches_of(count: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[range]:
    """Positions of the batches rank ``rank`` runs: batch k = [k*B, (k+1)*B) for k = rank, rank + W, ...

    >>> batches_of(10, 4, rank=1, world_size=2)
    [range(4, 8)]
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch size must be >= 1, got {batch_size}")
    n_batches = math.ceil(count / batch_size)
    return [range(k * batch_size, min((k + 1) * batch_size, count)) for k in range(rank, n_batches, world_size)]


@dataclass
class BatchSummary:
    """What a run did (summed over ranks) and where the outputs are."""

    out: Path
    items: int
    explained: int = 0
    reached: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    results_total: int = 0
    failures_total: int = 0
    seconds: float = 0.0
    world_size: int = 1
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the CLI prints."""
        rate = self.explained / self.seconds if self.seconds > 0 else 0.0
        ranks = f" on {self.world_size} ranks" if self.world_size > 1 else ""
        lines = [
            f"done: {self.explained} explained ({self.reached} reached), {self.failed} failed, "
            f"{self.skipped} skipped (finished before) in {self.seconds:.1f} s{ranks} ({rate:.2f} items/s)",
            f"job: {self.items} items" + (f" ({self.duplicates} duplicates ignored)" if self.duplicates else "")
            + f"; {self.results_total} results in {self.out / 'results.jsonl'}, "
            f"{self.failures_total} failures in {self.out / 'failures.jsonl'} (+ results.csv, attributions.csv, "
            "failures.csv)",
            f"global explanation: {self.out / 'global.html'} (+ global.json)",
        ]
        return self.notes + lines


@dataclass
class _Counts:
    explained: int = 0
    reached: int = 0
    failed: int = 0
    skipped: int = 0


class BatchJob:
    """Explain every item of a folder or manifest into ``out``; see the module docstring.

    Args:
        source: a folder of images or a manifest (.csv / .jsonl with ``image`` and optional ``target``).
        out: the job folder.
        target: the target of every image without one of its own.
        targets_from: a manifest giving targets to the images of ``source``.
        bundle: ``"default"``, a bundle folder, or a loaded `Bundle`.
        classifier: the bundle's classifier to explain (None: the bundle's default).
        config: explain settings (part of the job's identity: a folder refuses another config).
        batch_size: items per device batch (fixes the batches; keep it when resuming to get
            exactly the numbers of an uninterrupted run).
        limit: only the first ``limit`` items.
        restart: discard the folder's previous results (needed after a config change).
        retry_failed: explain again the items that failed before.
        device: "cpu" or "cuda" (under torchrun with CUDA, rank r uses cuda:LOCAL_RANK).
        progress: report progress on stderr (rank 0): a bar of items and one of the steps inside
            the current device batch on a terminal, a summary line otherwise (`cfattack.progress`).
        resamples, seed: the bootstrap of the global explanation.
        log: where rank 0 sends notes (e.g. a changed batch size); None: collected in the summary.
        trust_code: allow the bundle's code classifiers (factory, TorchScript) when it is loaded.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        out: str | os.PathLike,
        *,
        target: str | None = None,
        targets_from: str | os.PathLike | None = None,
        bundle: Bundle | str | os.PathLike = "default",
        classifier: str | None = None,
        config: ExplainConfig | None = None,
        batch_size: int = 32,
        limit: int | None = None,
        restart: bool = False,
        retry_failed: bool = False,
        device: str = "cpu",
        progress: bool = False,
        resamples: int = 1000,
        seed: int = 0,
        log: Callable[[str], None] | None = None,
        trust_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch size must be >= 1, got {batch_size}")
        if limit is not None and limit < 1:
            raise InvalidInputError(f"limit must be >= 1, got {limit}")
        self.source = Path(source)
        self.out = Path(out)
        self.target = target
        self.targets_from = targets_from
        self.bundle = bundle
        self.classifier_option = classifier
        self.config = config or ExplainConfig()
        self.batch_size = batch_size
        self.limit = limit
        self.restart = restart
        self.retry_failed = retry_failed
        self.device = device
        self.progress = progress
        self.resamples = resamples
        self.seed = seed
        self.log = log
        self.trust_code = trust_code
        self._explainer: Any = None
        self._lock_fd: int | None = None

    # --- setup ------------------------------------------------------------------------------

    def _spec(self) -> tuple[BundleSpec, Path | None]:
        """The bundle's spec without loading its networks (a finished job loads none)."""
        if isinstance(self.bundle, Bundle):
            path = self.bundle.root / "bundle.json"
            return self.bundle.spec, path if path.is_file() else None
        path = bundle_spec_path(self.bundle)
        return read_bundle_spec(path), path

    def _load_explainer(self, device: str) -> Any:
        if self._explainer is None:
            from cfattack.pipeline.explainer import Explainer

            self._explainer = Explainer(self.bundle, self.config, device=device, trust_code=self.trust_code)
        return self._explainer

    def _lock(self) -> None:
        """Hold an advisory lock on ``out/.lock`` so two jobs never write one folder at once."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        fd = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InvalidInputError(
                f"another cfattack batch job is writing {self.out}; wait for it or use another --out"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _note(self, text: str, notes: list[str]) -> None:
        if self.log is not None:
            self.log(text)
        else:
            notes.append(text)

    # --- the job ----------------------------------------------------------------------------

    def run(self) -> BatchSummary:
        """Run (or resume) the job; returns the summary on every rank.

        Raises:
            InvalidInputError: bad input or options, or ``out`` holds another config's results
                (without ``restart``).
            BundleError, NetworkLoadError: the bundle cannot be loaded.
            OSError: a report or journal cannot be written (the job stops; run it again to resume).
        """
        began = time.perf_counter()
        dist = Distributed.from_env(cuda=self.device.startswith("cuda"))
        try:
            return self._run(dist, began)
        finally:
            self._unlock()
            dist.close()

    def _run(self, dist: Distributed, began: float) -> BatchSummary:
        device = f"cuda:{dist.local_rank}" if (dist.active and self.device.startswith("cuda")) else self.device
        spec, spec_path = self._spec()
        classifier = (resolve_choice(self.classifier_option, list(spec.classifiers), what="classifier")
                      if self.classifier_option is not None else spec.default_classifier)
        store = JobStore(self.out, dist.rank, dist.world_size)
        notes: list[str] = []

        # 1. Rank 0 hashes the networks, lists the items and prepares the folder; every rank gets the list.
        def prepare() -> tuple[ItemList, str]:
            hashes = FileHashCache(self.out / CACHE_NAME)
            files = bundle_file_hashes(spec, spec_path, classifier, hashes)
            chash = config_hash(self.config.model_dump_json(), spec, spec_path, classifier, files)
            job = JobSpec(config_hash=chash, bundle=spec.name, classifier=classifier, batch_size=self.batch_size,
                          config=self.config, bundle_files=files)
            items = collect_items(self.source, spec, config_hash=chash, target=self.target,
                                  targets_from=self.targets_from, limit=self.limit, exclude=[self.out])
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock()
            if self.restart:
                store.clear()
            else:
                previous = store.check_job(job)
                if previous is not None and previous.batch_size != self.batch_size:
                    self._note(f"note: the folder was started with --batch-size {previous.batch_size}; items "
                               f"explained now with {self.batch_size} may differ from it in the last digits", notes)
            removed = store.remove_temporaries()
            if removed:
                self._note(f"note: removed {removed} temporary files left by an interrupted run", notes)
            store.write_job(job)
            hashes.save()
            if not items.items:
                self._note(f"note: {self.source} lists no images (a folder's images end in "
                           f"{', '.join(IMAGE_SUFFIXES)})", notes)
            return items, chash

        items, chash = dist.from_rank0(prepare)

        # 2. What is finished, and this rank's batches (fixed before skipping anything).
        finished = set(store.read_results())
        if not self.retry_failed:
            finished |= set(store.read_failures())
        mine = [[items.items[i] for i in positions]
                for positions in batches_of(len(items.items), self.batch_size, dist.rank, dist.world_size)]
        counts = _Counts(skipped=sum(item.key in finished for batch in mine for item in batch))

        # 3. Explain batch by batch; a second bar follows the steps inside the device batch.
        quiet = not (self.progress and dist.is_main)
        bar = Progress(f"rank 0 of {dist.world_size}" if dist.active else "batch", total=sum(len(b) for b in mine),
                       unit="items", quiet=quiet, initial=counts.skipped, leave=True)
        inner = Progress("", quiet=True) if quiet else Progress("", position=1, stream=bar.stream)
        with bar, inner:  # an error closes both bars without a summary
            for number, batch in enumerate(mine, 1):
                pending = {item.key for item in batch if item.key not in finished}
                if not pending:
                    continue
                steps = ExplainProgress(inner, self.config.attack.steps, prefix=f"batch {number}/{len(mine)}: ")
                self._explain_batch(batch, pending, store, counts, device, steps)
                bar.update(len(pending))
                bar.note(f"failed {counts.failed}")
            inner.close()
            bar.close(bar.rate_line("batch", counts.explained + counts.failed, "items",
                                    f"{counts.failed} failed, {counts.skipped} finished before"))

        # 4. Wait for everyone; rank 0 merges and writes the global explanation.
        dist.barrier()
        explained, reached, failed, skipped = dist.sum([counts.explained, counts.reached, counts.failed,
                                                        counts.skipped])

        def finish() -> tuple[int, int]:
            results, failures = store.merge([item.key for item in items.items])
            g = aggregate(results, bundle=spec.name, classifier=classifier, config_hash=chash,
                          class_names=spec.class_names, resamples=self.resamples, seed=self.seed)
            write_global(self.out, g, results, failures)
            write_tables(self.out, results, failures)
            return len(results), len(failures)

        results_total, failures_total = dist.from_rank0(finish)
        return BatchSummary(
            out=self.out, items=len(items.items), explained=explained, reached=reached, failed=failed,
            skipped=skipped, duplicates=items.duplicates, results_total=results_total,
            failures_total=failures_total, seconds=time.perf_counter() - began, world_size=dist.world_size,
            notes=notes,
        )

    # --- one batch --------------------------------------------------------------------------

    def _explain_batch(
        self, batch: Sequence[BatchItem], pending: set[str], store: JobStore, counts: _Counts, device: str,
        steps: ExplainProgress | None = None,
    ) -> None:
        if steps is not None and self._explainer is None:
            steps.on_stage("load bundle")
        explainer = self._load_explainer(device)
        if steps is not None:
            steps.on_stage("load images")
        failures: list[FailureRecord] = []

        def fail(item: BatchItem, stage: FailureStage, error: str, message: str) -> None:
            if item.key in pending:
                target = None if item.target is None else printable_path(item.target)
                failures.append(FailureRecord(key=item.key, image=printable_path(item.image), target=target,
                                              stage=stage, error=error, message=_one_line(printable_path(message))))

        # 1. Load; refused and bad files and unusable targets never enter the batch.
        candidates: list[tuple[BatchItem, torch.Tensor]] = []
        for item in batch:
            if item.refusal is not None:  # never opened again: it may be a FIFO or a device
                fail(item, "load", "InvalidInputError", item.refusal)
                continue
            try:
                tensor, _ = explainer.load(item.path)
            except Exception as exc:  # any unreadable file is this item's failure, not the job's
                fail(item, "load", type(exc).__name__, str(exc))
                continue
            if item.target_index is None:
                fail(item, "target", "InvalidInputError", f"{item.image}: {item.target_error}")
                continue
            candidates.append((item, tensor))

        # 2. Targets the classifier already predicts fail here, as explain_many would refuse them.
        if not self.config.allow_same_class:
            candidates, same = self._drop_same_class(explainer, candidates)
            for item, label in same:
                fail(item, "target", "InvalidInputError",
                     f"{item.image}: the classifier already predicts {label!r}; choose another target class")

        # 3. One batched explanation of everything left. Batched numerics depend on the batch's
        #    composition, so finished items are explained again then; batch-invariant ones are not.
        if explainer.config.batch_invariant:
            candidates = [(item, tensor) for item, tensor in candidates if item.key in pending]
        explanations: list[Any] = []
        if any(item.key in pending for item, _ in candidates):
            try:
                explanations = explainer.explain_many(
                    [tensor for _, tensor in candidates], [item.target_index for item, _ in candidates],
                    classifier=self.classifier_option, batch_size=len(candidates),
                    on_stage=None if steps is None else steps.on_stage,
                    on_progress=None if steps is None else steps.on_progress,
                )
            except Exception as exc:  # e.g. out of GPU memory: the batch fails, the job goes on
                for item, _ in candidates:
                    fail(item, "explain", type(exc).__name__, str(exc))

        # 4. Reports first, then the journal lines: a line present means a complete folder.
        results = []
        for (item, _), explanation in zip(candidates, explanations):
            if item.key not in pending:
                continue
            explanation = explanation.model_copy(update={"image": item.image})
            explanation.save(self.out / item.folder)
            results.append(ResultRecord.from_explanation(item.key, item.image, item.image_sha256 or "",
                                                         item.folder, explanation))
        store.results.append(results)
        store.failures.append(failures)
        counts.explained += len(results)
        counts.reached += sum(r.reached for r in results)
        counts.failed += len(failures)

    def _drop_same_class(
        self, explainer: Any, candidates: list[tuple[BatchItem, torch.Tensor]]
    ) -> tuple[list[tuple[BatchItem, torch.Tensor]], list[tuple[BatchItem, str]]]:
        """Split off the items whose target is the classifier's label for them.

        The labels come from exactly the forward pass `Explainer.explain_many` will make (the same
        images stacked in the same order), repeated after each removal until none is left, so
        explain_many never refuses the batch over an item labelled differently by a rounding.
        """
        clf = explainer.bundle.classifier(self.classifier_option)
        names = explainer.bundle.class_names
        dropped: list[tuple[BatchItem, str]] = []
        alone = explainer.config.batch_invariant  # explain_many then labels each image on its own
        while candidates:
            x = torch.stack([tensor for _, tensor in candidates]).to(explainer.device)
            with torch.no_grad():
                logits = torch.cat([clf(x[i:i + 1]) for i in range(len(x))]) if alone else clf(x)
                labels = class_probabilities(logits).cpu().max(dim=1).indices.tolist()
            same = [i for i, ((item, _), label) in enumerate(zip(candidates, labels)) if label == item.target_index]
            if not same:
                break
            dropped += [(candidates[i][0], names[labels[i]]) for i in same]
            candidates = [c for i, c in enumerate(candidates) if i not in set(same)]
        return candidates, dropped


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def run_batch(source: str | os.PathLike, out: str | os.PathLike, **options: Any) -> BatchSummary:
    """``BatchJob(source, out, **options).run()``."""
    return BatchJob(source, out, **options).run()
