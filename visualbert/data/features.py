"""Region-feature stores: ``store[key] -> float32 array [R, D]``.

Two implementations share one interface (:class:`FeatureStore`):

* :class:`NpyFeatureStore` reads one ``.npy`` file per image, in the released layouts
  (the layout is derived from the root directory, see :func:`detect_layout`):

  - ``vqa``:   ``<root>/fc6/vqa/<set>/COCO_<set>_<id:012d>.npy`` (root = ``detectron_fix_100``),
    or ``<root>/<set>/COCO_...npy`` (root = ``detectron_fix_100/fc6/vqa``); key ``COCO_train2014_000000000009``;
  - ``nlvr2``: ``<root>/<split>/feature_1024dim/<split>-<set>-<pair>-img{0,1}.png.npy``
    (root = ``detectron_fix_144``); key ``dev-850-0-img0.png``; in the same layout, COCO images (the contest
    port's ``coco_detectron_fix_144``: ``<root>/nlvr2/{train,val}/feature_1024dim/COCO_<set>_<id:012d>.npy``, root
    = ``X_COCO/data/detectron_fix_144`` or its ``nlvr2``) by their COCO key ``COCO_val2014_000000000042``;
  - ``flat``:  ``<root>/<key>.npy`` (any other directory, e.g. one split directory, or VCR features).

* :class:`PackedFeatureStore` reads a directory written by ``tools/pack_features.py``:
  ``features.npy`` (all regions of all images stacked, [N_regions, D], float32 or float16, memory-mapped)
  and ``index.json`` (key -> row offset and region count). Loading an example is a slice, not a file open.

:func:`open_feature_store` picks the right one. A missing root fails at construction.
"""

import json
import os
import re

import numpy as np

from .errors import DataFormatError, MissingFeaturesError

_VQA_SET_RE = re.compile(r"^COCO_([a-z]+\d{4})_\d+$")
_VQA_SET_DIR_RE = re.compile(r"^(train|val|test)\d{4}$")
# COCO set -> split folder of the contest port's coco_detectron_fix_144 features (the NLVR2 line's COCO regions).
_COCO_144_SPLITS = {"train2014": "train", "val2014": "val"}
PACKED_ARRAY = "features.npy"
PACKED_INDEX = "index.json"
MAX_LISTED_MISSING = 10


def _format_missing(missing, total, what):
    shown = ", ".join(missing[:MAX_LISTED_MISSING])
    more = f" (and {len(missing) - MAX_LISTED_MISSING} more)" if len(missing) > MAX_LISTED_MISSING else ""
    return f"{len(missing)} of {total} {what} have no region features; first missing: {shown}{more}"


class FeatureStore:
    """Interface of a region-feature store.

    Attributes:
        root (str): the directory the store reads.
        dim (int or None): expected feature width D (None: taken from the first array read).
        max_regions (int or None): rows beyond this are dropped (arrays are in descending detector confidence).
    """

    root = None
    dim = None
    max_regions = None

    def __getitem__(self, key):
        """Returns the region features of one image.

        Args:
            key (str): image key (see the module docstring).

        Returns:
            np.ndarray: float32 [R, D], R <= ``max_regions``.

        Raises:
            MissingFeaturesError: no features for ``key`` (the message names the expected file).
            DataFormatError: the stored array is empty, truncated, not 2-D or of the wrong width.
        """
        raise NotImplementedError

    def view(self, key):
        """The region features of one image as stored, without the float32 copy of ``store[key]``.

        Returns:
            np.ndarray: [R, D], float32 or float16 (a float16 packed store), possibly a read-only view of a
            memory map. The collator copies it into the batch (and widens float16 there), so a dataset that
            passes it on spends one copy per example instead of two.

        Raises:
            As ``store[key]``.
        """
        return self[key]

    def view_concat(self, keys):
        """The regions of several images one after the other (NLVR2's left and right image), as :meth:`view` gives
        each: ``np.concatenate([store.view(k) for k in keys])``.

        Returns:
            tuple[np.ndarray, list[int]]: the rows [sum(R_k), D] (a read-only view of the memory map when a packed
            store holds the images next to each other, else a copy) and each image's R_k.

        Raises:
            As ``store[key]``.
        """
        views = [self.view(k) for k in keys]
        return np.concatenate(views, axis=0), [int(v.shape[0]) for v in views]

    def __contains__(self, key):
        raise NotImplementedError

    def num_regions(self, key):
        """int: R of ``key`` (after the ``max_regions`` cap), without reading the whole array when possible."""
        return int(self[key].shape[0])

    @property
    def R(self):  # noqa: N802 - the name used in the design notes
        """int or None: the region cap ``max_regions`` (an upper bound on R of every array)."""
        return self.max_regions

    def keys(self):
        """list[str]: every key the store holds."""
        raise NotImplementedError

    def width(self):
        """int: the feature width D: the expected (or packed) one, else that of the first array the store holds."""
        if self.dim is None:
            keys = self.keys()
            if not keys:
                raise MissingFeaturesError(f"the feature store {self.root} holds no features", [])
            self[keys[0]]  # sets self.dim
        return int(self.dim)

    def describe(self, key):
        """str: where ``key`` is (or would be) stored, for error messages."""
        return f"{key!r} in {self.root}"

    def missing(self, keys):
        """Returns the keys (in order, without duplicates) that have no features. Cheap: no array is read."""
        seen = set()
        out = []
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            if key not in self:
                out.append(key)
        return out

    def check(self, keys, source=""):
        """Raises :class:`MissingFeaturesError` listing every missing key of ``keys`` (the first ones in the message).

        Args:
            keys (iterable of str): keys a split needs.
            source (str): the annotation file, named in the message.
        """
        keys = list(dict.fromkeys(keys))
        missing = self.missing(keys)
        if missing:
            where = f" needed by {source}" if source else ""
            raise MissingFeaturesError(
                _format_missing(missing, len(keys), f"images{where}") + f"; expected e.g. {self.describe(missing[0])}",
                missing,
            )

    def _validate(self, array, where):
        """Checks rank, width, dtype and finiteness, applies the region cap and returns float32 [R, D]."""
        if not np.issubdtype(array.dtype, np.floating):
            raise DataFormatError(
                f"{where}: expected float32 or float16 region features, got dtype {array.dtype} "
                "(integer or boolean features would be cast silently; wrong file?)"
            )
        if array.ndim != 2:
            raise DataFormatError(f"{where}: expected a 2-D array [regions, {self.dim or 'D'}], got shape {array.shape}")
        if array.shape[0] == 0:
            raise DataFormatError(f"{where}: the feature array has no regions (shape {array.shape})")
        if self.dim is None:
            self.dim = int(array.shape[1])
        elif array.shape[1] != self.dim:
            raise DataFormatError(
                f"{where}: expected feature width {self.dim}, got shape {array.shape} "
                "(wrong feature set for this task? VQA uses 2048, NLVR2 1024, VCR 512)"
            )
        if self.max_regions is not None and array.shape[0] > self.max_regions:
            array = array[: self.max_regions]
        return check_finite(np.ascontiguousarray(array, dtype=np.float32), where)


def check_finite(array, where):
    """Returns ``array`` if every value is finite, else raises :class:`DataFormatError` naming ``where``, the count
    and the first bad position. One vectorised pass per array (about 0.1 ms for 100 x 2048 float32).

    Args:
        array (np.ndarray): float [R, D] (as it will be used: after the region cap and the float32 cast, so a
            float64 value that overflows float32 is caught too).
        where (str): the file (or store and key) named in the message.
    """
    if array.dtype == np.float16 and array.size and _half_all_finite(array):
        return array
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        r, c = (int(x) for x in bad[0])
        raise DataFormatError(
            f"{where}: {len(bad)} non-finite value(s) in the region features (first: {array[r, c]} at region {r}, "
            f"column {c}); NaN/inf features would make every loss NaN"
        )
    return array


def _half_all_finite(array):
    """bool: every value of a float16 array is finite, from its bits (finite iff the magnitude bits are below
    0x7c00, the all-ones exponent). numpy 1.26's ``isfinite`` on float16 is scalar, ~10x slower than this."""
    return int(np.bitwise_and(array.view(np.uint16), 0x7FFF).max()) < 0x7C00


def _all_finite(array):
    if array.dtype == np.float16:
        return not array.size or _half_all_finite(array)
    return bool(np.isfinite(array).all())


def detect_layout(root):
    """Derives the per-image layout of a feature root.

    Args:
        root (str): a directory.

    Returns:
        tuple[str, str]: (layout, base directory), layout one of ``"vqa"``, ``"nlvr2"``, ``"flat"``.
    """
    if os.path.isdir(os.path.join(root, "fc6", "vqa")):
        return "vqa", os.path.join(root, "fc6", "vqa")
    coco_144 = os.path.join(root, "nlvr2")
    if any(os.path.isdir(os.path.join(coco_144, s, "feature_1024dim")) for s in _COCO_144_SPLITS.values()):
        return "nlvr2", coco_144
    children = [d for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]
    if any(os.path.isdir(os.path.join(root, d, "feature_1024dim")) for d in children):
        return "nlvr2", root
    if children and any(_VQA_SET_DIR_RE.match(d) for d in children):
        return "vqa", root
    return "flat", root


def _read_npy(path):
    """np.load with the file named in every failure (empty, truncated, pickled, not an array)."""
    try:
        if os.path.getsize(path) == 0:
            raise DataFormatError(f"{path}: empty file (0 bytes), expected a .npy array")
        array = np.load(path, allow_pickle=False)
    except DataFormatError:
        raise
    except (ValueError, EOFError, OSError) as e:
        raise DataFormatError(f"{path}: cannot read the .npy array (empty or truncated file?): {e}") from e
    if not isinstance(array, np.ndarray):
        raise DataFormatError(f"{path}: expected one array, found {type(array).__name__}")
    return array


class NpyFeatureStore(FeatureStore):
    """One ``.npy`` file per image (float32 or float16, [R, D]).

    Args:
        root (str): feature root; the layout is derived from it (:func:`detect_layout`) unless ``layout`` is given.
        dim (int, optional): expected width D; arrays of another width raise :class:`DataFormatError`.
        max_regions (int, optional): keep only the first ``max_regions`` rows.
        layout (str, optional): force ``"vqa"``, ``"nlvr2"`` or ``"flat"``.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """

    def __init__(self, root, dim=None, max_regions=None, layout=None):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"feature root {root!r} does not exist or is not a directory")
        self.root = root
        self.dim = dim
        self.max_regions = max_regions
        detected, base = detect_layout(root)
        if layout is not None and layout != detected:
            base = root
        self.layout = layout or detected
        self.base = base

    def path(self, key):
        """str: the file that holds ``key``."""
        if self.layout == "vqa":
            m = _VQA_SET_RE.match(key)
            if m is None:
                raise MissingFeaturesError(
                    f"key {key!r} is not a COCO image name (COCO_<set>_<id:012d>) as the vqa layout of {self.root} needs",
                    [key],
                )
            return os.path.join(self.base, m.group(1), key + ".npy")
        if self.layout == "nlvr2":
            coco = _VQA_SET_RE.match(key)
            if coco is not None and coco.group(1) in _COCO_144_SPLITS:
                return os.path.join(self.base, _COCO_144_SPLITS[coco.group(1)], "feature_1024dim", key + ".npy")
            name = key if key.endswith(".png") else key + ".png"
            split = name.split("-", 1)[0]
            return os.path.join(self.base, split, "feature_1024dim", name + ".npy")
        return os.path.join(self.base, key + ".npy")

    def describe(self, key):
        try:
            return self.path(key)
        except MissingFeaturesError:
            return f"{key!r} in {self.root}"

    def __contains__(self, key):
        try:
            return os.path.isfile(self.path(key))
        except MissingFeaturesError:
            return False

    def __getitem__(self, key):
        path = self.path(key)
        if not os.path.isfile(path):
            raise MissingFeaturesError(f"no region features for image {key!r}: {path} does not exist", [key])
        return self._validate(_read_npy(path), path)

    def num_regions(self, key):
        path = self.path(key)
        if not os.path.isfile(path):
            raise MissingFeaturesError(f"no region features for image {key!r}: {path} does not exist", [key])
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, EOFError, OSError) as e:
            raise DataFormatError(f"{path}: cannot read the .npy array (empty or truncated file?): {e}") from e
        rows = int(array.shape[0]) if array.ndim >= 1 else 0
        return min(rows, self.max_regions) if self.max_regions is not None else rows

    def keys(self):
        """list[str]: keys of every ``.npy`` file under the base directory (sorted): file names for the vqa and
        nlvr2 layouts (their paths follow from the name), paths relative to the root for a flat one (VCR's
        ``<movie>/<image>``)."""
        out = []
        for dirpath, _, files in os.walk(self.base):
            for name in files:
                if name.endswith(".npy"):
                    key = name if self.layout in ("vqa", "nlvr2") else os.path.relpath(os.path.join(dirpath, name), self.base)
                    out.append(key[: -len(".npy")].replace(os.sep, "/"))
        return sorted(out)


class FileFeatureStore(FeatureStore):
    """The region features of a few images given as ``.npy`` files, one per key (e.g. the one example of a predict
    script's ``--features_file``); read and checked as :class:`NpyFeatureStore` reads and checks its files.

    Args:
        files (dict[str, str]): key → ``.npy`` file ([R, D] float32 or float16).
        dim (int, optional): expected width D; max_regions (int, optional): region cap.
    """

    def __init__(self, files, dim=None, max_regions=None):
        self.files = dict(files)
        self.root = ", ".join(self.files.values())
        self.dim = dim
        self.max_regions = max_regions

    def describe(self, key):
        return self.files.get(key, f"{key!r}")

    def __contains__(self, key):
        return key in self.files and os.path.isfile(self.files[key])

    def __getitem__(self, key):
        path = self.files.get(key)
        if path is None or not os.path.isfile(path):
            raise MissingFeaturesError(f"no region features for image {key!r}: {path} does not exist", [key])
        return self._validate(_read_npy(path), path)

    def keys(self):
        return list(self.files)


class PackedFeatureStore(FeatureStore):
    """All regions of all images in one memory-mapped array (written by ``tools/pack_features.py``).

    Args:
        root (str): directory holding ``features.npy`` [N_regions, D] and ``index.json``
            (``{"dim": D, "dtype": ..., "keys": [...], "offsets": [...], "counts": [...]}``).
        dim (int, optional): expected width D (checked against the index at construction).
        max_regions (int, optional): keep only the first ``max_regions`` rows of each image.

    The memory map is opened lazily in each process (the store pickles without it), so it works with
    ``paddle.io.DataLoader`` workers.
    """

    def __init__(self, root, dim=None, max_regions=None):
        self.root = root
        array_path = os.path.join(root, PACKED_ARRAY)
        index_path = os.path.join(root, PACKED_INDEX)
        for p in (array_path, index_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"packed feature store {root!r}: {p} does not exist")
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
            keys, offsets, counts = index["keys"], index["offsets"], index["counts"]
            stored_dim = int(index["dim"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataFormatError(
                f"{index_path}: not a packed-feature index (expected JSON with dim, keys, offsets, counts): {e}"
            ) from e
        if not (len(keys) == len(offsets) == len(counts)):
            raise DataFormatError(f"{index_path}: keys, offsets and counts have different lengths")
        if dim is not None and dim != stored_dim:
            raise DataFormatError(f"{index_path}: features have width {stored_dim}, expected {dim}")
        self.dim = stored_dim
        self.max_regions = max_regions
        self.array_path = array_path
        self._index = {k: (int(o), int(c)) for k, o, c in zip(keys, offsets, counts)}
        self._array = None
        # keys whose rows were found finite in this process: read-only rows of a file are checked once, not at every
        # read (a VQA image serves ~5 questions, an NLVR2 pair 2 sentences, and every epoch reads them again)
        self._finite = set()
        array = self._open()
        if array.ndim != 2 or array.shape[1] != stored_dim:
            raise DataFormatError(f"{array_path}: expected shape [N, {stored_dim}], got {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise DataFormatError(f"{array_path}: expected float32 or float16 features, got dtype {array.dtype}")
        total = max((o + c for o, c in self._index.values()), default=0)
        if total > array.shape[0]:
            raise DataFormatError(
                f"{array_path}: the index needs {total} rows but the array has {array.shape[0]} (truncated?)"
            )

    def _open(self):
        if self._array is None:
            try:
                self._array = np.load(self.array_path, mmap_mode="r")
            except (ValueError, EOFError, OSError) as e:
                raise DataFormatError(f"{self.array_path}: cannot memory-map the packed array: {e}") from e
        return self._array

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __contains__(self, key):
        return key in self._index

    def describe(self, key):
        return f"{key!r} in the index of {self.root}"

    def _rows(self, key):
        """The memory-mapped rows of ``key`` (region cap applied) and where they are, for messages."""
        entry = self._index.get(key)
        if entry is None:
            raise MissingFeaturesError(
                f"no region features for image {key!r}: not in the packed store {self.root}", [key]
            )
        offset, count = entry
        if self.max_regions is not None:
            count = min(count, self.max_regions)
        return self._open()[offset : offset + count], f"{self.array_path} rows {offset}..{offset + count - 1} (image {key!r})"

    def __getitem__(self, key):
        rows, where = self._rows(key)
        # a copy (float16 is widened here), so samples never keep the memory map alive
        return check_finite(np.array(rows, dtype=np.float32), where)

    def view(self, key):
        rows, where = self._rows(key)
        if key not in self._finite:
            check_finite(rows, where)
            self._finite.add(key)
        return rows

    def view_concat(self, keys):
        # tools/pack_features.py packs the keys sorted, so an NLVR2 pair (``...-img0.png``, ``...-img1.png``) is
        # adjacent: one slice of the memory map, no copy
        entries = [self._index.get(k) for k in keys]
        counts = [None if e is None else (e[1] if self.max_regions is None else min(e[1], self.max_regions))
                  for e in entries]
        adjacent = all(e is not None for e in entries) and all(
            a[0] + a[1] == b[0] and c == a[1] for a, b, c in zip(entries, entries[1:], counts))
        if not adjacent:
            return super().view_concat(keys)
        start = entries[0][0]
        rows = self._open()[start : start + sum(counts)]
        if not self._finite.issuperset(keys):
            if not _all_finite(rows):
                for key in keys:  # the message names the image and its row
                    self.view(key)
            self._finite.update(keys)
        return rows, counts

    def num_regions(self, key):
        entry = self._index.get(key)
        if entry is None:
            raise MissingFeaturesError(f"no region features for image {key!r} in {self.root}", [key])
        return min(entry[1], self.max_regions) if self.max_regions is not None else entry[1]

    def keys(self):
        return sorted(self._index)


def is_packed_store(path):
    """bool: ``path`` is a directory written by ``tools/pack_features.py``."""
    return os.path.isfile(os.path.join(path, PACKED_INDEX)) and os.path.isfile(os.path.join(path, PACKED_ARRAY))


def open_feature_store(root, dim=None, max_regions=None):
    """Opens the feature store at ``root`` (packed or per-image, the layout derived from the directory).

    Args:
        root (str or FeatureStore): a directory, or an already open store (returned unchanged).
        dim (int, optional): expected feature width.
        max_regions (int, optional): region cap.

    Returns:
        FeatureStore

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    if isinstance(root, FeatureStore):
        return root
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"feature root {root!r} does not exist (expected a per-image .npy directory such as "
            "detectron_fix_100 / detectron_fix_144, or a directory written by tools/pack_features.py)"
        )
    if is_packed_store(root):
        return PackedFeatureStore(root, dim=dim, max_regions=max_regions)
    return NpyFeatureStore(root, dim=dim, max_regions=max_regions)


def pack_features(store, out_dir, keys=None, float16=False, progress=True, overwrite=False):
    """Packs the arrays of ``store`` into ``out_dir`` (``features.npy`` + ``index.json``), atomically.

    Args:
        store (FeatureStore): the source (usually an :class:`NpyFeatureStore`).
        out_dir (str): output directory (created).
        keys (list[str], optional): keys to pack (default: all of ``store.keys()``).
        float16 (bool): store float16 (half the size; values are rounded, overflow raises).
        progress (bool): show tqdm progress bars.
        overwrite (bool): replace a store already in ``out_dir`` (otherwise that is an error).

    Returns:
        dict: the index written.

    Raises:
        FileExistsError: ``out_dir`` already holds ``features.npy`` or ``index.json`` and ``overwrite`` is False.
        ValueError: ``out_dir`` is the source root or inside it (the packed array would become a feature "image").
    """
    from tqdm import tqdm

    from ..fileio import atomic_path, write_json

    source, target = os.path.realpath(store.root), os.path.realpath(out_dir)
    if target == source or target.startswith(source + os.sep):
        raise ValueError(f"output {out_dir} is inside the feature root {store.root} it packs; choose another directory")
    existing = [n for n in (PACKED_ARRAY, PACKED_INDEX) if os.path.exists(os.path.join(out_dir, n))]
    if existing and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a packed store ({', '.join(existing)}); pass --overwrite to "
                              "replace it")
    keys = sorted(store.keys()) if keys is None else list(keys)
    if not keys:
        raise DataFormatError(f"nothing to pack: no .npy feature files under {store.root}")
    store.check(keys, source=f"the key list for {out_dir}")
    counts = [store.num_regions(k) for k in tqdm(keys, desc="counting regions", disable=not progress)]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64).tolist()
    dim = store.dim if store.dim is not None else int(store[keys[0]].shape[1])
    dtype = np.float16 if float16 else np.float32
    os.makedirs(out_dir, exist_ok=True)
    array_path = os.path.join(out_dir, PACKED_ARRAY)
    with atomic_path(array_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(sum(counts)), dim))
        for key, offset, count in tqdm(list(zip(keys, offsets, counts)), desc="packing", disable=not progress):
            array = store[key]
            if array.shape[0] != count:
                raise DataFormatError(f"{store.describe(key)}: changed while packing ({array.shape[0]} != {count} rows)")
            if float16 and not np.all(np.isfinite(array.astype(np.float16))):
                raise DataFormatError(f"{store.describe(key)}: values overflow float16; pack without --float16")
            out[offset : offset + count] = array
        out.flush()
        del out
    index = {"dim": dim, "dtype": np.dtype(dtype).name, "keys": keys, "offsets": offsets, "counts": counts}
    write_json(os.path.join(out_dir, PACKED_INDEX), index, indent=None, sort_keys=True)
    return index
