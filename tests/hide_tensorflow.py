"""Make TensorFlow (and tf_keras) unimportable in this process, as on a machine without them.

``find_spec`` still answers and the import itself fails, as a broken install would; that
is stricter than a missing package, which kerasafe must also survive. Installed by
``tests/sitecustomize.py`` at interpreter start when ``KERASAFE_TEST_WITHOUT_TENSORFLOW=1``
(tests/test_without_tensorflow.py runs the legacy tests that way), or by hand in a child.
"""

import importlib.abc
import importlib.machinery
import sys

HIDDEN = ("tensorflow", "tf_keras")


class _Hidden(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (hidden by the test)", name=spec.name)

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(finder, _Hidden) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hidden())
