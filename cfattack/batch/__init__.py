"""Batch jobs: many images explained in device batches, resumable, sharded over torchrun ranks.

``cfattack batch`` is `BatchJob`; the pieces, one job each:

- `manifest`: the items (folder or CSV/JSONL manifest), their fixed order and keys, the config hash;
  a FIFO, device, link loop, undecodable or over-long name is refused per item;
- `file_hashes`: content hashes of the bundle's networks for the config hash, cached by file stamp;
- `store`: job.json, the results/failures journals and their merge;
- `runner`: the job itself (batching, sharding, per-item failures, resume);
- `distributed`: the torchrun process group;
- `global_explanation`: per-pair mean descriptor changes with bootstrap intervals;
- `report`: global.json and global.html.

Example::

    from cfattack.batch import BatchJob
    summary = BatchJob("examples/", "report/", target="pullover").run()
    print("\\n".join(summary.lines()))          # report/results.jsonl, report/global.html, ...
"""

from __future__ import annotations

from cfattack.batch.global_explanation import DescriptorEffect, GlobalExplanation, PairExplanation, aggregate
from cfattack.batch.manifest import BatchItem, collect_items, read_manifest
from cfattack.batch.runner import BatchJob, BatchSummary, batches_of, run_batch
from cfattack.batch.store import FailureRecord, JobStore, ResultRecord

__all__ = [
    "BatchJob",
    "BatchSummary",
    "run_batch",
    "batches_of",
    "BatchItem",
    "collect_items",
    "read_manifest",
    "ResultRecord",
    "FailureRecord",
    "JobStore",
    "GlobalExplanation",
    "PairExplanation",
    "DescriptorEffect",
    "aggregate",
]
