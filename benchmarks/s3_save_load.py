"""ks.save / ks.load of a model on S3 against s3fs copying the same bytes, on moto's S3 server on 127.0.0.1.

    python benchmarks/s3_save_load.py [--mib 256] [--rounds 3]

Starts moto's server mode on a free loopback port (as the tests do), then, interleaved
``--rounds`` times (best kept): ``ks.save(model, "s3://bench/m.keras")``,
``ks.load(...)``, and s3fs's own ``put_file``/``get_file`` of a local file of the same
size (the anchor: what moving those bytes costs). Prints seconds and ratios. kerasafe
stages through a local file (one extra local write and read); the ratio says what
that costs against the network copy. Needs the ``s3`` and ``test`` extras.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasafe as ks  # noqa: E402


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)
            return server, endpoint
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("moto's S3 server did not start")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server, endpoint = _moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("bench")
        width = int((args.mib * 2**20 / 4) ** 0.5)
        model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(width, use_bias=False)])
        nbytes = sum(np.asarray(w).nbytes for w in model.weights)
        scratch = pathlib.Path(tempfile.mkdtemp(prefix="kerasafe-bench-"))
        raw = scratch / "raw.bin"
        raw.write_bytes(os.urandom(nbytes))
        times: dict[str, list[float]] = {k: [] for k in ("s3fs put_file", "ks.save", "s3fs get_file", "ks.load")}
        for _ in range(args.rounds):
            times["s3fs put_file"].append(_timed(lambda: fs.put_file(str(raw), "bench/raw.bin")))
            times["ks.save"].append(_timed(lambda: ks.save(model, "s3://bench/m.keras", include_optimizer=False)))
            times["s3fs get_file"].append(_timed(lambda: fs.get_file("bench/raw.bin", str(scratch / "back.bin"))))
            times["ks.load"].append(_timed(lambda: ks.load("s3://bench/m.keras", compile=False)))
        best = {k: min(v) for k, v in times.items()}
        mib = nbytes / 2**20
        print(f"model {mib:.0f} MiB; moto S3 server on 127.0.0.1; best of {args.rounds} interleaved rounds")
        print(f"{'run':<16}{'s':>8}{'MiB/s':>9}{'x s3fs':>9}")
        for name, seconds in best.items():
            anchor = best["s3fs put_file" if "save" in name or "put" in name else "s3fs get_file"]
            print(f"{name:<16}{seconds:>8.2f}{mib / seconds:>9.0f}{seconds / anchor:>9.2f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
