"""``kerasafe scan``: every rule fires on a file made for it, no clean Keras file is called unsafe, nothing is loaded.

The rule cases are enumerated against ``RULES`` (a rule added later needs a case here);
the clean files are the whole tf.keras 2 layer corpus in every form, the legacy corpus and
kerasafe's own files of every format; the hostile ones are test_hostile_files.py's.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest

import kerasafe as ks
import legacy_corpus
from conftest import TESTS, run_cli
from fuzzing import mutators, seeds
from kerasafe import errors
from kerasafe.scanning import RULES, VERDICT_EXIT

LEGACY = TESTS / "fixtures" / "legacy"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    return root, {s.name: s for s in seeds.build(root / "seeds")}


def _zip_member(src, dst, name, data):
    with zipfile.ZipFile(src) as s, zipfile.ZipFile(dst, "w") as d:
        for info in s.infolist():
            d.writestr(info, s.read(info) if info.filename != name else data)
        if name not in s.namelist():
            d.writestr(name, data)


def _config_with(src, dst, layer: dict):
    config = json.loads(zipfile.ZipFile(src).read("config.json"))
    config["config"]["layers"].append(layer)
    _zip_member(src, dst, "config.json", json.dumps(config))


def _npz_with_pickle() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([{"x": 1}], dtype=object))
    return buffer.getvalue()


def _external_link(src, dst):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        f["model_weights/elsewhere"] = h5py.ExternalLink("/etc/passwd", "/x")


def _graph_only(src, dst):
    shutil.copytree(src, dst)
    (dst / "keras_metadata.pb").unlink()


# rule: (seed, file name, builder(seed path, destination, marker))
RULE_CASES = {
    "KS101": ("keras", "m.keras", lambda s, d, m: _config_with(s, d, mutators.lambda_layer(m))),
    "KS102": ("keras", "m.keras", lambda s, d, m: _config_with(s, d, {"module": "mypackage.layers", "class_name": "Mine",
                                                                      "config": {"name": "mine"}, "registered_name": "mypackage>Mine"})),
    "KS103": ("keras", "m.keras", lambda s, d, m: _zip_member(s, d, "model.weights.npz", _npz_with_pickle())),
    "KS104": ("yaml", "m.yaml", lambda s, d, m: d.write_text(f"!!python/object/apply:os.system ['touch {m}']\n")),
    "KS105": ("savedmodel", "m.savedmodel", lambda s, d, m: _graph_only(s, d)),
    "KS106": ("savedmodel", "m.savedmodel", lambda s, d, m: mutators.graph_writing_a_file(d, m)),
    "KS201": ("keras", "m.keras", lambda s, d, m: _config_with(s, d, {"module": "keras.layers", "class_name": "StringLookup",
                                                                      "config": {"name": "vocab", "vocabulary": "/etc/words.txt"}})),
    "KS202": ("h5", "m.h5", lambda s, d, m: _external_link(s, d)),
    "KS301": ("keras", "m.keras", lambda s, d, m: _zip_member(s, d, "config.json", b" " * mutators.BOMB_BYTES)),
    "KS302": ("json", "m.json", lambda s, d, m: d.write_text(json.dumps({"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Dense", "config": {"units": 1, "x": json.loads("[" * 300 + "]" * 300)}}]}}))),
    "KS900": ("keras", "m.keras", lambda s, d, m: d.write_bytes(s.read_bytes()[:200])),
}


def test_every_rule_has_a_case():
    assert set(RULE_CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_each_rule_fires_on_a_file_made_for_it(clean, rule, tmp_path):
    _, built = clean
    seed_name, name, build = RULE_CASES[rule]
    path = tmp_path / name
    marker = tmp_path / "marker"
    build(built[seed_name].path, path, marker)
    report = ks.scan(path)
    assert rule in [f["rule"] for f in report["findings"]], report
    expected = "inconclusive" if RULES[rule][0] == "error" else "unsafe" if RULES[rule][0] == "high" else "safe"
    assert report["verdict"] == expected
    assert not marker.exists()
    proc = run_cli("scan", path)
    assert proc.returncode == VERDICT_EXIT[expected] and rule in proc.stdout, proc.stdout + proc.stderr


def test_no_clean_keras_file_is_called_unsafe(clean, tmp_path):
    """Every form of every case of the tf.keras 2 layer corpus, the legacy corpus and kerasafe's own files."""
    _, built = clean
    root = legacy_corpus.extract(tmp_path)
    paths = [s.path for s in built.values()]
    for case in legacy_corpus.CASES:
        for form in legacy_corpus.available_forms(case):
            architecture, weights = (p.format(c=case) if p else None for p in legacy_corpus.FORMS[form])
            paths += [root / architecture] + ([root / weights] if weights else [])
    paths += [p for p in (LEGACY / "tf_keras_2").iterdir() if p.suffix in (".h5", ".json", ".savedmodel") and p.name != "VERSIONS.json"]
    paths += [p for p in (LEGACY / "found").iterdir() if p.suffix in (".h5", ".json", ".yaml")]
    verdicts = {}
    for path in sorted(set(paths)):
        report = ks.scan(path)
        verdicts[path.name] = (report["verdict"], [f["rule"] for f in report["findings"]])
    # the files that do carry code: tf.keras's Lambda case (its architectures; its weights files carry none)
    # and a real project's Lambda (Keras 2.0.6)
    carrying_code = {"Lambda_python.h5", "Lambda_python.json", "Lambda_python.yaml", "Lambda_python.savedmodel", "carnd_model.h5"}
    assert {n for n, (v, _) in verdicts.items() if v != "safe"} == carrying_code, {n: v for n, v in verdicts.items() if v[0] != "safe"}
    assert all(verdicts[n] == ("unsafe", ["KS101"]) for n in carrying_code)
    assert len(verdicts) > 1500


def test_scan_imports_no_framework_and_reports_sha256(clean):
    _, built = clean
    code = (f"import sys, hashlib, kerasafe as ks; r = ks.scan({str(built['keras'].path)!r}); "
            f"print(r['verdict'], r['sha256'] == hashlib.sha256(open({str(built['keras'].path)!r}, 'rb').read()).hexdigest(), "
            "[m for m in ('keras', 'jax', 'tensorflow', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "safe True []"


def test_cli_json_sarif_trust_and_exit_codes(clean, tmp_path):
    _, built = clean
    unsafe = tmp_path / "lambda.keras"
    _config_with(built["keras"].path, unsafe, mutators.lambda_layer(tmp_path / "marker"))
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(built["keras"].path.read_bytes()[:100])
    proc = run_cli("scan", "--json", built["keras"].path, unsafe, damaged)
    reports = json.loads(proc.stdout)
    assert [r["verdict"] for r in reports] == ["safe", "unsafe", "inconclusive"] and proc.returncode == 1
    assert run_cli("scan", damaged).returncode == 2 and run_cli("scan", built["keras"].path).returncode == 0
    sarif = json.loads(run_cli("scan", "--sarif", unsafe).stdout)
    assert sarif["version"] == "2.1.0" and [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["KS101"]
    assert {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]} == set(RULES)
    trusted = run_cli("scan", "--json", unsafe, "--trust", "Lambda")
    assert trusted.returncode == 0 and json.loads(trusted.stdout)["findings"][0]["trusted"] is True
    missing = run_cli("scan", tmp_path / "nope.keras")
    assert missing.returncode == 1 and "no such file" in missing.stderr and missing.stderr.count("\n") == 1


def test_load_with_trusted_names_loads_only_what_the_caller_vouches_for(tmp_path):
    @keras.saving.register_keras_serializable(package="scantest")
    class Doubled(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    model = keras.Sequential([keras.Input((3,)), Doubled(name="doubled")])
    path = ks.save(model, tmp_path / "custom.keras")
    report = ks.scan(path)
    assert report["verdict"] == "unsafe" and [f["trust"] for f in report["findings"]] == ["scantest>Doubled"]
    with pytest.raises(errors.UnsafeContentError, match=r"KS102 .*scantest>Doubled") as caught:
        ks.load(path, trusted=[])
    assert "\n" not in str(caught.value)
    loaded = ks.load(path, trusted=["scantest>Doubled"])
    np.testing.assert_array_equal(loaded.predict(np.ones((1, 3)), verbose=0), [[2, 2, 2]])
    assert ks.load(path).name == model.name  # without trusted=, loading is as before (Keras imports registered names)


# The hostile kinds (fuzzing/hostile.py, read by every reader in test_hostile_files.py): what a scan must call each.
HOSTILE_UNSAFE = {"4 TiB declared dataset", "JSON architecture nested 50,000 deep", "Lambda bytecode in config", "VDS reading its own file",
                  "YAML alias bomb", "YAML python tag", "config.json deflate bomb", "deep JSON config", "deep JSON manifest",
                  "external link", "external storage", "groups 2500 deep", "metadata.json bzip2 bomb", "weights member lzma bomb",
                  "pickle in the weights", "graph-only SavedModel whose initializer writes a file"}
# Nothing in these runs or reaches outside the file; their damage is to a config's structure, which load checks.
HOSTILE_STRUCTURE_ONLY = {"JSON architecture of the wrong types", "layers of the wrong type", "checkpoint state naming a 5000-character file"}


def test_every_hostile_file_is_unsafe_or_inconclusive(clean, tmp_path):
    from fuzzing import hostile
    from test_hostile_files import hostile_file

    _, built = clean
    assert HOSTILE_UNSAFE | HOSTILE_STRUCTURE_ONLY <= set(hostile.HOSTILE)
    verdicts = {kind: ks.scan(hostile_file(kind, built, tmp_path / hostile.slug(kind)))["verdict"] for kind in sorted(hostile.HOSTILE)}
    expected = {k: "unsafe" if k in HOSTILE_UNSAFE else "safe" if k in HOSTILE_STRUCTURE_ONLY else "inconclusive" for k in verdicts}
    assert verdicts == expected


def test_every_kept_fuzz_input_gets_a_verdict(clean):
    """The regression corpus of the fuzz suite: scanning never raises on what once broke a reader."""
    from fuzzing import campaign

    _, built = clean
    cases = campaign.regression_cases(built)
    assert cases, "the regression corpus is empty"
    for name, case in cases:
        report = ks.scan(case["path"])
        assert report["verdict"] in VERDICT_EXIT, name
