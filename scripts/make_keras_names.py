"""Write src/kerasafe/scanning/keras_names.py: the public class and function names of Keras 3 and tf.keras 2.

    KERAS_BACKEND=jax .venv/bin/python scripts/make_keras_names.py      # needs keras and tf_keras installed

`kerasafe scan` takes a config naming only these (Keras's own objects, rebuilt from their
arguments) as code-free; any other name is a custom object, whose code the file does not carry.
"""

from __future__ import annotations

import inspect
import pathlib

MODULES = ("layers", "optimizers", "losses", "metrics", "initializers", "regularizers", "constraints", "activations",
           "models", "optimizers.schedules", "mixed_precision", "layers.experimental", "layers.experimental.preprocessing")


def names(root) -> set[str]:
    out = set()
    for module in MODULES:
        obj = root
        for part in module.split("."):
            obj = getattr(obj, part, None)
        for name in dir(obj) if obj is not None else ():
            value = getattr(obj, name, None)
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value)):
                out.add(name)
    return out


def main() -> None:
    import keras
    import tf_keras

    found = names(keras) | names(tf_keras) | {"Sequential", "Functional", "Model", "InputLayer", "DTypePolicy", "FloatDTypePolicy",
                                            "QuantizedDTypePolicy", "Policy", "TFOpLambda", "SlicingOpLambda", "TensorShape"}
    target = pathlib.Path(__file__).parent.parent / "src" / "kerasafe" / "scanning" / "keras_names.py"
    lines = ['"""Public class and function names of Keras 3 and tf.keras 2 (written by scripts/make_keras_names.py)."""', "",
             f"# keras {keras.__version__}, tf_keras {tf_keras.__version__}", "KERAS_NAMES = frozenset({"]
    lines += [f"    {n!r}," for n in sorted(found)]
    lines += ["})", ""]
    target.write_text("\n".join(lines))
    print(f"{target}: {len(found)} names")


if __name__ == "__main__":
    main()
