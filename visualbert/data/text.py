"""Text encoding shared by the datasets: WordPiece ids, segments, truncation and MLM corruption."""

import hashlib
import os

import numpy as np

from .masking import mask_tokens, random_token_candidates

DEFAULT_MAX_SEQ_LENGTH = 128
# where the scripts keep the WordPiece ids of every split they read (TextEncoder.pretokenize; build_dataset)
TEXT_CACHE_VARIABLE = "VISUALBERT_TEXT_CACHE_DIR"
_CACHE_SIZE = 200_000  # memoised texts per process (VQA questions repeat a lot)
_CACHE_FORMAT = "wordpieces-v1"  # part of the on-disk cache key


def text_cache_dir():
    """str: the directory of the tokenized-split cache: ``$VISUALBERT_TEXT_CACHE_DIR``, else
    ``~/.cache/visualbert/wordpieces`` (files ``wordpieces-<sha256 of the vocabulary and the texts>.npz``; safe to
    delete, a run tokenizes again)."""
    return os.environ.get(TEXT_CACHE_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache", "visualbert",
                                                                   "wordpieces")


class TextEncoder:
    """Builds ``[CLS] a [SEP] (b [SEP])`` id sequences from a BERT tokenizer.

    Truncation: when a sequence exceeds ``max_seq_length`` (special tokens included), wordpieces are
    dropped from the end of the longer segment, one at a time (BERT's "longest first"); a fixed suffix
    (e.g. the VQA ``? [MASK]``) is never dropped.

    Args:
        tokenizer: paddlenlp ``BertTokenizer`` (``visualbert.tokenizer.load_tokenizer()``).
        max_seq_length (int): maximum number of text tokens, special tokens included.
    """

    def __init__(self, tokenizer, max_seq_length=DEFAULT_MAX_SEQ_LENGTH):
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        ids = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]", "[PAD]"])
        self.cls_id, self.sep_id, self.mask_id, self.pad_id = (int(i) for i in ids)
        self._candidates = None

    @property
    def vocab_size(self):
        return len(self.tokenizer.vocab)

    @property
    def random_candidates(self):
        if self._candidates is None:
            self._candidates = random_token_candidates(self.tokenizer)
        return self._candidates

    def wordpieces(self, text):
        """list[int]: WordPiece ids of ``text`` (lower-cased, no special tokens); memoised per process."""
        known = self.__dict__.get("_pretokenized")
        ids = known.get(text) if known else None
        if ids is not None:
            return list(ids)
        cache = self.__dict__.setdefault("_cache", {})
        ids = cache.get(text)
        if ids is None:
            ids = self._tokenize(text)
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[text] = ids
        return list(ids)

    def _tokenize(self, text):
        return tuple(int(i) for i in self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(text)))

    def vocab_digest(self):
        """str: sha256 of the tokenizer's vocabulary (ids and tokens) and its lower-casing."""
        digest = hashlib.sha256()
        items = sorted(self.tokenizer.vocab.token_to_idx.items(), key=lambda kv: kv[1])
        digest.update(repr(bool(getattr(self.tokenizer, "do_lower_case", True))).encode())
        for token, idx in items:
            digest.update(f"{idx}\t{token}\n".encode("utf-8"))
        return digest.hexdigest()

    def pretokenize(self, texts, cache_dir=None):
        """Tokenizes every text of a split once, so examples (and DataLoader workers forked afterwards) only
        look ids up: the WordPiece tokenizer is pure Python (~5,000 texts/s), the largest per-example cost.

        Args:
            texts (iterable of str): the split's texts.
            cache_dir (str, optional): keep the ids in ``<cache_dir>/wordpieces-<key>.npz``, ``key`` the
                sha256 of the vocabulary, the tokenizer class, a format version and the texts: a later run with
                the same vocabulary and annotations loads them instead of tokenizing (a changed file or vocabulary
                gets a new key).

        Returns:
            int: the number of distinct texts.
        """
        unique = sorted(set(str(t) for t in texts))
        known = {}
        path = None
        if cache_dir is not None:
            digest = hashlib.sha256(self.vocab_digest().encode())
            # what else decides the ids: the tokenizer class and this format (bump it when tokenization changes)
            digest.update(f"{_CACHE_FORMAT}\0{type(self.tokenizer).__module__}.{type(self.tokenizer).__name__}\0".encode())
            for text in unique:
                digest.update(text.encode("utf-8") + b"\0")
            path = os.path.join(cache_dir, f"wordpieces-{digest.hexdigest()[:32]}.npz")
            flat = offsets = ()
            if os.path.isfile(path):
                try:
                    with np.load(path, allow_pickle=False) as data:
                        flat, offsets = data["ids"].tolist(), data["offsets"].tolist()
                except Exception:  # unreadable (truncated by a full disk, not ours): tokenized again and rewritten
                    flat = offsets = ()
                if len(offsets) == len(unique) + 1 and offsets[-1] == len(flat):
                    for i, text in enumerate(unique):
                        known[text] = tuple(flat[offsets[i] : offsets[i + 1]])
                    self._pretokenized = known
                    return len(unique)
        ids = [self._tokenize(t) for t in unique]
        self._pretokenized = dict(zip(unique, ids))
        if path is not None:
            from ..fileio import atomic_path

            offsets = np.cumsum([0] + [len(x) for x in ids]).astype(np.int64)
            flat = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=int(offsets[-1]))
            try:
                os.makedirs(cache_dir, exist_ok=True)
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, ids=flat, offsets=offsets)
            except OSError as e:  # a read-only or full cache directory costs the next run the tokenization, nothing more
                import logging

                logging.getLogger("visualbert.data").warning("could not cache the tokenized texts in %s: %s", path, e)
        return len(unique)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def _truncate(self, a, b, budget):
        a, b = list(a), list(b)
        while len(a) + len(b) > budget:
            if len(a) >= len(b) and a:
                a.pop()
            elif b:
                b.pop()
            else:
                a.pop()
        return a, b

    def build(self, a, b=None, a_suffix=()):
        """Assembles one sequence.

        Args:
            a (list[int]): first-segment wordpieces.
            b (list[int], optional): second-segment wordpieces (type 1).
            a_suffix (list[int]): ids appended to ``a`` that survive truncation (e.g. ``?``, ``[MASK]``).

        Returns:
            dict: ``input_ids`` int64 [T], ``token_type_ids`` int64 [T], ``special_mask`` bool [T]
            (True on [CLS]/[SEP] and the suffix's special tokens), ``a_len`` (kept wordpieces of a).
        """
        a_suffix = list(a_suffix)
        n_special = 2 + (1 if b is not None else 0) + len(a_suffix)
        budget = self.max_seq_length - n_special
        if budget < 0:
            raise ValueError(f"max_seq_length {self.max_seq_length} leaves no room for the special tokens")
        a, b2 = self._truncate(a, b or [], budget)
        ids = [self.cls_id] + a + a_suffix + [self.sep_id]
        types = [0] * len(ids)
        if b is not None:
            ids += b2 + [self.sep_id]
            types += [1] * (len(b2) + 1)
        ids = np.array(ids, dtype=np.int64)
        # four comparisons instead of np.isin (which sorts; ~10x slower on these short rows)
        special = (ids == self.cls_id) | (ids == self.sep_id) | (ids == self.mask_id) | (ids == self.pad_id)
        return {"input_ids": ids, "token_type_ids": np.array(types, dtype=np.int64), "special_mask": special, "a_len": len(a)}

    def mask(self, input_ids, special_mask, rng, mask_prob=0.15):
        """MLM corruption, see :func:`visualbert.data.masking.mask_tokens`."""
        return mask_tokens(input_ids, special_mask, rng, self.mask_id, self.random_candidates, mask_prob=mask_prob)


def example_rng(seed, epoch, index):
    """np.random.Generator determined by (seed, epoch, index): the same draw in any worker, a new one each epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])
