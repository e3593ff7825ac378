"""The scanner's rules: each an id, a severity, what it means and what to do.

Example:
    >>> f = Finding("KS101", "config.layers[1]", "Lambda layer 'l' carrying Python bytecode", trust="Lambda")
    >>> f.severity, f.blocks
    ('high', True)
"""

from __future__ import annotations

import dataclasses

# id: (severity, short name, what to do). "high" findings make a file unsafe unless trusted by name.
RULES = {
    "KS101": ("high", "python-bytecode", "load it only if you trust its author: safe_mode=False"),
    "KS102": ("high", "custom-object", "install the code it names and pass trusted=[...] with that name if you trust it"),
    "KS103": ("high", "pickle", "a pickle runs code when read: load it only if you trust its author"),
    "KS104": ("high", "python-yaml-tag", "a YAML python/ tag builds Python objects: regenerate the file as plain YAML"),
    "KS105": ("high", "tensorflow-graph", "loading runs its TensorFlow graph: load it only if you trust its author (safe_mode=False)"),
    "KS106": ("high", "tensorflow-op", "the graph holds an op that can read or write files, run Python or reach the network: do not load it"),
    "KS201": ("medium", "reads-outside-file", "the file reads another file when it is built: check that path"),
    "KS202": ("high", "outside-reference", "the file refers to data outside itself (links, external storage, paths leaving an archive)"),
    "KS301": ("high", "resource-bomb", "declared sizes far beyond what the file stores: do not load it"),
    "KS302": ("high", "deep-nesting", "nested deeper than any model: do not load it"),
    "KS900": ("error", "unreadable", "the scanner could not read this file: it is not known to be safe"),
}


@dataclasses.dataclass(frozen=True)
class Finding:
    rule: str
    location: str
    message: str
    trust: str | None = None  # the name a caller can pass in trusted=[...] to accept this finding

    @property
    def severity(self) -> str:
        return RULES[self.rule][0]

    @property
    def blocks(self) -> bool:
        """Whether this finding makes the file unsafe (unless the caller trusts its name)."""
        return self.severity in ("high", "error")

    def as_dict(self) -> dict:
        return {"rule": self.rule, "name": RULES[self.rule][1], "severity": self.severity, "location": self.location,
                "message": self.message, "advice": RULES[self.rule][2], "trust": self.trust}
