"""Findings in a model config (any Keras era): what loading it would run, import or read besides the file.

A config that names only Keras's own classes and functions (KERAS_NAMES; ``module`` under
``keras``) is rebuilt from its arguments, running nothing from the file. Anything else is
a finding: Lambda bytecode, a custom class or function (code the file does not carry,
imported by name), a TorchModuleWrapper (a pickled module), a vocabulary or asset read
from a path, sizes no model has.

Example:
    >>> [f.rule for f in config_findings({"class_name": "Sequential", "config": {"layers": [
    ...     {"class_name": "MyLayer", "module": "mypackage.layers", "config": {"name": "x"}}]}})]
    ['KS102']
"""

from __future__ import annotations

from ..formats.base import carries_bytecode
from ..legacy.rules import table
from ..legacy.table_keras1 import CLASS_RENAMES
from .findings import Finding
from .keras_names import KERAS_NAMES

# Modules whose classes Keras deserializes as its own (kerasafe registers its stand-in layers under "kerasafe").
OWN_MODULES = ("keras", "tf_keras", "kerasafe")
# Config keys that name a file to read while building a layer.
PATH_KEYS = ("vocabulary", "idf_weights", "vocabulary_file", "path", "filepath", "file_path")
MAX_DEPTH = 200


def _own_module(module) -> bool:
    return not module or any(module == m or str(module).startswith(m + ".") for m in OWN_MODULES)


def _own_registered(registered) -> bool:
    return not registered or "." not in str(registered) and ">" not in str(registered) or str(registered).split(">")[0] in OWN_MODULES


# Keras's serializer writes values (not classes) under these names; "__lambda__" is judged as a Lambda.
VALUE_NAMES = frozenset({"__bytes__", "__ellipsis__", "__keras_tensor__", "__lambda__", "__numpy__", "__slice__", "__tensor__",
                         "__typespec__", "function"})
# TensorFlow's feature columns (tf.keras's DenseFeatures config names them): TensorFlow's own classes.
FEATURE_COLUMNS = frozenset({"BucketizedColumn", "CrossedColumn", "EmbeddingColumn", "HashedCategoricalColumn",
                             "IdentityCategoricalColumn", "IndicatorColumn", "NumericColumn", "SequenceCategoricalColumn",
                             "SequenceNumericColumn", "SharedEmbeddingColumn", "VocabularyFileCategoricalColumn",
                             "VocabularyListCategoricalColumn", "WeightedCategoricalColumn"})


def _known(class_name) -> bool:
    return class_name in KERAS_NAMES or class_name in table() or class_name in CLASS_RENAMES or class_name in VALUE_NAMES \
        or class_name in FEATURE_COLUMNS


def config_findings(config, where: str = "config") -> list[Finding]:
    """Every finding in ``config`` (nested layers, models, optimizers, losses, ... included), in document order."""
    out: list[Finding] = []
    stack = [(config, where, 0)]
    while stack:
        value, location, depth = stack.pop()
        if depth > MAX_DEPTH:
            out.append(Finding("KS302", location, f"values nested more than {MAX_DEPTH} deep"))
            break
        if isinstance(value, list):
            stack.extend((v, f"{location}[{i}]", depth + 1) for i, v in reversed(list(enumerate(value))))
            continue
        if not isinstance(value, dict):
            continue
        out.extend(_object_findings(value, location))
        stack.extend((v, f"{location}.{k}", depth + 1) for k, v in reversed(list(value.items())))
    return out


def _object_findings(value: dict, location: str) -> list[Finding]:
    class_name = value.get("class_name")
    cfg = value.get("config") if isinstance(value.get("config"), dict) else {}
    name = f"'{cfg.get('name')}' " if cfg.get("name") else ""
    out = []
    if carries_bytecode(class_name, cfg):
        out.append(Finding("KS101", location, f"Lambda layer {name}carrying Python bytecode", trust="Lambda"))
    elif class_name == "TorchModuleWrapper":
        out.append(Finding("KS103", location, f"TorchModuleWrapper {name}(a pickled PyTorch module)", trust="TorchModuleWrapper"))
    elif isinstance(class_name, str) and ("module" in value or "registered_name" in value or "config" in value):
        module, registered = value.get("module"), value.get("registered_name")
        if not _own_module(module) or not _own_registered(registered) or (not module and not _known(class_name)):
            qualified = str(registered) if registered and not _own_registered(registered) else f"{module}.{class_name}" if module else class_name
            out.append(Finding("KS102", location, f"custom object {qualified} {name}(its code is not in the file: imported by name)",
                               trust=qualified))
    for key in PATH_KEYS:
        text = cfg.get(key)
        if isinstance(text, str) and text and ("/" in text or "\\" in text or text.endswith((".txt", ".csv", ".json", ".npy"))):
            out.append(Finding("KS201", f"{location}.config.{key}", f"layer {name}reads {text!r} from outside the file"))
    return out
