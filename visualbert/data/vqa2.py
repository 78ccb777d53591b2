"""VQA2 from the Pythia/MMF imdb ``.npy`` files."""

import os

import numpy as np

from .answers import MIN_ANSWER_COVERAGE, check_answer_coverage, load_answer_vocab
from .errors import DataFormatError, text_problem, with_example_context
from .features import FileFeatureStore, open_feature_store
from .masking import check_mask_probabilities
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder, example_rng

# split name -> imdb files (relative to the imdb directory); trainval falls back to train + val.
VQA_SPLITS = {
    "train": ["imdb_train2014.npy"],
    "val": ["imdb_val2014.npy"],
    "minival": ["imdb_minival2014.npy"],
    "test": ["imdb_test2015.npy"],
    "test2015": ["imdb_test2015.npy"],
    "trainval": ["imdb_trainval2014.npy"],
}
HEADER_KEYS = ("create_time", "dataset_name", "version", "has_answer", "has_gt_layout")
VQA_FEATURE_DIM = 2048
# How VQA task pre-training appends the answer: "characters" as the original, "words" its WordPieces.
ANSWER_TEXTS = ("characters", "words")


def imdb_files(imdb_dir, split):
    """Resolves a split name to imdb files.

    Args:
        imdb_dir (str): directory with ``imdb_*.npy``.
        split (str): ``train``, ``val``, ``trainval``, ``minival``, ``test2015`` (or ``test``), or a file name.

    Returns:
        list[str]: existing paths (``trainval`` is ``imdb_trainval2014.npy`` if present, else train + val).

    Raises:
        FileNotFoundError: naming the missing file.
    """
    if split.endswith(".npy"):
        names = [split]
    elif split == "trainval" and not os.path.isfile(os.path.join(imdb_dir, VQA_SPLITS["trainval"][0])):
        names = VQA_SPLITS["train"] + VQA_SPLITS["val"]
    elif split in VQA_SPLITS:
        names = VQA_SPLITS[split]
    else:
        raise ValueError(f"unknown VQA split {split!r}; expected one of {sorted(VQA_SPLITS)} or an imdb file name")
    paths = [n if os.path.isabs(n) else os.path.join(imdb_dir, n) for n in names]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"VQA imdb file {p} does not exist (split {split!r})")
    return paths


def load_imdb(path):
    """Reads one imdb file.

    Args:
        path (str): ``imdb_*.npy`` (numpy object array, element 0 a header dict).

    Returns:
        tuple[dict, list[dict]]: header and the question entries.

    Raises:
        DataFormatError: unreadable, missing header, no questions, or an entry without required keys.
    """
    try:
        data = np.load(path, allow_pickle=True)
    except Exception as e:  # ValueError, EOFError, OSError, pickle.UnpicklingError on empty/truncated files
        raise DataFormatError(f"{path}: cannot read the imdb .npy (empty or truncated?): {e}") from e
    if data.ndim != 1 or len(data) == 0:
        raise DataFormatError(f"{path}: expected a 1-D object array [header, question, ...], got shape {data.shape}")
    header = data[0]
    if not isinstance(header, dict) or "question_id" in header or not any(k in header for k in HEADER_KEYS):
        raise DataFormatError(
            f"{path}: element 0 is not the imdb header (expected a dict with {', '.join(HEADER_KEYS)}); "
            "was the file written without it?"
        )
    entries = list(data[1:])
    if not entries:
        raise DataFormatError(f"{path}: empty split (the imdb has a header but no questions)")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataFormatError(f"{path}: element {i + 1} is a {type(e).__name__}, expected a question dict")
        for key in ("image_name", "question_id"):
            if key not in e:
                raise DataFormatError(f"{path}: element {i + 1} lacks {key!r} (keys: {sorted(e)})")
        if "question_str" not in e and "question_tokens" not in e:
            raise DataFormatError(f"{path}: element {i + 1} has neither 'question_str' nor 'question_tokens'")
        problem = question_problem(e)
        if problem:
            raise DataFormatError(f"{path}: element {i + 1} (question_id {e.get('question_id')}): the question "
                                  f"{problem}")
    return header, entries


def question_problem(entry):
    """Why the question of an imdb entry is not usable (``"is empty"``, ``"is null"``, ...), or None."""
    tokens = entry.get("question_tokens")
    raw = " ".join(str(t) for t in tokens) if tokens is not None and len(tokens) else entry.get("question_str")
    return text_problem(raw) or (None if question_text(entry) else "is empty")


def question_text(entry):
    """str: the question without its final ``?`` (from ``question_tokens`` when present)."""
    tokens = entry.get("question_tokens")
    if tokens is not None and len(tokens):
        text = " ".join(str(t) for t in tokens)
    else:
        text = str(entry["question_str"])
    return text.strip().rstrip("?").strip()


def valid_answers(entry):
    """list[str]: answers to sample from for VQA task pretraining (``valid_answers``, else ``answers``, else
    ``all_answers``; empty strings dropped); empty when the entry has none (test2015)."""
    for key in ("valid_answers", "answers", "all_answers"):
        if key in entry and entry[key] is not None:
            answers = [str(a) for a in entry[key] if str(a).strip()]
            if answers:
                return answers
    return []


def answer_list(entry):
    """list[str] or None: answers to score (``answers``, else ``valid_answers``, else ``all_answers``)."""
    for key in ("answers", "valid_answers", "all_answers"):
        if key in entry and entry[key] is not None:
            return [str(a) for a in entry[key]]
    return None


class VQA2Dataset:
    """VQA2 questions with region features.

    Text ``[CLS] question ? [MASK] [SEP]`` (types 0; the question is truncated so that the whole fits in
    ``max_seq_length``), visual token types 0.

    Sample (``task="vqa"``):
        ``input_ids`` int64 [T], ``token_type_ids`` int64 [T], ``visual_embeds`` float32 [R, 2048] (float16
        from a float16 packed store; from a packed store a read-only view, copied once by the collator),
        ``visual_token_type_ids`` int64 [R], ``labels`` float32 [num_answers] soft scores (absent on test),
        metadata ``question_id`` int, ``image_id`` int, ``image_name`` str, ``answers`` list[str] (raw, for the
        official metric; absent on test).

    Sample (``task="mlm"``, VQA task pretraining as in the original VisualBERT): text
    ``[CLS] question ? answer [SEP]`` where ``answer`` is drawn uniformly from the example's valid answers
    (:func:`valid_answers`; question only when it has none, e.g. test2015). ``answer_text="characters"`` (the
    default) appends the answer as the original's ``vqa_dataset.py`` does, ``tokenize(" ".join(answer))`` of the
    answer string, i.e. its characters one by one ("yes" -> ``y e s``; the released visualbert-vqa-pre was trained
    so); ``"words"`` appends the answer's WordPieces. Then MLM corruption (15%, 80/10/10)
    over the text wordpieces (question, ``?`` and answer; never [CLS]/[SEP] or regions) and ``labels`` int64 [T]
    (``IGNORE_INDEX`` where not a target). The answer and the masks come from the per-(seed, epoch, index)
    generator, so they are redrawn each epoch (:meth:`set_epoch`). Only the question is truncated.

    Args:
        imdb (str or list[str]): imdb file(s); see :func:`imdb_files` to resolve split names.
        features (str or FeatureStore): feature root (``detectron_fix_100``, its ``fc6/vqa``, or a packed store).
        tokenizer: BERT tokenizer.
        answers_file (str, optional): answer vocabulary (default: the packaged 3129 answers).
        max_seq_length (int): text length cap (default 128).
        task (str): ``"vqa"`` or ``"mlm"``.
        mask_prob (float): MLM target probability.
        answer_text (str): ``"characters"`` (the original's text) or ``"words"``; see above (``task="mlm"`` only).
        seed (int): MLM seed.
        feature_dim (int): expected width (2048).
        check_features (bool): check at construction that every image has a feature file
            (cheap for packed stores; one ``stat`` per image otherwise).
        entries (list[dict], optional): imdb entries given in memory (:meth:`from_question`) instead of read from
            ``imdb``, which then only names their source in messages.
    """

    def __init__(self, imdb, features, tokenizer, answers_file=None, max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                 task="vqa", mask_prob=0.15, seed=0, feature_dim=VQA_FEATURE_DIM, check_features=False,
                 answer_text="characters", entries=None):
        if task not in ("vqa", "mlm"):
            raise ValueError(f"task must be 'vqa' or 'mlm', got {task!r}")
        if answer_text not in ANSWER_TEXTS:
            raise ValueError(f"answer_text must be one of {ANSWER_TEXTS}, got {answer_text!r}")
        self.answer_text = answer_text
        paths = [imdb] if isinstance(imdb, str) else list(imdb)
        self.entries, self.sources = [], []
        self.has_answers = True
        if entries is not None:
            self.entries, self.sources, paths = list(entries), [str(imdb)] * len(entries), []
            self.has_answers = all(answer_list(e) is not None for e in self.entries)
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"VQA imdb file {path} does not exist")
            header, entries = load_imdb(path)
            self.entries += entries
            self.sources += [path] * len(entries)
            if header.get("has_answer") is False or any(answer_list(e) is None for e in entries[:1]):
                self.has_answers = False
        self.store = open_feature_store(features, dim=feature_dim)
        self.vocab = load_answer_vocab(answers_file)
        self.text = TextEncoder(tokenizer, max_seq_length)
        self.task = task
        check_mask_probabilities(mask_prob)
        self.mask_prob = mask_prob
        self.seed = seed
        self.epoch = 0
        self._suffix = self.text.wordpieces("?")
        if check_features:
            self.check_features()

    @classmethod
    def from_question(cls, question, features_file, tokenizer, answers_file=None,
                      max_seq_length=DEFAULT_MAX_SEQ_LENGTH, feature_dim=None):
        """A dataset of one question about the image whose region features are ``features_file`` (no imdb file).

        The question is checked as :func:`load_imdb` checks an entry's and the example is made by
        :meth:`__getitem__`, as every example of a split: the same text and region encoding and the same errors.

        Args:
            question (str): e.g. ``"what color is the bus?"``.
            features_file (str): ``.npy`` float [R, D].

        Raises:
            DataFormatError: an empty or null question (or, when the example is read, a bad feature array).
        """
        key = os.path.splitext(os.path.basename(features_file))[0] or "image"
        entry = {"question_id": 0, "image_name": key, "question_str": question}
        problem = question_problem(entry)
        if problem:
            raise DataFormatError(f"--question {question!r}: the question {problem}")
        store = FileFeatureStore({key: features_file}, dim=feature_dim)
        return cls("--question", store, tokenizer, answers_file=answers_file, max_seq_length=max_seq_length,
                   feature_dim=feature_dim, entries=[entry])

    def check_features(self):
        """Raises :class:`MissingFeaturesError` listing every image of the split without features."""
        self.store.check([e["image_name"] for e in self.entries], source=", ".join(sorted(set(self.sources))))

    def check_answer_coverage(self, min_coverage=MIN_ANSWER_COVERAGE):
        """Logs how many questions have an in-vocabulary answer; raises :class:`DataFormatError` (naming the
        vocabulary file) below ``min_coverage``. For the training split of ``task="vqa"``; see
        :func:`visualbert.data.answers.check_answer_coverage`.

        Returns:
            dict: the coverage statistics.
        """
        return check_answer_coverage(self.vocab, [answer_list(e) for e in self.entries],
                                     ", ".join(sorted(set(self.sources))), min_coverage)

    def pretokenize(self, cache_dir=None):
        """Tokenizes every question (and, for ``task="mlm"``, every answer) once, before DataLoader workers
        fork; see :meth:`visualbert.data.text.TextEncoder.pretokenize` (``cache_dir``: reuse across runs).
        Examples are unchanged; returns the number of distinct texts."""
        texts = [question_text(e) for e in self.entries]
        if self.task == "mlm":
            texts += [" ".join(a) if self.answer_text == "characters" else a  # as __getitem__ builds the answer
                      for e in self.entries for a in valid_answers(e)]
        return self.text.pretokenize(texts, cache_dir=cache_dir)

    def set_epoch(self, epoch):
        """Sets the epoch (MLM draws depend on it). Call before each epoch, in the main process."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        entry = self.entries[index]
        try:
            return self._example(index, entry)
        except Exception as e:
            context = f"example {index} (question_id {entry.get('question_id')}) of {self.sources[index]}"
            raise with_example_context(e, context) from e

    def _example(self, index, entry):
        visual = self.store.view(str(entry["image_name"]))  # copied (once) by the collator
        words = self.text.wordpieces(question_text(entry))
        sample = {}
        if self.task == "vqa":
            enc = self.text.build(words, a_suffix=self._suffix + [self.text.mask_id])
            sample["input_ids"] = enc["input_ids"]
        else:
            rng = example_rng(self.seed, self.epoch, index)
            suffix = list(self._suffix)
            choices = valid_answers(entry)
            if choices:
                answer = choices[int(rng.integers(len(choices)))]
                if self.answer_text == "characters":
                    # Parity quirk: the original joins the answer STRING with spaces (" ".join(answer)), so it is
                    # tokenized character by character.
                    answer = " ".join(answer)
                answer = self.text.wordpieces(answer)
                suffix += answer[: max(0, self.text.max_seq_length - 2 - len(suffix))]
            enc = self.text.build(words, a_suffix=suffix)
            sample["input_ids"], sample["labels"] = self.text.mask(enc["input_ids"], enc["special_mask"], rng, self.mask_prob)
        sample["token_type_ids"] = enc["token_type_ids"]
        sample["visual_embeds"] = visual
        sample["visual_token_type_ids"] = np.zeros(visual.shape[0], dtype=np.int64)
        sample["question_id"] = int(entry["question_id"])
        sample["image_id"] = int(entry.get("image_id", -1))
        sample["image_name"] = str(entry["image_name"])
        answers = answer_list(entry)
        if self.task == "vqa" and answers is not None:
            sample["labels"] = self.vocab.soft_scores(answers)
            raw = entry.get("all_answers", answers)
            sample["answers"] = [str(a) for a in raw]
        return sample
