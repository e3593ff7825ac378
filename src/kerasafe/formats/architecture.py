"""``.json`` and ``.yaml``/``.yml``: a model's architecture (Keras 3 schema), manifest alongside.

The file is Keras's own serialized model (what ``model.to_json()`` gives) with
one more top-level key, ``kerasafe``, holding the manifest; Keras's
``model_from_json`` ignores it. YAML is the same object in YAML. YAML is read
with a safe loader: ``!!python/tuple`` (which Keras 2 wrote) becomes a list,
and every other ``python/`` tag is refused, so reading never runs code.
"""

from __future__ import annotations

import json

import yaml

from .. import _keras, errors, legacy
from .. import manifest as manifest_mod
from . import guard
from .base import ARCHITECTURE, Format, apply_manifest, keras_failure, refuse_code, summary

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# The most nodes a YAML document may expand to through its aliases (a config of 10,000 layers
# has a few hundred thousand): an alias of an alias of ... (billion laughs) is refused before
# anything is built from it.
YAML_NODES = 2_000_000


def _check_expansion(root) -> None:
    """Refuse a YAML node graph whose aliases expand past YAML_NODES nodes, or refer to themselves."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = node.value if isinstance(node, yaml.SequenceNode) else \
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
        if done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > YAML_NODES:
                raise yaml.composer.ComposerError(None, None, f"aliases that expand past {YAML_NODES:,} values", node.start_mark)
            continue
        if id(node) in sizes:
            continue
        if id(node) in on_path:
            raise yaml.composer.ComposerError(None, None, "an alias that contains itself", node.start_mark)
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


class _ArchitectureLoader(_BaseLoader):
    """SafeLoader plus the one python tag old Keras wrote: a tuple, read as a list; aliases bounded."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


_ArchitectureLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node)
)


def _dtype_name(loader, node):
    """A TensorFlow dtype that Keras 2's to_yaml wrote as an object (``as_dtype`` applied to its name): the name.

    Read as data; nothing is imported or called.
    """
    args = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else []
    if len(args) != 1 or not isinstance(args[0], str):
        raise yaml.constructor.ConstructorError(None, None, "a TensorFlow dtype with arguments other than its name", node.start_mark)
    return args[0]


_ArchitectureLoader.add_constructor("tag:yaml.org,2002:python/object/apply:tensorflow.python.framework.dtypes.as_dtype", _dtype_name)


def _numpy_dtype(loader, node):
    """A NumPy dtype as yaml.dump writes one (``numpy.dtype`` applied to a code such as "f8"), numeric kinds only."""
    import numpy as np

    fields = loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode) else {"args": loader.construct_sequence(node)}
    args, state = fields.get("args") or [], fields.get("state") or []
    try:
        dtype = np.dtype(str(args[0]))
        if len(state) > 1 and state[1] in ("<", ">"):
            dtype = dtype.newbyteorder(state[1])
    except (IndexError, TypeError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise yaml.constructor.ConstructorError(None, None, "a NumPy dtype other than a number's", node.start_mark)
    return dtype


def _numpy_scalar(loader, node):
    """A NumPy number that Keras 2's to_yaml wrote as an object (its dtype and raw bytes): the Python number."""
    import numpy as np

    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else []
    if len(args) != 2 or not isinstance(args[0], np.dtype) or not isinstance(args[1], bytes) or len(args[1]) != args[0].itemsize:
        raise yaml.constructor.ConstructorError(None, None, "a NumPy scalar that is not one number", node.start_mark)
    return np.frombuffer(args[1], dtype=args[0])[0].item()


# Keras 2's to_yaml was yaml.dump of the config: TensorFlow dtypes and NumPy numbers came out as
# python/object tags. These few are read as the data they hold; every other python/ tag is refused.
_ArchitectureLoader.add_constructor("tag:yaml.org,2002:python/object/apply:numpy.dtype", _numpy_dtype)
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ArchitectureLoader.add_constructor(f"tag:yaml.org,2002:python/object/apply:{_module}.scalar", _numpy_scalar)


def parse_yaml(text: str, path=None) -> object:
    try:
        return yaml.load(text, Loader=_ArchitectureLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        tag = getattr(exc, "problem", "") or str(exc)
        raise errors.UnsafeContentError(
            path, "plain YAML data", f"a tag that would build Python objects ({tag.strip()})",
            "kerasafe never runs code from YAML; remove the tag, or convert the file from a trusted copy",
        ) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise errors.CorruptFileError(path, "YAML text", f"unusable YAML ({' '.join(str(problem).split())[:160]})",
                                      "fix or regenerate the file") from None
    except RecursionError:
        raise errors.CorruptFileError(path, "YAML text", "values nested deeper than any model needs", "fix or regenerate the file") from None


def parse_json(text: str, path=None) -> object:
    return guard.json_value(text, path, "the architecture file", kind=(dict, list))


def split_manifest(config, path=None) -> tuple[dict, dict | None]:
    """Separate kerasafe's manifest from the Keras config; check the config's shape."""
    if not isinstance(config, dict) or "class_name" not in config:
        found = type(config).__name__ if not isinstance(config, dict) else f"keys {sorted(config)[:5]}"
        raise errors.CorruptFileError(path, "a Keras model config with 'class_name'", found, "pass a file written by to_json/to_yaml")
    config = dict(config)
    manifest = config.pop(manifest_mod.MANIFEST_KEY, None)
    return config, manifest_mod.checked(manifest, path) if isinstance(manifest, dict) else None


def model_from_config(config, path=None, *, custom_objects=None, compile=True, safe_mode=True):
    config, manifest = split_manifest(config, path)
    if manifest is None and legacy.is_legacy_config(config):
        return legacy.build_model(config, path, custom_objects=custom_objects, safe_mode=safe_mode), None
    refuse_code(config, path, safe_mode)
    try:
        model = _keras.model_from_config(config, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    except (TypeError, ValueError, KeyError) as exc:
        raise keras_failure(path, exc, "an architecture Keras 3 can rebuild") from None
    return model, manifest


def serialize(model, manifest: dict | None = None) -> dict:
    config = _keras.serialize_model(model)
    if manifest is not None:
        config[manifest_mod.MANIFEST_KEY] = {k: v for k, v in manifest.items() if k != "architecture"}
    return config


class _ArchitectureFormat(Format):
    holds = ARCHITECTURE

    def dumps(self, config: dict) -> str:
        raise NotImplementedError

    def parse(self, text: str, path) -> object:
        raise NotImplementedError

    def write(self, model, target, manifest, *, include_optimizer):
        config = serialize(model, manifest)
        if not include_optimizer:
            config["compile_config"] = None
        target.write_text(self.dumps(config), encoding="utf-8")

    def _load(self, path):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise errors.CorruptFileError(path, f"{self.description} as UTF-8 text", "binary data", "pass the architecture file") from None
        return self.parse(text, path)

    def read(self, path, *, compile, safe_mode, custom_objects):
        return model_from_config(self._load(path), path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)

    def inspect(self, path):
        config, manifest = split_manifest(self._load(path), path)
        inner = config.get("config")
        layers = inner.get("layers", []) if isinstance(inner, dict) else (inner or [])
        result = summary(path, self, has_architecture=True, keras_version=config.get("keras_version"), backend=config.get("backend"))
        result["layers"] = [
            {"name": (l.get("config") or {}).get("name"), "class": l.get("class_name"), "output_shape": None, "params": None}
            for l in layers if isinstance(l, dict)
        ]
        return apply_manifest(result, manifest)


class JsonFormat(_ArchitectureFormat):
    name = "json"
    description = "architecture JSON (.json)"
    suffixes = (".json",)

    def recognise(self, path, head):
        return head.lstrip()[:1] == b"{" and b"class_name" in head

    def dumps(self, config):
        return json.dumps(config, indent=2)

    def parse(self, text, path):
        return parse_json(text, path)


class YamlFormat(_ArchitectureFormat):
    name = "yaml"
    description = "architecture YAML (.yaml)"
    suffixes = (".yaml", ".yml")

    def recognise(self, path, head):
        return b"class_name:" in head and b"\x00" not in head

    def dumps(self, config):
        return yaml.safe_dump(config, sort_keys=False)

    def parse(self, text, path):
        return parse_yaml(text, path)
