"""Each kind of hostile or damaged file the fuzzer met before the regression corpus existed, built on purpose.

A builder makes one file of a kind (a bomb, a loop, a forged size, a value of the wrong
type, code that writes the fuzz marker, ...) from a seed (seeds.py). Each kind is kept as a
regression file under tests/fixtures/fuzz/regressions/hostile/ (``python -m fuzzing.hostile``
from tests/ writes them, with the real TensorFlow for the graph-only SavedModel);
tests/test_hostile_files.py replays the kept files through every reader and builds only the
kinds too large to keep (``campaign.KEEP_BYTES``).

Example (from tests/):
    KERAS_BACKEND=jax ../.venv/bin/python -m fuzzing.hostile
"""

from __future__ import annotations

import io
import json
import pathlib
import shutil
import struct
import sys
import tempfile
import zipfile

import h5py
import numpy as np

from . import mutators, seeds
from .campaign import KEEP_BYTES, REGRESSIONS, folder_bytes
from .runner import MARKER

KEPT = REGRESSIONS / "hostile"


def _zip_with(seed, dst, replace: dict, compression=zipfile.ZIP_DEFLATED, extra=()):
    with zipfile.ZipFile(seed) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            data = replace.get(info.filename, src.read(info))
            out.writestr(zipfile.ZipInfo(info.filename), data, compress_type=compression if info.filename in replace else info.compress_type)
        for name, data in extra:
            out.writestr(name, data)


def _h5(seed, dst, change):
    shutil.copyfile(seed, dst)
    with h5py.File(dst, "r+", libver="latest") as f:
        change(f, dst)


def _first_dataset(f) -> str:
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names[0]


def _replace_dataset(make):
    def change(f, dst):
        name = _first_dataset(f)
        del f[name]
        make(f, name, dst)
    return change


def _deep_groups(f, dst):
    group = f["/"]
    for _ in range(2500):
        group = group.create_group("g")


def _many_layer_names(f, dst):
    """1,200,000 names in Keras's chunked form (layer_names0, layer_names1, ...: each header message under 64 KiB)."""
    del f.attrs["layer_names"]
    for chunk in range(400):
        f.attrs[f"layer_names{chunk}"] = np.array([f"layer_{chunk}_{i}" for i in range(3000)], dtype=h5py.string_dtype())


def _safetensors(seed, dst, header_text: bytes | None = None, length: int | None = None):
    data = seed.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n] if header_text is None else header_text
    dst.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data[8 + n:])


def _wrong_type_config(seed, dst):
    config = json.loads(zipfile.ZipFile(seed).read("config.json"))
    config["config"]["layers"] = {"not": "a list"}
    _zip_with(seed, dst, {"config.json": json.dumps(config)})


class _Payload:
    """Unpickling this writes the marker: what a pickle in a model file can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "ran"))


def _pickled_weights(seed, dst, marker):
    """A .keras whose weights are an .npz member holding a pickle (Keras's other weights layout)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{"layers/conv/vars/0": np.array([_Payload(marker)], dtype=object)})
    with zipfile.ZipFile(seed) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            if info.filename != "model.weights.h5":
                out.writestr(info, src.read(info))
        out.writestr("model.weights.npz", buffer.getvalue())


ALIAS_BOMB = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]) + "\nclass_name: *i\n"

# name: (seed, file name, builder(seed path, destination, marker))
HOSTILE = {
    "config.json deflate bomb": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"config.json": b" " * mutators.BOMB_BYTES})),
    "metadata.json bzip2 bomb": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"metadata.json": b" " * mutators.BOMB_BYTES}, zipfile.ZIP_BZIP2)),
    "weights member lzma bomb": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"model.weights.h5": b"\0" * mutators.BOMB_BYTES}, zipfile.ZIP_LZMA)),
    "pickle in the weights": ("keras", "m.keras", _pickled_weights),
    "duplicate zip member": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {}, extra=[("config.json", "{}")])),
    "deep JSON config": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"config.json": mutators.deep_json()})),
    "deep JSON manifest": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"kerasafe.json": mutators.deep_json()})),
    "config of the wrong type": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"config.json": "[1, 2]"})),
    "layers of the wrong type": ("keras", "m.keras", lambda s, d, m: _wrong_type_config(s, d)),
    "manifest values of the wrong type": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"kerasafe.json": json.dumps(
        {"labels": {"a": 1}, "preprocessing": [1], "metadata": "x", "hashes": [1], "created": 5, "keras_version": {}})})),
    "config.json not UTF-8": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"config.json": b"\xff\xfe{}"})),
    "Lambda bytecode in config": ("keras", "m.keras", lambda s, d, m: _zip_with(s, d, {"config.json": json.dumps(
        {"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "InputLayer", "config": {"batch_shape": [None, 3]}},
                                                                         mutators.lambda_layer(m)]}})})),
    "VDS reading its own file": ("h5", "m.h5", lambda s, d, m: _h5(s, d, _replace_dataset(
        lambda f, n, dst: f.create_virtual_dataset(n, _self_layout(dst, n))))),
    "external storage": ("weights.h5", "m.weights.h5", lambda s, d, m: _h5(s, d, _replace_dataset(
        lambda f, n, dst: f.create_dataset(n, shape=(16,), dtype="u1", external=[("/etc/hostname", 0, 16)])))),
    "external link": ("h5", "m.h5", lambda s, d, m: _h5(s, d, _replace_dataset(lambda f, n, dst: f.__setitem__(n, h5py.ExternalLink("/etc/passwd", "/x"))))),
    "soft link loop": ("weights.h5", "m.weights.h5", lambda s, d, m: _h5(s, d, _replace_dataset(lambda f, n, dst: f.__setitem__(n, h5py.SoftLink("/" + n))))),
    "4 TiB declared dataset": ("weights.h5", "m.weights.h5", lambda s, d, m: _h5(s, d, _replace_dataset(
        lambda f, n, dst: f.create_dataset(n, shape=(1 << 40,), dtype="f4", chunks=(1 << 16,))))),
    "groups 2500 deep": ("h5", "m.h5", lambda s, d, m: _h5(s, d, _deep_groups)),
    # variable-length strings: the header holds only a reference, so an attribute can be any size
    "layer_names one 2M-character string": ("keras2 weights", "w.h5", lambda s, d, m: _h5(s, d, lambda f, dst: f.attrs.__setitem__(
        "layer_names", "y" * 2_000_000))),
    "layer_names 1.2M names": ("keras2 weights", "w.h5", lambda s, d, m: _h5(s, d, _many_layer_names)),
    "weight_names one name of 100,000 characters": ("tf.keras h5", "m.h5", lambda s, d, m: _h5(s, d, lambda f, dst: f["model_weights/dense"].attrs.__setitem__(
        "weight_names", np.array(["dense/" + "k" * 100_000], dtype=h5py.string_dtype())))),
    "Empty attributes": ("tf.keras h5", "m.h5", lambda s, d, m: _h5(s, d, lambda f, dst: [f.attrs.__setitem__(k, h5py.Empty("f4")) for k in list(f.attrs)])),
    "model_config of the wrong type": ("tf.keras h5", "m.h5", lambda s, d, m: _h5(s, d, lambda f, dst: f.attrs.__setitem__("model_config", b"[1, 2, 3]"))),
    "safetensors deep header": ("safetensors", "m.safetensors", lambda s, d, m: _safetensors(s, d, mutators.deep_json().encode())),
    "safetensors header past the end": ("safetensors", "m.safetensors", lambda s, d, m: _safetensors(s, d, length=1 << 62)),
    "safetensors offsets past the end": ("safetensors", "m.safetensors", lambda s, d, m: _safetensors(s, d, json.dumps(
        {k: dict(v, data_offsets=[0, 1 << 40]) if k != "__metadata__" else v
         for k, v in json.loads(s.read_bytes()[8:8 + struct.unpack("<Q", s.read_bytes()[:8])[0]]).items()}).encode())),
    "YAML alias bomb": ("yaml", "m.yaml", lambda s, d, m: d.write_text(ALIAS_BOMB)),
    "YAML python tag": ("yaml", "m.yaml", lambda s, d, m: d.write_text(f"!!python/object/apply:os.system ['touch {m}']\n")),
    "JSON architecture nested 50,000 deep": ("json", "m.json", lambda s, d, m: d.write_text(mutators.deep_json())),
    "JSON architecture of the wrong types": ("tf.keras json", "m.json", lambda s, d, m: d.write_text(json.dumps(
        {"class_name": "Sequential", "config": {"layers": [{"class_name": 3, "config": []}, None, "x"]}}))),
    "checkpoint state naming a 5000-character file": ("tf checkpoint", "ckpt", lambda s, d, m: _checkpoint_state(s, d, "x" * 5000)),
    "checkpoint folder whose state file names a 5000-character file": ("tf checkpoint", "ckpt", lambda s, d, m: _checkpoint_state(s, d, "x" * 5000)),
    "checkpoint folder whose state file names a file elsewhere": ("tf checkpoint", "ckpt", lambda s, d, m: _checkpoint_state(s, d, "/etc/passwd")),
    "checkpoint index damaged": ("tf checkpoint", "ckpt", lambda s, d, m: _checkpoint_bytes(s, d, ".index")),
    "SavedModel metadata damaged": ("savedmodel", "m.savedmodel", lambda s, d, m: _savedmodel_damage(s, d, "keras_metadata.pb")),
    # built with the real TensorFlow (kept, so replaying it needs none)
    "graph-only SavedModel whose initializer writes a file": ("savedmodel", "m.savedmodel", lambda s, d, m: mutators.graph_writing_a_file(d, m)),
    "SavedModel variables damaged": ("savedmodel", "m.savedmodel", lambda s, d, m: _savedmodel_damage(s, d, "variables/variables.index")),
}


def _self_layout(dst, name):
    """A virtual dataset whose source is its own file ("." in HDF5's terms, so the kept file stays hostile when moved)."""
    layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
    layout[:] = h5py.VirtualSource(".", name, shape=(16,))
    return layout


def _checkpoint_state(seed, dst, name):
    shutil.copytree(seed.parent, dst)
    (dst / "checkpoint").write_text(f'model_checkpoint_path: "{name}"\n')


def _checkpoint_bytes(seed, dst, suffix):
    shutil.copytree(seed.parent, dst)
    target = dst / (seed.name + suffix)
    data = bytearray(target.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"\xff" * 16
    target.write_bytes(bytes(data))


def _savedmodel_damage(seed, dst, member):
    shutil.copytree(seed, dst)
    target = dst / member
    data = bytearray(target.read_bytes())
    data[len(data) // 3:len(data) // 3 + 32] = b"\x8f" * 32
    target.write_bytes(bytes(data))


def slug(kind: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in kind).strip("_")


def build(kind: str, built: dict, folder: pathlib.Path) -> pathlib.Path:
    """Make ``kind``'s file under ``folder`` (which must not exist) from the seeds in ``built``; return the path to read."""
    seed_name, file_name, builder = HOSTILE[kind]
    seed = built[seed_name]
    folder.mkdir(parents=True)
    path = folder / file_name
    builder(seed.path, path, MARKER)
    if seed.kind == "tf-checkpoint" and "folder" not in kind:
        path = path / seed.path.name  # the checkpoint prefix (else the folder, named by its state file)
    return path


def kept(kind: str) -> pathlib.Path | None:
    """The stored regression file of ``kind``, or None for a kind too large to keep (built each run)."""
    record = KEPT / f"{slug(kind)}.json"
    if not record.is_file():
        return None
    return KEPT / slug(kind) / json.loads(record.read_text())["entry"]


def write_all(built: dict) -> list[str]:
    """Store every kind small enough under KEPT, each with a record naming its seed and kind; return the kinds kept."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in sorted(HOSTILE):
            folder = pathlib.Path(tmp) / slug(kind)
            path = build(kind, built, folder)
            target = KEPT / slug(kind)
            shutil.rmtree(target, ignore_errors=True)
            (KEPT / f"{slug(kind)}.json").unlink(missing_ok=True)
            if folder_bytes(folder) > KEEP_BYTES:
                continue
            shutil.copytree(folder, target)
            record = {"seed": HOSTILE[kind][0], "mutator": f"hostile/{kind}", "entry": str(path.relative_to(folder)),
                      "findings": "built on purpose for a kind the first fuzz campaign found (issue 14)"}
            (KEPT / f"{slug(kind)}.json").write_text(json.dumps(record, indent=1) + "\n")
            out.append(kind)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        built = {s.name: s for s in seeds.build(pathlib.Path(tmp) / "seeds")}
        kept_kinds = write_all(built)
    for kind in sorted(HOSTILE):
        print(("kept   " if kind in kept_kinds else "built  ") + kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
