"""``ks.scan`` and ``kerasafe scan``: is it safe to load this file? Answered without loading it or importing a framework.

The format is found by content; every part of the file that loading would act on is
read as data (zip members, HDF5 links and dataset headers, configs, the safetensors
header, a SavedModel's metadata) and each thing loading would run, import, read from
elsewhere or blow up on is a finding with a rule id, a severity and a location. The
verdict: ``unsafe`` (a high finding the caller does not trust by name), ``inconclusive``
(part of the file could not be read: never "safe"), else ``safe``.

Example:
    >>> import keras, kerasafe as ks, tempfile, os
    >>> p = ks.save(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), os.path.join(tempfile.mkdtemp(), "m.keras"))
    >>> report = ks.scan(p)
    >>> report["verdict"], report["findings"]
    ('safe', [])
"""

from __future__ import annotations

import hashlib
import pathlib

from .. import errors, remote
from .findings import RULES, Finding
from .formats import SCANNERS

VERDICT_EXIT = {"safe": 0, "unsafe": 1, "inconclusive": 2}

__all__ = ["RULES", "VERDICT_EXIT", "Finding", "scan"]


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@remote.reads_urls
def scan(path, *, trusted=None) -> dict:
    """Findings and a verdict for one model file or SavedModel directory, without loading it.

    ``trusted``: names (as the findings give them: ``"mypackage.MyLayer"``, ``"Lambda"``,
    ``"tensorflow-graph"``) whose findings the caller accepts; they are reported, marked trusted.
    Returns ``{"path", "format", "sha256", "verdict", "findings": [{"rule", "name", "severity",
    "location", "message", "advice", "trust", "trusted"}]}``.

    Example:
        >>> import keras, kerasafe as ks, tempfile, os
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> ks.scan(ks.save(m, os.path.join(tempfile.mkdtemp(), "m.h5")))["verdict"]
        'safe'
    """
    from .. import formats

    trusted = set(trusted or ())
    p = pathlib.Path(path)
    report = {"path": str(p), "format": None, "sha256": None, "verdict": "inconclusive", "findings": []}
    try:
        p, fmt = formats.locate(path, "a model file to scan")
    except errors.FileMissingError:
        raise
    except errors.KerasafeError as exc:
        found = [Finding("KS900", "file", " ".join(str(exc).split())[:300])]
        suffix = p.suffix.lower()
        if p.is_file() and suffix in (".json", ".yaml", ".yml"):  # text that hides what it is still says what it would do
            report["format"] = "yaml" if suffix != ".json" else "json"
            found += SCANNERS[report["format"]](p)
    else:
        report["format"] = fmt.name
        found = SCANNERS[fmt.name](p)
    if p.exists():
        report["sha256"] = _sha256(p)
    rows = []
    for finding in found:
        row = finding.as_dict()
        row["trusted"] = finding.trust is not None and finding.trust in trusted
        rows.append(row)
    report["findings"] = rows
    if any(r["severity"] == "high" and not r["trusted"] for r in rows):
        report["verdict"] = "unsafe"
    elif any(r["severity"] == "error" for r in rows):
        report["verdict"] = "inconclusive"
    else:
        report["verdict"] = "safe"
    return report
