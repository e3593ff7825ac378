"""On the default install (JAX, no TensorFlow) Keras's own backend fallback fails; kerasafe picks the installed one.

Each case is a real child Python whose packages are this environment's minus TensorFlow
and tf_keras (a folder of links to the rest of site-packages: TensorFlow is absent, as
after README command (1), not merely unimportable), with a fresh HOME.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from kerasafe import _backend

SRC = pathlib.Path(__file__).parent.parent / "src"
ABSENT = ("tensorflow", "tf_keras", "tensorboard")


@pytest.fixture(scope="module")
def without_tensorflow(tmp_path_factory) -> pathlib.Path:
    """A site folder holding links to every installed package except TensorFlow's."""
    site = tmp_path_factory.mktemp("site")
    for entry in pathlib.Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().replace("-", "_").startswith(ABSENT):
            (site / entry.name).symlink_to(entry)
    return site


def _run(site, home, code, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "KERAS_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    prelude = f"import site, sys; site.addsitedir({str(site)!r}); sys.path.insert(0, {str(SRC)!r})\n"
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], env=env, capture_output=True, text=True, timeout=300)


def test_the_child_has_no_tensorflow(without_tensorflow, tmp_path):
    out = _run(without_tensorflow, tmp_path, "import importlib.util; print(importlib.util.find_spec('tensorflow'))")
    assert out.stdout.strip() == "None", out.stderr


def test_import_kerasafe_then_keras_on_a_fresh_machine_and_keras_alone_after(without_tensorflow, tmp_path):
    first = _run(without_tensorflow, tmp_path, "import kerasafe, keras; print(keras.backend.backend())")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.split()[-1] == "jax"
    config = json.loads((tmp_path / ".keras" / "keras.json").read_text())
    assert config["backend"] == "jax" and config["floatx"] == "float32"
    notes = [line for line in first.stderr.splitlines() if line.startswith("kerasafe:")]
    assert len(notes) == 1 and "keras.json" in notes[0] and "KERAS_BACKEND" in notes[0]
    # the user's own script, without kerasafe, now starts too; nothing more is said
    second = _run(without_tensorflow, tmp_path, "import keras; print(keras.backend.backend())")
    assert second.returncode == 0 and second.stdout.split()[-1] == "jax", second.stderr[-2000:]


def test_the_file_keras_wrote_by_itself_is_corrected(without_tensorflow, tmp_path):
    """`import keras` before kerasafe ever ran: Keras wrote its TensorFlow default (and failed); kerasafe fixes the file."""
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text(json.dumps(_backend.KERAS_DEFAULTS, indent=4))  # checked below against Keras
    used = _run(without_tensorflow, tmp_path, "import kerasafe as ks, keras; ks.save; print(keras.backend.backend())")
    assert used.returncode == 0 and used.stdout.split()[-1] == "jax", used.stderr[-2000:]
    assert json.loads((tmp_path / ".keras" / "keras.json").read_text())["backend"] == "jax"


def test_a_keras_json_the_user_edited_is_left_alone(without_tensorflow, tmp_path):
    (tmp_path / ".keras").mkdir()
    mine = {"floatx": "float32", "epsilon": 1e-07, "backend": "tensorflow", "image_data_format": "channels_first"}
    (tmp_path / ".keras" / "keras.json").write_text(json.dumps(mine))
    out = _run(without_tensorflow, tmp_path, "import kerasafe, keras; print(keras.backend.backend(), keras.config.image_data_format())")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["jax", "channels_first"]
    assert json.loads((tmp_path / ".keras" / "keras.json").read_text()) == mine
    assert "not installed" in out.stderr and "KERAS_BACKEND" in out.stderr


def test_an_unreadable_keras_json_is_left_alone(without_tensorflow, tmp_path):
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text("{not json")
    out = _run(without_tensorflow, tmp_path, "import kerasafe, keras; print(keras.backend.backend())")
    assert out.returncode == 0 and out.stdout.split()[-1] == "jax", out.stderr[-2000:]
    assert (tmp_path / ".keras" / "keras.json").read_text() == "{not json"


def test_keras_backend_set_by_the_user_is_used_and_nothing_is_written(without_tensorflow, tmp_path):
    out = _run(without_tensorflow, tmp_path, "import kerasafe, keras; print(keras.backend.backend())", {"KERAS_BACKEND": "jax"})
    assert out.returncode == 0 and out.stdout.split()[-1] == "jax", out.stderr[-2000:]
    assert "kerasafe:" not in out.stderr
    # Keras's own first-import write, as always: what kerasafe takes for "not edited by the user"
    assert json.loads((tmp_path / ".keras" / "keras.json").read_text()) == _backend.KERAS_DEFAULTS


@pytest.mark.parametrize("config,present,expected", [
    (None, {"tensorflow", "jax"}, (None, False)),  # Keras's fallback works: left to Keras
    (None, {"jax", "torch"}, ("jax", True)),
    (None, {"torch"}, ("torch", True)),
    (None, set(), (None, False)),  # nothing installed: Keras's own error
    ({**_backend.KERAS_DEFAULTS}, {"jax"}, ("jax", True)),
    ({**_backend.KERAS_DEFAULTS, "floatx": "float64"}, {"jax"}, ("jax", False)),  # edited by the user
    ({"backend": "torch"}, {"torch", "jax"}, (None, False)),
    ({}, {"jax"}, ("jax", False)),  # a file that is not Keras's own (also one that does not parse)
    ({"backend": "torch"}, {"jax"}, ("jax", False)),
    ({"floatx": "float32"}, {"tensorflow"}, (None, False)),
])
def test_the_rule_for_every_installed_set(config, present, expected):
    assert _backend.plan(config, lambda name: name in present) == expected
