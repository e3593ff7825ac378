"""Register kerasafe's stand-in layers and functions with Keras as soon as Keras is imported.

A ``.keras`` file converted from an old model may name ``kerasafe>LocallyConnected2D``
or ``kerasafe>keras2_hard_sigmoid``; plain ``keras.saving.load_model`` finds those only
if they are registered. ``import kerasafe`` must not import Keras (it stays light), so
kerasafe registers them right after Keras's own import finishes, whichever of the two
is imported first: a finder on ``sys.meta_path`` wraps the loader of the ``keras``
package (the standard library has no post-import hook; this is the usual way to
make one, about 30 lines).
"""

from __future__ import annotations

import importlib.abc
import sys


def _register() -> None:
    try:
        from . import _keras

        _keras.keras()
    except Exception as exc:  # noqa: BLE001 - never break the user's `import keras`
        import warnings

        warnings.warn(f"kerasafe could not register its layers with Keras ({exc}); ks.load still works", stacklevel=2)


class _AfterKerasLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        from . import _backend

        _backend.choose()  # `import kerasafe, keras` on the default install: not Keras's TensorFlow fallback
        self._loader.exec_module(module)
        _register()


class _KerasImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once: find Keras's real spec with the other finders
        spec = None
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterKerasLoader(spec.loader)
        return spec


def register_when_keras_is_imported() -> None:
    """Register now if Keras is already imported, else right after its import."""
    if "keras" in sys.modules:
        _register()
    elif not any(isinstance(f, _KerasImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportFinder())
