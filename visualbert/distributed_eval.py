"""Evaluation sharded over the data-parallel processes, gathered back in dataset order.

Instead of rank 0 evaluating the whole split while N-1 devices wait, rank r runs the one prediction loop
(:func:`visualbert.engine.predict`) over the r-th contiguous block of the split (:func:`shard`); the
per-rank outputs are then concatenated in rank order (:func:`gather_outputs`), which IS dataset order, so the
metrics computed on the gathered arrays equal a single-process evaluation. Blocks differ in size by at most
one example and nothing is padded or duplicated, so losses combine exactly (:func:`combine_mean`,
:func:`sum_counts`).

Typical use (phase 2 wiring in the engine / tasks)::

    part = distributed_eval.shard(dataset, world_size, rank)
    arrays, meta, loss = run_inference(model, part, batch_size, ...)
    arrays, meta = distributed_eval.gather_outputs(arrays, meta)
    loss = distributed_eval.combine_mean(loss, len(part))

Every function is the identity with one process (no collective is called).
"""

import numpy as np


def shard_bounds(num_examples, world_size, rank):
    """[start, stop) of rank ``rank``'s contiguous block: the first ``num_examples % world_size`` ranks take one
    example more (``np.array_split``'s split)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size} processes")
    base, extra = divmod(int(num_examples), int(world_size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class ShardView:
    """Read-only view of examples ``[start, stop)`` of an indexable dataset (``len`` and ``[i]``)."""

    def __init__(self, dataset, start, stop):
        self.dataset, self.start, self.stop = dataset, int(start), int(stop)

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.dataset[self.start + (index % len(self))]

    def __getattr__(self, name):  # source, sources, check_features ... of the underlying dataset
        return getattr(self.dataset, name)


def shard(dataset, world_size, rank):
    """This rank's block of ``dataset`` (the dataset itself with one process)."""
    if world_size <= 1:
        return dataset
    return ShardView(dataset, *shard_bounds(len(dataset), world_size, rank))


def _world_size():
    import paddle.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def all_gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` with one process)."""
    if _world_size() <= 1:
        return [obj]
    import paddle.distributed as dist

    out = []
    dist.all_gather_object(out, obj)
    return out


def _concat(parts):
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    merged = []
    for p in parts:
        merged.extend(list(p))
    return merged


def gather_outputs(arrays, meta=None):
    """Concatenates every rank's outputs in rank order (= dataset order for :func:`shard` blocks).

    Args:
        arrays (dict[str, np.ndarray]): per-example outputs of this rank, first axis = its examples.
        meta (dict[str, list | np.ndarray], optional): per-example metadata (question ids, labels, ...).

    Returns:
        tuple: (arrays, meta) over the whole split, on every rank.
    """
    gathered = all_gather_objects((arrays, meta or {}))
    if len(gathered) == 1:
        return arrays, meta
    out_arrays = {k: _concat([g[0][k] for g in gathered]) for k in arrays}
    out_meta = {k: _concat([g[1][k] for g in gathered]) for k in (meta or {})}
    return out_arrays, (out_meta if meta is not None else None)


def combine_mean(value, weight):
    """The mean over all ranks of per-rank means ``value`` weighted by their example counts ``weight`` (None
    where no rank had a value)."""
    pairs = [(v, w) for v, w in all_gather_objects((value, weight)) if v is not None and w]
    if not pairs:
        return None
    return float(np.average([v for v, _ in pairs], weights=[w for _, w in pairs]))


def sum_counts(counts):
    """Key-wise sum over ranks of a dict of numbers (e.g. the pretraining metric's loss sums and token counts)."""
    total = {}
    for part in all_gather_objects(dict(counts)):
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


__all__ = ["shard_bounds", "ShardView", "shard", "all_gather_objects", "gather_outputs", "combine_mean",
           "sum_counts"]
