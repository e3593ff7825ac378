"""A careless user at the command line: every mistake is one line on stderr and a non-zero exit, never a traceback.

The argument checks are enumerated from the parser itself (every option of every command
that takes a typed value or a choice), so an option added later is covered too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kerasafe as ks
from conftest import run_cli
from kerasafe import cli, errors, manifest

# Values no typed option of kerasafe accepts (each option's own type decides which of these it refuses).
BAD_VALUES = ["abc", "0", "-1", "1.5", "", "nan", "inf", "64x", "x64", "0x64", "99999999999999999999"]


def _typed_options():
    """(command, option, action) for every option with a type or choices, across every sub-command."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in commands.choices.items():
        for action in sub._actions:
            if action.option_strings and (action.type is not None or action.choices):
                yield command, action.option_strings[-1], action


def _minimal_argv(command: str) -> list[str]:
    """Positional arguments that parse for ``command`` (the option under test comes after)."""
    return {"inspect": ["m.keras"], "verify": ["m.keras"], "scan": ["m.keras"], "convert": ["a", "b"], "upgrade": ["d"], "train": ["digits", "--out", "o"],
            "predict": ["m.keras", "x.png"], "evaluate": ["m.keras", "digits"], "demo": [], "serve": ["m.keras"],
            "export": ["m.keras", "o.onnx", "--to", "onnx"]}[command]


def _refuses(action, value: str) -> bool:
    """Whether the option's own type (or choices) refuses ``value``, as argparse would call it."""
    if action.choices:
        return value not in action.choices
    try:
        action.type(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return True
    return False


def _run_main(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse exits (through kerasafe's parser) for a bad command line
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line(stderr: str) -> None:
    assert stderr.count("\n") == 1 and stderr.endswith("\n") and "Traceback" not in stderr, stderr
    assert ": expected " in stderr and "found " in stderr, stderr


OPTIONS = list(_typed_options())


def test_every_typed_option_is_enumerated():
    names = {(c, o) for c, o, _ in OPTIONS}
    assert {("train", "--epochs"), ("train", "--image-size"), ("train", "--lr"), ("predict", "--top-k"), ("train", "--arch")} <= names


@pytest.mark.parametrize(("command", "option", "action"), OPTIONS, ids=[f"{c}{o}" for c, o, _ in OPTIONS])
def test_every_bad_option_value_is_one_line_and_exit_2(command, option, action, capsys):
    refused = [v for v in BAD_VALUES if _refuses(action, v)]
    assert refused, f"{command} {option} accepts every bad value"
    for value in refused:
        code, out, err = _run_main([command, *_minimal_argv(command), option, value], capsys)
        assert code == cli.EXIT_USAGE and not out, (value, err)
        _assert_one_line(err)
        assert option in err or repr(value) in err or value in err, err


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5"])
def test_epochs_batch_size_top_k_must_be_whole_numbers_of_at_least_one(value):
    parser = cli.build_parser()
    for argv in (["train", "digits", "--out", "o", "--epochs", value], ["train", "digits", "--out", "o", "--batch-size", value],
                 ["predict", "m", "x", "--top-k", value]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_image_size_one_number_is_a_square():
    parser = cli.build_parser()
    assert parser.parse_args(["train", "d", "--out", "o", "--image-size", "64"]).image_size == (64, 64)
    assert parser.parse_args(["train", "d", "--out", "o", "--image-size", "64x48"]).image_size == (64, 48)


@pytest.mark.parametrize("command", sorted(cli.build_parser()._subparsers._group_actions[0].choices))
def test_every_command_missing_arguments_or_unknown_option_is_one_line(command, capsys):
    cases = [[command, *_minimal_argv(command), "--no-such-option"]]
    if _minimal_argv(command):
        cases.append([command])  # its positional arguments missing
    for argv in cases:
        code, out, err = _run_main(argv, capsys)
        assert code == cli.EXIT_USAGE, (argv, err)
        _assert_one_line(err)


def test_no_command_and_unknown_command_are_one_line(capsys):
    for argv in ([], ["trian"]):
        code, _, err = _run_main(argv, capsys)
        assert code == cli.EXIT_USAGE
        _assert_one_line(err)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    root = tmp_path_factory.mktemp("cli_models")
    image = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    table = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    ks.save(image, root / "image.keras", labels=["a", "b"],
            preprocessing={"kind": "image", "size": [8, 8], "color_mode": "grayscale", "channel_order": "rgb", "interpolation": "bilinear"})
    ks.save(table, root / "table.keras", labels=["a", "b"],
            preprocessing={"kind": "table", "columns": ["x", "y"], "label_column": "label", "label_index": 2})
    photo = root / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(photo)
    return root


def _closed_pipe_run(*args) -> subprocess.CompletedProcess:
    """Run the CLI with its stdout a pipe whose reader has gone (as `... | head -c 0` leaves it)."""
    read, write = os.pipe()
    os.close(read)  # closed before the child writes a byte: its first write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "kerasafe.cli", *map(str, args)], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write)
    return proc


@pytest.mark.parametrize("argv", [["inspect", "--json", "{m}/image.keras"], ["inspect", "{m}/image.keras"],
                                  ["verify", "--json", "{m}/image.keras"], ["predict", "--json", "{m}/image.keras", "{m}/photo.jpg"]],
                         ids=["inspect-json", "inspect-table", "verify-json", "predict-json"])
def test_a_closed_pipe_ends_quietly(models, argv):
    proc = _closed_pipe_run(*[a.format(m=models) for a in argv])
    assert proc.returncode == cli.EXIT_PIPE and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_train_out_naming_a_file_is_refused_and_the_file_kept(tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    proc = run_cli("train", "digits", "--out", existing, "--epochs", "1", "--quiet")
    assert proc.returncode == cli.EXIT_ERROR and existing.read_text() == "mine"
    _assert_one_line(proc.stderr)
    assert str(existing) in proc.stderr and "a file" in proc.stderr


@pytest.mark.parametrize("data", ["one_class_folder", "one_class_csv"])
def test_train_needs_two_classes_and_leaves_no_run_folder(tmp_path, data):
    if data == "one_class_folder":
        dataset = tmp_path / "pets"
        (dataset / "cat").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(dataset / "cat" / f"{i}.png")
    else:
        dataset = tmp_path / "rows.csv"
        dataset.write_text("x,y,label\n" + "".join(f"{i},{i + 1},yes\n" for i in range(6)))
    out = tmp_path / "run"
    proc = run_cli("train", dataset, "--out", out, "--epochs", "1", "--quiet")
    assert proc.returncode == cli.EXIT_ERROR
    _assert_one_line(proc.stderr)
    assert "at least two class" in proc.stderr and not out.exists()


def test_predict_mistakes_are_named(models, tmp_path):
    # an image given to a model of table rows: named as binary data, not a decode error
    proc = run_cli("predict", models / "table.keras", models / "photo.jpg")
    assert proc.returncode == cli.EXIT_ERROR and "UnicodeDecodeError" not in proc.stderr and "Traceback" not in proc.stderr
    assert "binary data" in proc.stderr and str(models / "photo.jpg") in proc.stderr
    # a missing input is missing, not "Pillow cannot read"
    proc = run_cli("predict", models / "image.keras", tmp_path / "nope.png")
    assert proc.returncode == cli.EXIT_ERROR and "no such file" in proc.stderr and "Pillow" not in proc.stderr
    # --montage of a table model: refused before anything is announced or written
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n1,2\n")
    montage = tmp_path / "grid.png"
    proc = run_cli("predict", models / "table.keras", rows, "--montage", montage)
    assert proc.returncode == cli.EXIT_ERROR and not montage.exists() and "montage:" not in proc.stdout
    _assert_one_line(proc.stderr)


def test_montage_says_when_it_leaves_inputs_out(models, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8)).save(folder / f"{i:02d}.png")
    montage = tmp_path / "grid.png"
    proc = run_cli("predict", models / "image.keras", folder, "--montage", montage)
    assert proc.returncode == 0 and montage.is_file(), proc.stderr
    assert "first 16 of 20" in proc.stderr


BAD_PREPROCESSING = {"kind": "video", "size": "big", "color_mode": "cmyk", "channel_order": "gbr", "interpolation": "cubic-ish",
                     "scale": "1/255", "columns": "x,y", "label_column": 3, "label_index": -1}


def test_every_preprocessing_key_kerasafe_reads_is_checked_when_saving(tmp_path):
    import keras

    assert set(BAD_PREPROCESSING) == set(manifest.PREPROCESSING_KEYS)  # a key added later needs a bad value here
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    for key, value in BAD_PREPROCESSING.items():
        with pytest.raises(errors.KerasafeError, match=f"preprocessing '{key}'"):
            ks.save(model, tmp_path / "m.keras", preprocessing={key: value})
        assert not (tmp_path / "m.keras").exists()
    with pytest.raises(errors.KerasafeError, match="'size'"):
        ks.save(model, tmp_path / "m.keras", preprocessing={"kind": "image", "color_mode": "rgb"})  # what predict needs


def test_a_hostile_preprocessing_record_is_named_by_predict(models, tmp_path):
    """A file's own record is input too: written past ks.save's check, predict names it in one line."""
    import json
    import zipfile

    path = tmp_path / "odd.keras"
    with zipfile.ZipFile(models / "image.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "kerasafe.json":
                record = json.loads(data)
                record["preprocessing"]["size"] = "big"
                record.pop("hashes", None)
                data = json.dumps(record).encode()
            dst.writestr(item, data)
    proc = run_cli("predict", path, models / "photo.jpg")
    assert proc.returncode == cli.EXIT_ERROR, proc.stderr
    _assert_one_line(proc.stderr)
    assert "preprocessing 'size'" in proc.stderr


def test_messages_stay_one_line_on_a_narrow_terminal(models, tmp_path):
    """rich wraps to the terminal's width; an error or a warning is still one line (a script greps it)."""
    proc = run_cli("inspect", tmp_path / "no-such-model-with-a-long-name.keras", columns=20)
    assert proc.returncode == cli.EXIT_ERROR
    _assert_one_line(proc.stderr)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(17):
        Image.fromarray(np.full((8, 8), i, np.uint8)).save(folder / f"{i:02d}.png")
    proc = run_cli("predict", models / "image.keras", folder, "--montage", tmp_path / "grid.png", columns=20)
    lines = [line for line in proc.stderr.splitlines() if "montage" in line]
    assert proc.returncode == 0 and len(lines) == 1 and "first 16 of 17" in lines[0], proc.stderr
