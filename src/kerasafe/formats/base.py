"""The small interface every on-disk format implements, and what they share.

A format says whether it recognises a path (from its content), and knows how
to write and read a model, its weights or its architecture. ``inspect`` and
``verify`` must work without importing Keras or any framework.
"""

from __future__ import annotations

import contextlib

import pathlib
from typing import ClassVar

from .. import errors

# What a format can hold, in the user's words.
MODEL = "model"  # architecture + weights (+ optimizer)
WEIGHTS = "weights"  # weights only, unless kerasafe also stored the architecture
ARCHITECTURE = "architecture"  # config only, no weights


class Format:
    """One on-disk format. Subclasses set the class attributes and override what they support."""

    name: ClassVar[str]
    description: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    holds: ClassVar[str] = MODEL
    is_directory: ClassVar[bool] = False

    def recognise(self, path: pathlib.Path, head: bytes) -> bool:
        """True when the content at ``path`` (first bytes in ``head``) is this format."""
        raise NotImplementedError

    def write(self, model, target: pathlib.Path, manifest: dict, *, include_optimizer: bool) -> None:
        """Write the whole model to ``target`` (a temporary name the caller commits)."""
        raise self._cannot("write a whole model", target, "use ks.save_weights, or another format")

    def write_weights(self, model, target: pathlib.Path, manifest: dict) -> None:
        raise self._cannot("write weights only", target, "use ks.save, or a weights format")

    def read(self, path: pathlib.Path, *, compile: bool, safe_mode: bool, custom_objects) -> tuple[object, dict | None]:
        """Return ``(model, manifest or None)``."""
        raise self._cannot("read a whole model", path, "pass the architecture: ks.load('arch.json', weights=path)")

    def read_weights(self, model, path: pathlib.Path, *, by_name: bool, skip_mismatch: bool) -> dict | None:
        """Load weights into ``model``; return the file's manifest or None."""
        raise self._cannot("read weights", path, "pass a file that holds weights")

    def inspect(self, path: pathlib.Path) -> dict:
        """A summary dict (see kerasafe.inspection) read without any framework."""
        raise NotImplementedError

    def verify(self, path: pathlib.Path) -> dict[str, str]:
        """``{member: "ok" | "mismatch" | "missing"}`` for every recorded hash."""
        return {}

    def _cannot(self, what: str, path, advice: str) -> errors.KerasafeError:
        return errors.UnsupportedOperationError(path, f"a format that can {what}", f"{self.description}", advice)


def summary(path, fmt: Format, **fields) -> dict:
    """The common shape of an ``inspect`` result; formats fill what they know."""
    base = {
        "path": str(path),
        "format": fmt.name,
        "format_description": fmt.description,
        "holds": fmt.holds,
        "keras_version": None,
        "backend": None,
        "created": None,
        "layers": [],
        "total_params": None,
        "weights_bytes": None,
        "dtypes": {},
        "labels": None,
        "preprocessing": None,
        "metadata": None,
        "optimizer": None,
        "has_architecture": False,
        "written_by_kerasafe": False,
        "hashes": {"recorded": 0, "checked": False, "ok": None, "members": {}},
    }
    base.update(fields)
    return base


def apply_manifest(result: dict, manifest: dict | None) -> dict:
    """Fill an inspect summary from a kerasafe manifest (its facts win over guesses)."""
    if not manifest:
        return result
    result["written_by_kerasafe"] = True
    for key in ("keras_version", "backend", "created", "labels", "preprocessing", "metadata", "optimizer", "dtypes", "weights_bytes"):
        if manifest.get(key) is not None:
            result[key] = manifest[key]
    if manifest.get("layers"):
        result["layers"] = manifest["layers"]
    if manifest.get("params"):
        result["total_params"] = manifest["params"].get("total")
    progress = manifest.get("checkpoint")
    if isinstance(progress, dict):  # a checkpoint's model: where training stood
        result["checkpoint"] = {k: progress.get(k) for k in ("step", "epoch", "batch", "monitor", "value")}
    result["hashes"]["recorded"] = len(manifest.get("hashes") or {})
    return result


def _layer_configs(value):
    """Every ``{"class_name": ..., "config": {...}}`` object in a model config, nested ones included."""
    if isinstance(value, dict):
        if "class_name" in value and isinstance(value.get("config"), dict):
            yield value["class_name"], value["config"]
        for item in value.values():
            yield from _layer_configs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _layer_configs(item)


def carries_bytecode(class_name, cfg: dict) -> bool:
    """Whether a layer config is a Lambda holding Python bytecode (Keras 2's list form or Keras 3's ``__lambda__``)."""
    function = cfg.get("function")
    return class_name == "Lambda" and (isinstance(function, list) or cfg.get("function_type") == "lambda" or (
        isinstance(function, dict) and function.get("class_name") == "__lambda__"))


def refuse_reason(config) -> str | None:
    """What in a model config would run code stored in the file (Lambda bytecode), or None."""
    for class_name, cfg in _layer_configs(config):
        if carries_bytecode(class_name, cfg):
            return f"Lambda layer '{cfg.get('name', '?')}' carrying Python bytecode"
    return None


# Arguments that size a layer's variables or inputs. Past these a config is not a model but a
# request for terabytes (a float32 weight of 2**31 x 2**31 is 16 EiB).
SIZE_ARGUMENTS = ("units", "filters", "input_dim", "output_dim", "batch_input_shape", "batch_shape", "target_shape",
                  "kernel_size", "num_heads", "key_dim")
MAX_DIMENSION = 2**31
MAX_LAYER_ELEMENTS = 2**36  # 256 GiB of float32 in one layer


def _absurd_size(config) -> str | None:
    """The first layer whose sizes no model has (a dimension past 2**31, or 2**36 elements), or None."""
    for _, cfg in _layer_configs(config):
        elements = 1
        for key in SIZE_ARGUMENTS:
            dims = cfg.get(key) if isinstance(cfg.get(key), list) else [cfg.get(key)]
            for d in dims:
                if not isinstance(d, int) or isinstance(d, bool):
                    continue
                if d > MAX_DIMENSION or d < -1:
                    return f"layer '{cfg.get('name', '?')}' with {key}={cfg.get(key)!r}"
                if key in ("units", "filters", "input_dim", "output_dim") and d > 0:
                    elements *= d
        if elements > MAX_LAYER_ELEMENTS:
            return f"layer '{cfg.get('name', '?')}' whose sizes multiply to {elements:,} elements"
    return None


def refuse_code(config, path, safe_mode: bool) -> None:
    """In safe mode, refuse a model config that would run code stored in the file (Lambda bytecode)
    or allocate absurd amounts of memory (sizes no model has)."""
    if not safe_mode:
        return
    found = refuse_reason(config)
    if found:
        raise errors.UnsafeContentError(
            path, "a model whose loading runs no code from the file", found,
            "if you trust this file, load it with safe_mode=False",
        )
    size = _absurd_size(config)
    if size:
        raise errors.UnsafeContentError(
            path, "layer sizes a model can have", size + " (building it would try to allocate that)",
            "if you trust this file and have the memory, load it with safe_mode=False",
        )


def keras_failure(path, exc: Exception, expected: str) -> errors.KerasafeError:
    """Turn an exception from inside Keras's readers into the kerasafe error it means."""
    import zipfile

    text = str(exc).strip().split("\n")[0][:240]
    if isinstance(exc, zipfile.BadZipFile | EOFError | OSError):
        return errors.CorruptFileError(path, expected, f"damaged data ({text})", "the file is corrupt; restore it or save the model again")
    if "safe_mode" in str(exc):
        return errors.UnsafeContentError(
            path, "a model whose loading runs no code from the file", f"code in the file ({text})",
            "if you trust this file, load it with safe_mode=False",
        )
    if isinstance(exc, TypeError) or "Could not locate" in text or "Unknown" in text:
        return errors.CorruptFileError(
            path, expected, f"a class Keras cannot find ({text})", "import or register the custom layer, or pass custom_objects"
        )
    return errors.CorruptFileError(path, expected, text, "save the model again from the code that built it")


def _stored_architecture(manifest: dict | None, path) -> dict:
    arch = (manifest or {}).get("architecture")
    if not isinstance(arch, dict):
        raise errors.UnsupportedOperationError(
            path,
            "a file that holds the model's architecture",
            "weights only, with no architecture stored",
            f"pass one: ks.load('arch.json', weights='{path}'), or ks.load_weights(model, '{path}')",
        )
    return arch


def model_from_stored_architecture(manifest: dict | None, path, *, compile: bool, safe_mode: bool, custom_objects):
    """Build the model that a weights file's manifest describes (kerasafe stores it there).

    Weights formats written by kerasafe carry the Keras 3 config in the manifest's
    ``architecture`` key, so one file holds a whole model. Files written by others
    do not, and the caller must pass the architecture.
    """
    from .. import _keras

    arch = _stored_architecture(manifest, path)
    try:
        return _keras.model_from_config(arch, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    except (TypeError, ValueError) as exc:
        raise keras_failure(path, exc, "an architecture Keras can rebuild") from None


@contextlib.contextmanager
def stored_model_to_fill(manifest: dict | None, path, *, compile: bool, safe_mode: bool, custom_objects):
    """:func:`model_from_stored_architecture`, its variables left empty for the file's weights to fill.

    The variables get no initial values (``_keras_direct.variables_filled_by_loading``;
    all backends, not under a tf.distribute strategy): the caller assigns every weight
    inside the ``with``; what it leaves unassigned is initialized on the way out.
    """
    from .. import _keras_direct

    arch = _stored_architecture(manifest, path)
    with _keras_direct.variables_filled_by_loading() as built:
        try:
            model = _keras_direct.model_from_config_dict(arch, custom_objects, compile, safe_mode, built)
        except (TypeError, ValueError) as exc:
            raise keras_failure(path, exc, "an architecture Keras can rebuild") from None
        yield model
