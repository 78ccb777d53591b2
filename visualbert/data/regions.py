"""Region proposals with their boxes: ``store[image_id] -> Regions(features, boxes, spatial)``.

Grounding needs the boxes beside the features (targets are IoUs against the ground truth). Two layouts:

* BAN's hdf5 (``jnhwkim/ban-vqa`` ``tools/adaptive_detection_features_converter.py``, the files the original
  VisualBERT Flickr30K loader reads): ``<split>.hdf5`` with ``image_features`` [N, 2048], ``image_bb`` [N, 4]
  (pixels, x1 y1 x2 y2), ``spatial_features`` [N, 6] and ``pos_boxes`` [images, 2] (the row range
  ``[start, end)`` of each image), and ``<split>_imgid2idx.pkl`` (``{image_id: row of pos_boxes}``);
  10 to 100 boxes an image there.
* our feature stores (:mod:`visualbert.data.features`, per-image ``.npy`` or packed) side by side:
  ``<root>/features`` ([R, D] per image) and ``<root>/boxes`` ([R, 4] pixels, same rows, same keys). The
  spatial features are then computed from the boxes and the image size (:func:`spatial_features`).

:func:`open_region_store` picks the layout.
"""

import os
import pickle
from typing import NamedTuple, Optional

import numpy as np

from .errors import DataFormatError, MissingFeaturesError
from .features import open_feature_store

HDF5_DATASETS = ("image_features", "image_bb", "spatial_features", "pos_boxes")
SPATIAL_DIM = 6


class Regions(NamedTuple):
    """The proposals of one image.

    Attributes:
        features (np.ndarray): float32 [R, D].
        boxes (np.ndarray): float32 [R, 4] ``x1, y1, x2, y2`` in pixels.
        spatial (np.ndarray or None): float32 [R, 6] as stored (BAN), None when it must be computed.
    """

    features: np.ndarray
    boxes: np.ndarray
    spatial: Optional[np.ndarray]


def spatial_features(boxes, width, height):
    """BAN's 6-d box encoding ``x1/W, y1/H, x2/W, y2/H, w/W, h/H``.

    Args:
        boxes (np.ndarray): float [R, 4] ``x1, y1, x2, y2`` pixels.
        width (float), height (float): the image size in pixels.

    Returns:
        np.ndarray: float32 [R, 6].
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    w, h = float(width), float(height)
    x1, y1, x2, y2 = boxes[:, 0] / w, boxes[:, 1] / h, boxes[:, 2] / w, boxes[:, 3] / h
    return np.stack([x1, y1, x2, y2, x2 - x1, y2 - y1], axis=1).astype(np.float32)


class _IntDictUnpickler(pickle.Unpickler):
    """Unpickles only plain containers of numbers and strings (an index file must not run code)."""

    def find_class(self, module, name):
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name in ("scalar", "dtype"):
            return getattr(np.core.multiarray, name) if name == "scalar" else np.dtype
        raise pickle.UnpicklingError(f"the index may hold only ids and rows, found a {module}.{name}")


def read_imgid2idx(path):
    """Reads a BAN ``<split>_imgid2idx.pkl`` index.

    Returns:
        dict[str, int]: image id (as a string) -> row of ``pos_boxes``.

    Raises:
        FileNotFoundError, DataFormatError: naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BAN image index {path} does not exist (expected <split>_imgid2idx.pkl beside the hdf5)")
    try:
        with open(path, "rb") as f:
            index = _IntDictUnpickler(f).load()
    except Exception as e:  # UnpicklingError, EOFError on a truncated file ...
        raise DataFormatError(f"{path}: not a BAN image index (a pickled dict image id -> row): {e}") from e
    if not isinstance(index, dict):
        raise DataFormatError(f"{path}: expected a pickled dict image id -> row, got {type(index).__name__}")
    try:
        return {str(int(k)): int(v) for k, v in index.items()}
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{path}: keys must be image ids and values rows (integers): {e}") from e


class Hdf5RegionStore:
    """BAN's hdf5 proposals of one split, read lazily (the file is opened in each process on first use).

    Args:
        h5_path (str): ``<split>.hdf5``.
        index_path (str, optional): ``<split>_imgid2idx.pkl`` (default: beside ``h5_path``).
        max_regions (int, optional): keep only the first ``max_regions`` proposals of an image.

    Raises:
        FileNotFoundError: a missing file. DataFormatError: a missing dataset, inconsistent row counts, or a
            ``pos_boxes`` range outside the arrays (the image id named).
    """

    def __init__(self, h5_path, index_path=None, max_regions=None):
        import h5py

        if not os.path.isfile(h5_path):
            raise FileNotFoundError(f"BAN feature file {h5_path} does not exist")
        if index_path is None:
            index_path = os.path.splitext(h5_path)[0] + "_imgid2idx.pkl"
        self.root = self.h5_path = h5_path
        self.index_path = index_path
        self.max_regions = max_regions
        self.index = read_imgid2idx(index_path)
        try:
            with h5py.File(h5_path, "r") as hf:
                missing = [name for name in HDF5_DATASETS if name not in hf]
                if missing:
                    raise DataFormatError(f"{h5_path}: lacks dataset(s) {', '.join(missing)} (BAN layout: {', '.join(HDF5_DATASETS)})")
                shapes = {name: hf[name].shape for name in HDF5_DATASETS}
                self.pos_boxes = np.asarray(hf["pos_boxes"][()], dtype=np.int64)
        except OSError as e:
            raise DataFormatError(f"{h5_path}: cannot read the hdf5 file: {e}") from e
        rows = shapes["image_features"][0]
        if len(shapes["image_features"]) != 2:
            raise DataFormatError(f"{h5_path}: image_features has shape {shapes['image_features']}, expected [N, D]")
        for name, width in (("image_bb", 4), ("spatial_features", SPATIAL_DIM)):
            if shapes[name] != (rows, width):
                raise DataFormatError(f"{h5_path}: {name} has shape {shapes[name]}, expected ({rows}, {width})")
        if self.pos_boxes.ndim != 2 or self.pos_boxes.shape[1] != 2:
            raise DataFormatError(f"{h5_path}: pos_boxes has shape {self.pos_boxes.shape}, expected [images, 2]")
        self.dim = int(shapes["image_features"][1])
        self.num_rows = int(rows)
        for image_id, idx in self.index.items():
            if not 0 <= idx < len(self.pos_boxes):
                raise DataFormatError(f"{index_path}: image {image_id} points to pos_boxes row {idx}, "
                                      f"but {h5_path} has {len(self.pos_boxes)} rows")
            start, end = self.pos_boxes[idx]
            if not 0 <= start < end <= rows:
                raise DataFormatError(f"{h5_path}: pos_boxes[{idx}] of image {image_id} is [{start}, {end}), "
                                      f"expected a non-empty range inside the {rows} feature rows")
        self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    _pid = None

    def _open(self):
        # HDF5 handles are not fork-safe: a DataLoader worker opens its own even if the parent had one open.
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.h5_path, "r")
            self._pid = os.getpid()
        return self._file

    def __contains__(self, image_id):
        return str(image_id) in self.index

    def keys(self):
        """list[str]: the image ids of the index."""
        return sorted(self.index)

    def describe(self, image_id):
        return f"image {image_id} in {self.index_path}"

    def num_regions(self, image_id):
        start, end = self._range(image_id)
        return int(end - start)

    def _range(self, image_id):
        idx = self.index.get(str(image_id))
        if idx is None:
            raise MissingFeaturesError(f"no proposals for image {image_id}: not in the index {self.index_path}", [str(image_id)])
        start, end = (int(v) for v in self.pos_boxes[idx])
        if self.max_regions is not None:
            end = min(end, start + self.max_regions)
        return start, end

    def __getitem__(self, image_id):
        start, end = self._range(image_id)
        hf = self._open()
        return Regions(
            features=np.asarray(hf["image_features"][start:end], dtype=np.float32),
            boxes=np.asarray(hf["image_bb"][start:end], dtype=np.float32),
            spatial=np.asarray(hf["spatial_features"][start:end], dtype=np.float32),
        )

    def check(self, image_ids, source=""):
        """Raises :class:`MissingFeaturesError` listing the ids of ``image_ids`` absent from the index."""
        missing = [i for i in dict.fromkeys(str(i) for i in image_ids) if i not in self.index]
        if missing:
            where = f" needed by {source}" if source else ""
            raise MissingFeaturesError(
                f"{len(missing)} images{where} are not in the BAN index {self.index_path}; first missing: "
                + ", ".join(missing[:10]), missing)


class BoxedFeatureStore:
    """Our feature stores with a box store beside them: ``<root>/features`` and ``<root>/boxes``.

    Both are :class:`~visualbert.data.features.FeatureStore` directories (per-image ``.npy`` or packed) with
    the same keys and row counts; boxes are float [R, 4] pixels ``x1, y1, x2, y2``. ``spatial`` is None.

    Args:
        root (str): the directory holding ``features/`` and ``boxes/``.
        dim (int, optional): expected feature width. max_regions (int, optional): region cap.
    """

    def __init__(self, root, dim=None, max_regions=None):
        self.root = root
        for sub in ("features", "boxes"):
            if not os.path.isdir(os.path.join(root, sub)):
                raise FileNotFoundError(f"{root}: expected {os.path.join(root, sub)}/ (features and boxes side by side)")
        self.features = open_feature_store(os.path.join(root, "features"), dim=dim, max_regions=max_regions)
        self.boxes = open_feature_store(os.path.join(root, "boxes"), dim=4, max_regions=max_regions)
        self.max_regions = max_regions

    @property
    def dim(self):
        return self.features.dim

    def __contains__(self, image_id):
        return str(image_id) in self.features and str(image_id) in self.boxes

    def keys(self):
        return sorted(set(self.features.keys()) & set(self.boxes.keys()))

    def describe(self, image_id):
        return self.features.describe(str(image_id))

    def num_regions(self, image_id):
        return self.features.num_regions(str(image_id))

    def __getitem__(self, image_id):
        key = str(image_id)
        features, boxes = self.features[key], self.boxes[key]
        if boxes.shape[0] != features.shape[0]:
            raise DataFormatError(f"{self.boxes.describe(key)}: {boxes.shape[0]} boxes for the {features.shape[0]} "
                                  f"feature rows of {self.features.describe(key)}")
        return Regions(features=features, boxes=boxes, spatial=None)

    def check(self, image_ids, source=""):
        image_ids = [str(i) for i in image_ids]
        self.features.check(image_ids, source)
        self.boxes.check(image_ids, source)


def open_region_store(path, split=None, dim=None, max_regions=None):
    """Opens proposals with boxes.

    Args:
        path (str): a BAN ``.hdf5`` file; a directory with ``<split>.hdf5`` (and ``<split>_imgid2idx.pkl``);
            a directory with ``features/`` and ``boxes/``; or one with ``<split>/features`` and ``<split>/boxes``.
        split (str, optional): the split, to find ``<split>.hdf5`` or ``<split>/`` in a directory.
        dim (int, optional): expected feature width (checked for our stores; BAN's is read from the file).
        max_regions (int, optional): region cap.

    Returns:
        Hdf5RegionStore or BoxedFeatureStore

    Raises:
        FileNotFoundError: nothing of the above at ``path``.
    """
    if isinstance(path, (Hdf5RegionStore, BoxedFeatureStore)):
        return path
    if os.path.isfile(path):
        store = Hdf5RegionStore(path, max_regions=max_regions)
    elif split is not None and os.path.isfile(os.path.join(path, f"{split}.hdf5")):
        store = Hdf5RegionStore(os.path.join(path, f"{split}.hdf5"), max_regions=max_regions)
    elif os.path.isdir(os.path.join(path, "features")):
        return BoxedFeatureStore(path, dim=dim, max_regions=max_regions)
    elif split is not None and os.path.isdir(os.path.join(path, split, "features")):
        return BoxedFeatureStore(os.path.join(path, split), dim=dim, max_regions=max_regions)
    else:
        wanted = f"{split}.hdf5 + {split}_imgid2idx.pkl, or " if split else ""
        raise FileNotFoundError(f"no region proposals at {path} (expected a BAN .hdf5 file, {wanted}features/ and boxes/)")
    if dim is not None and store.dim != dim:
        raise DataFormatError(f"{store.h5_path}: image_features have width {store.dim}, expected {dim}")
    return store


__all__ = ["BoxedFeatureStore", "Hdf5RegionStore", "Regions", "open_region_store",
           "read_imgid2idx", "spatial_features"]
