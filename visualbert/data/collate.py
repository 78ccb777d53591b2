"""The one collator: pads text and regions, builds the masks, and is the only place that makes tensors."""

import sys
import threading

import numpy as np

from ..constants import ALIGNMENT_PAD, IGNORE_INDEX

# The model's forward arguments: the one list of model input keys (every other key of a batch is metadata).
TENSOR_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "visual_embeds",
    "visual_attention_mask",
    "visual_token_type_ids",
    "image_text_alignment",
    "labels",
    "sentence_image_labels",
    "region_to_phrase_position",
    "images",
    "boxes",
    "box_mask",
    "objects",
    "segms",
)
# The targets among them (an exported model takes no labels).
LABEL_KEYS = ("labels", "sentence_image_labels")


def _in_paddle_worker():
    """True inside a ``paddle.io.DataLoader`` or :class:`~visualbert.data.loader.BatchLoader` worker process.

    There the arrays stay numpy: creating paddle Tensors in forked workers can crash them (segfault), and the
    DataLoader moves numpy arrays to the main process through shared memory and hands out paddle Tensors.
    """
    from .loader import in_loader_worker

    if in_loader_worker():
        return True
    paddle = sys.modules.get("paddle")
    return paddle is not None and paddle.io.get_worker_info() is not None


class _BatchBuffers:
    """Reuses the large batch arrays (the visual features: 52 MB for VQA batch 64) once nobody holds them.

    Why: a fresh array of that size comes from ``mmap`` and every page faults on first write; refilling an
    array whose pages are mapped already is measured ~1.8x faster (bench/bench_data.py). An array is handed
    out again only when the pool holds the ONLY reference: a batch (or a view of it, or a paddle Tensor made
    from it through DLPack, which keeps the array alive) still in use is never overwritten. Arrays are pooled by
    capacity (a batch is a view of the first elements of a free pooled array at least as large), so batches whose
    region count varies (NLVR2, per-image stores) reuse them too.
    """

    MIN_BYTES = 1 << 20
    MAX_ARRAYS = 4

    def __init__(self):
        self._arrays = []
        self._lock = threading.Lock()

    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        size = int(np.prod(shape))
        if size * dtype.itemsize < self.MIN_BYTES:
            return np.empty(shape, dtype)
        from .loader import shared_empty

        shared = shared_empty(shape, dtype)  # in a loader worker: built where the main process will read it
        if shared is not None:
            return shared
        with self._lock:
            # free: the pool holds the only reference (plus getrefcount's argument)
            free = [i for i in range(len(self._arrays)) if sys.getrefcount(self._arrays[i]) == 2]
            fitting = [i for i in free if self._arrays[i].dtype == dtype and self._arrays[i].size >= size]
            if fitting:
                best = min(fitting, key=lambda i: self._arrays[i].size)
                return self._arrays[best][:size].reshape(shape)
            # headroom (untouched pages cost nothing): batches whose region count varies fit without a new array
            array = np.empty(size + size // 4, dtype)
            if len(self._arrays) >= self.MAX_ARRAYS:
                if not free:
                    return array[:size].reshape(shape)
                del self._arrays[min(free, key=lambda i: self._arrays[i].size)]
            self._arrays.append(array)
            return array[:size].reshape(shape)


# float16 -> float32 by integer ops numpy vectorises (its own float16 cast is scalar: ~2.5x slower, and paddle's CPU
# cast as slow): the float16 bits, sign-extended to int32 and shifted left by 13, hold the magnitude in the float32
# exponent and mantissa fields; the mask keeps the sign bit and clears the sign extension; multiplying by 2^112
# re-biases the exponent (15 -> 127) exactly, for subnormals too. Valid for finite values only (checked first).
_HALF_SIGN_AND_MAGNITUDE = np.uint32(0x8FFFFFFF).view(np.int32)
_HALF_REBIAS = np.float32(2.0 ** 112)


def _rebias_works():
    """False when the CPU treats float32 subnormals as zero (DAZ, which a library may have set): then the rebias
    multiplication would flush float16 subnormals to 0, and the plain cast is used."""
    smallest = np.array([1], dtype=np.int32).view(np.float32)  # 2^-149, a float32 subnormal
    return np.multiply(smallest, _HALF_REBIAS)[0] == np.float32(2.0 ** -37)


def widen_float16(src, out, rebias_works=None):
    """Writes ``src`` (float16 [..]) into ``out`` (float32, the same shape), exactly as ``out[...] = src``.

    Args:
        src (np.ndarray): float16.
        out (np.ndarray): float32, C-contiguous (e.g. a batch slice ``visual_embeds[b, :r]``).
        rebias_works (bool, optional): :func:`_rebias_works`, when the caller has asked it already (once per batch).
    """
    bits = src.view(np.int16)
    if rebias_works is None:
        rebias_works = _rebias_works()
    if not src.size or not rebias_works or int(np.bitwise_and(bits, 0x7FFF).max()) >= 0x7C00:
        out[...] = src  # inf / NaN (or DAZ): numpy's cast
        return
    as_int = out.view(np.int32)
    np.copyto(as_int, bits, casting="unsafe")  # sign-extending
    np.left_shift(as_int, 13, out=as_int)
    np.bitwise_and(as_int, _HALF_SIGN_AND_MAGNITUDE, out=as_int)
    np.multiply(out, _HALF_REBIAS, out=out)


def _to_paddle(array, paddle, on_cpu):
    """A paddle Tensor of ``array``; on CPU it shares the memory (DLPack, no copy: ``paddle.to_tensor`` copies
    at ~1 GB/s here, the slowest step of a VQA batch), elsewhere ``to_tensor`` copies it to the device."""
    if on_cpu and array.flags.c_contiguous:
        return paddle.utils.dlpack.from_dlpack(array)
    return paddle.to_tensor(array)


def _is_mlm_labels(labels, input_ids):
    labels = np.asarray(labels)
    return labels.ndim >= 1 and np.issubdtype(labels.dtype, np.integer) and labels.shape == np.shape(input_ids)


def _pad_grounding(samples, num_regions):
    """Phrase positions [B, P] (``ALIGNMENT_PAD``) and region targets [B, P, R] (0) of grounding samples."""
    positions = [np.asarray(s["region_to_phrase_position"], dtype=np.int64).reshape(-1) for s in samples]
    P = max(len(p) for p in positions)
    padded_positions = np.full((len(samples), P), ALIGNMENT_PAD, dtype=np.int64)
    labels = np.zeros((len(samples), P, num_regions), dtype=np.float32)
    for b, (s, p) in enumerate(zip(samples, positions)):
        padded_positions[b, : len(p)] = p
        if "labels" in s:
            target = np.asarray(s["labels"], dtype=np.float32)
            if target.shape[0] != len(p):
                raise ValueError(f"sample {b} has {len(p)} phrase positions but labels of shape {target.shape}")
            labels[b, : target.shape[0], : target.shape[1]] = target
    out = {"region_to_phrase_position": padded_positions}
    if "labels" in samples[0]:
        out["labels"] = labels
    return out


def _collate_images_and_boxes(samples, R):
    """VCR from images (``visualbert.data.vcr_images``): ``images`` float32 [B, 3, H, W] (zero-padded to the
    largest; R2C's are all 384 x 768), ``boxes`` float32 [B, R, 4] padded with -1, ``box_mask`` int64 [B, R] (the
    original's ``all(boxes >= 0)``: 1 on real boxes), ``objects`` int64 [B, R] (0 padding), ``segms`` float32
    [B, R, 14, 14] (0 padding)."""
    B = len(samples)
    images = [np.asarray(s["images"], dtype=np.float32) for s in samples]
    H, W = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
    batch_images = np.zeros((B, images[0].shape[0], H, W), dtype=np.float32)
    boxes = np.full((B, R, 4), -1.0, dtype=np.float32)
    box_mask = np.zeros((B, R), dtype=np.int64)
    objects = np.zeros((B, R), dtype=np.int64)
    mask_size = np.shape(samples[0]["segms"])[-1]
    segms = np.zeros((B, R, mask_size, mask_size), dtype=np.float32)
    for b, (s, image) in enumerate(zip(samples, images)):
        n = np.shape(s["boxes"])[0]
        batch_images[b, :, : image.shape[1], : image.shape[2]] = image
        boxes[b, :n] = s["boxes"]
        box_mask[b, :n] = 1
        objects[b, :n] = s["objects"]
        segms[b, :n] = s["segms"]
    return {"images": batch_images, "boxes": boxes, "box_mask": box_mask, "objects": objects, "segms": segms}


class Collator:
    """Batches dataset samples (dicts of numpy values).

    Output keys (the model's forward argument names), shapes for B samples, text length T and region count R
    of the batch (the longest, or the fixed ``max_seq_length`` / ``max_regions``):

    * ``input_ids``, ``token_type_ids``, ``attention_mask``: int64 [B, T] (VCR: [B, C, T]); text is
      RIGHT-padded with ``pad_token_id`` / 0, ``attention_mask`` 1 on tokens, 0 on padding;
    * ``visual_embeds`` float32 [B, R, D] (zero padding; float16 samples, from a float16 packed store, are
      widened here: on an accelerator by paddle after the float16 batch is copied to it, else by
      :func:`widen_float16` while copied into the batch), ``visual_token_type_ids`` int64 [B, R] (0 padding),
      ``visual_attention_mask`` int64 [B, R] (0 on padding regions);
    * ``image_text_alignment`` int64 [B, R, A] (VCR [B, C, R, A]), padding ``ALIGNMENT_PAD`` (-1);
    * ``labels``: masked-LM labels (int, same shape as a sample's ``input_ids``) become int64 [B, T + R] with
      ``IGNORE_INDEX`` over text padding and every region position; other labels are stacked (VQA float32
      [B, num_answers], NLVR2/VCR int64 [B]);
    * ``sentence_image_labels`` int64 [B];
    * grounding (samples with ``region_to_phrase_position`` int [P_i] and ``labels`` float [P_i, R_i]):
      ``region_to_phrase_position`` int64 [B, P] padded with ``ALIGNMENT_PAD`` (-1), ``labels`` float32
      [B, P, R] zero on padding phrases and regions (P the most phrases of the batch);
    * VCR from images (samples with ``boxes`` instead of ``visual_embeds``): ``images``, ``boxes`` (-1 padding),
      ``box_mask``, ``objects``, ``segms`` (see :func:`_collate_images_and_boxes`), R = the most boxes;
    * every other key (``question_id``, ``identifier``, ``answers``...) becomes a plain list.

    Keys present in only some samples of a batch raise ``ValueError``.

    Args:
        pad_token_id (int): text padding id ([PAD] = 0 for bert-base-uncased).
        max_seq_length (int, optional): pad text to exactly this length (error if a sample is longer).
        max_regions (int, optional): pad regions to exactly this count (error if a sample has more).
        return_tensors (str): ``"paddle"`` (paddle.Tensor) or ``"np"``. Inside ``paddle.io.DataLoader`` workers
            the collator returns numpy and the DataLoader turns the arrays into Tensors in the main process
            (both ways, the loader yields paddle Tensors for the tensor keys and lists for the metadata).
    """

    def __init__(self, pad_token_id=0, max_seq_length=None, max_regions=None, return_tensors="paddle"):
        if return_tensors not in ("paddle", "np"):
            raise ValueError(f"return_tensors must be 'paddle' or 'np', got {return_tensors!r}")
        self.pad_token_id = pad_token_id
        self.max_seq_length = max_seq_length
        self.max_regions = max_regions
        self.return_tensors = return_tensors
        self._buffers = _BatchBuffers()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_buffers"] = None  # each process (DataLoader worker) gets its own pool
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._buffers = _BatchBuffers()

    @staticmethod
    def _target(lengths, fixed, what):
        longest = max(lengths)
        if fixed is None:
            return longest
        if longest > fixed:
            raise ValueError(f"a sample has {longest} {what}, more than the fixed padding length {fixed}")
        return fixed

    def __call__(self, samples):
        if not samples:
            raise ValueError("cannot collate an empty batch")
        keys = set(samples[0])
        for i, s in enumerate(samples):
            if set(s) != keys:
                raise ValueError(f"sample {i} of the batch has keys {sorted(s)}, sample 0 has {sorted(keys)}")
        B = len(samples)
        out = {}
        ids = [np.asarray(s["input_ids"]) for s in samples]
        multiple_choice = ids[0].ndim == 2
        T = self._target([x.shape[-1] for x in ids], self.max_seq_length, "text tokens")
        lead = (B, ids[0].shape[0]) if multiple_choice else (B,)
        input_ids = np.full(lead + (T,), self.pad_token_id, dtype=np.int64)
        token_type_ids = np.zeros(lead + (T,), dtype=np.int64)
        attention_mask = np.zeros(lead + (T,), dtype=np.int64)
        for b, s in enumerate(samples):
            t = ids[b].shape[-1]
            input_ids[b, ..., :t] = ids[b]
            token_type_ids[b, ..., :t] = s["token_type_ids"]
            if "attention_mask" in s:
                attention_mask[b, ..., :t] = s["attention_mask"]
            elif multiple_choice:
                attention_mask[b, ..., :t] = ids[b] != self.pad_token_id
            else:
                attention_mask[b, :t] = 1
        out.update(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)

        to_paddle = self.return_tensors == "paddle" and not _in_paddle_worker()
        on_cpu = True
        if to_paddle:
            import paddle

            on_cpu = paddle.device.get_device() == "cpu"
        keep_half = False  # float16 visual features kept as they are until paddle casts them (see below)
        if "boxes" in keys:  # VCR from images: the model's detector makes the regions
            R = self._target([np.shape(s["boxes"])[0] for s in samples], self.max_regions, "regions")
            out.update(_collate_images_and_boxes(samples, R))
        else:
            visual = [np.asarray(s["visual_embeds"]) for s in samples]
            R = self._target([v.shape[0] for v in visual], self.max_regions, "regions")
            D = visual[0].shape[1]
            # float16 stays float16 until paddle casts it on an accelerator (half the bytes to copy to it, and the cast
            # is free there); on CPU (and in loader workers) it is widened into the batch: widen_float16
            half = all(v.dtype == np.float16 for v in visual)
            keep_half = to_paddle and not on_cpu and half
            visual_embeds = self._buffers.empty((B, R, D), np.float16 if keep_half else np.float32)
            visual_attention_mask = np.zeros((B, R), dtype=np.int64)
            visual_token_type_ids = np.zeros((B, R), dtype=np.int64)
            rebias_works = _rebias_works() if half and not keep_half else None
            for b, (s, v) in enumerate(zip(samples, visual)):
                if v.ndim != 2 or v.shape[1] != D:
                    raise ValueError(f"sample {b} has visual width {v.shape[-1]}, sample 0 has {D}")
                r = v.shape[0]
                if v.dtype == np.float16 and not keep_half:
                    widen_float16(v, visual_embeds[b, :r], rebias_works)  # the one copy (and cast) of the features
                else:
                    visual_embeds[b, :r] = v  # the one copy (and cast) of the features
                visual_embeds[b, r:] = 0
                visual_attention_mask[b, :r] = 1
                if "visual_token_type_ids" in s:
                    visual_token_type_ids[b, :r] = s["visual_token_type_ids"]
            out.update(
                visual_embeds=visual_embeds,
                visual_attention_mask=visual_attention_mask,
                visual_token_type_ids=visual_token_type_ids,
            )

        if "image_text_alignment" in keys:
            aligns = [np.asarray(s["image_text_alignment"], dtype=np.int64) for s in samples]
            A = max(a.shape[-1] for a in aligns)
            align = np.full(lead + (R, A), ALIGNMENT_PAD, dtype=np.int64)
            for b, a in enumerate(aligns):
                align[b, ..., : a.shape[-2], : a.shape[-1]] = a
            out["image_text_alignment"] = align

        if "region_to_phrase_position" in keys:
            out.update(_pad_grounding(samples, R))
        elif "labels" in keys:
            if _is_mlm_labels(samples[0]["labels"], samples[0]["input_ids"]):
                labels = np.full((B, T + R), IGNORE_INDEX, dtype=np.int64)
                for b, s in enumerate(samples):
                    lab = np.asarray(s["labels"], dtype=np.int64)
                    labels[b, : lab.shape[0]] = lab
            else:
                labels = np.stack([np.asarray(s["labels"]) for s in samples])
            out["labels"] = labels
        if "sentence_image_labels" in keys:
            out["sentence_image_labels"] = np.stack([np.asarray(s["sentence_image_labels"], dtype=np.int64) for s in samples])

        if to_paddle:
            out = {k: _to_paddle(v, paddle, on_cpu) for k, v in out.items()}
            if keep_half:
                out["visual_embeds"] = out["visual_embeds"].astype("float32")
        for key in sorted(keys - set(TENSOR_KEYS)):
            out[key] = [s[key] for s in samples]
        return out
