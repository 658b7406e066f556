"""Work shared out among the processes of a `torchrun` launch (a torch.distributed process group of W > 1).

Training shares its batches (engine.train, which also joins the group: `init_distributed`); evaluation shares its
test cases (evaluate.rank_shared) and a first-time text embedding its batches of texts (text.TextEncoder.encode).
Each shares out whole batches and every process gets every result, so every process ends with exactly what one
process computes. Every process of the group must make the same calls in the same order, as they do when they
all run the same command on the same data. Without a process group (one process) nothing here communicates.
"""
from __future__ import annotations

import contextlib
import sys


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the process group this process is in; (0, 1) without one. Never imports torch: a
    process that has not loaded torch.distributed is in no group (engine.text must stay light to import)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def block(n: int, rank: int, world: int) -> range:
    """This rank's contiguous block of range(n): W nearly equal blocks in rank order, so the blocks joined in rank
    order are range(n) again."""
    return range(n * rank // world, n * (rank + 1) // world)


def all_gather(value) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    import torch.distributed as dist
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def everyone(flag: bool) -> bool:
    """Whether `flag` holds on every rank: where ranks may see a shared file differently (another process wrote
    to it in between), they agree before they take different paths through the collective calls."""
    return all(all_gather(bool(flag))) if rank_world()[1] > 1 else flag


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first, then the others: a file it writes (a model export) is read, not rewritten.
    Rank 0 lets the others go on even when its block fails, so that they fail too rather than wait."""
    rank, world = rank_world()
    if world > 1 and rank != 0:
        _barrier()
    try:
        yield
    finally:
        if world > 1 and rank == 0:
            _barrier()


def _barrier() -> None:
    import torch.distributed as dist
    dist.barrier()
