"""The model a server answers with: loaded once (safe mode), inputs decoded from its manifest, a warmed predict.

The decoding is :mod:`kerasafe.pipeline`'s (the same functions ``kerasafe predict``
uses), so a served answer is ``predict``'s answer. Batches are padded up to the next
of a few fixed sizes (1, 2, 4, ... ``max_batch``), each compiled and run once before
the server says it is ready: no request waits for a compilation.

Example:
    >>> import kerasafe as ks, tempfile, os
    >>> from kerasafe.serving.engine import Engine
    >>> from kerasafe.pipeline.train import train
    >>> run = train("digits", os.path.join(tempfile.mkdtemp(), "run"), epochs=1, quiet=True)  # doctest: +SKIP
    >>> engine = Engine(run.model_path, max_batch=8)  # doctest: +SKIP
    >>> engine.answer(engine.predict(engine.decode_array([[0] * 8] * 8)[None]))[0]["label"]  # doctest: +SKIP
    '1'
"""

from __future__ import annotations

import base64
import binascii
import io
import threading

import numpy as np

from .. import errors
from ..pipeline.data import decode_image_from
from ..pipeline.predict import _model_and_preprocessing, _rows


class BadInput(ValueError):
    """A request's input that cannot become model input; the message says what and why (a 4xx)."""


def bucket_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to and including ``max_batch``: the batch sizes compiled ahead."""
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return sorted(set(sizes + [max(1, max_batch)]))


class Engine:
    """A loaded model with what it takes (``preprocessing``) and what it answers (``names``)."""

    def __init__(self, model_path, *, max_batch: int = 32, top_k: int = 3, safe_mode: bool = True):
        # safe_mode=False only when the operator vouches for the file (``--trust``).
        self.model, labels, self.preprocessing = _model_and_preprocessing(model_path, safe_mode=safe_mode)
        self.path = str(model_path)
        outputs = int(self.model.outputs[0].shape[-1])
        self.names = labels or [str(i) for i in range(outputs)]
        self.input_shape = tuple(int(d) for d in self.model.inputs[0].shape[1:])
        self.max_batch = max(1, int(max_batch))
        self.top_k = min(top_k, len(self.names))  # the default; a request may ask for up to len(names)
        self.sizes = bucket_sizes(self.max_batch)
        self._lock = threading.Lock()  # one predict at a time: the model is not thread-safe on every backend

    @property
    def kind(self) -> str:
        return self.preprocessing["kind"]

    def warm(self, sizes=None) -> None:
        """Run the predict function once for every batch size it will see."""
        for n in sizes or self.sizes:
            self.predict(np.zeros((n, *self.input_shape), dtype=np.float32), pad=False)

    def predict(self, batch: np.ndarray, *, pad: bool = True) -> np.ndarray:
        """Probabilities for a batch (padded to a compiled size when ``pad``)."""
        n = len(batch)
        if pad:
            size = next((s for s in self.sizes if s >= n), n)
            if size > n:
                batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype)])
        with self._lock:
            out = self.model.predict_on_batch(batch)
        return np.asarray(out)[:n]

    def answer(self, probabilities: np.ndarray, top_k: int | None = None) -> list[dict]:
        return _rows(probabilities, self.names, top_k or self.top_k)

    # ---- decoding what a request carries ----

    def decode_upload(self, data: bytes, name: str) -> np.ndarray:
        if self.kind != "image":
            raise BadInput(f"{name}: this model takes table rows, not files: send JSON {{\"instances\": [[...], ...]}}")
        try:
            return decode_image_from(io.BytesIO(data), self.preprocessing, name)
        except errors.KerasafeError as exc:
            raise BadInput(f"{name}: not an image Pillow can read") from exc

    def decode_instance(self, value, where: str) -> np.ndarray:
        """One JSON instance: an image as base64 (a string or ``{"b64": ...}``), or an array / table row."""
        if isinstance(value, dict) and "b64" in value:
            value = value["b64"]
        if isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadInput(f"{where}: a string that is not base64") from None
            return self.decode_upload(data, where)
        return self.decode_array(value, where)

    def decode_array(self, value, where: str = "input") -> np.ndarray:
        if isinstance(value, dict) and self.kind == "table":
            columns = self.preprocessing["columns"]
            missing = [c for c in columns if c not in value]
            if missing:
                raise BadInput(f"{where}: a row without column '{missing[0]}' (the model takes {columns})")
            value = [value[c] for c in columns]
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise BadInput(f"{where}: numbers in the shape {list(self.input_shape)} expected") from None
        if self.kind == "image" and array.ndim == len(self.input_shape) - 1 and self.input_shape[-1] == 1:
            array = array[..., None]  # a grayscale image given as rows of pixels
        if array.shape != self.input_shape:
            raise BadInput(f"{where}: shape {list(array.shape)} where the model takes {list(self.input_shape)}")
        if not np.isfinite(array).all():
            raise BadInput(f"{where}: values that are not finite numbers")
        return array

