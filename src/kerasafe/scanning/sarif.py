"""Scan reports as SARIF 2.1.0, the format code-scanning tools (GitHub code scanning, IDEs) read.

Example:
    >>> doc = sarif([{"path": "m.keras", "findings": []}])
    >>> doc["version"], len(doc["runs"][0]["tool"]["driver"]["rules"]) > 0
    ('2.1.0', True)
"""

from __future__ import annotations

import pathlib

from .findings import RULES


def sarif(reports: list[dict]) -> dict:
    """SARIF 2.1.0, the format code-scanning tools read: one run, a result per finding."""
    levels = {"high": "error", "error": "error", "medium": "warning"}
    rules = [{"id": rule, "name": name, "shortDescription": {"text": name}, "help": {"text": advice},
              "defaultConfiguration": {"level": levels.get(severity, "note")}} for rule, (severity, name, advice) in RULES.items()]
    results = [{"ruleId": f["rule"], "level": "note" if f["trusted"] else levels.get(f["severity"], "note"),
                "message": {"text": f"{f['message']} ({f['location']})"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": pathlib.Path(r["path"]).resolve().as_uri()}},
                               "logicalLocations": [{"fullyQualifiedName": f["location"]}]}]}
               for r in reports for f in r["findings"]]
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": "kerasafe scan", "rules": rules}}, "results": results}]}
