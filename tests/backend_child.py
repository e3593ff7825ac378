"""Child process for cross-backend tests: write the zoo with this backend, or read another's.

    python backend_child.py write DIR      -> DIR/<backend>/... files + expected.npz
    python backend_child.py read DIR/<w>...  -> prints one JSON line per folder {file: max |diff|}
"""

import json
import pathlib
import sys
import warnings

import keras
import numpy as np

import kerasafe as ks
import zoo

warnings.simplefilter("ignore")
WHOLE = ["m.keras", "m.h5", "m.weights.h5", "m.safetensors"]


def write(root: pathlib.Path):
    out = root / keras.backend.backend()
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name in sorted(zoo.BUILDERS):
        model = zoo.trained(name)
        for target in WHOLE:
            ks.save(model, out / f"{name}.{target}", labels=None if name == "multi_io" else ["a", "b", "c"])
        ks.save(model, out / f"{name}.arch.json")
        ks.save_weights(model, out / f"{name}.w.h5")
        expected[name] = zoo.predict(model, zoo.inputs(name, seed=21))
    np.savez(out / "expected.npz", **expected)


def read(folder: pathlib.Path):
    expected = np.load(folder / "expected.npz")
    diffs = {}
    for name in sorted(zoo.BUILDERS):
        x = zoo.inputs(name, seed=21)
        for target in WHOLE + ["arch.json+w.h5"]:
            if target == "arch.json+w.h5":
                model = ks.load(folder / f"{name}.arch.json", weights=folder / f"{name}.w.h5")
            else:
                model = ks.load(folder / f"{name}.{target}")
            diffs[f"{name}.{target}"] = float(np.max(np.abs(zoo.predict(model, x) - expected[name])))
    print(json.dumps({"backend": keras.backend.backend(), "writer": folder.name, "diffs": diffs}), flush=True)


if __name__ == "__main__":
    for folder in sys.argv[2:]:  # one process per backend, every folder it is given (a backend's import is the slow part)
        {"write": write, "read": read}[sys.argv[1]](pathlib.Path(folder))
