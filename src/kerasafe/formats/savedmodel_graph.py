"""Vocabularies a tf.keras 2 SavedModel keeps only in its graph, read as data (no TensorFlow, nothing run).

A StringLookup, IntegerLookup or TextVectorization whose vocabulary was learned by
``adapt`` kept it in a TensorFlow lookup table, which no variable holds, so no HDF5 file,
JSON text or checkpoint has it. A SavedModel does: its object graph names the table's
initializer function, whose bound inputs are graph constants holding the tokens and
their indices (``saved_model.pb``: MetaGraphDef.object_graph_def and graph_def). The
messages are declared here from their field numbers (TensorFlow's saved_model.proto,
saved_object_graph.proto, graph.proto, tensor.proto), as the checkpoint index's are in
tf_checkpoint.py: reading them needs protobuf only, and parsing a graph runs nothing.

Example:
    >>> import pathlib
    >>> adapted_vocabularies(pathlib.Path("/nonexistent"))
    {}
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

from .. import errors
from . import tf_checkpoint

MAX_GRAPH_BYTES = (1 << 31) - 1  # protobuf's own limit for one message
MAX_TOKENS = 1 << 28  # a vocabulary beyond this is a forged shape, not a vocabulary
_DT_INT32, _DT_STRING, _DT_INT64 = 3, 7, 9
LOOKUP_CLASSES = ("StringLookup", "IntegerLookup", "TextVectorization")


@functools.cache
def _saved_model_message():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="kerasafe_saved_model_graph.proto", package="kerasafe.sm")
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def message(name, fields):
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = m.field.add(name=field_name, number=number, type=kind, label=label, type_name=type_name)
            if kind in (F.TYPE_INT64, F.TYPE_INT32) and label == many:
                field.options.packed = True  # proto3 packs repeated numbers

    message("Dim", [("size", 1, F.TYPE_INT64, one, None)])
    message("Shape", [("dim", 2, F.TYPE_MESSAGE, many, ".kerasafe.sm.Dim")])
    message("Tensor", [("dtype", 1, F.TYPE_INT32, one, None), ("tensor_shape", 2, F.TYPE_MESSAGE, one, ".kerasafe.sm.Shape"),
                       ("tensor_content", 4, F.TYPE_BYTES, one, None), ("int_val", 7, F.TYPE_INT32, many, None),
                       ("string_val", 8, F.TYPE_BYTES, many, None), ("int64_val", 10, F.TYPE_INT64, many, None)])
    message("AttrValue", [("tensor", 8, F.TYPE_MESSAGE, one, ".kerasafe.sm.Tensor")])
    message("AttrEntry", [("key", 1, F.TYPE_STRING, one, None), ("value", 2, F.TYPE_MESSAGE, one, ".kerasafe.sm.AttrValue")])
    message("Node", [("name", 1, F.TYPE_STRING, one, None), ("op", 2, F.TYPE_STRING, one, None),
                     ("attr", 5, F.TYPE_MESSAGE, many, ".kerasafe.sm.AttrEntry")])
    message("OpSignature", [("name", 1, F.TYPE_STRING, one, None)])
    message("FunctionDef", [("signature", 1, F.TYPE_MESSAGE, one, ".kerasafe.sm.OpSignature"),
                            ("node_def", 3, F.TYPE_MESSAGE, many, ".kerasafe.sm.Node")])
    message("Library", [("function", 1, F.TYPE_MESSAGE, many, ".kerasafe.sm.FunctionDef")])
    message("Graph", [("node", 1, F.TYPE_MESSAGE, many, ".kerasafe.sm.Node"),
                      ("library", 2, F.TYPE_MESSAGE, one, ".kerasafe.sm.Library")])
    message("Reference", [("node_id", 1, F.TYPE_INT32, one, None), ("local_name", 2, F.TYPE_STRING, one, None)])
    message("Function", [("concrete_functions", 1, F.TYPE_STRING, many, None)])
    message("Constant", [("operation", 1, F.TYPE_STRING, one, None)])
    message("Object", [("children", 1, F.TYPE_MESSAGE, many, ".kerasafe.sm.Reference"),
                       ("function", 6, F.TYPE_MESSAGE, one, ".kerasafe.sm.Function"),
                       ("constant", 9, F.TYPE_MESSAGE, one, ".kerasafe.sm.Constant")])
    message("ConcreteFunction", [("bound_inputs", 2, F.TYPE_INT32, many, None)])
    message("ConcreteEntry", [("key", 1, F.TYPE_STRING, one, None), ("value", 2, F.TYPE_MESSAGE, one, ".kerasafe.sm.ConcreteFunction")])
    message("ObjectGraph", [("nodes", 1, F.TYPE_MESSAGE, many, ".kerasafe.sm.Object"),
                            ("concrete_functions", 2, F.TYPE_MESSAGE, many, ".kerasafe.sm.ConcreteEntry")])
    message("MetaGraph", [("graph_def", 2, F.TYPE_MESSAGE, one, ".kerasafe.sm.Graph"),
                          ("object_graph_def", 7, F.TYPE_MESSAGE, one, ".kerasafe.sm.ObjectGraph")])
    message("SavedModel", [("meta_graphs", 2, F.TYPE_MESSAGE, many, ".kerasafe.sm.MetaGraph")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kerasafe.sm.SavedModel"))


def _array(tensor) -> np.ndarray:
    """A graph constant's value (strings, int32 or int64: what lookup tables hold); ValueError for anything else."""
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape, dtype=np.int64))
    if tensor.dtype == _DT_STRING:
        values = [v.decode("utf-8", "replace") for v in tensor.string_val]
        dtype = object
    elif tensor.dtype in (_DT_INT64, _DT_INT32):
        dtype = "<i8" if tensor.dtype == _DT_INT64 else "<i4"
        if tensor.tensor_content:
            return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
        values = list(tensor.int64_val if tensor.dtype == _DT_INT64 else tensor.int_val)
    else:
        raise ValueError(f"a constant of TensorFlow dtype {tensor.dtype}")
    if len(values) == 1 and count != 1:  # TensorFlow writes a constant filled with one value once
        if not 0 <= count <= MAX_TOKENS:
            raise ValueError(f"a constant of {count} entries")
        values = values * count
    return np.array(values, dtype=dtype).reshape(shape)


def _graph(path: pathlib.Path):
    size = path.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise errors.CorruptFileError(path, "a SavedModel graph under 2 GiB", f"{size:,} bytes", "the SavedModel is damaged")
    try:
        return _saved_model_message().FromString(path.read_bytes()).meta_graphs[0]
    except Exception as exc:  # protobuf's DecodeError, a SavedModel with no meta graph
        raise errors.CorruptFileError(path, "a SavedModel graph", f"undecodable ({str(exc)[:120]})", "the SavedModel is damaged") from None


def graph_ops(saved_model_pb: pathlib.Path) -> dict[str, set[str]]:
    """``{op type: names of the functions using it}`` over a SavedModel's graph and function library ("" for the graph).

    Read as data: what loading the SavedModel with TensorFlow would be able to run.

    Example:
        >>> graph_ops(pathlib.Path("/nonexistent/saved_model.pb"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...
    """
    meta = _graph(saved_model_pb)
    ops: dict[str, set[str]] = {}
    for node in meta.graph_def.node:
        ops.setdefault(node.op, set()).add("")
    for function in meta.graph_def.library.function:
        for node in function.node_def:
            ops.setdefault(node.op, set()).add(function.signature.name)
    return ops


def _table_tokens(meta, table_path: str, invert: bool) -> list | None:
    """The tokens of the table at ``table_path`` in index order, or None if its initializer is not two constants."""
    objects = meta.object_graph_def
    try:
        node = objects.nodes[0]
        for part in [*table_path.split("/"), "_initialize"]:
            node = objects.nodes[next(c.node_id for c in node.children if c.local_name == part)]
        function = next(e.value for e in objects.concrete_functions if e.key == node.function.concrete_functions[0])
        # The bound inputs are the table itself (a resource) and the constants it is filled from.
        operations = [objects.nodes[i].constant.operation for i in function.bound_inputs if objects.nodes[i].constant.operation]
    except (StopIteration, IndexError):
        return None
    constants = {n.name: n for n in meta.graph_def.node if n.op == "Const" and n.name in operations}
    try:
        arrays = [_array(next(a.value.tensor for a in constants[op].attr if a.key == "value")) for op in operations]
    except (KeyError, StopIteration, ValueError):
        return None
    if len(arrays) != 2 or arrays[0].shape != arrays[1].shape or arrays[0].ndim != 1:
        return None
    keys, values = arrays  # KeyValueTensorInitializer(keys, values); an inverted layer maps indices to tokens
    tokens, indices = (values, keys) if invert else (keys, values)
    if indices.dtype == object:
        return None
    order = np.argsort(indices, kind="stable")
    if len(order) and not np.array_equal(indices[order], np.arange(indices[order][0], indices[order][0] + len(order))):
        return None  # not one index per token, consecutive: not a vocabulary table
    return [t.item() if isinstance(t, np.generic) else t for t in tokens[order]]


def adapted_vocabularies(directory: pathlib.Path, metadata_nodes: list | None = None) -> dict[str, dict]:
    """{layer name: {"vocabulary": [...], "idf_weights": [...]?}} for each lookup layer whose vocabulary came from adapt().

    Layers given their vocabulary in the constructor have it in their config already and
    are left out, as are tables whose initializer is not a pair of constants.
    ``metadata_nodes``: keras_metadata.pb's objects, when the caller has read them already.
    """
    metadata_path, graph_path = directory / "keras_metadata.pb", directory / "saved_model.pb"
    if not graph_path.is_file() or (metadata_nodes is None and not metadata_path.is_file()):
        return {}
    if metadata_nodes is None:
        metadata_nodes = tf_checkpoint.keras_metadata_nodes(metadata_path)
    wanted = {}
    for node in metadata_nodes:
        try:
            metadata = json.loads(node.metadata)
        except ValueError:
            continue
        if not isinstance(metadata, dict):
            continue
        config = metadata.get("config")
        if (metadata.get("class_name") in LOOKUP_CLASSES and isinstance(config, dict) and config.get("vocabulary") is None
                and node.node_path.startswith("root.") and not node.node_path.endswith("._lookup_layer")):
            inner = "/_lookup_layer" if metadata["class_name"] == "TextVectorization" else ""
            wanted[metadata.get("name")] = (node.node_path[len("root."):].replace(".", "/") + inner, config)
    if not wanted:
        return {}
    meta = _graph(graph_path)
    prefix = directory / "variables" / "variables"
    entries = None  # the variables' index, read only if a tf-idf layer needs its weights
    out = {}
    for name, (path, config) in wanted.items():
        tokens = _table_tokens(meta, f"{path}/lookup_table", bool(config.get("invert")))
        if tokens is None:
            continue
        found = {"vocabulary": tokens}
        if config.get("output_mode") == "tf_idf":
            if entries is None:
                entries = {}
                if prefix.with_name("variables.index").is_file():
                    entries = tf_checkpoint.read_index(prefix.with_name("variables.index"))
                    entries = tf_checkpoint.tracked_entries(entries, tf_checkpoint.object_graph(prefix, entries))
            entry = entries.get(f"{path}/idf_weights{tf_checkpoint.VALUE_SUFFIX}")
            if entry is None:
                continue  # without its weights a tf-idf vocabulary is half a layer: leave it refused
            weights = tf_checkpoint.read_tensor(entry, tf_checkpoint.shard_files(prefix), prefix).reshape(-1)
            found["idf_weights"] = weights[len(weights) - len(tokens):].tolist()  # after the OOV/mask entries
        out[name] = found
    return out


def fill_vocabularies(config, found: dict[str, dict]):
    """``config`` (a model config) with each adapted lookup layer's vocabulary put where tf.keras left None."""
    if isinstance(config, list):
        return [fill_vocabularies(c, found) for c in config]
    if not isinstance(config, dict):
        return config
    out = {k: fill_vocabularies(v, found) for k, v in config.items()}
    inner = out.get("config")
    if out.get("class_name") in LOOKUP_CLASSES and isinstance(inner, dict) and inner.get("vocabulary") is None:
        extra = found.get(inner.get("name"))
        if extra:
            out["config"] = {**inner, **extra}
    return out
