"""Evaluation metrics for VQA 2.0, NLVR2 and VCR (pure numpy / python, no paddle).

* :func:`vqa_soft_accuracy` - the training-time VQA metric on the answer vocabulary
  (soft scores ``min(0.3 * count, 1)``, optional ``<unk>`` masking).
* :func:`vqa_official_accuracy` - a re-implementation of GT-Vision-Lab ``vqaEval.py``
  (``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, repository head, commit a013f00
  "Fixed processing answers bug"), including its answer normalisation and its quirks.
* :func:`nlvr2_metrics` and the predictions-CSV helpers - as lil-lab/nlvr ``nlvr2/eval/metrics.py``.
* :func:`vcr_metrics` - Q->A, QA->R and Q->AR accuracy.

Accuracies are fractions in [0, 1] except the official VQA numbers, which are percentages as
``vqaEval.py`` reports them.
"""

import re
from collections import OrderedDict

import numpy as np

from .fileio import write_jsonl, write_text

__all__ = [
    "VQA_UNK_INDEX",
    "vqa_soft_score",
    "vqa_predict",
    "vqa_soft_scores",
    "vqa_soft_accuracy",
    "vqa_process_punctuation",
    "vqa_process_digit_article",
    "vqa_normalize_answer",
    "vqa_official_accuracy",
    "nlvr2_sentence_key",
    "nlvr2_metrics",
    "write_nlvr2_predictions",
    "read_nlvr2_predictions",
    "vcr_metrics",
]

# Index of ``<unk>`` in ``answers_vqa.txt``.
VQA_UNK_INDEX = 0


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _predicted_indices(logits_or_preds, name, mask_index=None):
    """Turns scores [N, C] (argmax over the last axis) or integer predictions [N] into int64 [N]."""
    arr = np.asarray(logits_or_preds)
    if arr.ndim == 2:
        if mask_index is not None:
            arr = np.array(arr, dtype=np.float64, copy=True)
            if not 0 <= mask_index < arr.shape[1]:
                raise ValueError(f"{name}: mask index {mask_index} out of range for {arr.shape[1]} classes")
            arr[:, mask_index] = -np.inf
        return np.argmax(arr, axis=-1).astype(np.int64)
    if arr.ndim == 1:
        if mask_index is not None:
            raise ValueError(
                f"{name}: masking a class needs scores of shape [N, C]; got predicted indices of shape {arr.shape}"
            )
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
                raise ValueError(f"{name}: 1-D input must hold integer class indices, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    raise ValueError(f"{name}: expected scores [N, C] or indices [N], got shape {arr.shape}")


# ---------------------------------------------------------------------------------------------
# VQA: training-time soft accuracy on the answer vocabulary
# ---------------------------------------------------------------------------------------------


def vqa_soft_score(count):
    """Soft score of an answer given by ``count`` of the 10 annotators: ``min(0.3 * count, 1)``.

    This equals the official leave-one-out average for an answer that needs no normalisation.

    Args:
        count (int | np.ndarray): number of annotators who gave the answer (0..10).

    Returns:
        float | np.ndarray: the soft score(s), same shape as ``count``.
    """
    out = np.minimum(0.3 * np.asarray(count, dtype=np.float64), 1.0)
    return float(out) if out.ndim == 0 else out


def vqa_predict(logits, mask_unk=False, unk_index=VQA_UNK_INDEX):
    """Predicted answer indices: argmax of the answer scores.

    Args:
        logits (np.ndarray): answer scores (logits or probabilities), float [N, A].
        mask_unk (bool): exclude ``<unk>`` from the argmax (the training metric does; test-time
            prediction for EvalAI does not).
        unk_index (int): index of ``<unk>`` in the answer vocabulary.

    Returns:
        np.ndarray: int64 [N].
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, A], got {logits.shape}")
    return _predicted_indices(logits, "logits", unk_index if mask_unk else None)


def vqa_soft_scores(logits_or_preds, targets, mask_unk=False, unk_index=VQA_UNK_INDEX):
    """Per-example VQA soft accuracy: the target score at the predicted answer.

    Args:
        logits_or_preds (np.ndarray): answer scores float [N, A] (argmax taken) or predicted
            answer indices int [N].
        targets (np.ndarray): soft-score targets float [N, A] (``min(0.3 * count, 1)`` per answer).
        mask_unk (bool): exclude ``<unk>`` from the argmax; only valid with scores [N, A].
        unk_index (int): index of ``<unk>``.

    Returns:
        np.ndarray: float64 [N].

    Raises:
        ValueError: shape mismatch, ``mask_unk`` with indices, or an index outside [0, A).
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2:
        raise ValueError(f"targets must have shape [N, A], got {targets.shape}")
    preds = _predicted_indices(logits_or_preds, "logits_or_preds", unk_index if mask_unk else None)
    arr = np.asarray(logits_or_preds)
    if arr.ndim == 2 and arr.shape != targets.shape:
        raise ValueError(f"logits shape {arr.shape} does not match targets shape {targets.shape}")
    if preds.shape[0] != targets.shape[0]:
        raise ValueError(f"{preds.shape[0]} predictions for {targets.shape[0]} targets")
    if preds.size and (preds.min() < 0 or preds.max() >= targets.shape[1]):
        raise ValueError(f"predicted indices must lie in [0, {targets.shape[1]})")
    return targets[np.arange(targets.shape[0]), preds]


def vqa_soft_accuracy(logits_or_preds, targets, mask_unk=False, unk_index=VQA_UNK_INDEX):
    """VQA soft accuracy: mean over examples of the target score at the predicted answer.

    Args:
        logits_or_preds (np.ndarray): answer scores float [N, A] or predicted indices int [N].
        targets (np.ndarray): soft-score targets float [N, A].
        mask_unk (bool): exclude ``<unk>`` (``unk_index``) from the argmax, as the training
            metric does; needs scores [N, A].
        unk_index (int): index of ``<unk>``.

    Returns:
        float: accuracy in [0, 1].

    Raises:
        ValueError: see :func:`vqa_soft_scores`; also when N == 0.
    """
    scores = vqa_soft_scores(logits_or_preds, targets, mask_unk=mask_unk, unk_index=unk_index)
    if scores.size == 0:
        raise ValueError("vqa_soft_accuracy of an empty batch")
    return float(scores.mean())


# ---------------------------------------------------------------------------------------------
# VQA: official evaluation (GT-Vision-Lab vqaEval.py)
# ---------------------------------------------------------------------------------------------

# The official contraction table, entry for entry (including its oddities: capitalised keys such
# as "Im" can never match because answers are lower-cased first, and "somebody'd" maps to
# "somebodyd").
_VQA_CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt': "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't", 'doesnt': "doesn't",
    'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", 'hasnt': "hasn't",
    'havent': "haven't", 'hed': "he'd", "hed've": "he'd've", "he'dve": "he'd've", 'hes': "he's",
    'howd': "how'd", 'howll': "how'll", 'hows': "how's", "Id've": "I'd've", "I'dve": "I'd've", 'Im': "I'm",
    'Ive': "I've", 'isnt': "isn't", 'itd': "it'd", "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll",
    "let's": "let's", 'maam': "ma'am", 'mightnt': "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", 'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've",
    'neednt': "needn't", 'notve': "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", 'shant': "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", 'shouldve': "should've",
    'shouldnt': "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": 'somebodyd', "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    'somebodyll': "somebody'll", 'somebodys': "somebody's", 'someoned': "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", 'someonell': "someone'll",
    'someones': "someone's", 'somethingd': "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", 'somethingll': "something'll", 'thats': "that's", 'thered': "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", 'therere': "there're", 'theres': "there's",
    'theyd': "they'd", "theyd've": "they'd've", "they'dve": "they'd've", 'theyll': "they'll",
    'theyre': "they're", 'theyve': "they've", 'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", 'weve': "we've", 'werent': "weren't", 'whatll': "what'll", 'whatre': "what're",
    'whats': "what's", 'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's",
    'whereve': "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've", 'wholl': "who'll",
    'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's",
    'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", 'yall': "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd': "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're", 'youve': "you've",
}

_VQA_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_VQA_ARTICLES = ("a", "an", "the")
# Character-for-character the official patterns. Note the first one: "(?!<=\d)" is a negative
# *lookahead* for the text "<=digit" (the author meant a lookbehind), so in effect a period is
# removed unless a digit follows it ("3.5" and ".5" keep theirs, "5." and "yes." lose it).
_VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_VQA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_VQA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# vqaEval.py calls ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in the ``count``
# argument, so at most re.UNICODE == 32 periods are removed. Reproduced for exactness.
_VQA_PERIOD_STRIP_COUNT = int(re.UNICODE)


def vqa_process_punctuation(text):
    """The official ``processPunctuation``.

    For each punctuation mark in ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: if the
    *input* text has the mark next to a space, or contains a digit-comma-digit pattern
    anywhere (``1,000``), the mark is deleted; otherwise it is replaced by a space. Then periods
    not followed by a digit are deleted (at most 32: the official call passes ``re.UNICODE`` as
    the count). Case, apostrophes and colons are untouched.

    Args:
        text (str): an answer.

    Returns:
        str: the processed answer (may contain repeated / edge spaces; see
        :func:`vqa_process_digit_article`).
    """
    has_number_comma = _VQA_COMMA_STRIP.search(text) is not None
    out = text
    for mark in _VQA_PUNCT:
        if has_number_comma or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _VQA_PERIOD_STRIP.sub("", out, count=_VQA_PERIOD_STRIP_COUNT)


def vqa_process_digit_article(text):
    """The official ``processDigitArticle``.

    Lower-cases, splits on whitespace, maps number words ``none``/``zero``..``ten`` to digits,
    drops the articles ``a``/``an``/``the``, expands contractions from the official table
    (``dont`` -> ``don't``), and joins with single spaces.

    Args:
        text (str): an answer (normally after :func:`vqa_process_punctuation`).

    Returns:
        str: the processed answer.
    """
    words = [_VQA_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _VQA_ARTICLES]
    return " ".join(_VQA_CONTRACTIONS.get(w, w) for w in words)


def _vqa_strip(text):
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_normalize_answer(text):
    """Full official normalisation of one answer: ``\\n``/``\\t`` -> space, strip, punctuation,
    then digits / articles / contractions.

    Note that :func:`vqa_official_accuracy` applies the last two steps only to questions whose
    ground-truth answers are not all identical, exactly like ``vqaEval.py``.

    Args:
        text (str): a raw answer.

    Returns:
        str: the normalised answer.
    """
    return vqa_process_digit_article(vqa_process_punctuation(_vqa_strip(text)))


def _vqa_annotation_list(annotations):
    if isinstance(annotations, dict):
        return list(annotations.items())
    out = []
    for ann in annotations:
        if "question_id" not in ann:
            raise ValueError("annotations given as a sequence must carry 'question_id'")
        out.append((ann["question_id"], ann))
    return out


def _vqa_prediction_map(predictions):
    if isinstance(predictions, dict):
        return predictions
    out = {}
    for item in predictions:
        qid = item["question_id"]
        if qid in out:
            raise ValueError(f"duplicate prediction for question_id {qid!r}")
        out[qid] = item["answer"]
    return out


def _vqa_raw_answers(qid, ann):
    answers = ann.get("answers", ann.get("all_answers"))
    if answers is None:
        raise ValueError(f"annotation of question {qid!r} has no 'answers' (or 'all_answers')")
    raw = [a["answer"] if isinstance(a, dict) else a for a in answers]
    if not raw:
        raise ValueError(f"annotation of question {qid!r} has no ground-truth answers")
    for a in raw:
        if not isinstance(a, str):
            raise TypeError(f"question {qid!r}: ground-truth answers must be str, got {type(a).__name__}")
    return raw


def _vqa_question_accuracy(pred, raw_answers):
    gts = [_vqa_strip(a) for a in raw_answers]
    res = _vqa_strip(pred)
    if len(set(gts)) > 1:
        # vqaEval.py normalises both the ground truth and the prediction only in this case.
        gts = [vqa_process_digit_article(vqa_process_punctuation(a)) for a in gts]
        res = vqa_process_digit_article(vqa_process_punctuation(res))
    total_matches = sum(1 for a in gts if a == res)
    accs = []
    for a in gts:
        # Leave answer i out (the official code drops exactly one annotation record).
        others = total_matches - (1 if a == res else 0)
        accs.append(min(1.0, others / 3.0))
    return sum(accs) / len(accs)


def vqa_official_accuracy(predictions, annotations, question_ids=None, ndigits=2):
    """Official VQA accuracy, as GT-Vision-Lab ``vqaEval.py`` (``VQAEval.evaluate``).

    Per question: ``\\n``/``\\t`` -> space and strip on prediction and ground truth; if the
    ground-truth answers are not all identical, both are normalised
    (:func:`vqa_process_punctuation` then :func:`vqa_process_digit_article`); the accuracy is
    the mean over the answers ``i`` of ``min(1, #(answers j != i equal to the prediction) / 3)``.
    ``overall`` is the mean over questions ×100; per answer type and per question type likewise.
    For an answer needing no normalisation this equals ``min(0.3 * count, 1)``.

    Args:
        predictions (dict | list): ``{question_id: answer_str}``, or the EvalAI ``result.json``
            list ``[{"question_id": ..., "answer": ...}, ...]``.
        annotations (dict | list): ``{question_id: ann}`` or a list of ``ann`` carrying
            ``question_id``. ``ann["answers"]`` are the (normally 10) raw answers, as strings or
            as official dicts with an ``"answer"`` field (``"all_answers"`` is accepted too);
            ``ann["answer_type"]`` and ``ann["question_type"]`` group the results (missing
            types are grouped under ``"unknown"``).
        question_ids (Iterable | None): evaluate only these questions (official ``quesIds``);
            default: every annotated question.
        ndigits (int | None): rounding of every reported number, as the official ``n=2``;
            ``None`` keeps full precision.

    Returns:
        dict: ``{"overall": float, "perAnswerType": {type: float}, "perQuestionType":
        {type: float}, "perQuestion": {question_id: float}, "num_questions": int}``, all
        accuracies in percent.

    Raises:
        KeyError: an evaluated question has no prediction or no annotation.
        ValueError: nothing to evaluate, or malformed annotations.
    """
    ann_items = _vqa_annotation_list(annotations)
    ann_map = dict(ann_items)
    if len(ann_map) != len(ann_items):
        raise ValueError("duplicate question_id in annotations")
    preds = _vqa_prediction_map(predictions)
    qids = [qid for qid, _ in ann_items] if question_ids is None else list(question_ids)
    if not qids:
        raise ValueError("no questions to evaluate")
    missing_ann = [q for q in qids if q not in ann_map]
    if missing_ann:
        raise KeyError(f"{len(missing_ann)} question ids have no annotation, e.g. {missing_ann[:5]}")
    missing = [q for q in qids if q not in preds]
    if missing:
        raise KeyError(
            f"{len(missing)} of {len(qids)} questions have no prediction, e.g. {missing[:5]} "
            f"(check the question_id type: int vs str)"
        )

    def rnd(x):
        return x if ndigits is None else round(x, ndigits)

    accs, per_question = [], OrderedDict()
    by_ans, by_ques = OrderedDict(), OrderedDict()
    for qid in qids:
        ann = ann_map[qid]
        pred = preds[qid]
        if not isinstance(pred, str):
            raise TypeError(f"prediction for question {qid!r} must be str, got {type(pred).__name__}")
        acc = _vqa_question_accuracy(pred, _vqa_raw_answers(qid, ann))
        accs.append(acc)
        per_question[qid] = acc
        by_ans.setdefault(ann.get("answer_type", "unknown"), []).append(acc)
        by_ques.setdefault(ann.get("question_type", "unknown"), []).append(acc)

    return {
        "overall": rnd(100.0 * sum(accs) / len(accs)),
        "perAnswerType": {k: rnd(100.0 * sum(v) / len(v)) for k, v in by_ans.items()},
        "perQuestionType": {k: rnd(100.0 * sum(v) / len(v)) for k, v in by_ques.items()},
        "perQuestion": {k: rnd(100.0 * v) for k, v in per_question.items()},
        "num_questions": len(accs),
    }


# ---------------------------------------------------------------------------------------------
# NLVR2 (lil-lab/nlvr nlvr2/eval/metrics.py)
# ---------------------------------------------------------------------------------------------


def _to_bool(value, what):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    elif isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(int(value))
    raise ValueError(f"{what}: expected True/False (bool, 'True'/'False' or 0/1), got {value!r}")


def nlvr2_sentence_key(identifier):
    """Consistency key of an NLVR2 example: the identifier without its pair id.

    ``split-setid-pairid-sentenceid`` -> ``split-setid-sentenceid`` (e.g. ``dev-850-0-0`` ->
    ``dev-850-0``). All image pairs sharing a key were annotated with the same sentence; the
    official script blanks the pair field instead (``dev-850--0``), which groups identically.

    Args:
        identifier (str): an NLVR2 identifier.

    Returns:
        str: the key.

    Raises:
        ValueError: the identifier does not have four ``-``-separated fields.
    """
    parts = str(identifier).split("-")
    if len(parts) != 4:
        raise ValueError(f"NLVR2 identifier {identifier!r} is not of the form split-setid-pairid-sentenceid")
    return "-".join((parts[0], parts[1], parts[3]))


def _nlvr2_label_items(labels):
    if isinstance(labels, dict):
        return list(labels.items())
    items, seen = [], set()
    for ex in labels:
        ident = ex["identifier"]
        if ident in seen:
            raise ValueError(f"duplicate NLVR2 identifier {ident!r} in labels")
        seen.add(ident)
        items.append((ident, ex["label"]))
    return items


def nlvr2_metrics(predictions, labels):
    """NLVR2 accuracy and consistency, as the official ``nlvr2/eval/metrics.py``.

    Accuracy is over all labelled examples. Consistency is the fraction of unique sentences
    (:func:`nlvr2_sentence_key`) whose examples are all predicted correctly. Predictions for
    identifiers that are not in ``labels`` are ignored.

    Args:
        predictions (dict): ``{identifier: prediction}``; a prediction is a bool, ``"True"`` /
            ``"False"`` (any case) or 0/1 (1 = True), e.g. from :func:`read_nlvr2_predictions`.
        labels (dict | Iterable[dict]): ``{identifier: label}`` in the same value formats, or
            the examples of an NLVR2 JSON-lines file (dicts with ``identifier`` and ``label``).

    Returns:
        dict: ``{"accuracy": float, "consistency": float}``, fractions in [0, 1].

    Raises:
        KeyError: some labelled identifiers have no prediction (the message lists them).
        ValueError: no labels, a malformed identifier, a duplicate identifier or a value that is
            not a boolean.
    """
    items = _nlvr2_label_items(labels)
    if not items:
        raise ValueError("nlvr2_metrics: no labelled examples")
    missing = [ident for ident, _ in items if ident not in predictions]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise KeyError(
            f"missing NLVR2 predictions: got {len(items) - len(missing)} of {len(items)} labelled "
            f"examples; {len(missing)} missing: {shown}"
        )
    num_correct = 0
    consistent = OrderedDict()
    for ident, label in items:
        key = nlvr2_sentence_key(ident)
        ok = _to_bool(predictions[ident], f"prediction for {ident}") == _to_bool(label, f"label of {ident}")
        num_correct += int(ok)
        consistent[key] = consistent.get(key, True) and ok
    return {
        "accuracy": num_correct / len(items),
        "consistency": sum(consistent.values()) / len(consistent),
    }


def write_nlvr2_predictions(path, predictions):
    """Writes the official NLVR2 predictions CSV atomically (temporary file + ``os.replace``).

    One line ``identifier,True`` or ``identifier,False`` per example, no header, in the
    iteration order of ``predictions``.

    Args:
        path (str | os.PathLike): destination ``.csv``.
        predictions (dict): ``{identifier: prediction}`` (bool, ``"True"``/``"False"`` or 0/1).

    Raises:
        ValueError: an identifier is empty or contains a comma, whitespace at its ends or a line
            break, or a prediction is not a boolean (nothing is written then).
    """
    lines = []
    for ident, value in predictions.items():
        if not isinstance(ident, str) or not ident or ident != ident.strip() or any(c in ident for c in ",\r\n"):
            raise ValueError(f"invalid NLVR2 identifier for the predictions CSV: {ident!r}")
        lines.append(f"{ident},{'True' if _to_bool(value, f'prediction for {ident}') else 'False'}\n")
    write_text(path, "".join(lines))


def read_nlvr2_predictions(path):
    """Reads an official NLVR2 predictions CSV (``identifier,True|False`` per line, no header).

    Blank lines are skipped; the value is case-insensitive.

    Args:
        path (str | os.PathLike): the CSV file.

    Returns:
        dict: ``{identifier: bool}`` in file order.

    Raises:
        ValueError: a line without exactly two fields, a value other than true/false, or an
            identifier given twice (the message names the line).
    """
    out = {}
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            fields = text.split(",")
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'identifier,True|False', got {text!r}")
            ident, value = fields[0].strip(), fields[1].strip()
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{path}:{lineno}: prediction must be True or False, got {value!r}")
            if ident in out:
                raise ValueError(f"{path}:{lineno}: duplicate identifier {ident!r}")
            out[ident] = value.lower() == "true"
    return out


# ---------------------------------------------------------------------------------------------
# VCR
# ---------------------------------------------------------------------------------------------


def _vcr_correct(preds, labels, name):
    if labels is None:
        raise ValueError(f"vcr_metrics: {name} predictions given without labels")
    pred_idx = _predicted_indices(preds, f"{name} predictions")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"vcr_metrics: {name} labels must have shape [N], got {labels.shape}")
    if labels.shape[0] != pred_idx.shape[0]:
        raise ValueError(f"vcr_metrics: {pred_idx.shape[0]} {name} predictions for {labels.shape[0]} labels")
    if labels.shape[0] == 0:
        raise ValueError(f"vcr_metrics: no {name} examples")
    return pred_idx == labels.astype(np.int64)


def vcr_metrics(answer_logits_or_preds=None, answer_labels=None, rationale_preds=None, rationale_labels=None):
    """VCR accuracies: Q->A, QA->R and the joint Q->AR.

    Q->AR counts an example as correct when both its answer and its rationale are predicted
    correctly (QA->R being scored with the gold answer in the input, as in the standard
    protocol). Either part may be absent; ``q2ar`` is reported only when both are given.

    Args:
        answer_logits_or_preds (np.ndarray | None): answer scores float [N, 4] (argmax taken)
            or predicted answer indices int [N].
        answer_labels (np.ndarray | None): gold answer indices int [N].
        rationale_preds (np.ndarray | None): rationale scores float [N, 4] or predicted
            rationale indices int [N].
        rationale_labels (np.ndarray | None): gold rationale indices int [N].

    Returns:
        dict: a subset of ``{"q2a", "qa2r", "q2ar"}``, fractions in [0, 1].

    Raises:
        ValueError: predictions without labels (or vice versa), no part given, empty or
            mismatched lengths (including between the two parts when ``q2ar`` is computed).
    """
    out = {}
    a_ok = r_ok = None
    if answer_logits_or_preds is not None:
        a_ok = _vcr_correct(answer_logits_or_preds, answer_labels, "answer")
        out["q2a"] = float(a_ok.mean())
    elif answer_labels is not None:
        raise ValueError("vcr_metrics: answer labels given without answer predictions")
    if rationale_preds is not None:
        r_ok = _vcr_correct(rationale_preds, rationale_labels, "rationale")
        out["qa2r"] = float(r_ok.mean())
    elif rationale_labels is not None:
        raise ValueError("vcr_metrics: rationale labels given without rationale predictions")
    if a_ok is None and r_ok is None:
        raise ValueError("vcr_metrics: give answer and/or rationale predictions with their labels")
    if a_ok is not None and r_ok is not None:
        if a_ok.shape != r_ok.shape:
            raise ValueError(
                f"vcr_metrics: {a_ok.shape[0]} answer examples but {r_ok.shape[0]} rationale examples; "
                "Q->AR needs them aligned"
            )
        out["q2ar"] = float(np.mean(a_ok & r_ok))
    return out


# ---------------------------------------------------------------------------------------------
# Flickr30K Entities region-to-phrase grounding
# ---------------------------------------------------------------------------------------------
# As the original (``compute_score_with_logits_flickr`` and its evaluation loop in ``models/train.py``): a
# phrase is a hit at K when one of its K best-scored proposals is a positive (IoU >= 0.5 with one of its
# ground-truth boxes, i.e. a non-zero target); the denominator is every phrase with a ground-truth box,
# including phrases none of whose proposals is positive; the upper bound is the fraction of phrases with at
# least one positive proposal. Padding regions never rank before a real one.

GROUNDING_KS = (1, 5, 10)


def grounding_ranking(scores, valid=None):
    """Proposal indices by decreasing score (ties: the lower index first), padding regions last.

    Args:
        scores (array-like): float [..., R] (logits, probabilities or any score).
        valid (array-like, optional): bool/int [..., R] or broadcastable, 0 on padding regions.

    Returns:
        np.ndarray: int64 [..., R] ranked indices, and bool [..., R] whether each ranked index is a real region.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    if valid is None:
        valid = np.ones(s.shape, dtype=bool)
    valid = np.broadcast_to(np.asarray(valid).astype(bool), s.shape)
    s[~valid] = -np.inf
    order = np.argsort(-s, axis=-1, kind="stable")
    return order, np.take_along_axis(valid, order, axis=-1)


def grounding_hits(scores, targets, valid=None, ks=GROUNDING_KS):
    """Per-phrase hits at each K and whether the phrase has a positive proposal.

    Args:
        scores (array-like): float [N, R] per phrase.
        targets (array-like): float/bool [N, R], > 0 on positive proposals.
        valid (array-like, optional): [N, R] or [R], 0 on padding regions.
        ks (tuple[int]): the K of R@K.

    Returns:
        tuple[dict[int, np.ndarray], np.ndarray]: K -> bool [N] hits, and bool [N] has-positive.
    """
    targets = np.asarray(targets)
    order, real = grounding_ranking(scores, valid)
    positive_ranked = (np.take_along_axis(targets, order, axis=-1) > 0) & real
    hits = {int(k): positive_ranked[:, :k].any(axis=-1) for k in ks}
    has_positive = (targets > 0).any(axis=-1) if valid is None else ((targets > 0) & np.broadcast_to(
        np.asarray(valid).astype(bool), targets.shape)).any(axis=-1)
    return hits, has_positive


class GroundingEvaluator:
    """Accumulates R@K, the upper bound and their per-type values over phrases.

    A phrase with several types (``people/other``) counts in each of its types.

    Args:
        ks (tuple[int]): the K of R@K (1, 5, 10).
    """

    def __init__(self, ks=GROUNDING_KS):
        self.ks = tuple(int(k) for k in ks)
        self._hits = {k: [] for k in self.ks}
        self._upper = []
        self._types = []

    def add(self, scores, targets, types=None, valid=None):
        """Adds the phrases of one example.

        Args:
            scores (array-like): float [P, R] scores of its phrases over its proposals.
            targets (array-like): float [P, R] targets (> 0 = positive).
            types (list[list[str]], optional): per phrase its types.
            valid (array-like, optional): [R] or [P, R], 0 on padding regions.
        """
        scores = np.asarray(scores)
        if scores.ndim != 2 or np.shape(targets) != scores.shape:
            raise ValueError(f"scores {scores.shape} and targets {np.shape(targets)} must both be [P, R]")
        hits, upper = grounding_hits(scores, targets, valid, self.ks)
        for k in self.ks:
            self._hits[k].extend(hits[k].tolist())
        self._upper.extend(upper.tolist())
        if types is None:
            types = [[] for _ in range(scores.shape[0])]
        if len(types) != scores.shape[0]:
            raise ValueError(f"{len(types)} type lists for {scores.shape[0]} phrases")
        self._types.extend(tuple(t) for t in types)

    def add_batch(self, scores, targets, region_to_phrase_position, visual_attention_mask, types=None):
        """Adds a collated batch (padding phrases, position -1, and padding regions are left out).

        Args:
            scores (array-like): float [B, P, R] the model's logits.
            targets (array-like): float [B, P, R] the batch ``labels``.
            region_to_phrase_position (array-like): int [B, P], -1 on padding phrases.
            visual_attention_mask (array-like): int [B, R].
            types (list, optional): per example, per phrase, its types (the ``phrases`` metadata's ``types``).
        """
        scores, targets = np.asarray(scores), np.asarray(targets)
        positions, mask = np.asarray(region_to_phrase_position), np.asarray(visual_attention_mask)
        for b in range(scores.shape[0]):
            real = positions[b] != -1
            self.add(scores[b][real], targets[b][real], None if types is None else types[b], mask[b])

    def __len__(self):
        return len(self._upper)

    @staticmethod
    def _summary(hits, upper, ks):
        n = len(upper)
        out = {f"R@{k}": float(np.mean(hits[k])) if n else float("nan") for k in ks}
        out["upper_bound"] = float(np.mean(upper)) if n else float("nan")
        out["phrases"] = n
        out["phrases_with_positive"] = int(np.sum(upper))
        return out

    def result(self):
        """Returns the metrics.

        Returns:
            dict: ``R@1``, ``R@5``, ``R@10``, ``upper_bound`` (fractions), ``phrases``, ``phrases_with_positive``
            and ``per_type`` (type -> the same keys), types sorted.
        """
        hits = {k: np.asarray(v, dtype=bool) for k, v in self._hits.items()}
        upper = np.asarray(self._upper, dtype=bool)
        out = self._summary(hits, upper, self.ks)
        per_type = {}
        for name in sorted({t for types in self._types for t in types}):
            rows = np.array([name in types for types in self._types], dtype=bool)
            per_type[name] = self._summary({k: hits[k][rows] for k in self.ks}, upper[rows], self.ks)
        out["per_type"] = per_type
        return out


def grounding_prediction_records(scores, targets, region_boxes, phrases, image_id, caption_index, top=10, valid=None):
    """JSON-ready prediction rows of one example, one per phrase.

    Args:
        scores (array-like): float [P, R] logits. targets (array-like): float [P, R].
        region_boxes (array-like): float [R, 4] proposal boxes.
        phrases (list[dict]): the dataset's ``phrases`` metadata (``text``, ``chain_id``, ``types``, ``boxes``).
        image_id (str), caption_index (int): the example.
        top (int): boxes kept per phrase.
        valid (array-like, optional): [R], 0 on padding regions.

    Returns:
        list[dict]: ``image_id``, ``caption_index``, ``phrase``, ``chain_id``, ``types``, ``gt_boxes``, ``boxes``
        (the ``top`` best proposals, best first), ``scores`` (their softmax probabilities over the real
        proposals), ``positive`` (whether each is a positive), ``has_positive``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    boxes = np.asarray(region_boxes, dtype=np.float64).reshape(-1, 4)
    real = np.ones(scores.shape[-1], dtype=bool) if valid is None else np.asarray(valid).astype(bool)
    num_real = int(real.sum())
    order, _ = grounding_ranking(scores, real)
    rows = []
    for p, phrase in enumerate(phrases):
        ranked = scores[p][order[p][:num_real]]  # the real proposals, best first
        probs = np.exp(ranked - ranked.max())
        probs /= probs.sum()
        keep = order[p][: min(top, num_real)]
        rows.append({
            "image_id": str(image_id), "caption_index": int(caption_index), "phrase": phrase["text"],
            "chain_id": int(phrase["chain_id"]), "types": list(phrase["types"]),
            "gt_boxes": [[float(v) for v in b] for b in phrase["boxes"]],
            "boxes": [[round(float(v), 2) for v in boxes[i]] for i in keep],
            "scores": [round(float(v), 6) for v in probs[: len(keep)]],
            "positive": [bool(targets[p][i] > 0) for i in keep],
            "has_positive": bool(((targets[p] > 0) & real).any()),
        })
    return rows


def write_grounding_predictions(path, rows):
    """Writes prediction rows (:func:`grounding_prediction_records`) as JSON lines, atomically."""
    write_jsonl(path, rows)


def largest_box_scores(region_boxes, num_phrases):
    """Baseline: every phrase picks the proposals by decreasing area.

    Args:
        region_boxes (array-like): float [R, 4]. num_phrases (int): P.

    Returns:
        np.ndarray: float64 [P, R] scores (the areas).
    """
    b = np.asarray(region_boxes, dtype=np.float64).reshape(-1, 4)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.tile(area, (int(num_phrases), 1))


def random_box_scores(num_regions, num_phrases, rng):
    """Baseline: a random ranking of the proposals for every phrase.

    Args:
        num_regions (int): R. num_phrases (int): P. rng (np.random.Generator): the draw.

    Returns:
        np.ndarray: float64 [P, R] uniform scores.
    """
    return rng.random((int(num_phrases), int(num_regions)))


__all__ += [
    "GROUNDING_KS",
    "GroundingEvaluator",
    "grounding_hits",
    "grounding_prediction_records",
    "grounding_ranking",
    "largest_box_scores",
    "random_box_scores",
    "write_grounding_predictions",
]
