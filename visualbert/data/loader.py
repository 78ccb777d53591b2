"""Batch loading that never hangs: batches of ``collate_fn([dataset[i] for i in indices])`` in sampler order.

Why not ``paddle.io.DataLoader`` (paddle 3.3.1): with ``num_workers=0`` it still reads in a background thread
(``_DataLoaderIterSingleProcess._thread_loop``) whose ``dataset_fetcher.fetch`` call is guarded only by
``except StopIteration``. Any other exception raised by the dataset or the collate function ends the thread
(the traceback is printed by ``threading.excepthook``) without ``_exit_thread_unexpectedly()``, so the blocking
queue is neither closed nor killed and the main thread waits forever inside the C++ ``read_next_list()``, where
SIGINT cannot be delivered (Ctrl-C does nothing, 0% CPU). With workers the error does come back, but as
``SystemError: Blocking queue is killed`` after the worker's chained traceback.

:class:`BatchLoader` replaces it:

* ``num_workers=0``: a plain generator in the calling thread. The dataset's own error (e.g.
  :class:`~visualbert.data.errors.MissingFeaturesError` naming the file and the example) propagates unchanged,
  and Ctrl-C interrupts it like any Python code;
* ``num_workers>0``: forked worker processes (one task queue each, batches assigned round-robin, results
  reordered), at most ``prefetch * num_workers`` batches in flight. A worker's exception is re-raised in the
  main process with its type and message (:class:`LoaderWorkerError` if it cannot be pickled); a worker that
  dies (segfault, OOM kill) or, with ``timeout``, takes too long raises :class:`LoaderWorkerError` naming the
  worker and the batch's example indices. The workers ignore SIGINT (the main process handles it and
  terminates them), exit by themselves when the main process disappears, and are terminated whenever the
  iteration ends (exhausted, ``break``, an error, ``close()``). A batch's large arrays come back through files in
  ``/dev/shm`` that the main process maps and removes at once (the rest, and everything when there is no
  ``/dev/shm``, through the result pipe); files of batches never yielded are removed when the iteration ends.

In workers :func:`in_loader_worker` is true, so the collator returns numpy (paddle tensors in forked processes
can segfault); the main process turns every numpy array of a batch (also inside lists and dicts, as paddle's
DataLoader did) into a ``paddle.Tensor`` when ``to_tensor`` is set.
"""

import glob
import mmap
import os
import pickle
import queue
import secrets
import signal
import time
import traceback
import weakref

import numpy as np

_IN_WORKER = False
_POLL_SECONDS = 0.2
# A worker's large arrays (a VQA batch's 52 MB of features) travel through a file in shared memory, not the result
# pipe: pickled, they were copied four times and the main process received ~350 samples/s whatever the worker count.
SHARED_MEMORY_DIR = "/dev/shm"
SHARED_MIN_BYTES = 1 << 20


def in_loader_worker():
    """bool: True inside a :class:`BatchLoader` worker process."""
    return _IN_WORKER


class LoaderWorkerError(RuntimeError):
    """A loader worker died, timed out, or raised an exception that could not be sent back as it was.

    Attributes:
        worker_traceback (str or None): the worker's formatted traceback, if it raised.
    """

    def __init__(self, message, worker_traceback=None):
        super().__init__(message)
        self.worker_traceback = worker_traceback


def _to_tensors(batch, on_cpu=None):
    import paddle

    from .collate import _to_paddle

    if on_cpu is None:
        on_cpu = paddle.device.get_device() == "cpu"
    if isinstance(batch, np.ndarray):
        # a worker's batch arrives as arrays of this process: on CPU shared with the Tensor (DLPack), not copied
        return _to_paddle(batch, paddle, on_cpu)
    if isinstance(batch, dict):
        return {k: _to_tensors(v, on_cpu) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_to_tensors(v, on_cpu) for v in batch]
    if isinstance(batch, tuple):
        return tuple(_to_tensors(v, on_cpu) for v in batch)
    return batch


class _SharedArray:
    """A worker's array left in the file ``path`` (shared memory) for the main process, which maps it."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), str(dtype)


class _SlotArray:
    """A worker's array in its reusable file ``path`` (slot ``slot`` of the loader's slot states)."""

    def __init__(self, path, slot, capacity, shape, dtype):
        self.path, self.slot, self.capacity, self.shape, self.dtype = path, slot, capacity, tuple(shape), str(dtype)


SLOT_FREE, SLOT_USED = 0, 1


class _SlotPool:
    """Worker side: a few reusable shared-memory files the collator fills in place (:func:`shared_empty`), so a
    batch's features are written once, where the main process maps them. A slot is used again only after the main
    process has freed every array (and Tensor) over it (its finaliser sets the slot's state back to free).

    Args:
        prefix (str): path prefix of the files; states: the loader's shared slot states; slots (range): this
            worker's slots.
    """

    def __init__(self, prefix, states, slots):
        self.prefix, self.states, self.slots = prefix, states, slots
        self.maps = {}  # slot -> mmap
        self.filling = {}  # data address -> (slot, array) handed out for the batch being made

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        used = {slot for slot, _ in self.filling.values()}
        for slot in self.slots:
            if self.states[slot] != SLOT_FREE or slot in used:
                continue
            mapping = self.maps.get(slot)
            if mapping is None or len(mapping) < nbytes:
                path = f"{self.prefix}slot{slot}"
                capacity = nbytes + nbytes // 4  # headroom: batches whose region count varies fit without regrowing
                try:
                    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
                    try:
                        os.posix_fallocate(fd, 0, capacity)  # a full /dev/shm fails here, not as SIGBUS on a write
                        mapping = mmap.mmap(fd, capacity)
                    finally:
                        os.close(fd)
                except OSError:
                    return None
                self.maps[slot] = mapping
            self.states[slot] = SLOT_USED
            array = np.frombuffer(mapping, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
            self.filling[array.__array_interface__["data"][0]] = (slot, array)
            return array
        return None

    def descriptor(self, array):
        """The :class:`_SlotArray` of ``array`` if it is one handed out for this batch, else None."""
        entry = self.filling.get(array.__array_interface__["data"][0])
        if entry is None or entry[1].shape != array.shape or entry[1].dtype != array.dtype:
            return None
        slot = entry[0]
        return _SlotArray(f"{self.prefix}slot{slot}", slot, len(self.maps[slot]), array.shape, array.dtype)

    def remove_files(self):
        for slot in self.maps:
            try:
                os.unlink(f"{self.prefix}slot{slot}")
            except OSError:
                pass

    def batch_done(self, sent):
        """Slots of the batch just made that were not sent (an error, or arrays left out) are free again."""
        for slot, _ in self.filling.values():
            if slot not in sent:
                self.states[slot] = SLOT_FREE
        self.filling = {}


_SLOT_POOL = None  # in a worker: its _SlotPool


def shared_empty(shape, dtype):
    """In a :class:`BatchLoader` worker with shared memory: an uninitialised array [shape] in one of the worker's
    reusable shared-memory files (the collator builds a batch's large arrays there: no copy to send it). None
    elsewhere, or when no slot is free (every one still held by the main process) or /dev/shm is full."""
    return _SLOT_POOL.empty(shape, dtype) if _SLOT_POOL is not None else None


def _share(batch, prefix, counter, sent=None):
    """``batch`` with every C-contiguous array of at least :data:`SHARED_MIN_BYTES` in shared memory (worker side):
    arrays of :func:`shared_empty` as their slot, others written to a file ``<prefix><n>``."""
    if isinstance(batch, np.ndarray):
        if batch.nbytes < SHARED_MIN_BYTES or not batch.flags.c_contiguous or batch.dtype.hasobject:
            return batch
        slot = _SLOT_POOL.descriptor(batch) if _SLOT_POOL is not None else None
        if slot is not None:
            if sent is not None:
                sent.add(slot.slot)
            return slot
        path = f"{prefix}{next(counter)}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                data = memoryview(batch.reshape(-1).view(np.uint8))
                while len(data):
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
        except OSError:  # /dev/shm full (Docker's default is 64 MB) or gone: this array goes through the pipe
            try:
                os.unlink(path)
            except OSError:
                pass
            return batch
        return _SharedArray(path, batch.shape, batch.dtype)
    if isinstance(batch, dict):
        return {k: _share(v, prefix, counter, sent) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_share(v, prefix, counter, sent) for v in batch]
    if isinstance(batch, tuple):
        return tuple(_share(v, prefix, counter, sent) for v in batch)
    return batch


def _release_slot(states, slot):
    states[slot] = SLOT_FREE


def _attach(batch, maps=None, states=None):
    """``batch`` with every :class:`_SharedArray` mapped as a writable array (main side); the file is removed at
    once (the mapping stays until the array, or a Tensor sharing it, is freed). A :class:`_SlotArray` is mapped
    once per slot (``maps``) and its slot freed (``states``) when the array is."""
    if isinstance(batch, _SlotArray):
        mapping = maps.get(batch.slot)
        if mapping is None or len(mapping) != batch.capacity:
            fd = os.open(batch.path, os.O_RDWR)
            try:
                mapping = mmap.mmap(fd, batch.capacity, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
            finally:
                os.close(fd)
            maps[batch.slot] = mapping
        flat = np.frombuffer(mapping, dtype=np.dtype(batch.dtype), count=int(np.prod(batch.shape)))
        # on the base array: every view of the batch (a slice, the reshape) refers to it, so the slot is freed only
        # when the last of them is
        weakref.finalize(flat, _release_slot, states, batch.slot)
        return flat.reshape(batch.shape)
    if isinstance(batch, _SharedArray):
        dtype = np.dtype(batch.dtype)
        nbytes = int(np.prod(batch.shape)) * dtype.itemsize
        fd = os.open(batch.path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        finally:
            os.close(fd)
            os.unlink(batch.path)
        return np.frombuffer(mapping, dtype=dtype).reshape(batch.shape)
    if isinstance(batch, dict):
        return {k: _attach(v, maps, states) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_attach(v, maps, states) for v in batch]
    if isinstance(batch, tuple):
        return tuple(_attach(v, maps, states) for v in batch)
    return batch


def _shared_prefix():
    """A path prefix in shared memory unique to one iteration of this process (None: no usable shared memory)."""
    if not (os.path.isdir(SHARED_MEMORY_DIR) and os.access(SHARED_MEMORY_DIR, os.W_OK | os.X_OK)):
        return None
    return os.path.join(SHARED_MEMORY_DIR, f"visualbert-loader-{os.getpid()}-{secrets.token_hex(6)}-")


def _describe_exit(exitcode):
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"died with {name}{hint}"
    return f"exited with status {exitcode}"


def _remove_orphaned_files(shared_prefix, worker_id):
    """A worker whose main process died (SIGKILL, OOM) removes what it left in /dev/shm, which the main process
    removes otherwise: its slot files and the files of batches sent but never mapped (all under this run's
    pid + random-token prefix, so nothing of anyone else's)."""
    if _SLOT_POOL is not None:
        _SLOT_POOL.remove_files()
    if shared_prefix is not None:
        import glob

        for path in glob.glob(glob.escape(f"{shared_prefix}{worker_id}-") + "*"):
            try:
                os.unlink(path)
            except OSError:
                pass


def _worker_loop(worker_id, dataset, collate_fn, tasks, results, parent_pid, current, shared_prefix=None,
                 slot_states=None, slots=()):
    import itertools

    global _IN_WORKER, _SLOT_POOL
    counter = itertools.count()
    _IN_WORKER = True
    if shared_prefix is not None and slot_states is not None:
        _SLOT_POOL = _SlotPool(f"{shared_prefix}{worker_id}-", slot_states, slots)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle

    def terminated(signum, frame):  # a scheduler's SIGTERM to the whole process group: no files left in /dev/shm
        _remove_orphaned_files(shared_prefix, worker_id)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            task = ()  # nothing this second: only the check on the main process
        if task is None:
            return
        if os.getppid() != parent_pid:  # the main process is gone: do not linger as an orphan
            _remove_orphaned_files(shared_prefix, worker_id)
            return
        if not task:
            continue
        batch_no, indices = task
        current[worker_id] = batch_no  # read by the main process if this worker dies
        sent = set()
        try:
            batch = collate_fn([dataset[i] for i in indices])
            if shared_prefix is not None:
                batch = _share(batch, f"{shared_prefix}{worker_id}-", counter, sent)
            if _SLOT_POOL is not None:
                _SLOT_POOL.batch_done(sent)
            results.put((batch_no, True, batch))
        except Exception as e:  # sent back to the main process, which raises it
            if _SLOT_POOL is not None:
                _SLOT_POOL.batch_done(set())
            tb = traceback.format_exc()
            try:
                payload = pickle.dumps(e)
                pickle.loads(payload)
            except Exception:
                payload = None
            results.put((batch_no, False, (payload, f"{type(e).__name__}: {e}", tb)))


class BatchLoader:
    """Iterates over ``collate_fn([dataset[i] for i in indices])`` for each ``indices`` of ``batch_sampler``.

    Args:
        dataset: indexable dataset (``dataset[i]`` -> sample dict of numpy values).
        batch_sampler (iterable of list[int]): batches of dataset indices (re-iterated by every ``iter()``).
        collate_fn (callable): list of samples -> batch (dict of numpy arrays / paddle tensors and metadata).
        num_workers (int): 0 = load in the calling thread; N > 0 = N forked worker processes.
        prefetch (int): batches in flight per worker (N > 0).
        timeout (float): seconds to wait for one batch from the workers before raising; 0 = no limit.
        to_tensor (bool): turn numpy arrays of a batch into ``paddle.Tensor`` (in the main process).

    Raises:
        ValueError: ``num_workers`` < 0, ``prefetch`` < 1 or ``timeout`` < 0.
    """

    def __init__(self, dataset, batch_sampler, collate_fn, num_workers=0, prefetch=2, timeout=0.0, to_tensor=True):
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if int(prefetch) < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.collate_fn = collate_fn
        self.num_workers = int(num_workers)
        self.prefetch = int(prefetch)
        self.timeout = float(timeout)
        self.to_tensor = to_tensor
        self._workers = []

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        if self.num_workers == 0:
            return self._iter_in_process()
        return self._iter_workers()

    def _convert(self, batch):
        return _to_tensors(batch) if self.to_tensor else batch

    def _iter_in_process(self):
        for indices in self.batch_sampler:
            yield self._convert(self.collate_fn([self.dataset[i] for i in indices]))

    def _iter_workers(self):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        n = self.num_workers
        task_queues = [ctx.Queue() for _ in range(n)]
        results = ctx.Queue()
        self._current = ctx.Array("q", [-1] * n, lock=False)
        shared_prefix = _shared_prefix()
        per_worker = self.prefetch + 2  # in flight, plus the batches the training loop holds
        slot_states = ctx.Array("b", [SLOT_FREE] * (n * per_worker), lock=False)
        slot_maps = {}
        self._workers = [
            ctx.Process(target=_worker_loop, args=(w, self.dataset, self.collate_fn, task_queues[w], results,
                                                   os.getpid(), self._current, shared_prefix, slot_states,
                                                   range(w * per_worker, (w + 1) * per_worker)), daemon=True)
            for w in range(n)
        ]
        for p in self._workers:
            p.start()
        try:
            batches = iter(self.batch_sampler)
            sent = {}  # batch_no -> indices, not yet yielded
            ready = {}
            next_to_send = next_to_yield = 0
            exhausted = False
            while True:
                while not exhausted and next_to_send - next_to_yield < self.prefetch * n:
                    try:
                        indices = list(next(batches))
                    except StopIteration:
                        exhausted = True
                        break
                    task_queues[next_to_send % n].put((next_to_send, indices))
                    sent[next_to_send] = indices
                    next_to_send += 1
                if next_to_yield == next_to_send:
                    return
                waited = 0.0
                while next_to_yield not in ready:
                    try:
                        batch_no, ok, payload = results.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        waited += _POLL_SECONDS
                        self._check_alive(next_to_yield, sent)
                        if self.timeout and waited >= self.timeout:
                            w = next_to_yield % n
                            raise LoaderWorkerError(
                                f"loader worker {w} (pid {self._workers[w].pid}) gave no batch in {self.timeout:g} s "
                                f"(batch {next_to_yield}, examples {_short(sent[next_to_yield])})") from None
                        continue
                    ready[batch_no] = (ok, payload)
                # in sampler order: an error of a later batch is raised only after every batch before it was yielded
                ok, batch = ready.pop(next_to_yield)
                if not ok:
                    self._raise_worker_error(next_to_yield, batch)
                sent.pop(next_to_yield)
                next_to_yield += 1
                yield self._convert(_attach(batch, slot_maps, slot_states))
        finally:
            self._shutdown(task_queues, results)
            if shared_prefix is not None:  # batches made but never yielded (a break, an error): only our prefix
                for path in glob.glob(glob.escape(shared_prefix) + "*"):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def _check_alive(self, batch_no, sent):
        for w, p in enumerate(self._workers):
            if p.exitcode is not None:
                # a result put just before the death may be lost in the queue's feeder thread: name the batch the
                # worker had started
                died_on = self._current[w]
                where = f"batch {died_on}, examples {_short(sent[died_on])}" if died_on in sent else f"batch {batch_no}"
                raise LoaderWorkerError(f"loader worker {w} (pid {p.pid}) {_describe_exit(p.exitcode)} while "
                                        f"loading {where}")

    @staticmethod
    def _raise_worker_error(batch_no, payload):
        pickled, summary, tb = payload
        error = None
        if pickled is not None:
            try:
                error = pickle.loads(pickled)
            except Exception:
                error = None
        if error is None:
            raise LoaderWorkerError(f"{summary} [in a loader worker, batch {batch_no}]", worker_traceback=tb)
        error.worker_traceback = tb  # for --debug; the message itself names the file and the example
        raise error

    def _shutdown(self, task_queues, results):
        for q in task_queues:
            try:
                q.put_nowait(None)
            except Exception:
                pass
        deadline = time.time() + 1.0
        for p in self._workers:
            p.join(timeout=max(0.0, deadline - time.time()))
        for p in self._workers:
            if p.exitcode is None:
                p.terminate()
        for p in self._workers:
            p.join(timeout=1.0)
            if p.exitcode is None:
                p.kill()
                p.join(timeout=1.0)
        for q in task_queues + [results]:
            q.cancel_join_thread()  # never block at exit on data nobody will read
            q.close()
        self._workers = []

    def close(self):
        """Terminates the workers of an iteration in progress (also done when the iteration ends)."""
        for p in self._workers:
            if p.exitcode is None:
                p.kill()


def sequential_batches(num_examples, batch_size):
    """list[list[int]]: ``range(num_examples)`` cut into batches of ``batch_size`` in order (the last may be short),
    for evaluation and prediction.

    Raises:
        ValueError: ``batch_size`` < 1 (a batch size of 0 would otherwise reach paddle as an obscure error).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    n, b = int(num_examples), int(batch_size)
    return [list(range(start, min(start + b, n))) for start in range(0, n, b)]


def _short(indices, limit=8):
    shown = ", ".join(str(i) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"
