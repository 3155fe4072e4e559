"""The process group of a batch job under ``torchrun``: who am I, wait for the others, share small values.

``torchrun`` (``python -m torch.distributed.run``) starts one process per rank and tells each
its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). `Distributed.from_env` joins that group (NCCL when the job runs on CUDA,
gloo on the CPU); without those variables it is a single process and every collective is a
no-op, so the job's code reads the same either way::

    dist = Distributed.from_env(cuda=False)
    items = dist.from_rank0(lambda: collect_items(...))   # rank 0 computes, every rank gets it
    dist.barrier(); total = dist.sum([done, failed]); dist.close()

The object collectives only carry small Python values (the item list, counts); results travel
through the job folder, which every rank must see (a shared file system across nodes).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Sequence, TypeVar

from cfattack.errors import CfattackError, InvalidInputError

__all__ = ["Distributed", "world_from_env"]

T = TypeVar("T")

# A rank that finishes its shard early waits at the final barrier for the slowest one; the
# default 30 minutes of torch.distributed would kill long jobs with uneven shards.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


def world_from_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise InvalidInputError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (they are set by torchrun)"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise InvalidInputError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return rank, world, local


class Distributed:
    """This process's rank in a batch job and the collectives it needs.

    Attributes:
        rank, world_size, local_rank: as torchrun set them (0, 1, 0 for a single process).
        backend: "nccl", "gloo", or None for a single process.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, backend: str | None = None) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.backend = backend
        self._owns_group = False

    @classmethod
    def from_env(cls, cuda: bool) -> Distributed:
        """Join torchrun's process group when ``WORLD_SIZE`` > 1 (NCCL if ``cuda``, else gloo).

        With ``cuda``, the process uses the GPU ``cuda:LOCAL_RANK``.
        """
        rank, world, local = world_from_env()
        if world == 1:
            return cls()
        import torch
        import torch.distributed as torch_dist

        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local)
        self = cls(rank, world, local, backend)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
            self._owns_group = True
        return self

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as torch_dist

            torch_dist.barrier()

    def broadcast(self, value: T | None) -> T:
        """Rank 0's ``value`` on every rank (pickled; keep it small)."""
        if not self.active:
            return value  # type: ignore[return-value]
        import torch.distributed as torch_dist

        box = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def from_rank0(self, compute: Callable[[], T]) -> T:
        """Run ``compute`` on rank 0 only and give its result, or raise its error, on every rank."""
        outcome: tuple[bool, Any] | None = None
        error: BaseException | None = None
        if self.is_main:
            try:
                outcome = (True, compute())
            except CfattackError as exc:
                error, outcome = exc, (False, exc)
            except Exception as exc:  # the other ranks must not wait forever for rank 0
                if not self.active:
                    raise
                error, outcome = exc, (False, RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}"))
        ok, value = self.broadcast(outcome)
        if not ok:
            raise error if error is not None else value
        return value

    def sum(self, values: Sequence[int]) -> list[int]:
        """Element-wise sum of integer counts over all ranks."""
        if not self.active:
            return list(values)
        import torch
        import torch.distributed as torch_dist

        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        tensor = torch.tensor(list(values), dtype=torch.int64, device=device)
        torch_dist.all_reduce(tensor)
        return [int(v) for v in tensor.tolist()]

    def close(self) -> None:
        """Leave the process group (if this object joined it)."""
        if self._owns_group:
            import torch.distributed as torch_dist

            if torch_dist.is_initialized():
                torch_dist.destroy_process_group()
            self._owns_group = False
