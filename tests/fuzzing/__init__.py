"""The fuzz suite's parts: seed files, structure-aware mutators per format, and the child worker that runs readers.

tests/test_fuzz.py drives the mutators with hypothesis under a fixed seed and budget;
``python tests/fuzz_long.py`` runs the same for longer and keeps every failing input under
tests/fixtures/fuzz/regressions/, which tests/test_fuzz.py replays.
"""
