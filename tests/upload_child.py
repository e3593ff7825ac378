"""Child of tests/test_remote.py: save a model whose every weight is VALUE to URL (killed mid-upload by the test).

    python tests/upload_child.py URL VALUE MIB
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasafe as ks  # noqa: E402


def model_of(value: float, mib: int):
    width = int((mib * 2**20 / 4) ** 0.5)
    model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(width, use_bias=False)])
    model.layers[0].kernel.assign(np.full((width, width), value, dtype="float32"))
    return model


if __name__ == "__main__":
    url, value, mib = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    model = model_of(value, mib)
    print("saving", flush=True)
    ks.save(model, url)
    print("saved", flush=True)
