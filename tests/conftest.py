"""Shared test setup: the tiny model configuration, the tokenizer and synthetic data sets in the real formats.

``compare/`` (the HF reference side of the parity checks, ``parity.py``, and ``compare.py``) is put on
``sys.path`` here, so that the tests import it as the compare script does.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "compare"))

# The one tiny configuration (seconds per test on 2 CPU cores); tests override what they need.
TINY = dict(vocab_size=1200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            visual_embedding_dim=32, max_position_embeddings=64)


def tiny_config(**overrides):
    """A :class:`visualbert.VisualBertConfig` of :data:`TINY` with ``overrides``."""
    from visualbert.configuration import VisualBertConfig

    return VisualBertConfig(**dict(TINY, **overrides))


@pytest.fixture(scope="session", autouse=True)
def cpu_kernels_built():
    """Under ``make test`` (VISUALBERT_REQUIRE_CPU_KERNELS=1) the C++ kernels must build: their tests would
    otherwise skip, and every model test would silently run Paddle's ops only."""
    if os.environ.get("VISUALBERT_REQUIRE_CPU_KERNELS") == "1":
        from visualbert import kernels

        assert kernels.load_cpu_kernels() is not None, f"C++ kernels did not build: {kernels.status()['error']}"


@pytest.fixture(scope="session")
def tok():
    """The bert-base-uncased tokenizer (packaged vocabulary)."""
    from visualbert.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """``synthetic(**options)`` → the root of a data set of :func:`visualbert.data.synthetic.generate` with those
    options, generated once per session for each distinct set of options."""
    from visualbert.data.synthetic import generate

    made = {}

    def make(**options):
        key = repr(sorted(options.items()))
        if key not in made:
            out = str(tmp_path_factory.mktemp("synth"))
            generate(out, **options)
            made[key] = out
        return made[key]

    return make


def load_script(relpath):
    """The ``main`` of a task script (path relative to the repository), loaded as a module of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("script_" + relpath.replace("/", "_").replace(".", "_"),
                                                  os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
