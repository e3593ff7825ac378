"""Every zoo model exported to one format in one TensorFlow-backend process: ``python export_zoo_child.py FMT OUT_DIR NAME=PATH ...``.

Prints one JSON line: {name: report}. The same export and check `kerasafe export` runs
(kerasafe.export.child.run), without a TensorFlow start-up (7 s here) per model. Used by
tests/test_export.py; the CLI, its commit and its errors are tested there one export at a time.
"""

from __future__ import annotations

import json
import pathlib
import sys

from kerasafe.export import child, targets

if __name__ == "__main__":
    fmt, root = sys.argv[1], pathlib.Path(sys.argv[2])
    reports = {}
    for job in sys.argv[3:]:
        name, path = job.split("=", 1)
        reports[name] = child.run(path, root / (name + targets.SUFFIX.get(fmt, "")), fmt)
    print(json.dumps(reports))
