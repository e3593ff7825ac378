"""Every error kerasafe raises for a user's file or input.

Each message has the same four parts, so the command line can print it as one
line and a user knows what to do next::

    <file>: expected <what kerasafe expected>, found <what it found>; <what to do>

Example:
    >>> from kerasafe.errors import CorruptFileError
    >>> str(CorruptFileError("m.keras", "a zip archive", "12 bytes of text", "save the model again"))
    'm.keras: expected a zip archive, found 12 bytes of text; save the model again'
"""

from __future__ import annotations

import os


# The most characters of one part of a message: what a file holds (a member name, a value) can be
# megabytes long, and a message is one line a person reads.
PART_CHARS = 400


def _line(text, limit: int = PART_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class KerasafeError(Exception):
    """Base class: a problem with a file or an argument, explained in one line."""

    def __init__(self, path: str | os.PathLike | None, expected: str, found: str, advice: str):
        self.path = None if path is None else os.fspath(path)
        self.expected = _line(expected)
        self.found = _line(found)
        self.advice = _line(advice)
        expected, found, advice = self.expected, self.found, self.advice
        where = self.path if self.path is not None else "<input>"
        super().__init__(f"{where}: expected {expected}, found {found}; {advice}")

    def naming(self, written: str | os.PathLike, target: str | os.PathLike) -> KerasafeError:
        """This error, naming ``target`` where it named ``written`` (the temporary a save writes first).

        Example:
            >>> str(CorruptFileError("/d/.m.keras.tmp-1/x", "a", "b", "c").naming("/d/.m.keras.tmp-1", "/d/m.keras"))
            '/d/m.keras/x: expected a, found b; c'
        """
        written = os.fspath(written)
        if self.path is None or not (self.path == written or self.path.startswith(written + os.sep)):
            return self
        return type(self)(os.fspath(target) + self.path[len(written):], self.expected, self.found, self.advice)


class FileMissingError(KerasafeError, FileNotFoundError):
    """The path does not exist (also a FileNotFoundError, for callers that catch that)."""


class WrongKindOfPathError(KerasafeError):
    """A directory where a file was expected, or the other way round."""


class UnrecognizedFormatError(KerasafeError):
    """The content matches none of the formats kerasafe reads or writes."""


class CorruptFileError(KerasafeError):
    """The file is truncated, damaged, or lacks parts its format requires."""


class HashMismatchError(CorruptFileError):
    """A member's bytes differ from the hash recorded when the file was saved."""


class UnsafeContentError(KerasafeError):
    """Loading would run code from the file or touch paths outside it; refused in safe mode."""


class WeightsMismatchError(KerasafeError):
    """Weights in the file do not fit the model (count, names or shapes)."""


class MissingDependencyError(KerasafeError):
    """The file needs an optional extra that is not installed."""


class UnsupportedOperationError(KerasafeError):
    """The format cannot do what was asked (for example: weights-only file with no architecture)."""


class CheckpointLockedError(KerasafeError):
    """Another process is writing checkpoints to the same directory."""


class CheckpointWriteError(KerasafeError):
    """A checkpoint written in the background failed; raised at the next save or at the end of training."""


class ExportCheckError(KerasafeError):
    """An exported model did not run in its runtime, or disagreed with Keras beyond the tolerance."""
