"""Which hash kerasafe records for every member: throughput of the candidates, in one run.

    python benchmarks/hash_choice.py [--mib 512]

Prints GiB/s for xxh3-128 (kerasafe's choice), blake3 (if installed: pip install blake3),
sha256, and a plain memory copy of the same bytes as the ceiling, with ratios to the copy.
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import xxhash


def _rate(fn, data: bytes, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t)
    return len(data) / best / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    args = parser.parse_args()
    data = np.random.default_rng(0).bytes(args.mib << 20)
    candidates = {
        "memory copy": lambda b: bytearray(b),
        "xxh3_128": lambda b: xxhash.xxh3_128(b).digest(),
        "sha256": lambda b: hashlib.sha256(b).digest(),
    }
    try:
        import blake3

        candidates["blake3 (1 thread)"] = lambda b: blake3.blake3(b).digest()
        candidates["blake3 (all threads)"] = lambda b: blake3.blake3(b, max_threads=blake3.blake3.AUTO).digest()
    except ImportError:
        print("blake3 not installed: pip install blake3 to compare it")
    rates = {name: _rate(fn, data) for name, fn in candidates.items()}
    ceiling = rates["memory copy"]
    print(f"{'hash':<22}{'GiB/s':>8}{'x copy':>9}")
    for name, rate in rates.items():
        print(f"{name:<22}{rate:>8.2f}{rate / ceiling:>9.2f}")


if __name__ == "__main__":
    main()
