"""`kerasafe serve` against a server that calls ``model.predict`` per request (what MLflow's Keras flavor does).

    python benchmarks/serve_throughput.py [--requests 400] [--seconds 20] [--concurrency 1 8 32]

Two models: a digits-size MLP (8x8x1) and a 64x64 RGB CNN. For each, both servers run
as subprocesses on loopback ports, in the same run: kerasafe's (dynamic batching,
warmed batch sizes) and a baseline FastAPI app that decodes the same JSON and calls
``model.predict(x, verbose=0)`` for every request. A client with ``--concurrency``
threads (keep-alive connections) sends one image per request as a JSON array, at most
``--requests`` requests or ``--seconds`` per cell. Prints requests/s, p50 and p99
latency, and kerasafe's ratios at each concurrency. Client and servers share this
machine's cores, so absolute numbers are low; the ratios are the point.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

HERE = pathlib.Path(__file__).resolve()


def _baseline(model_path: str, port: int) -> None:
    """The baseline server: FastAPI, JSON in, ``model.predict`` per request."""
    import numpy as np
    import uvicorn
    from fastapi import FastAPI

    import kerasafe as ks

    import threading

    model = ks.load(model_path, compile=False)
    lock = threading.Lock()  # Keras's predict is not thread-safe; MLflow's scoring server runs one request at a time
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}

    @app.post("/predict")
    def predict(body: dict):
        x = np.asarray(body["instances"], dtype=np.float32)
        with lock:
            probabilities = model.predict(x, verbose=0)
        return {"predictions": [{"index": int(p.argmax()), "score": float(p.max())} for p in probabilities]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"a server did not start: {proc.communicate()[1][-2000:]}")


def _load(port: int, body: bytes, concurrency: int, requests: int, seconds: float) -> tuple[float, float, float]:
    import httpx
    import numpy as np

    url = f"http://127.0.0.1:{port}/predict"
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    counter = iter(range(requests))

    def worker():
        with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as client:
            for _ in counter:
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                response = client.post(url, content=body)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    raise SystemExit(f"port {port}: status {response.status_code}: {response.text[:200]}")

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return len(latencies) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _models(root: pathlib.Path) -> dict[str, tuple[pathlib.Path, tuple]]:
    import keras

    import kerasafe as ks
    from kerasafe.pipeline.data import image_preprocessing

    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                            keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    cnn = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
                            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    out = {}
    for name, model, size, color in (("digits MLP (8x8x1)", mlp, (8, 8), "grayscale"), ("64x64 CNN", cnn, (64, 64), "rgb")):
        path = root / f"{name.split()[0]}.keras"
        ks.save(model, path, labels=[str(i) for i in range(10)], preprocessing=image_preprocessing(size, color_mode=color))
        out[name] = (path, tuple(model.inputs[0].shape[1:]))
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        _baseline(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="at most this many requests per cell")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    import json

    import numpy as np

    root = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-serve-bench-"))
    for name, (path, shape) in _models(root).items():
        body = json.dumps({"instances": [np.random.default_rng(1).integers(0, 255, shape).tolist()]}).encode()
        ports = {"kerasafe": _free_port(), "model.predict": _free_port()}
        servers = {
            "kerasafe": _start([sys.executable, "-m", "kerasafe.cli", "serve", str(path), "--port", str(ports["kerasafe"]),
                                "--max-batch-size", "32", "--max-latency-ms", "2"], ports["kerasafe"]),
            "model.predict": _start([sys.executable, str(HERE), "--baseline", str(path), str(ports["model.predict"])],
                                    ports["model.predict"]),
        }
        try:
            print(f"{name}:")
            for c in args.concurrency:
                cells = {label: _load(ports[label], body, c, args.requests, args.seconds) for label in ("model.predict", "kerasafe")}
                (b_rps, b50, b99), (k_rps, k50, k99) = cells["model.predict"], cells["kerasafe"]
                print(f"  concurrency {c:>2}: kerasafe {k_rps:7.1f} req/s p50 {k50:6.1f} ms p99 {k99:7.1f} ms | "
                      f"model.predict {b_rps:7.1f} req/s p50 {b50:6.1f} ms p99 {b99:7.1f} ms | "
                      f"{k_rps / b_rps:.2f}x throughput, p99 {k99 / b99:.2f}x")
        finally:
            for proc in servers.values():
                proc.terminate()
                proc.wait(timeout=60)


if __name__ == "__main__":
    main()
