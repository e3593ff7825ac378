"""Images that stay on disk until a batch needs them: what ``kerasafe train`` trains on from a folder.

:class:`ImageFiles` looks like an array of decoded images (``len``, ``shape``,
indexing returns decoded pixels) but holds only the file paths; ``rows(index)``
decodes the files of one batch on a shared pool of threads (Pillow releases the GIL
while it decodes). ``ks.fit`` takes it in place of an array: it reads one batch at
a time through ``rows`` and :func:`prefetch` keeps a few batches decoded ahead on
a background thread (``kerasafe.checkpoint.sources.prefetch``), so memory holds a few
batches whatever the folder's size. :func:`batches_dataset` serves the same to Keras
where it wants a ``PyDataset`` (validation, prediction).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from PIL import Image
    >>> from kerasafe.pipeline.data import image_preprocessing
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3): Image.fromarray(np.full((4, 4), i * 100, np.uint8), "L").save(d / f"{i}.png")
    >>> images = ImageFiles(sorted(d.iterdir()), image_preprocessing((4, 4), color_mode="grayscale"))
    >>> images.shape, images.rows([2, 0])[:, 0, 0, 0].tolist()
    ((3, 4, 4, 1), [200.0, 0.0])
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import numpy as np


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2), thread_name_prefix="kerasafe-decode")


class _RowsOnDisk:
    """What ImageFiles and CsvRows share: indexed like the array they would make, read only where indexed."""

    lazy_rows = True  # ks.fit reads it through rows(), never as a whole array

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index) -> np.ndarray:
        """The rows at ``index`` (an int, ints, a slice or a boolean mask), read now."""
        single = isinstance(index, int | np.integer)
        out = self._read(np.atleast_1d(np.arange(len(self))[index]))
        return out[0] if single else out

    __getitem__ = rows

    def __array__(self, dtype=None, copy=None):
        """Every row read: only where asked for explicitly (``np.asarray``); training never does this."""
        out = self.rows(slice(None))
        return out if dtype is None else out.astype(dtype)


class ImageFiles(_RowsOnDisk):
    """Image files decoded on demand, in the shape of the array they would make."""

    def __init__(self, files, preprocessing: dict):
        self.files = list(files)
        self.preprocessing = preprocessing
        height, width = preprocessing["size"]
        channels = 1 if preprocessing["color_mode"] == "grayscale" else 3
        self.shape, self.dtype, self.ndim = (len(self.files), int(height), int(width), channels), np.dtype("float32"), 4

    def subset(self, index) -> ImageFiles:
        """The files at ``index`` (an index array), still on disk."""
        return ImageFiles([self.files[i] for i in np.asarray(index, dtype=np.int64)], self.preprocessing)

    def _read(self, positions) -> np.ndarray:
        """The files at ``positions`` decoded in parallel."""
        from .data import decode_image

        pixels = list(_pool().map(lambda path: decode_image(path, self.preprocessing), [self.files[i] for i in positions]))
        return np.stack(pixels) if pixels else np.zeros((0, *self.shape[1:]), np.float32)


class CsvRows(_RowsOnDisk):
    """The feature rows of a CSV file, left on disk: each read from its byte offset when a batch needs it."""

    def __init__(self, path, offsets: np.ndarray, label_index: int, n_features: int):
        self.path, self.offsets, self.label_index = path, offsets, label_index
        self.shape, self.dtype, self.ndim = (len(offsets), n_features), np.dtype("float32"), 2

    def subset(self, index) -> CsvRows:
        return CsvRows(self.path, self.offsets[np.asarray(index, dtype=np.int64)], self.label_index, self.shape[1])

    def _read(self, positions) -> np.ndarray:
        """The rows at ``positions``, read in file order, returned in the order asked."""
        import csv

        wanted = self.offsets[positions]
        out = np.empty((len(wanted), self.shape[1]), np.float32)
        with open(self.path, "rb") as f:
            for i in np.argsort(wanted, kind="stable"):
                f.seek(int(wanted[i]))
                row = next(csv.reader([f.readline().decode("utf-8")]))
                out[i] = [float(v) for j, v in enumerate(row) if j != self.label_index]
        return out


def column_statistics(x, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each column of ``x``, read ``chunk`` rows at a time (what Normalization.adapt computes)."""
    from ..checkpoint.sources import take

    count, total, squares = 0, 0.0, 0.0
    for start in range(0, len(x), chunk):
        rows = take(x, slice(start, start + chunk)).astype(np.float64)
        count, total, squares = count + len(rows), total + rows.sum(axis=0), squares + (rows * rows).sum(axis=0)
    mean = total / max(count, 1)
    return mean.astype(np.float32), np.maximum(squares / max(count, 1) - mean * mean, 0.0).astype(np.float32)


def batches_dataset(x, y, batch_size: int, sample_weight=None):
    """A ``keras.utils.PyDataset`` of (x[, y[, sample_weight]]) batches in order, decoding each batch when Keras asks for it."""
    from .. import _keras
    from ..checkpoint.sources import take

    keras = _keras.keras()

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return -(-len(x) // batch_size)

        def __getitem__(self, i):
            index = slice(i * batch_size, (i + 1) * batch_size)
            return tuple(take(part, index) for part in (x, y, sample_weight) if part is not None)

    return Batches()


def readable(x, batch_size: int):
    """What to hand ``model.predict``: arrays as they are, image files as a PyDataset decoding a batch at a time."""
    from ..checkpoint.sources import is_lazy

    return batches_dataset(x, None, batch_size) if is_lazy(x) else x
