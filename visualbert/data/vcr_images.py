"""VCR from the images, as the original reads it (``visualbert/dataloaders/vcr.py``, R2C's loader, with
``vcr_data_utils.py``, ``box_utils.py`` and ``mask_utils.py``).

Per annotation line (``{split}.jsonl``): the image ``img_fn`` and its ``metadata_fn`` JSON (``boxes`` [x1, y1,
x2, y2, confidence], ``segms`` polygons per box, ``names``, ``width``, ``height``), both under ``image_dir``.

What is reproduced, step by step:

* detections (``_get_dets_to_use``): with ``only_use_relevant_dets`` the boxes referenced anywhere in the question
  and the choices (``add_all_features``: question + all answers + all rationales, as every released config), plus
  every ``person`` when a token is "everyone"/"everyones", or every person when nothing is referenced; renumbered
  in order, the whole image prepended as box 0 (class ``__background__``, an all-ones mask);
* the image: RGB, resized with PIL bilinear to fit 768 x 384 keeping the aspect ratio (``round`` of each side),
  zero-padded (centred; a random offset in training), ``to_tensor`` / 255, ImageNet mean/std; boxes scaled and
  shifted the same way; 14 x 14 masks from the polygons sampled at 14 evenly spaced inner points per side
  (matplotlib ``Path.contains_points``, as ``make_mask``);
* text (``fix_item`` / ``_fix_tokenization``): object references become ``GENDER_NEUTRAL_NAMES`` for persons (one
  name per distinct person, in order of first mention, the naming shared by the context and every choice) or the
  class name; ``retokenize_with_alignment`` (basic tokenizer then WordPiece, per raw token);
  ``process_ctx_ans_for_bert``'s truncation, which (a quirk: ``len(context)`` is the length of a (tokens,
  alignment) pair, i.e. 2) always removes the excess from the FRONT of the answer and never from the context;
* ``image_text_alignment`` (``get_alignment_original``): each referenced box gets position ``raw token index +
  offset`` (offset 1 in the context, ``len(context wordpieces) + 2`` in the answer), the RAW token index, not the
  WordPiece index (the original's loop variable shadows the position), and only if a piece of that raw token
  survived truncation;
* modes: Q->A (``[CLS] q [SEP] a_i [SEP]``), QA->R (context = question + the correct answer), the test split's
  QA->R for each of the 4 answers (``expand_answers``: 4 examples per line), and the pre-training
  ``complete_shuffle`` (one sequence per example, ``pretraining_include_qa_and_qar``: 8 per line, else 4).

Samples are dicts of numpy arrays (see :meth:`VCRImageDataset.__getitem__`); :class:`visualbert.data.Collator`
batches them (``images``, ``boxes``, ``box_mask``, ``objects``, ``segms``).
"""

import json
import os
import random
from collections import defaultdict

import numpy as np

from ..fileio import read_jsonl
from .errors import DataFormatError, with_example_context
from .features import open_feature_store
from .masking import mask_tokens, random_token_candidates
from .vcr import pack_choices

# vcr_data_utils.py's list, 'Peyton' twice included: the name index is count % 15.
GENDER_NEUTRAL_NAMES = ['Casey', 'Riley', 'Jessie', 'Jackie', 'Avery', 'Jaime', 'Peyton', 'Kerry', 'Jody', 'Kendall',
                        'Peyton', 'Skyler', 'Frankie', 'Pat', 'Quinn']

# R2C's dataloaders/cocoontology.json sorted by its integer keys, '__background__' first: the detector's class ids.
COCO_OBJECTS = [
    '__background__', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'trafficlight', 'firehydrant', 'stopsign', 'parkingmeter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis',
    'snowboard', 'sportsball', 'kite', 'baseballbat', 'baseballglove', 'skateboard', 'surfboard', 'tennisracket',
    'bottle', 'wineglass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hotdog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'pottedplant', 'bed', 'diningtable', 'toilet', 'tv',
    'laptop', 'mouse', 'remote', 'keyboard', 'cellphone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddybear', 'hairdrier', 'toothbrush',
]
COCO_OBJECT_INDEX = {name: i for i, name in enumerate(COCO_OBJECTS)}

IMAGE_WIDTH, IMAGE_HEIGHT = 768, 384
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MASK_SIZE = 14
NUM_CHOICES = 4
MODES = ("qa", "qar")


# ------------------------------------------------------------------------------------------------ text
def fix_tokenization(tokenized_sent, objects, det_hist=None):
    """``_fix_tokenization``: object references -> names.

    Args:
        tokenized_sent (list): VCR tokens; a list of ints is a reference to those boxes.
        objects (list[str]): class name per box of the line.
        det_hist (dict[int, str], optional): names already given (from the context); not modified.

    Returns:
        tuple: (list[str] tokens, one per word and one per referenced box; dict box -> name).
    """
    det_hist = dict(det_hist or {})
    counts = defaultdict(int)
    for name in det_hist.values():
        counts[name.split('_')[0]] += 1
    out = []
    for tok in tokenized_sent:
        if isinstance(tok, list):
            for box in tok:
                if box not in det_hist:
                    if objects[box] == 'person':
                        det_hist[box] = GENDER_NEUTRAL_NAMES[counts['person'] % len(GENDER_NEUTRAL_NAMES)]
                    else:
                        det_hist[box] = objects[box]
                    counts[objects[box]] += 1
                out.append(det_hist[box])
        else:
            out.append(tok)
    return out, det_hist


def fix_item(item, answer_label=None, rationales=True):
    """``fix_item``: (context tokens, [choice tokens] x 4) with one naming shared by context and choices.

    Q->A: context = question, choices = answers; QA->R: context = question + answer ``answer_label``,
    choices = rationales.

    Note ``counts`` in :func:`fix_tokenization` is rebuilt from the context's names for every choice: a person
    first mentioned in a choice is named by ``counts['person']``, where the count of a context-named person
    ``Casey`` is taken from ``'Casey'.split('_')[0]`` = ``'Casey'``, not ``'person'``. So a new person in a choice
    restarts at index 0 (Casey) even when the context already named Casey; kept as in the original.
    """
    if rationales:
        ctx = item['question'] + item['answer_choices'][answer_label]
    else:
        ctx = item['question']
    ctx_tokens, hist = fix_tokenization(ctx, item['objects'])
    choices = item['rationale_choices'] if rationales else item['answer_choices']
    return ctx_tokens, [fix_tokenization(choice, item['objects'], det_hist=hist)[0] for choice in choices]


def retokenize_with_alignment(span, tokenizer):
    """``retokenize_with_alignment``: WordPieces of each raw token and the raw index of each piece.

    Returns:
        tuple: (list[str] pieces, list[int] raw token index per piece).
    """
    pieces, alignment = [], []
    for i, tok in enumerate(span):
        for word in tokenizer.basic_tokenizer.tokenize(tok):
            for piece in tokenizer.wordpiece_tokenizer.tokenize(word):
                pieces.append(piece)
                alignment.append(i)
    return pieces, alignment


def truncate_context_answer(context, answer, max_seq_length):
    """``process_ctx_ans_for_bert``'s truncation of ((pieces, alignment), (pieces, alignment)).

    ``take_away_from_ctx = min((excess + 1) // 2, max(len(context) - 32, 0))`` where ``context`` is the
    (pieces, alignment) pair, so it is always 0: the whole excess comes off the front of the answer.

    Raises:
        DataFormatError: the answer is too short to absorb the excess (the original's assertion).
    """
    total = len(context[0]) + len(answer[0]) + 3
    if total > max_seq_length:
        from_ctx = min((total - max_seq_length + 1) // 2, max(len(context) - 32, 0))
        from_answer = total - max_seq_length + from_ctx
        context = (context[0][from_ctx:], context[1][from_ctx:])
        answer = (answer[0][from_answer:], answer[1][from_answer:])
    if len(context[0]) + len(answer[0]) + 3 > max_seq_length:
        raise DataFormatError(f"the context has {len(context[0])} WordPieces: with [CLS]/[SEP]/[SEP] it does not fit "
                              f"max_seq_length={max_seq_length} (the original truncates only the answer)")
    return context, answer


def record_alignment(raw_tokens, text_alignment, old_to_new, offset, record):
    """``get_alignment_original``: appends ``raw index + offset`` to ``record[new box]`` for each box reference
    whose raw token still has a WordPiece in ``text_alignment``."""
    present = set(text_alignment)
    counter = 0
    for tok in raw_tokens:
        if isinstance(tok, list):
            for box in tok:
                new_box = old_to_new[box]
                if new_box == -1:
                    raise DataFormatError(f"box {box} is referenced in the text but not among the detections used")
                if counter in present:
                    record[new_box].append(counter + offset)
                counter += 1
        else:
            counter += 1


def select_detections(item, mode, only_use_relevant_dets=True, add_all_features=True, include_qa_and_qar=False,
                      add_image_as_a_box=True):
    """``_get_dets_to_use``: which boxes of the line are used, and their new numbering.

    Returns:
        tuple: (int array of the used box indices, in order; list old index -> new index (-1 unused), +1 when the
        whole image is box 0).
    """
    objects = item['objects']
    if mode == 'qa':
        question, choices = item['question'], item['answer_choices']
    else:
        question = item['question'] + item['answer_choices'][item['answer_label']]
        choices = item['rationale_choices']
    if include_qa_and_qar:
        choices = item['answer_choices'] + item['rationale_choices']
    if add_all_features:
        question, choices = item['question'], item['answer_choices'] + item['rationale_choices']
    if only_use_relevant_dets:
        use = np.zeros(len(objects), dtype=bool)
        people = np.array([o == 'person' for o in objects], dtype=bool)
        for sent in list(choices) + [question]:
            for tok in sent:
                if isinstance(tok, list):
                    for box in tok:
                        if 0 <= box < len(objects):
                            use[box] = True
                elif tok.lower() in ('everyone', 'everyones'):
                    use |= people
        if not use.any():
            use |= people
    else:
        use = np.ones(len(objects), dtype=bool)
    used = np.where(use)[0]
    old_to_new = np.full(len(objects), -1, dtype=np.int64)
    old_to_new[used] = np.arange(len(used)) + (1 if add_image_as_a_box else 0)
    return used, old_to_new.tolist()


# ------------------------------------------------------------------------------------------------ image
def load_image(path):
    """The image as an RGB PIL image (torchvision's ``default_loader``)."""
    from PIL import Image

    with open(path, 'rb') as f:
        return Image.open(f).convert('RGB')


def resize_image(image, desired_width=IMAGE_WIDTH, desired_height=IMAGE_HEIGHT, rng=None):
    """``resize_image``: fit inside the canvas keeping the aspect ratio, then zero-pad.

    Args:
        image (PIL.Image.Image): RGB.
        rng (random.Random, optional): random padding offsets (training); centred when None.

    Returns:
        tuple: (padded PIL image, window [x1, y1, x2, y2] of the image inside it, scale, padding (left, top,
        right, bottom)).
    """
    from PIL import Image

    w, h = image.size
    scale = min(desired_width / w, desired_height / h)
    if scale != 1:
        image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    y_pad, x_pad = desired_height - h, desired_width - w
    top = rng.randint(0, y_pad) if rng is not None else y_pad // 2
    left = rng.randint(0, x_pad) if rng is not None else x_pad // 2
    padding = (left, top, x_pad - left, y_pad - top)
    canvas = Image.new('RGB', (desired_width, desired_height), (0, 0, 0))
    canvas.paste(image, (left, top))
    return canvas, [left, top, w + left, h + top], scale, padding


def to_normalized_array(image):
    """``to_tensor_and_normalize``: float32 [3, H, W], (pixel / 255 - ImageNet mean) / std."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return np.ascontiguousarray(((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))


def _spaced_points(low, high, n):
    padding = (high - low) / (n * 2)
    return np.linspace(low + padding, high - padding, num=n)


def make_mask(mask_size, box, polygons):
    """``make_mask``: float32 [mask_size, mask_size], 1 where an evenly spaced inner grid point of ``box`` lies in
    one of ``polygons`` (each a list of [x, y] points in image pixels)."""
    from matplotlib import path

    mask = np.zeros((mask_size, mask_size), dtype=bool)
    xy = np.meshgrid(_spaced_points(box[0], box[2], n=mask_size), _spaced_points(box[1], box[3], n=mask_size))
    xy_flat = np.stack(xy, 2).reshape((-1, 2))
    for polygon in polygons:
        mask |= path.Path(polygon).contains_points(xy_flat).reshape((mask_size, mask_size))
    return mask.astype(np.float32)


def _check_polygons(polygons, box_index):
    if not isinstance(polygons, list):
        raise DataFormatError(f"segms[{box_index}] should be a list of polygons, got {type(polygons).__name__}")
    for p, polygon in enumerate(polygons):
        array = np.asarray(polygon, dtype=object)
        ok = array.ndim == 2 and array.shape[1] == 2 and array.shape[0] >= 3
        if ok:
            try:
                ok = bool(np.all(np.isfinite(np.asarray(polygon, dtype=np.float64))))
            except (TypeError, ValueError):
                ok = False
        if not ok:
            raise DataFormatError(f"segms[{box_index}][{p}] is not a polygon (expected >= 3 finite [x, y] points)")


def image_regions(image_path, metadata, used, classes, rng=None, metadata_source="metadata"):
    """One image and its detections as the detector reads them (R2C; also the original's COCO ``r2c`` loader).

    Args:
        image_path (str): the image file.
        metadata (dict): ``boxes`` [[x1, y1, x2, y2, confidence]] and ``segms`` [[polygon]] in image pixels.
        used (array of int): the detections to keep, in order.
        classes (list[int]): detector class index of each used detection.
        rng (random.Random, optional): random padding (training); centred when None.
        metadata_source (str): names the metadata in error messages.

    Returns:
        tuple: ``images`` float32 [3, 384, 768]; ``boxes`` float32 [1 + U, 4] in canvas pixels (row 0 = the image
        window); ``objects`` int64 [1 + U] (0 = __background__ first); ``segms`` float32 [1 + U, 14, 14] (ones first).

    Raises:
        FileNotFoundError: no image. DataFormatError: unreadable image, a box outside the image or not a box, a
        polygon that is not one (each naming the file and the detection).
    """
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f"image {image_path} does not exist")
    try:
        image = load_image(image_path)
    except Exception as err:  # PIL raises several types for a broken file
        raise DataFormatError(f"image {image_path} cannot be read: {err}") from None
    for key in ('boxes', 'segms'):
        if key not in metadata:
            raise DataFormatError(f"{metadata_source} has no {key!r}")
    boxes_all, segms_all = metadata['boxes'], metadata['segms']
    width, height = image.size
    for i in used:
        box = boxes_all[i]
        if not isinstance(box, list) or len(box) != 5:
            raise DataFormatError(f"{metadata_source}: boxes[{i}] should be [x1, y1, x2, y2, confidence]")
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        if not (x1 < width and y1 < height and x2 > 0 and y2 > 0):
            raise DataFormatError(f"{metadata_source}: boxes[{i}] = {box[:4]} is outside the {width}x{height} "
                                  f"image {image_path}")
        try:
            _check_polygons(segms_all[i], i)
        except DataFormatError as err:
            raise DataFormatError(f"{metadata_source}: {err}") from None

    canvas, window, scale, padding = resize_image(image, rng=rng)
    pixels = to_normalized_array(canvas)
    segms = np.stack([make_mask(MASK_SIZE, boxes_all[i], segms_all[i]) for i in used]) if len(used) else \
        np.zeros((0, MASK_SIZE, MASK_SIZE), np.float32)
    boxes = np.array([boxes_all[i][:4] for i in used], dtype=np.float64).reshape(-1, 4) * scale
    boxes[:, :2] += np.array(padding[:2])[None]
    boxes[:, 2:] += np.array(padding[:2])[None]
    # The original's assertions, on the canvas: corners ordered, inside the padded image.
    ok = (boxes[:, 0] >= 0) & (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] >= 0) & (boxes[:, 1] < boxes[:, 3]) \
        & (boxes[:, 2] <= IMAGE_WIDTH) & (boxes[:, 3] <= IMAGE_HEIGHT)
    if not ok.all():
        i = int(used[int(np.argmin(ok))])
        raise DataFormatError(f"{metadata_source}: boxes[{i}] = {boxes_all[i][:4]} is not a box inside the "
                              f"{width}x{height} image {image_path} (x1 < x2, y1 < y2, within the image)")
    boxes = np.vstack([np.array(window, dtype=np.float64)[None], boxes]).astype(np.float32)
    segms = np.concatenate([np.ones((1, MASK_SIZE, MASK_SIZE), np.float32), segms], 0)
    objects = np.array([COCO_OBJECT_INDEX['__background__']] + list(classes), dtype=np.int64)
    return pixels, boxes, objects, segms


# ------------------------------------------------------------------------------------------------ dataset
def read_vcr_annotations(path):
    """VCR annotation lines (``question``, ``answer_choices``, ``rationale_choices``, ``objects``, ``img_fn``,
    ``metadata_fn``; ``answer_label`` / ``rationale_label`` except on test)."""
    return read_jsonl(path, ("question", "answer_choices", "rationale_choices", "objects", "img_fn", "metadata_fn"),
                      "VCR annotation file")


class VCRImageDataset:
    """VCR examples from the images, boxes and text as the original builds them (see the module docstring).

    Args:
        annotation_file (str): ``{train,val,test}.jsonl``.
        image_dir (str): ``vcr1images``, holding every ``img_fn`` and ``metadata_fn``.
        tokenizer: BERT WordPiece tokenizer with ``basic_tokenizer`` / ``wordpiece_tokenizer`` (paddlenlp's).
        mode (str): ``"qa"`` (Q->A) or ``"qar"`` (QA->R).
        max_seq_length (int): 128 in every config.
        only_use_relevant_dets (bool): the original's default True.
        add_all_features (bool): choose boxes from the question and ALL answers and rationales (True in every
            released VCR config).
        expand_answers (bool): QA->R once per answer (4 examples per line, ``conditioned_answer`` 0..3): the test
            split's 4 x 4 rationale scores for a Q->AR submission. ``labels`` (``rationale_label``) only where the
            line has one.
        complete_shuffle (bool): one text per example (pre-training), ``4`` (or ``8`` with
            ``include_qa_and_qar``) examples per line.
        include_qa_and_qar (bool): ``pretraining_include_qa_and_qar``: the 4 Q->A and the 4 QA->R texts.
        original_shuffle_slot (bool): with ``complete_shuffle``, pick the text as the original does
            (``index //= 8; which = index % 8``: every copy of line i uses text ``i % 8``); False takes text
            ``index % 8`` (each text once).
        answer_labels (array, optional): int [N] answers to condition QA->R on instead of ``answer_label`` (the
            original's ``answer_labels_path``: Q->A predictions on test).
        pretraining (bool): with ``complete_shuffle``, masked-LM targets (``masked_lm_prob`` of the WordPieces,
            80/10/10 as BERT; never [CLS]/[SEP]) in ``labels`` and ``is_correct`` of the text as
            ``sentence_image_labels`` (the original's ``is_random_next`` for VCR pre-training).
        masked_lm_prob (float): 0.15 as the original.
        features (str or FeatureStore, optional): detector outputs cached by ``tools/cache_vcr_detector_features.py``
            (key ``annot_id``, [1 + used boxes, 512]): the samples then carry ``visual_embeds`` instead of the image
            and boxes, for :class:`~visualbert.modeling.VisualBertForMultipleChoice` (the detector frozen in
            evaluation mode, centred padding; the text and alignment are the same).
        train (bool): random padding offsets (R2C: ``random_pad=is_train``).
        seed (int): seeds the padding offsets and the masking, with the epoch and the index.
    """

    def __init__(self, annotation_file, image_dir, tokenizer, mode="qa", max_seq_length=128,
                 only_use_relevant_dets=True, add_all_features=True, expand_answers=False, complete_shuffle=False,
                 include_qa_and_qar=False, original_shuffle_slot=True, answer_labels=None, pretraining=False,
                 masked_lm_prob=0.15, features=None, train=False, seed=0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if expand_answers and mode != "qar":
            raise ValueError("expand_answers is QA->R for every answer: it needs mode='qar'")
        self.source = annotation_file
        self.image_dir = image_dir
        self.rows = read_vcr_annotations(annotation_file)
        self.tokenizer = tokenizer
        self.mode = mode
        self.max_seq_length = int(max_seq_length)
        self.only_use_relevant_dets = only_use_relevant_dets
        self.add_all_features = add_all_features
        self.expand_answers = expand_answers
        self.complete_shuffle = complete_shuffle
        self.include_qa_and_qar = include_qa_and_qar
        self.original_shuffle_slot = original_shuffle_slot
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        if answer_labels is not None:
            answer_labels = np.asarray(answer_labels)
            if answer_labels.shape != (len(self.rows),):
                raise ValueError(f"answer_labels has shape {list(answer_labels.shape)}, expected [{len(self.rows)}] "
                                 f"(one per line of {annotation_file})")
        self.answer_labels = answer_labels
        if pretraining and not complete_shuffle:
            raise ValueError("pretraining builds one text per example: it needs complete_shuffle=True")
        self.pretraining = pretraining
        self.store = None if features is None else open_feature_store(features)
        self.masked_lm_prob = float(masked_lm_prob)
        self.cls_id, self.sep_id, self.pad_id, self.mask_id = tokenizer.convert_tokens_to_ids(
            ["[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        self._candidates = random_token_candidates(tokenizer) if pretraining else None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    @property
    def texts_per_line(self):
        if self.complete_shuffle:
            return 8 if self.include_qa_and_qar else 4
        return NUM_CHOICES if self.expand_answers else 1

    def __len__(self):
        return len(self.rows) * self.texts_per_line

    def __getitem__(self, index):
        per_line = self.texts_per_line
        line_index = index // per_line
        if self.complete_shuffle:
            which = line_index % per_line if self.original_shuffle_slot else index % per_line
        else:
            which = index % per_line if self.expand_answers else None
        row = self.rows[line_index]
        try:
            return self._example(row, line_index, which)
        except (DataFormatError, FileNotFoundError, KeyError, IndexError, TypeError, ValueError) as err:
            if isinstance(err, (KeyError, IndexError, TypeError)):
                err = DataFormatError(f"{type(err).__name__}: {err}")
            raise with_example_context(err, f"example {line_index} (line {row['_line']}, annot_id "
                                            f"{row.get('annot_id')}) of {self.source}") from err

    def check_inputs(self):
        """Checks every line before anything is trained on it: object references, the image and metadata files,
        and the used boxes (inside the metadata's ``width`` x ``height``) and their polygons. Reads each metadata
        JSON once; decodes no image (an unreadable JPEG is still found when its example is loaded).

        Raises:
            DataFormatError, FileNotFoundError: the first problem, naming the file and the example.
        """
        checked_metadata = {}
        for line_index, row in enumerate(self.rows):
            try:
                self._check_line(row, checked_metadata)
            except (DataFormatError, FileNotFoundError, KeyError, IndexError, TypeError, ValueError) as err:
                if isinstance(err, (KeyError, IndexError, TypeError)):
                    err = DataFormatError(f"{type(err).__name__}: {err}")
                raise with_example_context(err, f"example {line_index} (line {row['_line']}, annot_id "
                                                f"{row.get('annot_id')}) of {self.source}") from err

    def _check_line(self, item, checked_metadata):
        self._check_references(item)
        if self.store is not None:
            return
        image_path = os.path.join(self.image_dir, item['img_fn'])
        if not os.path.isfile(image_path):
            raise FileNotFoundError(f"image {image_path} does not exist")
        if 'answer_label' in item and not self.expand_answers:
            item = dict(item, answer_label=int(item['answer_label']))
        elif self.mode == "qar" or self.include_qa_and_qar:
            item = dict(item, answer_label=0)  # which answer does not change the boxes used (add_all_features)
        used, _ = select_detections(item, self.mode, self.only_use_relevant_dets, self.add_all_features,
                                    self.include_qa_and_qar and self.complete_shuffle)
        key = (item['metadata_fn'], tuple(int(i) for i in used))
        if key in checked_metadata:
            return
        metadata_path, metadata = self._read_metadata(item)
        boxes, segms = metadata.get('boxes', []), metadata.get('segms', [])
        width, height = metadata.get('width'), metadata.get('height')
        for i in used:
            box = boxes[i]
            if not isinstance(box, list) or len(box) != 5:
                raise DataFormatError(f"{metadata_path}: boxes[{i}] should be [x1, y1, x2, y2, confidence]")
            x1, y1, x2, y2 = (float(v) for v in box[:4])
            if not (x1 < x2 and y1 < y2):
                raise DataFormatError(f"{metadata_path}: boxes[{i}] = {box[:4]} is not a box (x1 < x2, y1 < y2)")
            if width is not None and height is not None and not (
                    x1 >= 0 and y1 >= 0 and x2 <= float(width) + 1 and y2 <= float(height) + 1):
                raise DataFormatError(f"{metadata_path}: boxes[{i}] = {box[:4]} is outside the {width}x{height} "
                                      f"image {image_path}")
            try:
                _check_polygons(segms[i], i)
            except DataFormatError as err:
                raise DataFormatError(f"{metadata_path}: {err}") from None
        checked_metadata[key] = True

    # ---------------------------------------------------------------- pieces
    def _check_references(self, item):
        n = len(item['objects'])
        for field in ('question', 'answer_choices', 'rationale_choices'):
            sents = [item[field]] if field == 'question' else item[field]
            for sent in sents:
                for tok in sent:
                    if isinstance(tok, list):
                        for box in tok:
                            if not isinstance(box, int) or not 0 <= box < n:
                                raise DataFormatError(f"{field} refers to object {box!r}, but the line has {n} "
                                                      f"objects")
                    elif not isinstance(tok, str):
                        raise DataFormatError(f"{field} has a token {tok!r} that is neither a string nor a list "
                                              "of object indices")
        for name in item['objects']:
            if name not in COCO_OBJECT_INDEX:
                raise DataFormatError(f"object class {name!r} is not one of the 80 COCO classes")

    def _read_metadata(self, item):
        """(path, parsed ``metadata_fn`` JSON) of a line, with at least one box and one polygon per object."""
        metadata_path = os.path.join(self.image_dir, item['metadata_fn'])
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(f"metadata {metadata_path} does not exist")
        try:
            with open(metadata_path) as f:
                metadata = json.load(f)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"metadata {metadata_path} is not valid JSON: {err}") from None
        n = len(item['objects'])
        boxes, segms = metadata.get('boxes', []), metadata.get('segms', [])
        if len(boxes) < n or len(segms) < n:
            raise DataFormatError(f"metadata {metadata_path} has {len(boxes)} boxes and {len(segms)} segms for the "
                                  f"line's {n} objects")
        return metadata_path, metadata

    def _load_regions(self, item, used, rng):
        image_path = os.path.join(self.image_dir, item['img_fn'])
        metadata_path, metadata = self._read_metadata(item)
        return image_regions(image_path, metadata, used, [COCO_OBJECT_INDEX[item['objects'][i]] for i in used], rng,
                             metadata_path)

    def _texts(self, item, answer_label):
        """[(raw context, raw answer, context pieces, answer pieces, context alignment, answer alignment,
        label-is-correct)] in the original's order."""
        specs = []
        if self.complete_shuffle and self.include_qa_and_qar:
            specs += [("qa", None)]
            specs += [("qar", answer_label)]
        elif self.mode == "qa":
            specs += [("qa", None)]
        else:
            specs += [("qar", answer_label)]
        out = []
        for kind, label in specs:
            if kind == "qa":
                ctx, choices = fix_item(item, rationales=False)
                raw_ctx, raw_choices = item['question'], item['answer_choices']
                correct = item.get('answer_label')
            else:
                ctx, choices = fix_item(item, answer_label=label, rationales=True)
                raw_ctx, raw_choices = item['question'] + item['answer_choices'][label], item['rationale_choices']
                correct = item.get('rationale_label')
            context = retokenize_with_alignment(ctx, self.tokenizer)
            for i, choice in enumerate(choices):
                answer = retokenize_with_alignment(choice, self.tokenizer)
                context_t, answer_t = truncate_context_answer(context, answer, self.max_seq_length)
                out.append((raw_ctx, raw_choices[i], context_t, answer_t, None if correct is None else int(correct == i)))
        return out

    def _encode(self, text, old_to_new, num_boxes):
        raw_ctx, raw_answer, (ctx_pieces, ctx_align), (ans_pieces, ans_align), _ = text
        tokens = ["[CLS]"] + ctx_pieces + ["[SEP]"]
        types = [0] * len(tokens)
        if ans_pieces:  # (the original's `if example.text_b`)
            tokens += ans_pieces + ["[SEP]"]
            types += [1] * (len(ans_pieces) + 1)
        ids = np.array(self.tokenizer.convert_tokens_to_ids(tokens), dtype=np.int64)
        record = defaultdict(list)
        record_alignment(raw_ctx, ctx_align, old_to_new, 1, record)
        record_alignment(raw_answer, ans_align, old_to_new, 1 + len(ctx_align) + 1, record)
        return ids, np.array(types, dtype=np.int64), [record[b] for b in range(num_boxes)]

    def _example(self, row, line_index, which):
        item = row
        self._check_references(item)
        if self.mode == "qar" or (self.complete_shuffle and self.include_qa_and_qar):
            if self.expand_answers:
                answer_label = which
            elif self.answer_labels is not None:
                answer_label = int(self.answer_labels[line_index])
            elif 'answer_label' in item:
                answer_label = int(item['answer_label'])
            else:
                raise DataFormatError("QA->R needs 'answer_label' (or answer_labels / expand_answers on test)")
            if not 0 <= answer_label < len(item['answer_choices']):
                raise DataFormatError(f"answer_label {answer_label} is outside the {len(item['answer_choices'])} answers")
            item = dict(item, answer_label=answer_label)
        else:
            answer_label = None
        for field in ('answer_choices', 'rationale_choices'):
            if len(item[field]) != NUM_CHOICES:
                raise DataFormatError(f"expected {NUM_CHOICES} {field}, got {len(item[field])}")
        used, old_to_new = select_detections(item, self.mode, self.only_use_relevant_dets, self.add_all_features,
                                             self.include_qa_and_qar and self.complete_shuffle)
        seed_sequence = np.random.SeedSequence([self.seed, self.epoch, line_index, 0 if which is None else which + 1])
        rng = random.Random(int(seed_sequence.generate_state(1)[0])) if self.train else None
        if self.store is None:
            pixels, boxes, objects, segms = self._load_regions(item, used, rng)
            num_boxes = len(boxes)
            regions = {"images": pixels, "boxes": boxes, "objects": objects, "segms": segms}
        else:
            visual = self.store[str(row.get('annot_id', row['_line']))]
            num_boxes = 1 + len(used)
            if visual.shape[0] != num_boxes:
                raise DataFormatError(f"cached detector features have {visual.shape[0]} rows, expected {num_boxes} "
                                      "(the whole image + the used boxes): cached with other box-selection settings?")
            regions = {"visual_embeds": visual, "visual_token_type_ids": np.zeros(num_boxes, dtype=np.int64)}

        texts = self._texts(item, answer_label)
        if self.complete_shuffle:
            texts = [texts[which]]
        encoded = [self._encode(t, old_to_new, num_boxes) for t in texts]
        input_ids, token_type_ids, attention_mask, alignment = pack_choices(encoded, num_boxes, self.pad_id)
        sample = {
            **regions,
            "annot_id": str(row.get('annot_id', row['_line'])),
            "img_fn": row['img_fn'],
        }
        if self.complete_shuffle:
            sample.update(input_ids=input_ids[0], token_type_ids=token_type_ids[0], attention_mask=attention_mask[0],
                          image_text_alignment=alignment[0])
            if self.pretraining:
                ids = input_ids[0]
                special = (ids == self.cls_id) | (ids == self.sep_id)
                masked, labels = mask_tokens(ids, special, np.random.default_rng(seed_sequence), self.mask_id,
                                             self._candidates, mask_prob=self.masked_lm_prob)
                sample.update(input_ids=masked, labels=labels)
            if self.pretraining and texts[0][4] is not None:
                sample["sentence_image_labels"] = np.array(texts[0][4], dtype=np.int64)  # is_correct (is_random_next)
            return sample
        sample.update(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                      image_text_alignment=alignment)
        if self.expand_answers:
            sample["conditioned_answer"] = int(which)
        label_key = 'answer_label' if self.mode == "qa" else 'rationale_label'
        if label_key in row:
            sample["labels"] = np.array(int(row[label_key]), dtype=np.int64)
        return sample


__all__ = ["GENDER_NEUTRAL_NAMES", "COCO_OBJECTS", "COCO_OBJECT_INDEX", "VCRImageDataset", "fix_tokenization",
           "fix_item", "retokenize_with_alignment", "truncate_context_answer", "record_alignment", "select_detections",
           "load_image", "resize_image", "image_regions", "to_normalized_array", "make_mask", "read_vcr_annotations"]
