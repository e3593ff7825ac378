"""Data sets for ``kerasafe train``/``evaluate`` and the decoding ``predict`` repeats from the manifest.

A data set is one of: the word ``digits`` (scikit-learn's bundled digits, nothing
downloaded); a folder with ``training/``, ``validation/``, ``testing/`` each holding
one folder per class; a folder of class folders (split with a fixed seed); a CSV
file with a label column. Every image is decoded by :func:`decode_image` from a
``preprocessing`` dict alone, the same dict that travels in the model file, so
prediction cannot drift from training.

Example:
    >>> from kerasafe.pipeline.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.labels[:3], ds.x_train.shape[1:], ds.preprocessing["color_mode"]
    (['0', '1', '2'], (8, 8, 1), 'grayscale')
"""

from __future__ import annotations

import array
import csv
import dataclasses
import itertools
import pathlib

import numpy as np

from .. import errors
from ..manifest import INTERPOLATIONS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLITS = ("training", "validation", "testing")


@dataclasses.dataclass
class Dataset:
    """Arrays for the three splits, the class names, and how raw input becomes model input.

    For an image folder the ``x_*`` are :class:`~kerasafe.pipeline.streaming.ImageFiles`:
    indexed like arrays, decoded only when a batch is read.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    preprocessing: dict
    source: str

    @property
    def kind(self) -> str:
        return self.preprocessing["kind"]


def image_preprocessing(size, *, color_mode="rgb", channel_order="rgb", interpolation="bilinear") -> dict:
    """The manifest's description of how an image file becomes model input.

    Decoding (color mode, channel order, size, interpolation) happens before the
    model; scaling happens inside it (a Rescaling layer), recorded here as ``scale``.
    """
    if color_mode not in ("rgb", "grayscale"):
        raise errors.KerasafeError(None, "color mode 'rgb' or 'grayscale'", repr(color_mode), "pass --color rgb or --color grayscale")
    if channel_order not in ("rgb", "bgr"):
        raise errors.KerasafeError(None, "channel order 'rgb' or 'bgr'", repr(channel_order), "pass rgb, or bgr for models trained on OpenCV arrays")
    if interpolation not in INTERPOLATIONS:
        raise errors.KerasafeError(None, f"an interpolation among {INTERPOLATIONS}", repr(interpolation), "pick one of those")
    return {
        "kind": "image",
        "color_mode": color_mode,
        "channel_order": channel_order,
        "size": [int(size[0]), int(size[1])],
        "interpolation": interpolation,
        "scale": 1 / 255.0,
        "scale_applied_by": "model",
    }


def decode_image(path, preprocessing: dict) -> np.ndarray:
    """Pixels of one image file as the model expects them: (height, width, channels) float32, 0-255.

    Raises :class:`kerasafe.errors.FileMissingError` for a path that is not a file and
    :class:`kerasafe.errors.CorruptFileError` for a file Pillow cannot read.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.FileMissingError(path, "an image file", "no such file" if not path.exists() else "a folder", "check the path")
    return decode_image_from(path, preprocessing, path)


def decode_image_from(source, preprocessing: dict, name) -> np.ndarray:
    """:func:`decode_image` of a path or a binary file object (an upload); ``name`` for errors.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (4, 2), (255, 0, 0)).save(buf, "PNG")
        >>> decode_image_from(io.BytesIO(buf.getvalue()), image_preprocessing((2, 2)), "red.png").shape
        (2, 2, 3)
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as im:
            im = im.convert("L" if preprocessing["color_mode"] == "grayscale" else "RGB")
            height, width = preprocessing["size"]
            if im.size != (width, height):
                resample = getattr(Image.Resampling, preprocessing.get("interpolation", "bilinear").upper())
                im = im.resize((width, height), resample=resample)
            pixels = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise errors.CorruptFileError(name, "an image file", f"something Pillow cannot read ({exc})", "remove or replace the file") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if preprocessing.get("channel_order") == "bgr":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels)


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The bundled digits are 8x8 intensities 0-16; stretch them to 0-255 so they are
    # ordinary grayscale pixels, the same as a PNG of them would decode to.
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    labels = [str(i) for i in range(10)]
    return _split(x, y, labels, image_preprocessing((8, 8), color_mode="grayscale"), "digits", seed, (0.7, 0.15, 0.15))


def _split(x, y, labels, preprocessing, source, seed, ratios) -> Dataset:
    """Shuffle with ``seed`` and cut into train/validation/test by ``ratios`` (same seed, same cut)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(round(len(x) * ratios[0]))
    n_val = int(round(len(x) * ratios[1]))
    parts = np.split(order, [n_train, n_train + n_val])
    pick = x.subset if hasattr(x, "subset") else x.__getitem__  # image files stay on disk
    return Dataset(pick(parts[0]), y[parts[0]], pick(parts[1]), y[parts[1]], pick(parts[2]), y[parts[2]], labels, preprocessing, source)


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_class_folders(root: pathlib.Path, labels: list[str], preprocessing: dict):
    """(the images, left on disk and decoded batch by batch as training reads them, their class numbers)."""
    from .streaming import ImageFiles

    paths, ys = [], []
    for index, name in enumerate(labels):
        folder = root / name
        files = _image_files(folder) if folder.is_dir() else []
        if not files:
            raise errors.KerasafeError(
                folder, f"images ({', '.join(sorted(IMAGE_SUFFIXES)[:4])}, ...) for class '{name}'", "none",
                "add images to the class folder or remove it",
            )
        paths.extend(files)
        ys.extend([index] * len(files))
    return ImageFiles(paths, preprocessing), np.asarray(ys, dtype=np.int64)


def _first_image_size(root: pathlib.Path) -> tuple[int, int]:
    from PIL import Image

    for path in _image_files(root):
        try:
            with Image.open(path) as im:
                return im.size[1], im.size[0]
        except OSError:
            continue
    raise errors.KerasafeError(root, "at least one readable image", "none", "check the data set folder")


def _image_folder(root: pathlib.Path, *, image_size, color, channel_order, interpolation, seed, ratios) -> Dataset:
    split_dirs = [root / s for s in SPLITS]
    presplit = all(d.is_dir() for d in split_dirs)
    class_root = split_dirs[0] if presplit else root
    classes = _class_folders(class_root)
    if not classes:
        raise errors.KerasafeError(
            root, "class folders (training/<class>/..., or <class>/... directly)", "no sub-folders", "arrange images one folder per class"
        )
    labels = [c.name for c in classes]
    if len(labels) < 2:
        raise errors.KerasafeError(class_root, "at least two class folders (one folder of images per class)", f"only '{labels[0]}'",
                                   "add a folder for every class the model is to tell apart")
    size = image_size or _first_image_size(class_root)
    preprocessing = image_preprocessing(size, color_mode=color, channel_order=channel_order, interpolation=interpolation)
    if presplit:
        parts = [_read_class_folders(d, labels, preprocessing) for d in split_dirs]
        return Dataset(*parts[0], *parts[1], *parts[2], labels, preprocessing, str(root))
    x, y = _read_class_folders(root, labels, preprocessing)
    return _split(x, y, labels, preprocessing, str(root), seed, ratios)


def _csv_rows(path: pathlib.Path) -> list[list[str]]:
    """The non-empty rows of a CSV file; a file that is not UTF-8 text (an image, say) is named as such."""
    return [row for _, _, row in _csv_lines(path)]


# CSV files larger than this are not held in memory for training: each row is read from the
# file when a batch needs it (8 bytes of memory per row for its position, 8 for its label).
STREAM_CSV_BYTES = 256 * 2**20


def _csv_lines(path: pathlib.Path):
    """(line number, byte offset, row) of each non-empty row, read a line at a time (never the whole file)."""
    if not path.is_file():
        raise errors.FileMissingError(path, "a CSV file", "no such file" if not path.exists() else "a folder", "check the path")
    offset = 0
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                row = next(csv.reader([raw.decode("utf-8")]), [])
                if row:
                    yield number, offset, row
                offset += len(raw)
    except UnicodeDecodeError as exc:
        raise errors.CorruptFileError(path, "a CSV text file (UTF-8)", f"binary data (byte {offset + exc.start} is not text)",
                                      "pass the CSV file of rows the model was trained on") from None
    except csv.Error as exc:
        raise errors.CorruptFileError(path, "a CSV text file", f"unreadable CSV ({exc})", "check the file") from None


def _csv(path: pathlib.Path, *, label_column, seed, ratios, stream=None) -> Dataset:
    """A labelled CSV: in memory, or (``stream``, by default for files over STREAM_CSV_BYTES) rows left on disk."""
    from .streaming import CsvRows

    lines = _csv_lines(path)
    head = list(itertools.islice(lines, 2))  # checks the file first
    if stream is None:
        stream = path.stat().st_size > STREAM_CSV_BYTES
    if len(head) < 2:
        raise errors.KerasafeError(path, "a CSV file with rows of data", f"{len(head)} rows", "check the file")
    has_header = not _all_numeric(head[0][2])
    header = head[0][2] if has_header else [f"column_{i}" for i in range(len(head[0][2]))]
    if label_column is None:
        label_index = len(header) - 1
    elif label_column in header:
        label_index = header.index(label_column)
    elif label_column.isdigit() and int(label_column) < len(header):
        label_index = int(label_column)
    else:
        raise errors.KerasafeError(path, f"a label column named '{label_column}'", f"columns {header}", "pass --label with one of them")
    columns = [h for i, h in enumerate(header) if i != label_index]
    features, offsets, label_ids, names = [], array.array("q"), array.array("q"), {}
    for line, offset, row in itertools.chain(head[1:] if has_header else head, lines):
        if len(row) != len(header):
            raise errors.KerasafeError(path, f"{len(header)} values on line {line}", f"{len(row)}", "fix that line")
        values = [v for i, v in enumerate(row) if i != label_index]
        try:
            parsed = [float(v) for v in values]
        except ValueError:
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise errors.KerasafeError(
                path, f"numbers in feature column '{columns[bad]}'", f"{values[bad]!r} on line {line}",
                "encode that column as numbers, or make it the label with --label",
            ) from None
        if stream:
            offsets.append(offset)
        else:
            features.append(parsed)
        label_ids.append(names.setdefault(row[label_index].strip(), len(names)))
    labels = sorted(names, key=lambda t: (not _is_number(t), float(t) if _is_number(t) else 0.0, t))
    if len(labels) < 2:
        raise errors.KerasafeError(path, f"at least two classes in label column '{header[label_index]}'",
                                   f"only {labels[0]!r}" if labels else "none", "a classifier needs examples of every class it is to tell apart")
    rank = {name: i for i, name in enumerate(labels)}
    y = np.asarray([rank[name] for name in names], np.int64)[np.frombuffer(label_ids, dtype=np.int64)]  # names: first-seen order
    x = CsvRows(path, np.frombuffer(offsets, dtype=np.int64), label_index, len(columns)) if stream else np.asarray(features, dtype=np.float32)
    preprocessing = {"kind": "table", "columns": columns, "label_column": header[label_index], "label_index": label_index}
    return _split(x, y, labels, preprocessing, str(path), seed, ratios)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _all_numeric(row) -> bool:
    return all(_is_number(v) for v in row)


def read_table(path, preprocessing: dict) -> np.ndarray:
    """Feature rows of a CSV file in the column order the model was trained with."""
    path = pathlib.Path(path)
    rows = _csv_rows(path)
    columns = preprocessing["columns"]
    if rows and not _all_numeric(rows[0]):
        header, body = rows[0], rows[1:]
        missing = [c for c in columns if c not in header]
        if missing:
            raise errors.KerasafeError(path, f"column '{missing[0]}' the model was trained on", f"columns {header}", "add the column")
        picks = [header.index(c) for c in columns]
    else:
        body = rows
        width = len(rows[0]) if rows else 0
        if width == len(columns):
            picks = list(range(width))
        elif width == len(columns) + 1:  # the label column is still there: leave it out
            picks = [i for i in range(width) if i != preprocessing["label_index"]]
        else:
            raise errors.KerasafeError(path, f"{len(columns)} feature columns", f"{width} columns", "pass rows with the training columns")
    try:
        return np.asarray([[float(r[i]) for i in picks] for r in body], dtype=np.float32)
    except (ValueError, IndexError) as exc:
        raise errors.KerasafeError(path, f"{len(columns)} numeric feature columns", f"a row that does not fit ({exc})", "check the file") from None


def load_dataset(spec, *, image_size=None, color="rgb", channel_order="rgb", interpolation="bilinear",
                 label_column=None, seed=0, ratios=(0.7, 0.15, 0.15), stream=None) -> Dataset:
    """Load a data set given as ``digits``, a CSV path, or an image folder (see the module doc).

    ``stream`` (CSV only): leave the rows on disk and read them batch by batch; by default
    only for files over ``STREAM_CSV_BYTES``. Image folders always stay on disk.
    """
    if str(spec) == "digits":
        return _digits(seed)
    path = pathlib.Path(spec)
    if not path.exists():
        raise errors.FileMissingError(path, "a data set: 'digits', a CSV file or an image folder", "no such path", "check the path")
    if path.is_file():
        if path.suffix.lower() not in (".csv", ".txt", ".data"):
            raise errors.KerasafeError(path, "a CSV file or an image folder", f"a '{path.suffix}' file", "pass a .csv file or a folder")
        return _csv(path, label_column=label_column, seed=seed, ratios=ratios, stream=stream)
    if not any(path.iterdir()):
        raise errors.KerasafeError(path, "a data set folder with class folders", "an empty folder", "add one folder of images per class")
    return _image_folder(path, image_size=image_size, color=color, channel_order=channel_order,
                         interpolation=interpolation, seed=seed, ratios=ratios)
