"""Peak memory of one ``ks.load``, above the loaded model: ``python load_memory_child.py PATH``.

Prints JSON ``{"above": bytes, "model": bytes}``: peak RSS during the load (VmHWM, reset
just before it) minus the RSS after it, when the model is in memory. A load that held
a second copy of a weight, or initialized the variables before reading the file, shows
here as a large fraction of the model. Used by tests/test_fast_paths.py (JAX).
"""

from __future__ import annotations

import json
import pathlib
import sys

import keras
import numpy as np

import kerasafe as ks


def status(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main(path: str) -> None:
    # Imports and first-call costs happen in a small load first, so they are not counted.
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d0")])
    warm = pathlib.Path(path).with_name("warm" + pathlib.Path(path).name)
    ks.save(small, warm)
    ks.load(warm)
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    model = ks.load(path)
    for w in model.weights:
        np.asarray(w)
    print(json.dumps({"above": status("VmHWM") - status("VmRSS"), "model": sum(int(np.prod(w.shape)) * 4 for w in model.weights)}))


if __name__ == "__main__":
    main(sys.argv[1])
