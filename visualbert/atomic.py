"""Atomic writes: a file or a directory appears under its final name complete, or not at all.

Standard library only (the data tools, the model, the converter and the engine all use it).
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to ``path``; on success it is renamed onto ``path`` (``os.replace``).

    A crash mid-write therefore never leaves a truncated file under the final name; on error the temporary
    file is removed and ``path`` is untouched. Parent directories are created.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def replace_dir(tmp_dir, final_dir):
    """Moves a completely written ``tmp_dir`` (on the same file system) to ``final_dir``; an existing
    ``final_dir`` is first renamed aside and removed only after the new one is in place."""
    trash = None
    if os.path.exists(final_dir):
        trash = tempfile.mkdtemp(prefix=".old-" + os.path.basename(final_dir) + "-",
                                 dir=os.path.dirname(os.path.abspath(final_dir)))
        os.replace(final_dir, os.path.join(trash, "old"))
    os.replace(tmp_dir, final_dir)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)
