"""One process of a ``keras.distribution`` run for the tests: JAX on CPU, virtual devices, gloo.

usage: python distributed_child.py JOB_JSON PROCESS COUNT PORT

The job (JSON) says: ``devices`` per process, ``layout`` ("dp", "mp" or null for no
distribution), ``action`` ("fit": ks.fit into ``dir`` for ``epochs``; "restore":
ks.restore(``dir``)), and ``out``: where process 0 writes every weight and optimizer
variable of the result (gathered from all processes) as .npz, with the
variables' shardings in ``out``.json.
"""

import json
import os
import sys

job = json.loads(sys.argv[1])
process, count, port = (int(a) for a in sys.argv[2:5])
os.environ["KERAS_BACKEND"] = job.get("backend", "jax")
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={job.get('devices', 1)}"

if os.environ["KERAS_BACKEND"] == "jax":
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if count > 1:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=count, process_id=process)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasafe as ks  # noqa: E402

keras.utils.set_random_seed(7)


def distribution(kind):
    if kind is None:
        return None
    devices = jax.devices()
    if kind == "dp":
        return keras.distribution.DataParallel(devices=devices)
    model_axis = job.get("model_axis", 2)
    mesh = keras.distribution.DeviceMesh((len(devices) // model_axis, model_axis), ["batch", "model"], devices)
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*embeddings"] = (None, "model")  # embeddings split along their features
    layout_map[".*dense.*kernel"] = (None, "model")  # Dense kernels split along their units
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def build():
    model = keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(50, 8),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(4, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 50, size=(256, 6)).astype("int32")
    return x, (x.sum(axis=1) % 4).astype("int32")


def whole(value):
    if os.environ["KERAS_BACKEND"] != "jax":
        return np.asarray(keras.ops.convert_to_numpy(value))
    if getattr(value, "is_fully_addressable", True):
        return np.asarray(value)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


dist = distribution(job.get("layout"))
if dist is not None:
    keras.distribution.set_distribution(dist)
if job["action"] == "fit":
    model = build()
    x, y = data()
    ks.fit(model, x, y, checkpoint_dir=job["dir"], epochs=job["epochs"], batch_size=job.get("batch_size", 32),
           save_freq=job.get("save_freq", "epoch"), seed=11, verbose=0)
elif job["action"] == "callback":  # model.fit with ks.Checkpoint as a plain Keras callback, each process its rows
    model = build()
    x, y = data()
    if count > 1:
        dist.auto_shard_dataset = False
    rows = len(x) // count
    try:
        model.fit(x[process * rows:(process + 1) * rows], y[process * rows:(process + 1) * rows], epochs=job["epochs"],
                  batch_size=job.get("batch_size", 32) // count, shuffle=False, verbose=0,
                  callbacks=[ks.Checkpoint(job["dir"], filename=job.get("filename"))])
    except ks.errors.KerasafeError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(3)
else:
    model = ks.restore(job["dir"])
    from kerasafe.formats import sharded

    if process == 0 or job.get("report_reads"):
        with open(job["out"] + f".read-{process}", "w") as f:
            f.write(str(sharded.fill.bytes_read))
variables = model.weights + model.optimizer.variables
values = [whole(v.value) for v in variables]
if process == 0 and job.get("out"):
    np.savez(job["out"], *values)
    specs = [str(getattr(getattr(v.value, "sharding", None), "spec", None)) for v in variables]
    with open(job["out"] + ".json", "w") as f:
        json.dump({"specs": specs, "paths": [v.path for v in variables]}, f)
print("done", process, flush=True)
