"""TensorFlow's environment settings, which count only if set before its first import. This
module imports nothing heavy, so whatever may import TensorFlow first (backend.py, the test
suite's conftest.py) applies the same defaults by calling `set_tensorflow_defaults()`."""

from __future__ import annotations

import os


def set_tensorflow_defaults() -> None:
    """Our defaults for TensorFlow's environment variables; a value the user set is kept."""
    # TensorFlow's C++ INFO/WARNING lines after start-up stay off the terminal (the start-up
    # lines themselves are filtered by backend.stderr_filtered).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow turns its oneDNN kernels on by itself only on x86 CPUs with "neural-network
    # features" (its 2.9 release notes: AVX512_VNNI, AVX512_BF16, AMX...; on the Zen 4 and Xeon
    # machines of bench/README.md, not on a Zen 3); elsewhere it runs Eigen's.
    # On a 2-core Zen 3 without it, oneDNN trained our recipes 1.2-1.75x and predicted
    # 1.9-2.5x faster (bench/README.md, "TensorFlow's oneDNN kernels on a CPU where TensorFlow
    # leaves them off"). TF_ENABLE_ONEDNN_OPTS=0 still turns them off.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
