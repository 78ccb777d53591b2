"""Exceptions of the data pipeline.

Every message names the file, the example (when there is one) and what was expected, so that a bad
input found mid-epoch can be fixed without a debugger.
"""


class DataFormatError(ValueError):
    """A data or feature file exists but its content is not in the expected format."""


class MissingFeaturesError(FileNotFoundError):
    """Region features are missing for one or more images.

    Attributes:
        missing (list[str]): the missing keys (all of them when raised by a check, else the first ones).
    """

    def __init__(self, message, missing=()):
        super().__init__(message)
        self.missing = list(missing)

    def __str__(self):
        return self.args[0]


def with_example_context(error, context):
    """Returns a copy of ``error`` (same type) whose message ends with ``context``.

    Args:
        error (Exception): the original error, raised while loading one example.
        context (str): e.g. ``"example 17 (question_id 9001) of /data/imdb_train2014.npy"``.

    Returns:
        Exception: to be raised ``from error``.
    """
    message = f"{error} [while loading {context}]"
    if isinstance(error, MissingFeaturesError):
        return MissingFeaturesError(message, error.missing)
    try:
        return type(error)(message)
    except Exception:  # exotic constructor: fall back to a plain data error
        return DataFormatError(message)


_NULL_WORDS = {"none", "null", "nan"}


def text_problem(value):
    """Why ``value`` is not a usable text, or None when it is one.

    A null (``None``, JSON ``null``, float NaN) or its printed form written as the text (``"None"``,
    ``"null"``, ``"nan"``: what ``str(None)`` leaves in a file), and an empty or blank string, are not texts;
    training on them is training on noise.

    Args:
        value: a sentence, question or caption as read from an annotation file.

    Returns:
        str or None: e.g. ``"is empty"`` or ``"is null ('None')"``.
    """
    if value is None:
        return "is null"
    if isinstance(value, float) and value != value:
        return "is null (NaN)"
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value.strip():
        return "is empty"
    if value.strip().lower() in _NULL_WORDS:
        return f"is null ({value.strip()!r})"
    return None
