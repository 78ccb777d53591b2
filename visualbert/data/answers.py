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
