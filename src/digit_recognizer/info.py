"""`digits info`: what this machine offers the tool (versions, CPU, threads, devices)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_fields(cpuinfo: str | None = None) -> dict[str, str]:
    """The first processor's fields in Linux's /proc/cpuinfo ("model name", "cpu family",
    "flags", ...); `cpuinfo`: that file's text, read when None. {} where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux
            return {}
    fields = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            fields.setdefault(key, value)
    return fields


def _cpu_model() -> str:
    return cpu_fields().get("model name") or platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    """Versions, CPU and the devices Keras (training, run directories) and onnxruntime
    (.onnx files) would use. A GPU that TensorFlow sees is used with no flag."""
    from . import __version__

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "digits": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable by this process)",
        "keras": _version("keras"),
        "tensorflow": _version("tensorflow-cpu") if _version("tensorflow") == "not installed"
        else _version("tensorflow"),
        "onnxruntime": _version("onnxruntime"),
        "ray": _version("ray"),
    }
    try:
        import onnxruntime

        info["onnx devices"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    try:
        from .backend import keras
    except Exception:  # noqa: BLE001 - the inference-only install has no Keras
        info["training"] = "needs `pip install 'digit-recognizer[train]'`"
        return info
    info["backend"] = keras.backend.backend()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        info["threads"] = (f"intra-op {intra or f'all {usable} cores'}, inter-op "
                           f"{inter or 'automatic'} (ensemble members and Ray tasks get "
                           "their share)")
        from .backend import native_bfloat16, onednn_state

        info["onednn"] = onednn_state() + (
            " (TF_ENABLE_ONEDNN_OPTS=0)" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0"
            else "")
        info["bfloat16"] = ("native: recipes with precision \"auto\" train in mixed bfloat16"
                            if native_bfloat16() else
                            "not native here: recipes with precision \"auto\" train in "
                            "float32")
        devices = tf.config.list_physical_devices()
        info["devices"] = ", ".join(d.name.removeprefix("/physical_device:") for d in devices)
        gpus = [d for d in devices if d.device_type == "GPU"]
        info["gpu"] = (", ".join(tf.config.experimental.get_device_details(g).get(
            "device_name", g.name) for g in gpus) + " (training uses it)" if gpus else
            "none found: training and inference run on the CPU")
    return info
