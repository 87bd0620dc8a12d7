"""Load check for `digits serve`: N concurrent clients for a few seconds, on loopback only.

    .venv/bin/python bench/load.py RUN [--clients 8] [--seconds 5]

Starts the server on 127.0.0.1 (a free port), sends POST /predict with a drawn PNG (half of the
clients) or JSON pixels (the other half), and prints requests/s, p50/p99 latency and errors.
The request loop is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import httpx
    from PIL import Image

    from digit_recognizer.demo import load_embedded_mnist

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen([sys.executable, "-m", "digit_recognizer.cli", "serve",
                               str(args.run_dir), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise SystemExit("server did not start")

        digits = load_embedded_mnist()["test_pixels"][:64]
        pngs = []
        for d in digits:
            buf = io.BytesIO()
            Image.fromarray(255 - np.kron(d, np.ones((10, 10), np.uint8))).save(buf, "PNG")
            pngs.append(buf.getvalue())
        latencies, errors, lock = [], [], threading.Lock()
        stop_at = time.time() + args.seconds

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                i = 0
                while time.time() < stop_at:
                    t = time.perf_counter()
                    if k % 2:
                        r = http.post("/predict", content=pngs[i % 64],
                                      headers={"Content-Type": "image/png"})
                    else:
                        r = http.post("/predict", json={"pixels": digits[i % 64].ravel().tolist()})
                    dt = time.perf_counter() - t
                    with lock:
                        (latencies if r.status_code == 200 else errors).append(dt)
                    i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        ms = np.array(latencies) * 1000
        print(json.dumps({
            "clients": args.clients, "seconds": round(wall, 2), "requests": len(latencies),
            "errors": len(errors), "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
