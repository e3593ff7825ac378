"""Data sets in every layout the tutorials use, and the decoding predict repeats from the manifest."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kerasafe import errors
from kerasafe.pipeline.data import decode_image, image_preprocessing, load_dataset, read_table


def _image(path, color, size=(10, 12), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[..., 0], arr[..., 1], arr[..., 2] = color
    img = Image.fromarray(arr, "RGB")
    (img.convert(mode) if mode != "RGB" else img).save(path, format=fmt)
    return path


def test_digits_is_embedded():
    ds = load_dataset("digits")
    assert ds.labels == [str(i) for i in range(10)]
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.x_train.max() == 255.0
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1797
    assert ds.preprocessing["size"] == [8, 8]


def test_presplit_malaria_layout(tmp_path):
    for split, n in (("training", 3), ("validation", 2), ("testing", 2)):
        for label, color in (("Parasitized", (200, 10, 10)), ("Uninfected", (10, 200, 10))):
            for i in range(n):
                _image(tmp_path / split / label / f"{i}.png", color)
    ds = load_dataset(tmp_path, image_size=(8, 8))
    assert ds.labels == ["Parasitized", "Uninfected"]
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (6, 4, 4)
    assert ds.x_train.shape[1:] == (8, 8, 3)
    assert ds.x_train[ds.y_train == 0][..., 0].mean() > 150


def test_class_folders_split_with_fixed_seed(tmp_path):
    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        for i in range(10):
            _image(tmp_path / label / f"{i}.jpg", color)
    a = load_dataset(tmp_path, seed=3)
    b = load_dataset(tmp_path, seed=3)
    assert a.x_train.shape[1:] == (12, 10, 3)  # size taken from the first image
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 20


def test_csv_with_and_without_header(tmp_path):
    rows = [[6, 148, 72, 1], [1, 85, 66, 0], [8, 183, 64, 1], [1, 89, 66, 0], [0, 137, 40, 1], [5, 116, 74, 0]]
    with_header = tmp_path / "pima.csv"
    with_header.write_text("preg,glucose,pressure,outcome\n" + "\n".join(",".join(map(str, r)) for r in rows))
    ds = load_dataset(with_header)
    assert ds.preprocessing["columns"] == ["preg", "glucose", "pressure"] and ds.labels == ["0", "1"]
    by_name = load_dataset(with_header, label_column="preg")
    assert by_name.preprocessing["columns"] == ["glucose", "pressure", "outcome"]
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(",".join(map(str, r)) for r in rows))
    ds2 = load_dataset(bare)
    assert ds2.preprocessing["columns"] == ["column_0", "column_1", "column_2"]
    np.testing.assert_array_equal(read_table(bare, ds2.preprocessing), np.asarray(rows, dtype=np.float32)[:, :3])
    np.testing.assert_array_equal(read_table(with_header, ds.preprocessing), np.asarray(rows, dtype=np.float32)[:, :3])


def test_decode_color_modes_order_and_size(tmp_path):
    rgb = _image(tmp_path / "a.png", (250, 100, 5), size=(16, 16))
    pixels = decode_image(rgb, image_preprocessing((4, 4)))
    assert pixels.shape == (4, 4, 3) and tuple(pixels[0, 0]) == (250, 100, 5)
    bgr = decode_image(rgb, image_preprocessing((4, 4), channel_order="bgr"))
    assert tuple(bgr[0, 0]) == (5, 100, 250)
    gray = decode_image(rgb, image_preprocessing((4, 4), color_mode="grayscale"))
    assert gray.shape == (4, 4, 1)
    from_gray_file = decode_image(_image(tmp_path / "g.png", (80, 80, 80), mode="L"), image_preprocessing((4, 4)))
    assert from_gray_file.shape == (4, 4, 3) and tuple(from_gray_file[0, 0]) == (80, 80, 80)


def test_empty_dataset_folder(tmp_path):
    with pytest.raises(errors.KerasafeError) as info:
        load_dataset(tmp_path)
    assert str(tmp_path) in str(info.value) and "empty" in str(info.value)


def test_class_folder_without_images(tmp_path):
    _image(tmp_path / "cat" / "0.png", (1, 2, 3))
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(errors.KerasafeError) as info:
        load_dataset(tmp_path)
    assert str(tmp_path / "dog") in str(info.value) and "'dog'" in str(info.value)


def test_csv_non_numeric_feature_and_missing_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("name,glucose,outcome\nann,148,1\nbob,85,0\n")
    with pytest.raises(errors.KerasafeError) as info:
        load_dataset(path)
    assert "'name'" in str(info.value) and "'ann'" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(errors.KerasafeError) as info:
        load_dataset(path, label_column="diagnosis")
    assert "'diagnosis'" in str(info.value) and "glucose" in str(info.value)


def test_unreadable_image_is_a_named_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(errors.CorruptFileError) as info:
        decode_image(bad, image_preprocessing((4, 4)))
    assert str(bad) in str(info.value)
