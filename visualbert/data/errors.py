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
