"""Keras, imported once, with TensorFlow's C++ start-up lines kept off the user's terminal.

    from .backend import keras    # inside the functions that need it: seconds of import

TensorFlow 2.21 writes its start-up notes (`WARNING: All log messages before
absl::InitializeLog() ...`, `I0000 ... oneDNN custom operations are on`, the CPU-feature note)
from C++ straight to file descriptor 2, before absl's logging exists, so TF_CPP_MIN_LOG_LEVEL
cannot filter them; it only filters what comes later. So file descriptor 2 is pointed at a
temporary file for the duration of the import, and afterwards everything it caught is written
to the real stderr except those informational lines: an error (`E...`/`F...` lines, Python
warnings, a failing import's message) stays visible.

TensorFlow's Python logger is set to show errors only (its retracing notes are by design here).

DIGITS_DEBUG=1 (set by `digits --debug`) imports without any filtering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

from .tf_env import set_tensorflow_defaults

set_tensorflow_defaults()  # before TensorFlow's first import (below)

# Lines TensorFlow's C++ start-up writes that carry nothing for a user: absl's pre-init notice,
# INFO (I) and WARNING (W) records ("I0000 00:00:1795571940.607650    3115 port.cc:153] ..."),
# and the continuation
# line of the CPU-feature note.
START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: .* rebuild TensorFlow)")


def filter_start_up_lines(text: str) -> str:
    """`text` without TensorFlow's start-up INFO/WARNING lines (kept: everything else)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not START_UP_NOISE.match(line))


def _import_keras():
    try:
        return _import_keras_quietly()
    except ModuleNotFoundError as e:  # the base install (inference from .onnx) has no Keras
        from .errors import InputError

        raise InputError(e.name or "keras", "is not installed: training and run directories "
                         "need `pip install 'digit-recognizer[train]'` (a model exported with "
                         "`digits export` runs without it)") from e


@contextlib.contextmanager
def stderr_filtered(keep=filter_start_up_lines):
    """Point file descriptor 2 (where C++ libraries log, beyond Python's reach) at a temporary
    file for the block, then write `keep(what was caught)` to the real stderr. DIGITS_DEBUG=1:
    no filtering."""
    if os.environ.get("DIGITS_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = keep(caught.read().decode("utf-8", "replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _import_keras_quietly():
    if "keras" in sys.modules:
        import keras
        return keras
    with stderr_filtered():
        import keras
    # TensorFlow's Python logger warns when tf.functions retrace ("5 out of the last 5 calls
    # ... triggered tf.function retracing"), which every command that runs several models
    # (an ensemble's members, their feature nets, the export's checks) does by design: one
    # predict function per model. Its errors still show; --debug shows everything.
    if os.environ.get("DIGITS_DEBUG") != "1":
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return keras


keras = _import_keras()


def onednn_state() -> str | None:
    """"on" or "off": whether TensorFlow runs its oneDNN kernels (None: another backend)."""
    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own answer

    return "on" if _pywrap_util_port.IsMklEnabled() else "off"


# oneDNN's names for instruction sets below AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA caps oneDNN at
# one): capped there, a bfloat16-capable CPU emulates bfloat16. Measured on a Zen 4 capped at
# AVX512_CORE_VNNI (2026-12-03, bench/README.md): `best`'s step 107 ms in float32, 201 ms in
# mixed bfloat16.
ISAS_WITHOUT_BFLOAT16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2",
                                   "AVX512_CORE", "AVX512_CORE_VNNI"})


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this machine computes bfloat16 natively: TensorFlow running oneDNN's kernels on
    a CPU with bfloat16 instructions (AVX512_BF16 or AMX, as Linux's /proc/cpuinfo lists its
    flags; Zen 4, Zen 5, recent Xeons) that oneDNN is not capped below (ONEDNN_MAX_CPU_ISA).
    Elsewhere bfloat16 is emulated: twice as slow where measured (ISAS_WITHOUT_BFLOAT16).
    False where TensorFlow sees a GPU: training runs there, and was only measured on CPUs.
    `cpuinfo`: that file's text (tests), read when None."""
    if onednn_state() != "on":
        return False
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_BFLOAT16:
        return False  # oneDNN told not to use the instructions the CPU has
    from .info import cpu_fields  # not Linux: no flags, no way to ask worth a dependency

    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_fields(cpuinfo).get("flags", "").split()))


def limit_threads(threads: int) -> None:
    """Size the backend's thread pools to `threads` (a process sharing the machine with other
    members or trials, or a Ray task given `num_cpus`: the backend ignores such allotments
    unless told). Call before the first computation."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
