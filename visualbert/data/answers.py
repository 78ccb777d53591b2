"""The VQA answer vocabulary and soft scores."""

import collections
import os

import numpy as np

from .errors import DataFormatError

UNK_ANSWER = "<unk>"
DEFAULT_ANSWERS_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "answers_vqa.txt")


class AnswerVocab:
    """Answer strings <-> indices (``<unk>`` at index 0).

    Args:
        answers (list[str]): one answer per index; ``answers[0]`` must be ``"<unk>"``.
        source (str): file the list came from (named in errors).
    """

    def __init__(self, answers, source="<list>"):
        if not answers or answers[0] != UNK_ANSWER:
            first = answers[0] if answers else "nothing (empty file)"
            raise DataFormatError(f"answer vocabulary {source}: line 0 must be {UNK_ANSWER!r}, found {first!r}")
        self.answers = list(answers)
        self.source = source
        self._index = {}
        for i, a in enumerate(self.answers):
            self._index.setdefault(a, i)

    def __len__(self):
        return len(self.answers)

    def __contains__(self, answer):
        return answer in self._index

    def index(self, answer):
        """int: index of ``answer``, 0 (``<unk>``) when out of vocabulary."""
        return self._index.get(answer, 0)

    def __getitem__(self, i):
        return self.answers[i]

    def soft_scores(self, answers):
        """VQA soft scores of one question.

        Args:
            answers (list[str]): the human answers (10 in VQA2; an in-vocabulary subset is fine).

        Returns:
            np.ndarray: float32 [len(self)], ``min(0.3 * count, 1)`` per distinct in-vocabulary answer
            (the official leave-one-out accuracy for 10 answers); ``<unk>`` and absent answers get 0.
        """
        scores = np.zeros(len(self.answers), dtype=np.float32)
        for answer, count in collections.Counter(answers).items():
            i = self.index(answer)
            if i != 0:
                scores[i] = min(0.3 * count, 1.0)
        return scores


def load_answer_vocab(path=None):
    """Reads an answer vocabulary (one answer per line, ``<unk>`` on line 0).

    Args:
        path (str, optional): defaults to the packaged real 3129-answer VQA vocabulary.

    Returns:
        AnswerVocab

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFormatError: line 0 is not ``<unk>``.
    """
    path = path or DEFAULT_ANSWERS_FILE
    if not os.path.isfile(path):
        raise FileNotFoundError(f"answer vocabulary {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        answers = [line.rstrip("\n").rstrip("\r") for line in f]
    while answers and answers[-1] == "":
        answers.pop()
    return AnswerVocab(answers, source=path)


MIN_ANSWER_COVERAGE = 0.5


def answer_coverage(vocab, answer_lists):
    """How much of a split's answers an answer vocabulary covers.

    Args:
        vocab (AnswerVocab): the vocabulary.
        answer_lists (iterable of list[str] or None): the human answers of each question (None: unanswered,
            e.g. test2015; skipped).

    Returns:
        dict: ``questions`` (answered questions), ``covered_questions`` (with at least one in-vocabulary answer,
        i.e. a non-zero soft-score target), ``question_coverage`` (their fraction), ``answers`` (all human
        answers), ``covered_answers``, ``answer_coverage`` (fraction of answers in the vocabulary; ``<unk>``
        counts as out).
    """
    questions = covered_questions = answers = covered_answers = 0
    for answer_list_ in answer_lists:
        if answer_list_ is None:
            continue
        questions += 1
        hits = sum(1 for a in answer_list_ if vocab.index(a) != 0)
        answers += len(answer_list_)
        covered_answers += hits
        covered_questions += hits > 0
    return {
        "questions": questions,
        "covered_questions": covered_questions,
        "question_coverage": covered_questions / questions if questions else 0.0,
        "answers": answers,
        "covered_answers": covered_answers,
        "answer_coverage": covered_answers / answers if answers else 0.0,
    }


def check_answer_coverage(vocab, answer_lists, source, min_coverage=MIN_ANSWER_COVERAGE, log=None):
    """Logs the coverage of a training split by ``vocab`` and raises when too few questions have a target.

    The packaged 3129 answers are the frequent answers of VQA2 train+val, so nearly every VQA2 train question has a
    non-zero target (not measured here: no real imdb in the repository; the synthetic split has 100%); a vocabulary
    of another dataset (or a shifted/corrupted file) trains on all-zero targets, which the KL loss accepts silently.
    The 50% default only catches such mismatches; a stricter threshold is the caller's choice.

    Args:
        vocab (AnswerVocab), answer_lists: see :func:`answer_coverage`.
        source (str): the split's annotation file(s), named in the message.
        min_coverage (float): minimum ``question_coverage`` in [0, 1].
        log (callable, optional): receives the one-line summary (default: ``logging.info`` of ``visualbert.data``).

    Returns:
        dict: :func:`answer_coverage`.

    Raises:
        DataFormatError: ``question_coverage < min_coverage`` (names the vocabulary file and the split).
    """
    import logging

    stats = answer_coverage(vocab, answer_lists)
    summary = (f"answer vocabulary {vocab.source}: {stats['covered_questions']} of {stats['questions']} questions of "
               f"{source} ({100 * stats['question_coverage']:.1f}%) have an in-vocabulary answer; "
               f"{100 * stats['answer_coverage']:.1f}% of the {stats['answers']} answers are in it")
    (log or logging.getLogger("visualbert.data").info)(summary)
    if stats["questions"] and stats["question_coverage"] < min_coverage:
        raise DataFormatError(
            f"{summary}, below the minimum {100 * min_coverage:.0f}%: the answer vocabulary does not fit this split "
            "(wrong --answers_file?); these questions would train on all-zero targets"
        )
    return stats
