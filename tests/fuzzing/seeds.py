"""Valid files of every format kerasafe reads, the starting points of every mutation.

kerasafe's own (written by ``ks.save``: a small trained CNN with labels and
preprocessing) and tf.keras 2's (the committed legacy corpus, written by the real
tf_keras). Each seed has a kind (which mutators apply) and, for a weights file, the
architecture it joins (``ks.load(arch, weights=)``), or for an architecture, its weights.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

LEGACY = pathlib.Path(__file__).parent.parent / "fixtures" / "legacy" / "tf_keras_2"


@dataclasses.dataclass(frozen=True)
class Seed:
    name: str
    kind: str
    path: pathlib.Path
    architecture: pathlib.Path | None = None  # for a weights file
    weights: pathlib.Path | None = None  # for an architecture file


def build(root: pathlib.Path) -> list[Seed]:
    import keras
    import numpy as np

    import kerasafe as ks

    root.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, name="conv"), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax", name="out")], name="seed")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 6, 6, 1), "float32"), np.zeros(4, "int64"), verbose=0)
    extra = {"labels": ["a", "b", "c"], "preprocessing": {"kind": "image", "size": [6, 6], "color_mode": "grayscale"},
             "metadata": {"note": "fuzz seed"}}
    for suffix in (".keras", ".h5", ".weights.h5", ".safetensors", ".json", ".yaml"):
        ks.save(model, root / f"m{suffix}", **extra)
    legacy = root / "legacy"
    legacy.mkdir(exist_ok=True)
    for name in ("pima.h5", "pima-weights.h5", "pima.json", "pima.ckpt", "pima.savedmodel"):
        source = LEGACY / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, legacy / name)
    return [
        Seed("keras", "zip", root / "m.keras"),
        Seed("h5", "hdf5", root / "m.h5"),
        Seed("weights.h5", "hdf5", root / "m.weights.h5", architecture=root / "m.json"),
        Seed("safetensors", "safetensors", root / "m.safetensors", architecture=root / "m.json"),
        Seed("json", "json", root / "m.json", weights=root / "m.weights.h5"),
        Seed("yaml", "yaml", root / "m.yaml", weights=root / "m.weights.h5"),
        Seed("tf.keras h5", "hdf5", legacy / "pima.h5"),
        Seed("keras2 weights", "hdf5", legacy / "pima-weights.h5", architecture=legacy / "pima.json"),
        Seed("tf.keras json", "json", legacy / "pima.json", weights=legacy / "pima-weights.h5"),
        Seed("tf checkpoint", "tf-checkpoint", legacy / "pima.ckpt" / "pima", architecture=legacy / "pima.json"),
        Seed("savedmodel", "savedmodel", legacy / "pima.savedmodel"),
    ]
