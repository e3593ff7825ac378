"""What a run leaves for people: history.csv, plot.png, report.txt and the 4x4 montage.

Every file is written through :mod:`kerasafe.storage` (temporary name, fsync, rename).
"""

from __future__ import annotations

import csv
import io
import pathlib

import numpy as np

from .. import storage

TILE = 128
GRID = 4


def write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    with storage.atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_history(path: pathlib.Path, history: dict[str, list[float]]) -> pathlib.Path:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in history] + sorted(
        k for k in history if k not in ("loss", "accuracy", "val_loss", "val_accuracy")
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *keys])
    for i in range(len(history.get("loss", []))):
        writer.writerow([i + 1, *(f"{history[k][i]:.6f}" for k in keys)])
    return write_text(path, buffer.getvalue())


def write_plot(path: pathlib.Path, history: dict[str, list[float]], title: str) -> pathlib.Path:
    """Loss and accuracy, train and validation, per epoch (tutorial 001's plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    for key, label in (("loss", "train_loss"), ("val_loss", "val_loss"), ("accuracy", "train_acc"), ("val_accuracy", "val_acc")):
        if key in history:
            ax.plot(epochs, history[key], marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / accuracy")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    with storage.atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def classification_text(y_true, y_pred, labels: list[str]) -> str:
    """Per-class precision/recall/F1, accuracy, and the confusion matrix, as text."""
    from sklearn.metrics import classification_report, confusion_matrix

    indices = list(range(len(labels)))
    report = classification_report(y_true, y_pred, labels=indices, target_names=labels, digits=4, zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=indices)
    width = max(6, *(len(l) for l in labels))
    lines = ["confusion matrix (rows: true, columns: predicted)", " " * width + " " + " ".join(f"{l[:width]:>{width}}" for l in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f"{label[:width]:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    return report + "\n" + "\n".join(lines) + "\n"


def class_colors(n: int) -> list[tuple[int, int, int]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(int(255 * c) for c in cmap(i % cmap.N)[:3]) for i in range(n)]


def write_montage(path: pathlib.Path, tiles: list[tuple[pathlib.Path, str, int]], n_classes: int) -> pathlib.Path:
    """A 4x4 grid of 128-pixel tiles, each an input image with its label drawn in its class color."""
    from PIL import Image, ImageDraw, ImageFont

    colors = class_colors(max(1, n_classes))
    canvas = Image.new("RGB", (TILE * GRID, TILE * GRID), "black")
    font = ImageFont.load_default(size=14)
    for i, (image_path, label, class_index) in enumerate(tiles[: GRID * GRID]):
        with Image.open(image_path) as im:
            # Small inputs (8x8 digits) are enlarged without smoothing so they stay legible.
            tile = im.convert("RGB").resize((TILE, TILE), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, TILE - 1, 18), fill=(0, 0, 0))
        draw.text((4, 3), label, fill=colors[class_index % len(colors)], font=font)
        draw.rectangle((0, 0, TILE - 1, TILE - 1), outline=colors[class_index % len(colors)], width=2)
        canvas.paste(tile, ((i % GRID) * TILE, (i // GRID) * TILE))
    with storage.atomic_file(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
