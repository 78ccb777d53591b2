"""What reaches the console: the start-up noise of third-party packages is filtered where it is raised, and a run
announces itself with one line (:func:`startup_line`).

The four messages every script printed before its own first line, and where each comes from:

* ``UserWarning: No ccache found ...``: ``paddle/utils/cpp_extension/extension_utils.py`` (``find_ccache_home``),
  run when ``paddle.utils.cpp_extension`` is imported (by ``import paddle`` and again by paddlenlp). Filtered with
  ``warnings.filterwarnings`` on that module and message.
* ``UserWarning: Setuptools is replacing distutils``: ``_distutils_hack`` (setuptools), when setuptools is imported
  after ``distutils`` (paddlenlp's imports do both). Filtered on that module and message.
* ``WARNING: OMP_NUM_THREADS set to 2, not 1 ...`` / ``PLEASE USE OMP_NUM_THREADS WISELY.``: two ``print`` calls
  to ``sys.stderr`` in ``paddle/base/__init__.py`` (``__bootstrap__``) at ``import paddle`` whenever the variable
  is above 1, which :mod:`visualbert.runtime` makes it on purpose. Not a warning, so no filter can catch it:
  :func:`import_paddle` imports paddle with ``sys.stderr`` behind a filter that drops exactly these two lines.
* ``PyTorch version ... available.``: an INFO record of ``datasets/config.py`` on the ``datasets`` logger (imported
  by paddlenlp; torch is installed for the parity tests). A :class:`logging.Filter` on that logger drops it.

Every filter matches one message of one module: our own warnings, other warnings of these packages and real errors
still reach the console.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings

# (module regex, message regex) of the third-party UserWarnings silenced.
WARNING_FILTERS = (
    (r"paddle\.utils\.cpp_extension\.extension_utils", r"No ccache found"),
    (r"_distutils_hack", r"Setuptools is replacing distutils"),
)
PADDLE_OMP_LINES = re.compile(r"^(WARNING: OMP_NUM_THREADS set to \d+, not 1\. |PLEASE USE OMP_NUM_THREADS WISELY\.)")
DATASETS_TORCH_RECORD = re.compile(r"^PyTorch version .* available\.?$")


class _DropLines(io.TextIOBase):
    """A text stream writing whole lines to ``target`` except those matching ``pattern``."""

    def __init__(self, target, pattern: re.Pattern):
        super().__init__()
        self.target, self.pattern, self.pending = target, pattern, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not self.pattern.match(line):
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending and not self.pattern.match(self.pending):
            self.target.write(self.pending)
        self.pending = ""
        self.target.flush()


@contextlib.contextmanager
def dropping_stderr_lines(pattern: re.Pattern):
    """``sys.stderr`` minus the lines matching ``pattern`` inside the block."""
    original = sys.stderr
    filtered = _DropLines(original, pattern)
    sys.stderr = filtered
    try:
        yield
    finally:
        filtered.flush()
        sys.stderr = original


class _DropMessage(logging.Filter):
    def __init__(self, pattern: re.Pattern):
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def install_filters() -> None:
    """Installs the warning and logging filters of the module docstring (idempotent)."""
    for module, message in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
    datasets_logger = logging.getLogger("datasets")  # datasets/config.py logs on its root logger
    if not any(isinstance(f, _DropMessage) for f in datasets_logger.filters):
        datasets_logger.addFilter(_DropMessage(DATASETS_TORCH_RECORD))


def import_paddle():
    """``import paddle`` without its ``OMP_NUM_THREADS`` lines on stderr (see the module docstring)."""
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    with dropping_stderr_lines(PADDLE_OMP_LINES):
        import paddle
    return paddle


def startup_line(output_dir: str | None, amp: str = "off", world_size: int = 1) -> str:
    """The one line a run starts with: device, math threads, AMP, world size and output directory.

    Args:
        output_dir (str or None): where the run writes (None: nothing is written).
        amp (str): e.g. ``"off"`` or ``"O1 bfloat16"``.
        world_size (int): processes of the job.
    """
    import os

    import paddle

    device = paddle.device.get_device()
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    where = os.path.abspath(output_dir) if output_dir else "-"
    return f"device {device}, {threads} CPU threads, AMP {amp}, world size {world_size}, output {where}"
