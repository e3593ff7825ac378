"""Child process for the kill tests: save a large model over TARGET again and again until killed."""

import sys

import keras

import kerasafe as ks

target, fmt = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((1024,))] + [keras.layers.Dense(1024) for _ in range(24)])  # ~100 MB
if fmt == "first":
    ks.save(model, target, metadata={"round": 0})
    print("saved", flush=True)
    sys.exit(0)
print("ready", flush=True)
round_ = 1
while True:
    for w in model.weights:
        w.assign(w + 1.0)
    ks.save(model, target, metadata={"round": round_})
    print("saved", round_, flush=True)
    round_ += 1
