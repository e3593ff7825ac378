"""TensorFlow checkpoints (``name.index`` + ``name.data-*-of-*``), read without TensorFlow.

What tf.keras 2's ``save_weights("name")``, ``ModelCheckpoint("name", save_weights_only=True)``
and ``tf.train.Checkpoint.save`` wrote, and the ``variables/`` of a SavedModel.

The ``.index`` file is a LevelDB-style sorted table (TensorFlow's ``lib/io/table``): data
blocks of prefix-compressed key/value entries, an index block, and a 48-byte footer
ending in a magic number. Each key is a variable's checkpoint name; each value a
``BundleEntryProto`` (dtype, shape, shard, offset, size) saying where its bytes lie in
a ``.data`` shard. No maintained Python library reads this table without TensorFlow,
so the block walk is written here (about 60 lines); the protocol buffers are decoded
with the protobuf library, from message descriptors declared below.

Example:
    >>> from kerasafe.formats.tf_checkpoint import resolve_prefix
    >>> resolve_prefix("/nonexistent/model") is None
    True
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
import struct

import numpy as np

from .. import errors
from ..legacy import weights as legacy_weights
from .base import WEIGHTS, Format, summary

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
# TensorFlow DataType enum values -> NumPy dtypes (tensorflow/core/framework/types.proto).
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64", 10: "bool",
          17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}
DT_BFLOAT16, DT_STRING = 14, 7
VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


@functools.cache
def _messages():
    """BundleHeaderProto / BundleEntryProto classes, declared from their field numbers (tensor_bundle.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="kerasafe_tensor_bundle.proto", package="kerasafe.tf")

    def message(name, fields):
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            m.field.add(name=field_name, number=number, type=kind, label=label, type_name=type_name)

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("Dim", [("size", 1, F.TYPE_INT64, one, None), ("name", 2, F.TYPE_STRING, one, None)])
    message("TensorShapeProto", [("dim", 2, F.TYPE_MESSAGE, many, ".kerasafe.tf.Dim"),
                                 ("unknown_rank", 3, F.TYPE_BOOL, one, None)])
    message("BundleEntryProto", [
        ("dtype", 1, F.TYPE_INT32, one, None), ("shape", 2, F.TYPE_MESSAGE, one, ".kerasafe.tf.TensorShapeProto"),
        ("shard_id", 3, F.TYPE_INT32, one, None), ("offset", 4, F.TYPE_INT64, one, None),
        ("size", 5, F.TYPE_INT64, one, None), ("crc32c", 6, F.TYPE_FIXED32, one, None),
    ])
    message("BundleHeaderProto", [("num_shards", 1, F.TYPE_INT32, one, None), ("endianness", 2, F.TYPE_INT32, one, None)])
    # tf.keras 2's keras_metadata.pb (keras/protobuf/saved_metadata.proto): one JSON per saved object.
    message("SavedObject", [("node_id", 2, F.TYPE_INT32, one, None), ("node_path", 3, F.TYPE_STRING, one, None),
                            ("identifier", 4, F.TYPE_STRING, one, None), ("metadata", 5, F.TYPE_STRING, one, None)])
    message("SavedMetadata", [("nodes", 1, F.TYPE_MESSAGE, many, ".kerasafe.tf.SavedObject")])
    # The checkpoint's own object graph (trackable_object_graph.proto): which attribute path leads to which tensor.
    message("ObjectReference", [("node_id", 1, F.TYPE_INT32, one, None), ("local_name", 2, F.TYPE_STRING, one, None)])
    message("SerializedTensor", [("name", 1, F.TYPE_STRING, one, None), ("full_name", 2, F.TYPE_STRING, one, None),
                                 ("checkpoint_key", 3, F.TYPE_STRING, one, None)])
    message("TrackableObject", [("children", 1, F.TYPE_MESSAGE, many, ".kerasafe.tf.ObjectReference"),
                                ("attributes", 2, F.TYPE_MESSAGE, many, ".kerasafe.tf.SerializedTensor")])
    message("TrackableObjectGraph", [("nodes", 1, F.TYPE_MESSAGE, many, ".kerasafe.tf.TrackableObject")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"kerasafe.tf.{name}"))
            for name in ("BundleEntryProto", "BundleHeaderProto", "SavedMetadata", "TrackableObjectGraph")}


def _untuple(value):
    # tf.keras 2's JSON encoder wrote tuples as {"class_name": "__tuple__", "items": [...]}.
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__" and "items" in value:
            return [_untuple(v) for v in value["items"]]
        return {k: _untuple(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untuple(v) for v in value]
    return value


def keras_metadata_nodes(path: pathlib.Path) -> list:
    """The objects of tf.keras 2's ``keras_metadata.pb`` (node_path "root.layer-0", metadata JSON text)."""
    try:
        return list(_messages()["SavedMetadata"].FromString(path.read_bytes()).nodes)
    except Exception as exc:  # protobuf DecodeError
        raise errors.CorruptFileError(path, "tf.keras 2 Keras metadata", f"unreadable ({str(exc)[:120]})", "the SavedModel is damaged") from None


def keras_metadata_model(path: pathlib.Path, nodes: list | None = None) -> dict:
    """The model config and training config tf.keras 2 stored in a SavedModel's ``keras_metadata.pb``.

    ``nodes``: its objects (keras_metadata_nodes), when the caller has read them already.
    """
    from .guard import json_value

    nodes = keras_metadata_nodes(path) if nodes is None else nodes
    try:
        root = next(n for n in nodes if n.node_path == "root")
        metadata = _untuple(json_value(root.metadata, path, "the Keras metadata of the model"))
    except errors.KerasafeError:
        raise
    except StopIteration:
        raise errors.CorruptFileError(path, "Keras metadata with a 'root' object", "none", "the SavedModel is incomplete") from None
    except Exception as exc:  # protobuf DecodeError, JSON errors
        raise errors.CorruptFileError(path, "tf.keras 2 Keras metadata", f"unreadable ({str(exc)[:120]})", "the SavedModel is damaged") from None
    if not isinstance(metadata.get("config"), dict):
        raise errors.UnsupportedOperationError(
            path, "a model tf.keras could describe as a config", f"a {metadata.get('class_name', 'subclassed')} model without one",
            "rebuild the model in code and load the weights: ks.load_weights(model, 'DIR/variables/variables')")
    config = {"class_name": metadata.get("class_name"), "config": metadata["config"],
              "keras_version": metadata.get("keras_version") or "2"}
    return {"model_config": config, "training_config": metadata.get("training_config")}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _block(data: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one table block (prefix-compressed, restart array at its end)."""
    if offset < 0 or size < 4 or offset + size + 5 > len(data):
        raise ValueError(f"block at {offset}+{size} outside the file")
    if data[offset + size] != 0:
        raise ValueError(f"compressed block (type {data[offset + size]}); TensorFlow writes bundles uncompressed")
    block = data[offset:offset + size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise ValueError("restart array larger than its block")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > end:
            raise ValueError("entry outside its block")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + length]))
        pos += length
    return entries


def read_index(index_path: pathlib.Path) -> dict[str, Entry]:
    """Every tensor a checkpoint's ``.index`` lists, by name (the header entry left out)."""
    data = index_path.read_bytes()
    try:
        if len(data) < FOOTER_BYTES or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            raise ValueError("no table footer (magic number) at the end")
        footer = data[len(data) - FOOTER_BYTES:]
        _, pos = _varint(footer, 0)  # metaindex handle: unused by tensor bundles
        _, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        entry_class = _messages()["BundleEntryProto"]
        out = {}
        for _, handle in _block(data, index_offset, index_size):
            offset, p = _varint(handle, 0)
            size, _ = _varint(handle, p)
            for key, value in _block(data, offset, size):
                if not key:
                    continue  # the BundleHeaderProto
                entry = entry_class.FromString(value)
                shape = tuple(int(d.size) for d in entry.shape.dim)
                out[key.decode("utf-8", "replace")] = Entry(key.decode("utf-8", "replace"), entry.dtype, shape,
                                                            entry.shard_id, entry.offset, entry.size)
        return out
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise errors.CorruptFileError(index_path, "a TensorFlow checkpoint index (sorted table)", str(exc), "the checkpoint is damaged; use another one") from None
    except Exception as exc:  # protobuf's DecodeError: the table held something else
        raise errors.CorruptFileError(index_path, "TensorFlow checkpoint entries", f"undecodable entry ({exc})", "the checkpoint is damaged") from None


def resolve_prefix(path) -> pathlib.Path | None:
    """The checkpoint prefix ``path`` names: a prefix, its ``.index`` file, or a folder with a ``checkpoint`` file."""
    p = pathlib.Path(path)
    if p.name.endswith(".index") and p.is_file():
        return p.with_name(p.name[: -len(".index")])
    if p.with_name(p.name + ".index").is_file():
        return p
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file() and state.stat().st_size < 1 << 20:
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', state.read_text(errors="replace"), re.M)
            name = pathlib.PurePath(match.group(1)) if match else None
            if name is not None and (name.is_absolute() or ".." in name.parts):
                name = pathlib.PurePath(name.name)  # old TensorFlow wrote absolute paths: the checkpoint is in this folder now
            if name is not None and all(0 < len(part) <= 255 for part in name.parts) and (p / f"{name}.index").is_file():
                return p / name
        if (p / "variables" / "variables.index").is_file():
            return None  # a SavedModel: the SavedModel format reads it
    return None


def shard_files(prefix: pathlib.Path) -> list[pathlib.Path]:
    found = sorted(prefix.parent.glob(prefix.name + ".data-*-of-*"))
    if not found:
        raise errors.FileMissingError(prefix, "the checkpoint's data file(s) beside its .index", "none", "copy the .data-*-of-* files too")
    return found


def read_tensor(entry: Entry, shards: list[pathlib.Path], prefix) -> np.ndarray:
    """One tensor's array, its offset and size checked against the shard before anything is read."""
    dtype = DTYPES.get(entry.dtype)
    if dtype is None and entry.dtype == DT_BFLOAT16:
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    if dtype is None:
        raise errors.UnsupportedOperationError(prefix, "numeric tensors", f"tensor '{entry.name}' of TensorFlow dtype {entry.dtype}", "load the numeric weights only")
    count = int(np.prod(entry.shape, dtype=np.int64)) if entry.shape else 1
    if entry.shard >= len(shards) or count * np.dtype(dtype).itemsize != entry.size:
        raise errors.CorruptFileError(prefix, f"tensor '{entry.name}' of {entry.size} bytes in shard {entry.shard}", f"shape {entry.shape} or a missing shard", "the checkpoint is damaged")
    shard = shards[entry.shard]
    if entry.offset < 0 or entry.offset + entry.size > shard.stat().st_size:
        raise errors.CorruptFileError(shard, f"tensor '{entry.name}' inside the file", f"bytes {entry.offset}+{entry.size} past its end", "the checkpoint is incomplete")
    with open(shard, "rb") as f:
        f.seek(entry.offset)
        array = np.empty(entry.shape, dtype=dtype)
        f.readinto(memoryview(array.reshape(-1).view(np.uint8)))
    return array


OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Lists a SavedModel tracks beside the attributes themselves (every variable again, by number): not
# attribute paths, and numbered in another order than a Keras 3 layer's lists of the same names.
_ALIAS_CHILDREN = {"variables", "trainable_variables", "non_trainable_variables", "keras_api", "_self_saveable_object_factories"}
MAX_OBJECT_GRAPH_BYTES = 64 << 20


def _string_scalar(entry: Entry, shards: list[pathlib.Path], prefix) -> bytes:
    """A scalar string tensor's bytes (TensorFlow writes: varint length, 4-byte checksum of the lengths, the bytes)."""
    if entry.dtype != DT_STRING or entry.shape or entry.size > MAX_OBJECT_GRAPH_BYTES or entry.shard >= len(shards):
        raise errors.CorruptFileError(prefix, "the checkpoint's object graph as one string", f"dtype {entry.dtype}, shape {entry.shape}",
                                      "the checkpoint is damaged")
    shard = shards[entry.shard]
    if entry.offset < 0 or entry.offset + entry.size > shard.stat().st_size:
        raise errors.CorruptFileError(shard, f"tensor '{entry.name}' inside the file", f"bytes {entry.offset}+{entry.size} past its end",
                                      "the checkpoint is incomplete")
    with open(shard, "rb") as f:
        f.seek(entry.offset)
        data = f.read(entry.size)
    try:
        length, pos = _varint(data, 0)
    except ValueError:
        length, pos = -1, 0
    if length < 0 or pos + 4 + length > len(data):
        raise errors.CorruptFileError(prefix, "the checkpoint's object graph", "a truncated string", "the checkpoint is damaged")
    return data[pos + 4:pos + 4 + length]


def object_graph(prefix: pathlib.Path, entries: dict[str, Entry]):
    """The checkpoint's TrackableObjectGraph (which attribute path leads to which tensor), or None if it has none."""
    graph_entry = entries.get(OBJECT_GRAPH_KEY)
    if graph_entry is None:
        return None
    try:
        return _messages()["TrackableObjectGraph"].FromString(_string_scalar(graph_entry, shard_files(prefix), prefix))
    except errors.KerasafeError:
        raise
    except Exception as exc:  # protobuf DecodeError
        raise errors.CorruptFileError(prefix, "the checkpoint's object graph", f"undecodable ({str(exc)[:120]})", "the checkpoint is damaged") from None


def tracked_entries(entries: dict[str, Entry], graph) -> dict[str, Entry]:
    """``entries`` plus every other attribute path that leads to the same tensor, from the checkpoint's object graph.

    TensorFlow keys each tensor by the first path it met (a SavedModel's LSTM kernel is
    "variables/0"); the object graph lists every path, so each layer's arrays can be
    found under ``layer_with_weights-N/...`` whichever path named them.
    """
    if graph is None:
        return entries
    out = dict(entries)
    seen, queue = {0}, [(0, "")]
    while queue:  # breadth first: every node once, by its shortest path (a layer's by its layer_with_weights path)
        node_id, path = queue.pop(0)
        if node_id >= len(graph.nodes):
            continue
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.checkpoint_key in entries and path:
                out.setdefault(f"{path}/.ATTRIBUTES/{attribute.name}", entries[attribute.checkpoint_key])
        for child in node.children:
            if child.local_name in _ALIAS_CHILDREN:
                continue
            child_path = f"{path}/{child.local_name}" if path else child.local_name
            if child.node_id not in seen or "layer_with_weights-" in child_path:
                if child_path.count("/") < 64 and len(out) < 10 * len(entries) + 1000:
                    seen.add(child.node_id)
                    queue.append((child.node_id, child_path))
    return out


def layer_positions(graph, base: str) -> dict[int, int] | None:
    """{n: i}: the model under ``base`` has ``layer_with_weights-n`` as its ``model.layers[i]``; None without a graph.

    tf.keras tracked every layer twice, as ``layer-i`` (all layers) and, if it had weights,
    ``layer_with_weights-n``; the shared node says which is which, so no count of
    "layers with weights" has to agree between the two Keras versions.
    """
    if graph is None:
        return None
    node = graph.nodes[0] if graph.nodes else None
    for part in [p for p in base.strip("/").split("/") if p]:
        child = next((c for c in node.children if c.local_name == part), None) if node is not None else None
        node = graph.nodes[child.node_id] if child is not None and child.node_id < len(graph.nodes) else None
    if node is None:
        return None
    by_node = {c.node_id: int(c.local_name.split("-")[1]) for c in node.children
               if c.local_name.startswith("layer-") and c.local_name.split("-")[1].isdigit()}
    out = {}
    for child in node.children:
        if child.local_name.startswith("layer_with_weights-") and child.node_id in by_node:
            out[int(child.local_name.split("-")[1])] = by_node[child.node_id]
    return out


def _strip_root(names) -> str:
    """tf.train.Checkpoint(model=...) puts the model under "model/"; save_weights puts it at the root."""
    roots = {n.split("/")[0] for n in names if "/" in n}
    return "" if any(r.startswith(("layer_with_weights-", "layer-")) for r in roots) else \
        next((r + "/" for r in sorted(roots) if any(n.startswith(r + "/layer_with_weights-") for n in names)), "")


def layer_values(entries: dict[str, Entry], root: str | None = None) -> dict[int, dict[str, Entry]]:
    """{n: {attribute path: entry}} for every ``layer_with_weights-n`` of the model (under ``root``)."""
    root = _strip_root(entries) if root is None else root
    out: dict[int, dict[str, Entry]] = {}
    pattern = re.compile(rf"^{re.escape(root)}layer_with_weights-(\d+)/(.+){re.escape(VALUE_SUFFIX)}$")
    for name, entry in entries.items():
        match = pattern.match(name)
        if match and "/.OPTIMIZER_SLOT/" not in name:
            out.setdefault(int(match.group(1)), {})[match.group(2)] = entry
    return out


def _layer_assignments(model, base: str, entries: dict[str, Entry], graph, prefix, skip_mismatch: bool, out: list, states: list) -> None:
    """(variable, entry) for every weight of ``model``'s layers under ``base``; nested models recurse.

    tf.keras numbered the layers that had weights (``layer_with_weights-N``, placed in
    ``model.layers`` by :func:`layer_positions`) and named each array by the attributes
    that led to it; legacy.weights.checkpoint_variable finds the Keras 3 variable the
    same attributes lead to. Arrays a Keras 3 layer keeps as state rather than as
    variables go to ``states`` as (layer, names, entries).
    """
    by_layer = layer_values({k: e for k, e in entries.items() if k.startswith(base)}, base)
    positions = layer_positions(graph, base)
    if positions is None or set(positions) != set(by_layer) or any(i >= len(model.layers) for i in positions.values()):
        weighted = [layer for layer in model.layers if layer.weights]
        if len(weighted) != len(by_layer) and not skip_mismatch:
            raise errors.WeightsMismatchError(prefix, f"{len(weighted)} layers with weights (as the model has)",
                                              f"{len(by_layer)} in the checkpoint", "load it into the model it was saved from")
        pairs = [(index, layer) for index, layer in enumerate(weighted)]
    else:
        pairs = [(index, model.layers[positions[index]]) for index in sorted(positions)]
    for index, layer in pairs:
        saved = by_layer.get(index, {})
        if hasattr(layer, "layers") and any(a.startswith("layer_with_weights-") for a in saved):  # a nested model
            _layer_assignments(layer, f"{base}layer_with_weights-{index}/", entries, graph, prefix, skip_mismatch, out, states)
            continue
        if not layer.weights and legacy_weights.keeps_old_weights_as_state(layer):
            states.append((layer, list(saved), list(saved.values())))
            continue
        found = {}
        for attribute, entry in saved.items():
            variable = legacy_weights.checkpoint_variable(layer, attribute)
            if variable is not None:
                found[id(variable)] = (variable, entry)
        missing = [v for v in layer.weights if id(v) not in found]
        if missing and not skip_mismatch:
            raise errors.WeightsMismatchError(
                prefix, f"a value for {missing[0].path} {tuple(missing[0].shape)}",
                f"{[f'{a} {e.shape}' for a, e in saved.items()][:4]} for layer_with_weights-{index}",
                "load it into the model it was saved from, or pass skip_mismatch=True")
        out.extend(found.values())


class TFCheckpointFormat(Format):
    name = "tf-checkpoint"
    description = "TensorFlow checkpoint (.index + .data)"
    suffixes = (".index",)
    holds = WEIGHTS

    def recognise(self, path, head):
        return resolve_prefix(path) is not None

    def read_weights(self, model, path, *, by_name, skip_mismatch):
        prefix = resolve_prefix(path) or path
        entries = read_index(prefix.with_name(prefix.name + ".index"))
        graph = object_graph(prefix, entries)
        entries = tracked_entries(entries, graph)
        shards = shard_files(prefix)
        assignments: list = []
        states: list = []
        _layer_assignments(model, _strip_root(entries), entries, graph, prefix, skip_mismatch, assignments, states)
        for layer, names, saved in states:
            legacy_weights.put_state(layer, names, [read_tensor(e, shards, prefix) for e in saved])
        for variable, entry in assignments:  # every variable matched before any is read
            variable.assign(legacy_weights.fit_shape(read_tensor(entry, shards, prefix), variable.shape, variable.path))
        from .. import _keras

        _keras.finalize_loaded_state(model)
        if getattr(model, "optimizer", None) is not None and model.compiled:
            from .tf_optimizer_state import restore_optimizer

            restore_optimizer(model, prefix, entries, graph)
        return None

    def inspect(self, path):
        prefix = resolve_prefix(path) or path
        entries = read_index(prefix.with_name(prefix.name + ".index"))
        rows, total, nbytes, dtypes = [], 0, 0, {}
        for index, values in sorted(layer_values(entries).items()):
            params = sum(int(np.prod(e.shape, dtype=np.int64)) for e in values.values())
            rows.append({"name": f"layer_with_weights-{index}", "class": None, "output_shape": None, "params": params})
            total += params
            for e in values.values():
                nbytes += e.size
                name = DTYPES.get(e.dtype, f"dtype {e.dtype}")
                dtypes[name] = dtypes.get(name, 0) + 1
        return summary(prefix, self, layers=rows, total_params=total, weights_bytes=nbytes, dtypes=dtypes,
                       tensors=len(entries))

