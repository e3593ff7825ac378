"""Structure-aware mutators: each takes hypothesis's ``draw``, a valid seed and a destination, and writes a damaged or crafted copy.

Every mutator knows its format's structure (zip members and headers, HDF5 attributes,
datasets and links, the safetensors header, JSON/YAML values, TensorFlow checkpoint
tables), so most cases get past the first magic-byte check and reach the code behind it.
``marker`` is the path a code-bearing mutation tries to write (runner.MARKER, relative to
the worker's folder): if it exists after a case, loading ran code from the file.
"""

from __future__ import annotations

import base64
import json
import marshal
import pathlib
import shutil
import struct
import warnings
import zipfile

import h5py
import numpy as np
from hypothesis import strategies as st

# What the current case's mutators chose, in order (campaign.make_case reads and clears it), so that a
# finding says which damage caused it.
CHOSEN: list[str] = []


def _chose(kind: str) -> str:
    CHOSEN.append(kind)
    return kind


# ---------------------------------------------------------------- values and JSON

HUGE_TEXT = 2_000_000  # characters: a value no real config has
DEEP = 50_000  # nesting levels: beyond any recursion limit


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def odd_value(draw, marker: pathlib.Path):
    """A value of a type or size a reader may not expect."""
    return draw(st.sampled_from([
        None, True, -1, 0, 2**70, 1e308, float("nan"), "", "x" * HUGE_TEXT, [], {}, [[[]]], {"a": {"b": {}}},
        "../../../../etc/passwd", "/etc/passwd", "\x00\udcff", [None] * 5, {"class_name": None}, "𝔘nicode",
        lambda_layer(marker), {"module": "os", "class_name": "system", "config": f"touch {marker}"},
        {"module": "builtins", "class_name": "eval", "config": f"open({str(marker)!r}, 'w')"},
    ]))


def lambda_layer(marker: pathlib.Path) -> dict:
    """A Lambda layer whose Python bytecode writes ``marker`` when it is deserialized or called."""
    def payload(x, _m=str(marker)):
        open(_m, "w").write("ran")
        return x
    code = base64.b64encode(marshal.dumps(payload.__code__)).decode()
    return {"class_name": "Lambda", "config": {"name": "evil", "function": {"class_name": "__lambda__",
            "config": {"code": code, "defaults": [str(marker)], "closure": None}}, "function_type": "lambda",
            "output_shape": None, "arguments": {}}}


def mutate_json_value(draw, value, marker: pathlib.Path, depth: int = 0):
    """``value`` with one node somewhere inside it replaced, removed or given a sibling."""
    if isinstance(value, dict) and value and (depth < 12 and draw(st.booleans())):
        key = draw(st.sampled_from(sorted(value, key=str)))
        out = dict(value)
        out[key] = mutate_json_value(draw, value[key], marker, depth + 1)
        return out
    if isinstance(value, list) and value and (depth < 12 and draw(st.booleans())):
        index = draw(st.integers(0, len(value) - 1))
        out = list(value)
        out[index] = mutate_json_value(draw, value[index], marker, depth + 1)
        return out
    action = draw(st.sampled_from(["replace", "remove", "add"] if isinstance(value, dict) else ["replace"]))
    if action == "remove" and value:
        out = dict(value)
        out.pop(draw(st.sampled_from(sorted(value, key=str))))
        return out
    if action == "add":
        return dict(value, **{draw(st.sampled_from(["module", "registered_name", "class_name", "config", "build_config",
                                                     "shared_object_id", "inbound_nodes", "dtype", "x"])): odd_value(draw, marker)})
    return odd_value(draw, marker)


def json_text(draw, value, marker: pathlib.Path) -> bytes:
    """JSON text for a mutated ``value``, or text no JSON reader takes calmly."""
    kind = _chose(draw(st.sampled_from(["value"] * 6 + ["deep", "truncated", "not-utf8", "huge-number", "duplicate"])))
    if kind == "deep":
        return deep_json().encode()
    text = json.dumps(mutate_json_value(draw, value, marker) if kind == "value" else value, allow_nan=True)
    if kind == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))].encode()
    if kind == "not-utf8":
        return b"\xff\xfe" + text.encode()
    if kind == "huge-number":
        return text.replace("1", "1" + "0" * 5000, 1).encode()
    if kind == "duplicate":
        return ("{" + '"a": 1, ' * 1000 + text[1:]).encode() if text.startswith("{") else text.encode()
    return text.encode()


def yaml_text(draw, value, marker: pathlib.Path) -> bytes:
    """YAML for a mutated ``value``, or YAML that runs code, expands without bound or nests without end."""
    import yaml

    kind = _chose(draw(st.sampled_from(["value", "value", "python-tag", "python-apply", "alias-bomb", "deep", "binary", "merge"])))
    if kind == "python-tag":
        return f"!!python/object/apply:os.system ['touch {marker}']\n".encode()
    if kind == "python-apply":
        return (f"class_name: Sequential\nconfig: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n").encode()
    if kind == "alias-bomb":
        lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i, name in enumerate("bcdefghi"):
            previous = "abcdefghi"[i]
            lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
        return ("\n".join(lines) + "\nclass_name: *i\n").encode()
    if kind == "deep":
        return ("[" * DEEP + "]" * DEEP).encode()
    if kind == "binary":
        return b"class_name: !!binary " + base64.b64encode(b"\x00" * 64) + b"\n"
    if kind == "merge":
        return b"base: &b {class_name: Dense}\nconfig:\n  <<: *b\n  <<: *b\n"
    return yaml.safe_dump(mutate_json_value(draw, value, marker), allow_unicode=True).encode()


# ---------------------------------------------------------------- bytes (every single file)

def mutate_bytes(draw, data: bytes) -> bytes:
    kind = _chose(draw(st.sampled_from(["flip", "truncate", "zero", "insert", "repeat"])))
    if not data:
        return b"\x00"
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            out[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if kind == "truncate":
        return data[:at]
    if kind == "zero":
        return data[:at] + b"\x00" * min(len(data) - at, draw(st.integers(1, 4096))) + data[at + 4096:]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    return data[:at] + data[at:at + 64] * 100 + data[at:]


# ---------------------------------------------------------------- .keras (zip)

BOMB_BYTES = 100 << 20  # what a bomb member inflates to: more than any cap on a member kerasafe reads whole


def mutate_zip(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    with zipfile.ZipFile(seed) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    names = list(members)
    kind = _chose(draw(st.sampled_from(["json-member", "json-member", "json-member", "rename", "drop", "duplicate", "bomb",
                                 "compression", "header-size", "weights-member", "many-members", "bytes"])))
    target = draw(st.sampled_from(names))
    compression = {name: zipfile.ZIP_DEFLATED for name in names}
    if kind == "json-member":
        target = draw(st.sampled_from([n for n in names if n.endswith(".json")] or names))
        try:
            value = json.loads(members[target])
        except ValueError:
            value = {}
        members[target] = json_text(draw, value, marker)
    elif kind == "rename":
        new = draw(st.sampled_from(["../escape.json", "/abs/config.json", "a/../../b.json", "config.json/", "", "x" * 4000,
                                    "model.weights.h5\x00.txt", "CONFIG.JSON", "./config.json"]))
        members[new] = members.pop(target)
        compression[new] = zipfile.ZIP_DEFLATED
    elif kind == "drop":
        members.pop(target)
    elif kind == "duplicate":
        data = members[target]
        _write_zip(dst, members, compression)
        with zipfile.ZipFile(dst, "a") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name this case is about
            zf.writestr(target, json_text(draw, {}, marker) if target.endswith(".json") else data[: len(data) // 2])
        return
    elif kind == "bomb":
        target = draw(st.sampled_from([n for n in names if n.endswith(".json")] + ["model.weights.h5"]))
        members[target] = b" " * BOMB_BYTES
        compression[target] = draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    elif kind == "compression":
        compression[target] = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    elif kind == "weights-member":
        inner = dst.with_suffix(".inner.h5")
        src = seed.with_suffix(".inner-src.h5")
        if "model.weights.h5" in members:
            src.write_bytes(members["model.weights.h5"])
            mutate_hdf5(draw, src, inner, marker)
            members["model.weights.h5"] = inner.read_bytes() if inner.is_file() else b""
            src.unlink(missing_ok=True)
            inner.unlink(missing_ok=True)
    elif kind == "many-members":
        for i in range(draw(st.integers(1000, 20000))):
            members[f"assets/{i}.txt"] = b""
            compression[f"assets/{i}.txt"] = zipfile.ZIP_STORED
    _write_zip(dst, members, compression)
    if kind == "header-size":
        _edit_zip_sizes(draw, dst)
    elif kind == "bytes":
        dst.write_bytes(mutate_bytes(draw, dst.read_bytes()))


def _write_zip(dst: pathlib.Path, members: dict, compression: dict) -> None:
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name or "noname")
            info.compress_type = compression.get(name, zipfile.ZIP_DEFLATED)
            zf.writestr(info, data)


def _edit_zip_sizes(draw, path: pathlib.Path) -> None:
    """Rewrite the sizes a central directory entry declares (uncompressed size, compressed size)."""
    data = bytearray(path.read_bytes())
    entries = [i for i in range(len(data) - 46) if data[i:i + 4] == b"PK\x01\x02"]
    if not entries:
        return
    at = draw(st.sampled_from(entries))
    field = draw(st.sampled_from([20, 24]))  # compressed, uncompressed size
    struct.pack_into("<I", data, at + field, draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 12345])))
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- HDF5

def _walk(f: h5py.File) -> tuple[list[str], list[tuple[str, str]]]:
    objects, attributes = ["/"], [("/", a) for a in f.attrs]
    def visit(name, obj):
        objects.append(name)
        attributes.extend((name, a) for a in obj.attrs)
    f.visititems(visit)
    return objects, attributes


def mutate_hdf5(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    shutil.copyfile(seed, dst)
    kind = _chose(draw(st.sampled_from(["attr-json", "attr-json", "attr-type", "attr-type", "attr-drop", "dataset-shape",
                                 "dataset-dtype", "dataset-drop", "external-link", "soft-loop", "vds-self", "deep-groups",
                                 "declared-huge", "long-names", "group-for-dataset", "bytes", "external-storage"])))
    if kind == "bytes":
        dst.write_bytes(mutate_bytes(draw, seed.read_bytes()))
        return
    try:
        _mutate_hdf5_objects(draw, dst, kind, marker)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        pass  # h5py could not make this damage here; the copy is fuzzed as it stands


def _mutate_hdf5_objects(draw, dst: pathlib.Path, kind: str, marker: pathlib.Path) -> None:
    # libver "latest": attributes past HDF5's 64 KiB header limit (dense attribute storage)
    with h5py.File(dst, "r+", libver="latest") as f:
        objects, attributes = _walk(f)
        datasets = [n for n in objects if isinstance(f.get(n, getlink=False), h5py.Dataset)] or ["/"]
        if kind in ("attr-json", "attr-type", "attr-drop", "long-names") and attributes:
            where, name = draw(st.sampled_from(attributes))
            obj = f[where]
            if kind == "attr-drop":
                del obj.attrs[name]
            elif kind == "long-names":
                # variable-length strings: the header holds a reference, so the attribute may be any size
                obj.attrs[name] = draw(st.sampled_from(["y" * HUGE_TEXT, np.array([f"layer_{i}" for i in range(200_000)],
                                                                                  dtype=h5py.string_dtype())]))
            elif kind == "attr-json":
                raw = obj.attrs[name]
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
                obj.attrs[name] = json_text(draw, value, marker)  # bytes, as Keras's writer stores them
            else:
                obj.attrs[name] = draw(st.sampled_from([
                    h5py.Empty("f4"), np.arange(6, dtype="i8").reshape(2, 3), np.array([1.5]), 7, b"", np.array([b"a", b"b"]),
                    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), np.array(["ü"], dtype=h5py.string_dtype()),
                    np.bool_(True), np.array([], dtype="S1"),
                ]))
        elif kind in ("dataset-shape", "dataset-dtype", "dataset-drop", "group-for-dataset", "declared-huge", "external-storage") \
                and datasets != ["/"]:
            name = draw(st.sampled_from(datasets))
            old = f[name]
            shape, dtype = old.shape, old.dtype
            del f[name]
            if kind == "dataset-shape":
                f.create_dataset(name, data=np.zeros(draw(st.sampled_from([(0,), (1,), (3, 3, 3), shape[::-1] or (2,)])), dtype))
            elif kind == "dataset-dtype":
                f.create_dataset(name, data=np.zeros(shape, draw(st.sampled_from(["S4", "c8", "u1", "f2", "i8", "bool"]))))
            elif kind == "group-for-dataset":
                f.create_group(name)
            elif kind == "declared-huge":  # 4 TiB declared, nothing stored: reading it would fill memory
                f.create_dataset(name, shape=(1 << 40,), dtype="f4", chunks=(1 << 16,))
            elif kind == "external-storage":  # the data lives in another file of the attacker's choosing
                f.create_dataset(name, shape=(16,), dtype="u1", external=[("/etc/hostname", 0, 16)])
        elif kind == "external-link" and datasets != ["/"]:
            name = draw(st.sampled_from(datasets))
            del f[name]
            f[name] = h5py.ExternalLink(draw(st.sampled_from(["/etc/passwd", str(dst), "other.h5"])), "/x")
        elif kind == "soft-loop" and datasets != ["/"]:
            name = draw(st.sampled_from(datasets))
            del f[name]
            f[name] = h5py.SoftLink("/" + name.strip("/"))
        elif kind == "vds-self" and datasets != ["/"]:
            name = draw(st.sampled_from(datasets))
            del f[name]
            layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
            layout[:] = h5py.VirtualSource(str(dst), name, shape=(16,))
            f.create_virtual_dataset(name, layout)
        elif kind == "deep-groups":
            group = f.require_group(draw(st.sampled_from(objects)) if draw(st.booleans()) else "/")
            if isinstance(group, h5py.Group):
                for i in range(2500):
                    group = group.create_group("g")


# ---------------------------------------------------------------- safetensors

def mutate_safetensors(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    data = seed.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8:8 + length]), data[8 + length:]
    kind = _chose(draw(st.sampled_from(["header", "header", "header", "length", "offsets", "dtype", "deep", "bytes"])))
    tensors = [k for k in header if k != "__metadata__"]
    if kind == "length":
        raw = draw(st.sampled_from([0, 1, length - 1, length + 1, len(data), 1 << 62, (1 << 64) - 1]))
        dst.write_bytes(struct.pack("<Q", raw) + data[8:])
        return
    if kind == "bytes":
        dst.write_bytes(mutate_bytes(draw, data))
        return
    if kind == "deep":
        text = deep_json().encode()
    elif kind == "offsets" and tensors:
        name = draw(st.sampled_from(tensors))
        header[name]["data_offsets"] = draw(st.sampled_from([[0, 1 << 40], [len(body), len(body) + 4], [8, 4], [-1, 4], [0, 0], "x"]))
        text = json.dumps(header).encode()
    elif kind == "dtype" and tensors:
        name = draw(st.sampled_from(tensors))
        header[name]["dtype"] = draw(st.sampled_from(["F128", "", "U8", "BOOL", "F8_E4M3", None, 3]))
        text = json.dumps(header).encode()
    else:
        text = json_text(draw, header, marker)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + body)


# ---------------------------------------------------------------- JSON / YAML architecture files

def mutate_json_file(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    dst.write_bytes(json_text(draw, json.loads(seed.read_text()), marker))


def mutate_yaml_file(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    import yaml

    dst.write_bytes(yaml_text(draw, yaml.safe_load(seed.read_text()), marker))


# ---------------------------------------------------------------- TensorFlow checkpoints and SavedModels

def mutate_tf_checkpoint(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    """``seed`` and ``dst`` are checkpoint prefixes (``dir/name``); one of its files is damaged."""
    shutil.copytree(seed.parent, dst.parent, dirs_exist_ok=True)
    files = sorted(p for p in dst.parent.iterdir() if p.is_file())
    target = draw(st.sampled_from(files))
    kind = _chose(draw(st.sampled_from(["bytes", "bytes", "varint", "state-file"])))
    if kind == "state-file":
        (dst.parent / "checkpoint").write_text(f'model_checkpoint_path: "{draw(st.sampled_from(["x" * 5000, "../../etc/passwd", "/", ""]))}"\n')
        return
    data = target.read_bytes()
    if kind == "varint" and len(data) > 16:
        out = bytearray(data)
        at = draw(st.integers(0, len(data) - 6))
        out[at:at + 5] = draw(st.sampled_from([b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80", b"\x00\x00\x00\x00\x00"]))
        target.write_bytes(bytes(out))
        return
    target.write_bytes(mutate_bytes(draw, data))


def mutate_savedmodel(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    shutil.copytree(seed, dst, dirs_exist_ok=True)
    files = sorted(p for p in dst.rglob("*") if p.is_file())
    target = draw(st.sampled_from(files))
    kind = _chose(draw(st.sampled_from(["bytes", "bytes", "drop", "metadata-json"])))
    if kind == "drop":
        target.unlink()
    elif kind == "metadata-json" and target.name == "keras_metadata.pb":
        data = target.read_bytes()
        start = data.find(b'{"class_name"')
        if start >= 0:
            target.write_bytes(data[:start] + json_text(draw, {}, marker)[: len(data) - start] + data[start + len(data) - start:])
    else:
        target.write_bytes(mutate_bytes(draw, target.read_bytes()))


def mutate_any_bytes(draw, seed: pathlib.Path, dst: pathlib.Path, marker: pathlib.Path) -> None:
    dst.write_bytes(mutate_bytes(draw, seed.read_bytes()))


# Which mutators suit which seed kind (seeds.py names the kind of each seed).
MUTATORS = {
    "zip": [mutate_zip, mutate_any_bytes],
    "hdf5": [mutate_hdf5, mutate_hdf5, mutate_any_bytes],
    "safetensors": [mutate_safetensors, mutate_any_bytes],
    "json": [mutate_json_file, mutate_json_file, mutate_any_bytes],
    "yaml": [mutate_yaml_file, mutate_yaml_file, mutate_any_bytes],
    "tf-checkpoint": [mutate_tf_checkpoint],
    "savedmodel": [mutate_savedmodel],
}


# ---------------------------------------------------------------- a graph that writes a file when loaded

GRAPH_WRITING_A_FILE = """
import sys
import tensorflow as tf
target, marker = sys.argv[1], sys.argv[2]
class Resource(tf.saved_model.experimental.TrackableResource):
    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")
    def _initialize(self):
        tf.io.write_file(marker, "ran")  # what a hostile file does at load time
class Module(tf.Module):
    def __init__(self):
        self.resource, self.w = Resource(), tf.Variable(2.0)
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def serve(self, x):
        return {"y": x * self.w}
module = Module()
tf.saved_model.save(module, target, signatures={"serving_default": module.serve})
"""


def graph_writing_a_file(dst: pathlib.Path, marker: pathlib.Path) -> None:
    """A SavedModel (no Keras model in it) whose resource initializer writes ``marker`` when TensorFlow loads it."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", GRAPH_WRITING_A_FILE, str(dst), str(marker)], env=env, check=True, capture_output=True, timeout=600)
