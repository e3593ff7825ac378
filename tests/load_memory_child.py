"""Peak memory of one load, above the model: ``python load_memory_child.py PATH [load|into|save URL]``.

Prints JSON ``{"above": bytes, "model": bytes}``. ``load``: peak RSS during ``ks.load``
(VmHWM, reset just before it) minus the RSS after it, when the model is in memory. A
load that held a second copy of a weight, or initialized the variables before reading
the file, shows here as a large fraction of the model. ``into``: ``ks.load_weights``
into a model already holding initialized weights, peak minus the RSS just before (the model in
memory, the C heap trimmed); replaced arrays the allocator kept would show here.
``save URL``: the model at PATH saved to ``URL`` (an object store), peak minus the RSS just
before; a save that held the whole file in memory on its way to the store would show here.
PATH may be a URL for ``load``: then ``download`` is also printed, the peak above the RSS
before while the object is copied from the store to a local file (before the model exists, so
that ``above`` alone would not show a download holding it whole).
Used by tests/test_fast_paths.py and tests/test_remote.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
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


def resident(model) -> int:
    for w in model.weights:  # JAX computes lazily; PyTorch's arrays exist (np.asarray would copy them)
        getattr(w.value, "block_until_ready", lambda: None)()
    return sum(int(np.prod(w.shape)) * 4 for w in model.weights)


def main(path: str, mode: str = "load", target: str = "") -> None:
    # Imports and first-call costs happen in a small load first, so they are not counted.
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d0")])
    folder, _, name = str(path).rpartition("/")
    warm = f"{folder}/warm{name}"
    ks.save(small, warm)
    ks.load(warm)
    if mode == "save":
        model = ks.load(path)
        model_bytes = resident(model)
        ks.save(small, target)  # the store's client and its first-call costs
        gc.collect()
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        before = status("VmRSS")
        ks.save(model, target)
        print(json.dumps({"above": status("VmHWM") - before, "model": model_bytes}))
        return
    if mode == "load":
        download = None
        if "://" in path:
            from kerasafe import remote

            pathlib.Path("/proc/self/clear_refs").write_text("5")
            before = status("VmRSS")
            with remote.downloaded(path):
                download = status("VmHWM") - before
        pathlib.Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        model_bytes = resident(ks.load(path))
        print(json.dumps({"above": status("VmHWM") - status("VmRSS"), "model": model_bytes, "download": download}))
        return
    model = keras.models.clone_model(ks.load(path))  # fresh weights, computed by the backend's initializers
    model_bytes = resident(model)
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    pathlib.Path("/proc/self/clear_refs").write_text("5")
    before = status("VmRSS")
    resident(ks.load_weights(model, path))
    print(json.dumps({"above": status("VmHWM") - before, "model": model_bytes}))


if __name__ == "__main__":
    main(*sys.argv[1:])
