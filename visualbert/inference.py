"""Static-graph export and a ``paddle.inference`` predictor for the classification heads.

    from visualbert.inference import export_model, Predictor
    export_model(model, "export/vqa")                 # paddle.jit.save, dynamic batch / text / region dims
    predictor = Predictor("export/vqa")               # paddle.inference: the GPU when there is one, else CPU
    logits = predictor.run(batch)["logits"]          # batch: dict of numpy arrays named like the model args

The exported program takes ``input_ids, attention_mask, token_type_ids, visual_embeds,
visual_attention_mask, visual_token_type_ids`` (all but ``visual_embeds`` int64, all with dynamic batch and
length dimensions) and returns ``logits``. The VQA head's gather at ``attention_mask.sum(1) - 2`` is part of
the graph. ``export.json`` beside the model records the architecture, the feed names and the config.
"""

import json
import os

import numpy as np

from . import runtime  # noqa: F401  (thread defaults before paddle loads)

EXPORT_META = "export.json"
MODEL_PREFIX = "model"
FEED_NAMES = ("input_ids", "attention_mask", "token_type_ids", "visual_embeds", "visual_attention_mask",
              "visual_token_type_ids")
EXPORTABLE = ("VisualBertForQuestionAnswering", "VisualBertForVisualReasoning")


def _logits_layer(model):
    import paddle

    class LogitsOnly(paddle.nn.Layer):
        """Positional inputs → logits tensor (a static program returns tensors, not the ModelOutput dict)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids, visual_embeds, visual_attention_mask,
                    visual_token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              visual_embeds=visual_embeds, visual_attention_mask=visual_attention_mask,
                              visual_token_type_ids=visual_token_type_ids)["logits"]

    return LogitsOnly(model)


def input_spec(visual_dim):
    from paddle.static import InputSpec

    specs = []
    for name in FEED_NAMES:
        if name == "visual_embeds":
            specs.append(InputSpec([None, None, visual_dim], "float32", name))
        else:
            specs.append(InputSpec([None, None], "int64", name))
    return specs


def to_static_model(model, architecture=None, example_inputs=None):
    """``paddle.jit.to_static`` of ``model`` (eval mode) returning a callable ``f(**inputs) -> logits``."""
    import paddle

    model.eval()
    static = paddle.jit.to_static(_logits_layer(model), input_spec=input_spec(model.config.visual_embedding_dim),
                                  full_graph=True)
    static.eval()

    def call(**feed):
        return static(*[feed[name] for name in FEED_NAMES])

    return call


def export_model(model, out_dir, architecture=None):
    """Writes ``out_dir/model.json|.pdmodel`` + ``model.pdiparams`` + ``export.json``.

    Args:
        model: a VQA or NLVR2 head (``VisualBertForQuestionAnswering`` / ``VisualBertForVisualReasoning``).
        out_dir (str): created if missing.

    Returns:
        str: the path prefix passed to ``paddle.jit.save``.
    """
    import paddle

    architecture = architecture or type(model).__name__
    if architecture not in EXPORTABLE:
        raise ValueError(f"export supports {', '.join(EXPORTABLE)}, not {architecture}")
    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    layer = _logits_layer(model)
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=input_spec(model.config.visual_embedding_dim), full_graph=True)
    prefix = os.path.join(out_dir, MODEL_PREFIX)
    paddle.jit.save(static, prefix)
    meta = {"architecture": architecture, "feed_names": list(FEED_NAMES), "fetch_names": ["logits"],
            "config": model.config.to_dict()}
    with open(os.path.join(out_dir, EXPORT_META), "w") as f:
        json.dump(meta, f, indent=2)
    return prefix


ONNX_FILE = "model.onnx"
ONNX_OPSET = 13
EXPORT_FORMATS = ("paddle", "onnx")


def export_onnx(model, out_dir, opset_version=ONNX_OPSET):
    """Writes ``out_dir/model.onnx`` (paddle2onnx of the :func:`export_model` program: the same dynamic batch, text
    and region dimensions) + ``export.json`` (``"format": "onnx"``).

    The model is traced on its portable kernels (``F.linear``; paddle2onnx 2.1 has no mapping for the ``addmm`` of
    the CPU fast path) and put back on its own afterwards. paddle2onnx's optimisers are off: its default
    ``optimize_tool="polygraphy"`` tries to ``pip install onnx_graphsurgeon`` at export time (and upgraded numpy
    when it did here); nothing may install at run time.

    Returns:
        str: the path of ``model.onnx``.
    """
    import tempfile

    import paddle2onnx

    from .fileio import atomic_path

    architecture = type(model).__name__
    if architecture not in EXPORTABLE:
        raise ValueError(f"export supports {', '.join(EXPORTABLE)}, not {architecture}")
    previous = bool(getattr(model, "cpu_kernels", False))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, ONNX_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        model.set_cpu_kernels(False)
        try:
            export_model(model, tmp)
        finally:
            model.set_cpu_kernels(previous)
        model_file, params_file = _model_files(tmp)
        with atomic_path(path) as tmp_path:
            paddle2onnx.export(model_file, params_file, save_file=tmp_path, opset_version=opset_version,
                               enable_onnx_checker=True, enable_optimize=False, optimize_tool="none")
    meta = {"architecture": architecture, "format": "onnx", "opset_version": opset_version,
            "feed_names": list(FEED_NAMES), "fetch_names": ["logits"], "config": model.config.to_dict()}
    from .fileio import write_json

    write_json(os.path.join(out_dir, EXPORT_META), meta)
    return path


class OnnxPredictor:
    """An ``onnxruntime`` session over a directory of :func:`export_onnx` (CPU), with :class:`Predictor`'s call:
    ``run(dict of numpy arrays) -> {"logits": numpy}``.

    Args:
        model_dir (str): holds ``model.onnx`` and ``export.json``.
        threads (int, optional): intra-op threads (default ``OMP_NUM_THREADS``, set by :mod:`visualbert.runtime`).
    """

    def __init__(self, model_dir, threads=None):
        import onnxruntime as ort

        with open(os.path.join(model_dir, EXPORT_META)) as f:
            self.meta = json.load(f)
        path = os.path.join(model_dir, ONNX_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{model_dir!r} has no {ONNX_FILE} (write it with tools/export_model.py "
                                    "--format onnx)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or os.environ.get("OMP_NUM_THREADS") or runtime.default_threads())
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs):
        """Args: dict of numpy arrays named like the model arguments (all six). Returns ``{"logits": np}``."""
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32 if name == "visual_embeds" else np.int64)
                for name in self.input_names}
        return {"logits": self.session.run(None, feed)[0]}

    __call__ = run


def _model_files(model_dir):
    prefix = os.path.join(model_dir, MODEL_PREFIX)
    for ext in (".json", ".pdmodel"):
        if os.path.isfile(prefix + ext):
            return prefix + ext, prefix + ".pdiparams"
    raise FileNotFoundError(f"{model_dir!r} has no {MODEL_PREFIX}.json/.pdmodel (write it with tools/export_model.py)")


DEVICES = ("auto", "cpu", "gpu")
GPU_MEMORY_POOL_MB = 256  # initial pool; paddle.inference grows it as needed


def resolve_device(device="auto"):
    """``"cpu"`` or ``"gpu:<id>"`` for a predictor: ``auto`` takes the GPU this process runs on (``gpu:0`` unless
    ``paddle.set_device`` / the launcher chose another) when Paddle is built with CUDA and sees one.

    Raises:
        ValueError: unknown choice, or ``gpu`` asked on a CPU-only build / machine.
    """
    import paddle

    if device not in DEVICES and not str(device).startswith("gpu:"):
        raise ValueError(f"predictor device must be one of {DEVICES} or gpu:<id>, got {device!r}")
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "cpu" or (device == "auto" and not has_gpu):
        return "cpu"
    if not has_gpu:
        raise ValueError(f"predictor device {device!r} asked, but this Paddle build sees no GPU "
                         "(pip install paddlepaddle-gpu, or pass --device cpu)")
    if str(device).startswith("gpu:"):
        return device
    current = paddle.device.get_device()
    return current if current.startswith("gpu:") else "gpu:0"


def configure_device(config, device, threads=None, use_mkldnn=False):
    """Puts ``paddle.inference.Config`` ``config`` on ``device`` (:func:`resolve_device` output): the GPU with a
    memory pool, or the CPU with ``threads`` math threads (default ``OMP_NUM_THREADS``, set by
    :mod:`visualbert.runtime`) and oneDNN on or off."""
    if device.startswith("gpu"):
        config.enable_use_gpu(GPU_MEMORY_POOL_MB, int(device.partition(":")[2] or 0))
        return config
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(threads or os.environ.get("OMP_NUM_THREADS") or runtime.default_threads()))
    if use_mkldnn:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    return config


class Predictor:
    """A ``paddle.inference`` predictor over an exported model directory.

    Args:
        model_dir (str): written by :func:`export_model` / ``tools/export_model.py``.
        threads (int, optional): CPU math threads (default ``OMP_NUM_THREADS``, set by :mod:`visualbert.runtime`).
        use_mkldnn (bool): oneDNN kernels and fusions (CPU). Default off: on this port's shapes the MKL path of the
            plain predictor was measured faster (see bench/bench_model.py ``--predictor-mkldnn``).
        ir_optim (bool): graph optimisation passes (fc/bias/LayerNorm fusions).
        device (str): ``auto`` (the GPU when Paddle sees one, else CPU), ``cpu``, ``gpu`` or ``gpu:<id>``.
    """

    def __init__(self, model_dir, threads=None, use_mkldnn=False, ir_optim=True, device="auto"):
        import paddle.inference as pi

        with open(os.path.join(model_dir, EXPORT_META)) as f:
            self.meta = json.load(f)
        model_file, params_file = _model_files(model_dir)
        config = pi.Config(model_file, params_file)
        self.device = resolve_device(device)
        configure_device(config, self.device, threads, use_mkldnn)
        config.switch_ir_optim(ir_optim)
        config.disable_glog_info()
        self.config = config
        self.predictor = pi.create_predictor(config)
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()

    def run(self, inputs):
        """Args: dict of numpy arrays (missing type ids / visual mask default to 0 / 1). Returns ``{"logits": np}``."""
        inputs = dict(inputs)
        ids = np.asarray(inputs["input_ids"])
        visual = np.asarray(inputs["visual_embeds"])
        inputs.setdefault("token_type_ids", np.zeros_like(ids))
        inputs.setdefault("attention_mask", np.ones_like(ids))
        inputs.setdefault("visual_attention_mask", np.ones(visual.shape[:2], dtype=np.int64))
        inputs.setdefault("visual_token_type_ids", np.zeros(visual.shape[:2], dtype=np.int64))
        for name in self.input_names:
            value = np.ascontiguousarray(inputs[name], dtype=np.float32 if name == "visual_embeds" else np.int64)
            handle = self.predictor.get_input_handle(name)
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        self.predictor.run()
        # the run leaves this thread's OpenMP/MKL threads at 1: dygraph code after it would run on one core
        runtime.configure_paddle_threads()
        return {"logits": self.predictor.get_output_handle(self.output_names[0]).copy_to_cpu()}

    __call__ = run


__all__ = ["export_model", "export_onnx", "to_static_model", "Predictor", "OnnxPredictor", "FEED_NAMES", "EXPORTABLE", "resolve_device",
           "configure_device"]
