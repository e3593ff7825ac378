"""Child process for the kill tests: save a large model over TARGET again and again until killed.

    python kill_child.py TARGET    -> prints "ready", then "saved N" after each save
"""

import sys

import keras

import kerasafe as ks


def build():
    """The ~100 MB model every save writes (tests/test_atomic.py writes its first version in-process)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1024,))] + [keras.layers.Dense(1024) for _ in range(24)])


if __name__ == "__main__":
    target = sys.argv[1]
    model = build()
    print("ready", flush=True)
    round_ = 1
    while True:
        for w in model.weights:
            w.assign(w + 1.0)
        ks.save(model, target, metadata={"round": round_})
        print("saved", round_, flush=True)
        round_ += 1
