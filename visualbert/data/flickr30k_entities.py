"""Readers of the Flickr30K Entities annotation files (BryanPlummer/flickr30k_entities).

* ``Sentences/<image_id>.txt``: one caption a line, phrases marked
  ``[/EN#<chain id>/<type>[/<type>...] word word ...]``; chain 0 (type ``notvisual``) is not visual;
* ``Annotations/<image_id>.xml``: PASCAL-VOC-like ``<object>`` elements, each with one or more ``<name>``
  (chain ids) and either a ``<bndbox>`` (xmin, ymin, xmax, ymax) or ``<nobndbox>`` / ``<scene>`` flags;
* ``train.txt``, ``val.txt``, ``test.txt``: the image ids of each split, one a line.

:func:`load_grounded_captions` joins them the way the original VisualBERT / BAN loader does
(``flickr_ban/dataset.py:_load_flickr30k``): a phrase keeps the boxes of its chain (every box of every
object naming the chain), phrases whose chain has no box (chain 0, scene-only or no-box chains) are dropped
and counted, captions left without a phrase are dropped and counted.

Box coordinates are kept as written in the XML (1-based pixels, no ``-1`` as the official python reader
does): the original compares them to the detector's boxes unchanged.
"""

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from xml.parsers import expat

from .errors import DataFormatError

NOT_VISUAL_CHAIN = 0
PHRASE_TYPES = ("people", "clothing", "bodyparts", "animals", "vehicles", "instruments", "scene", "other")
SPLITS = ("train", "val", "test")

# "[/EN#<chain>/<type>[/<type>...] <words>]"; words hold no bracket (the dataset never nests phrases).
_PHRASE_RE = re.compile(r"\[/EN#(\d+)((?:/[^\s/\[\]]+)+) ([^\[\]]+)\]")


@dataclass
class Phrase:
    """One marked phrase of a caption.

    Attributes:
        text (str): the phrase words, as in the caption.
        start (int): character offset of the phrase in :attr:`Caption.text`.
        end (int): offset one past its last character (``caption.text[start:end] == text``).
        first_word (int): index of its first word in ``caption.text.split(" ")``.
        last_word (int): index of its last word (the original grounds the phrase at this word).
        chain_id (int): coreference chain (0 = not visual).
        types (tuple[str]): coarse types, e.g. ``("people", "other")``.
        boxes (list[list[int]]): ground-truth boxes ``[xmin, ymin, xmax, ymax]`` of its chain (filled by
            :func:`load_grounded_captions`).
    """

    text: str
    start: int
    end: int
    first_word: int
    last_word: int
    chain_id: int
    types: tuple
    boxes: list = field(default_factory=list)


@dataclass
class Caption:
    """One line of a ``Sentences`` file, markup removed.

    Attributes:
        text (str): the caption words separated by single spaces.
        phrases (list[Phrase]): its phrases in order.
        source (str): the file the caption comes from.
        line (int): its 1-based line number there.
        image_id (str): the image id (file stem).
        index (int): the caption's index among the image's captions (0-based, blank lines skipped).
    """

    text: str
    phrases: list
    source: str = ""
    line: int = 0
    image_id: str = ""
    index: int = 0


@dataclass
class ImageAnnotation:
    """The content of one ``Annotations/<image_id>.xml``.

    Attributes:
        width (int or None), height (int or None): the image size (``<size>``).
        boxes (dict[int, list[list[int]]]): chain id -> its boxes ``[xmin, ymin, xmax, ymax]``.
        scene (set[int]): chains marked as the whole scene.
        nobox (set[int]): chains marked as not visible (``nobndbox``).
        source (str): the file.
    """

    width: object
    height: object
    boxes: dict
    scene: set
    nobox: set
    source: str = ""

    def annotated_chains(self):
        """set[int]: every chain the file mentions (with or without a box)."""
        return set(self.boxes) | self.scene | self.nobox


def parse_caption(line, source="", lineno=0):
    """Parses one marked-up caption line.

    Args:
        line (str): e.g. ``"[/EN#1/people A man] plays [/EN#2/instruments a guitar] ."``.
        source (str): file named in errors. lineno (int): its 1-based line number.

    Returns:
        Caption: the text as the original derives it (markup removed) and the phrases with their spans.

    Raises:
        DataFormatError: a bracket that is not a well-formed phrase, or a line without any phrase.
    """
    where = f"{source}:{lineno}" if source else f"line {lineno}"
    line = line.strip()
    pieces, phrases, pos = [], [], 0
    length = 0
    for m in _PHRASE_RE.finditer(line):
        before = line[pos : m.start()]
        if "[" in before or "]" in before:
            raise DataFormatError(f"{where}: malformed phrase markup near {before.strip()[:40]!r} "
                                  "(expected [/EN#<chain>/<type> words])")
        pieces.append(before)
        length += len(before)
        words = m.group(3)
        start = length
        pieces.append(words)
        length += len(words)
        chain = int(m.group(1))
        types = tuple(t for t in m.group(2).split("/") if t)
        phrases.append((words, start, length, chain, types))
        pos = m.end()
    rest = line[pos:]
    if "[" in rest or "]" in rest:
        raise DataFormatError(f"{where}: malformed phrase markup near {rest.strip()[:40]!r} "
                              "(expected [/EN#<chain>/<type> words])")
    pieces.append(rest)
    if not phrases:
        raise DataFormatError(f"{where}: caption without phrase markup ([/EN#<chain>/<type> words]): {line[:60]!r}")
    text = "".join(pieces)
    out = []
    for words, start, end, chain, types in phrases:
        first_word = text.count(" ", 0, start)
        last_word = text.count(" ", 0, end - 1)
        out.append(Phrase(words, start, end, first_word, last_word, chain, types))
    return Caption(text=text, phrases=out, source=source, line=lineno)


def read_captions(path):
    """Reads a ``Sentences/<image_id>.txt`` file.

    Args:
        path (str): the file.

    Returns:
        list[Caption]: one per non-blank line, with ``source``, ``line``, ``image_id`` and ``index`` set.

    Raises:
        FileNotFoundError: no such file. DataFormatError: a malformed line (file:line named), or no caption.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Flickr30K Entities sentence file {path} does not exist")
    image_id = os.path.splitext(os.path.basename(path))[0]
    captions = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            caption = parse_caption(line, path, lineno)
            caption.image_id = image_id
            caption.index = len(captions)
            captions.append(caption)
    if not captions:
        raise DataFormatError(f"{path}: no caption (empty file)")
    return captions


def _object_lines(data):
    """1-based source line of every ``<object>`` start tag, in document order (ElementTree keeps none)."""
    parser = expat.ParserCreate()
    lines = []

    def start(name, attrs):
        if name == "object":
            lines.append(parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.Parse(data, True)
    return lines


def _int_text(element, tag, where):
    text = element.findtext(tag)
    if text is None:
        raise DataFormatError(f"{where}: <{tag}> is missing")
    try:
        return int(float(text.strip()))
    except ValueError:
        raise DataFormatError(f"{where}: <{tag}> is {text.strip()!r}, expected an integer") from None


def read_annotation(path):
    """Reads an ``Annotations/<image_id>.xml`` file.

    Args:
        path (str): the file.

    Returns:
        ImageAnnotation

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: not well-formed XML (the parser's line named), or an object (its line named) without
            a chain id, with a non-integer chain id or coordinate, with an empty or inverted box, or with
            neither a box nor a ``nobndbox``/``scene`` flag.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Flickr30K Entities annotation file {path} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    try:
        root = ET.fromstring(data)
        object_lines = _object_lines(data)
    except ET.ParseError as e:
        line, column = e.position
        raise DataFormatError(f"{path}:{line}: malformed XML (column {column}): {e}") from None
    width = height = None
    size = root.find("size")
    if size is not None:
        width = _int_text(size, "width", f"{path}: <size>") if size.find("width") is not None else None
        height = _int_text(size, "height", f"{path}: <size>") if size.find("height") is not None else None
    boxes, scene, nobox = {}, set(), set()
    for obj, lineno in zip(root.findall("object"), object_lines):
        where = f"{path}:{lineno}: <object>"
        names = obj.findall("name")
        if not names:
            raise DataFormatError(f"{where} has no <name> (chain id)")
        chains = []
        for name in names:
            text = (name.text or "").strip()
            if not text.isdigit():
                raise DataFormatError(f"{where} has <name>{text}</name>, expected a chain id (integer)")
            chains.append(int(text))
        box = obj.find("bndbox")
        if box is not None and len(box):
            coords = [_int_text(box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax")]
            if coords[2] <= coords[0] or coords[3] <= coords[1]:
                raise DataFormatError(f"{where} has an empty or inverted box {coords} (expected xmin < xmax, ymin < ymax)")
            for chain in chains:
                boxes.setdefault(chain, []).append(coords)
            continue
        flags = {tag: obj.findtext(tag) for tag in ("nobndbox", "scene")}
        is_nobox = (flags["nobndbox"] or "0").strip() not in ("", "0")
        is_scene = (flags["scene"] or "0").strip() not in ("", "0")
        if not (is_nobox or is_scene):
            raise DataFormatError(f"{where} for chain(s) {chains} has no <bndbox> and neither <nobndbox> nor <scene> set")
        for chain in chains:
            (nobox if is_nobox else scene).add(chain)
            if is_nobox and is_scene:
                scene.add(chain)
    return ImageAnnotation(width=width, height=height, boxes=boxes, scene=scene, nobox=nobox, source=path)


def read_split_ids(path):
    """Reads a split list (``train.txt`` / ``val.txt`` / ``test.txt``).

    Returns:
        list[str]: the image ids in file order.

    Raises:
        FileNotFoundError: no such file. DataFormatError: a line that is not an image id, or no id.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Flickr30K Entities split list {path} does not exist")
    ids = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            token = line.strip()
            if not token:
                continue
            if not token.isdigit():
                raise DataFormatError(f"{path}:{lineno}: {token[:40]!r} is not an image id (digits)")
            ids.append(token)
    if not ids:
        raise DataFormatError(f"{path}: empty split list")
    return ids


def entities_dir(root):
    """str: the directory holding ``Sentences/`` and ``Annotations/`` (``root`` or BAN's ``root/Flickr30kEntities``)."""
    for candidate in (root, os.path.join(root, "Flickr30kEntities")):
        if os.path.isdir(os.path.join(candidate, "Sentences")) and os.path.isdir(os.path.join(candidate, "Annotations")):
            return candidate
    raise FileNotFoundError(
        f"{root} holds no Flickr30K Entities annotations (expected {root}/Sentences/ and {root}/Annotations/, "
        f"or the same under {root}/Flickr30kEntities/)"
    )


def split_list_path(root, split):
    """str: the ``<split>.txt`` list under ``root`` or its entities directory."""
    for directory in (root, entities_dir(root)):
        path = os.path.join(directory, f"{split}.txt")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no split list {split}.txt under {root} (expected one image id a line)")


def load_grounded_captions(root, image_ids, allow_unannotated_chains=False):
    """Joins captions and boxes of ``image_ids`` (the original's phrase filtering).

    A phrase is kept when its chain has at least one box in the image's XML; it then carries every box of
    the chain. Dropped phrases are counted by reason: ``not_visual`` (chain 0), ``no_box`` (a chain marked
    ``scene`` or ``nobndbox`` only) and ``unannotated`` (a chain the XML does not mention, only with
    ``allow_unannotated_chains``). Captions without a kept phrase are dropped (``captions_without_boxes``).

    Args:
        root (str): Flickr30K Entities directory (see :func:`entities_dir`).
        image_ids (list[str]): images to load.
        allow_unannotated_chains (bool): drop (and count) phrases whose chain is absent from the XML instead of
            raising.

    Returns:
        tuple[list[Caption], dict[str, ImageAnnotation], collections.Counter]: kept captions (phrases with
        ``boxes`` filled), the annotation of each image, and the counts (also ``phrases``, ``captions``).

    Raises:
        DataFormatError: a malformed file, or (by default) a phrase whose chain the XML does not mention
            (sentence file:line and the XML named).
    """
    base = entities_dir(root)
    kept, annotations, counts = [], {}, Counter()
    for image_id in image_ids:
        annotation = read_annotation(os.path.join(base, "Annotations", f"{image_id}.xml"))
        annotations[image_id] = annotation
        mentioned = annotation.annotated_chains()
        for caption in read_captions(os.path.join(base, "Sentences", f"{image_id}.txt")):
            counts["captions"] += 1
            phrases = []
            for phrase in caption.phrases:
                counts["phrases"] += 1
                if phrase.chain_id == NOT_VISUAL_CHAIN:
                    counts["not_visual"] += 1
                elif phrase.chain_id in annotation.boxes:
                    phrase.boxes = [list(b) for b in annotation.boxes[phrase.chain_id]]
                    phrases.append(phrase)
                elif phrase.chain_id in mentioned:
                    counts["no_box"] += 1
                elif allow_unannotated_chains:
                    counts["unannotated"] += 1
                else:
                    raise DataFormatError(
                        f"{caption.source}:{caption.line}: phrase {phrase.text!r} has chain {phrase.chain_id}, which "
                        f"{annotation.source} does not annotate (no <object> names it)"
                    )
            if phrases:
                caption.phrases = phrases
                kept.append(caption)
                counts["grounded_phrases"] += len(phrases)
            else:
                counts["captions_without_boxes"] += 1
    return kept, annotations, counts
