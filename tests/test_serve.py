"""`kerasafe serve`: the real server as a subprocess on a free loopback port, answers compared with in-process predictions."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import kerasafe as ks
from kerasafe.pipeline.data import image_preprocessing
from kerasafe.pipeline.predict import predict as cli_predict

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

LABELS = [f"class-{i}" for i in range(5)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An image model (a CNN on 12x12 RGB) and a table model, saved with labels and preprocessing; images to send."""
    root = tmp_path_factory.mktemp("serve")
    keras.utils.set_random_seed(4)
    cnn = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    ks.save(cnn, root / "cnn.keras", labels=LABELS, preprocessing=image_preprocessing((12, 12)))
    table = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    ks.save(table, root / "table.keras", labels=["no", "yes"],
            preprocessing={"kind": "table", "columns": ["a", "b", "c"], "label_index": 3})
    rng = np.random.default_rng(0)
    images = []
    for i, suffix in enumerate(["png", "jpg", "png", "jpg"]):
        path = root / f"img{i}.{suffix}"
        Image.fromarray(rng.integers(0, 255, (20 + i, 16, 3), dtype=np.uint8)).save(path)
        images.append(path)
    return {"root": root, "cnn": root / "cnn.keras", "table": root / "table.keras", "images": images}


class Server:
    def __init__(self, model, *args):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "kerasafe.cli", "serve", str(model), "--port", str(self.port), *args],
                                     env=dict(os.environ, KERAS_BACKEND="jax"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the server did not start: {self.proc.communicate()[1][-3000:]}")
            time.sleep(0.2)

    def post(self, path, **kwargs):
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def get(self, path):
        return httpx.get(self.url + path, timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate()


@pytest.fixture(scope="module")
def server(files):
    s = Server(files["cnn"], "--name", "cnn", "--max-batch-size", "8", "--max-latency-ms", "20")
    yield s
    s.stop()


def _uploads(paths):
    return [("files", (p.name, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg")) for p in paths]


def _expected(files, paths, top_k=3):
    results, failures = cli_predict(files["cnn"], [str(p) for p in paths], top_k=top_k)
    assert not failures
    return results


def _same_answers(got, expected, exact=False):
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected):
        if exact:
            assert g["top"] == e["top"]
        else:  # a batched answer may differ from predict's in the last bits (another batch size)
            np.testing.assert_allclose([s for _, s in g["top"]], [s for _, s in e["top"]], rtol=1e-5, atol=1e-7)


def test_uploads_png_and_jpeg_answer_as_predict_does(server, files):
    response = server.post("/predict", files=_uploads(files["images"]))
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert [g["input"] for g in got] == [p.name for p in files["images"]]
    _same_answers(got, _expected(files, files["images"]))


def test_no_batching_answers_bitwise_as_predict(files):
    s = Server(files["cnn"], "--no-batching")
    try:
        for paths in (files["images"][:1], files["images"]):
            got = s.post("/predict", files=_uploads(paths)).json()["predictions"]
            _same_answers(got, _expected(files, paths), exact=True)
    finally:
        s.stop()


def test_json_instances_base64_and_arrays(server, files):
    from kerasafe.pipeline.data import decode_image

    encoded = [base64.b64encode(p.read_bytes()).decode() for p in files["images"][:2]]
    pixels = decode_image(files["images"][2], image_preprocessing((12, 12))).tolist()
    body = {"instances": [encoded[0], {"b64": encoded[1]}, pixels], "top_k": 2}
    response = server.post("/predict", json=body)
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert all(len(g["top"]) == 2 for g in got)
    _same_answers(got, _expected(files, files["images"][:3], top_k=2))


def test_open_inference_protocol(server, files):
    assert server.get("/v2").json()["name"] == "kerasafe"
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").json() == {"ready": True}
    meta = server.get("/v2/models/cnn").json()
    assert meta["inputs"][0]["shape"] == [-1, 12, 12, 3] and meta["parameters"]["labels"] == LABELS
    assert server.get("/v2/models/cnn/ready").json()["ready"] is True
    x = np.random.default_rng(1).integers(0, 255, (3, 12, 12, 3)).astype("uint8")
    body = {"id": "r1", "inputs": [{"name": "input", "shape": [3, 12, 12, 3], "datatype": "UINT8", "data": x.reshape(-1).tolist()}]}
    out = server.post("/v2/models/cnn/infer", json=body).json()
    assert out["id"] == "r1" and out["model_name"] == "cnn"
    probabilities = np.asarray(out["outputs"][0]["data"], dtype=np.float32).reshape(out["outputs"][0]["shape"])
    expected = ks.load(files["cnn"]).predict(x.astype("float32"), verbose=0)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
    assert out["outputs"][1]["data"] == [LABELS[i] for i in expected.argmax(axis=1)]


def test_table_rows_as_lists_and_objects(files):
    s = Server(files["table"])
    try:
        rows = [[0.5, -1.0, 2.0], {"a": 1.0, "b": 0.0, "c": -3.0}]
        response = s.post("/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        expected = ks.load(files["table"]).predict(np.asarray([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]], "float32"), verbose=0)
        np.testing.assert_allclose([g["score"] for g in got], expected.max(axis=1), rtol=1e-5)
        assert [g["label"] for g in got] == [["no", "yes"][i] for i in expected.argmax(axis=1)]
        bad = s.post("/predict", json={"instances": [{"a": 1, "b": 2}]})
        assert bad.status_code == 400 and "column 'c'" in bad.json()["error"]
        upload = s.post("/predict", files=_uploads(files["images"][:1]))
        assert upload.status_code == 400 and "table rows" in upload.json()["error"]
    finally:
        s.stop()


def _pixels_b64(shape):
    return base64.b64encode(np.zeros(shape, np.uint8).tobytes()).decode()


# Every kind of bad request: (what, request kwargs, path, status, words the error must hold).
BAD_REQUESTS = [
    ("not an image", dict(files=[("files", ("notes.txt", b"hello, not pixels", "text/plain"))]), "/predict", 400, "notes.txt"),
    ("truncated image", dict(files=[("files", ("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))]), "/predict", 400, "cut.png"),
    ("no files in a multipart body", dict(content=b'--xx\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n--xx--\r\n',
                                          headers={"content-type": "multipart/form-data; boundary=xx"}), "/predict", 400, "no files"),
    ("malformed JSON", dict(content=b'{"instances": [1,', headers={"content-type": "application/json"}), "/predict", 400, "malformed JSON"),
    ("JSON that is not an object", dict(json=[1, 2]), "/predict", 400, "JSON object"),
    ("no instances", dict(json={"rows": []}), "/predict", 400, "'instances'"),
    ("an instance of the wrong shape", dict(json={"instances": [[[1, 2], [3, 4]]]}), "/predict", 400, "shape [2, 2]"),
    ("an instance of strings", dict(json={"instances": [[["a"] * 3] * 12] * 1}), "/predict", 400, "instances[0]"),
    ("base64 that is not", dict(json={"instances": ["not base64 at all!"]}), "/predict", 400, "base64"),
    ("base64 of no image", dict(json={"instances": [_pixels_b64(7)]}), "/predict", 400, "instances[0]"),
    ("a non-finite value", dict(content=json.dumps({"instances": [[[[float("nan")] * 3] * 12] * 12]}).encode(),
                                headers={"content-type": "application/json"}), "/predict", 400, "finite"),
    ("top_k out of range", dict(json={"instances": [[[[0] * 3] * 12] * 12], "top_k": 99}), "/predict", 400, "top_k"),
    ("another content type", dict(content=b"x", headers={"content-type": "text/plain"}), "/predict", 415, "text/plain"),
    ("too many inputs", dict(json={"instances": [[[[0] * 3] * 12] * 12] * 9}), "/predict", 413, "--max-batch-size"),
    ("a body too large", dict(content=b"0" * (2 * 2**20), headers={"content-type": "application/json"}), "/predict", 413, "--max-body-mb"),
    ("an unknown model name", dict(json={"inputs": []}), "/v2/models/other/infer", 404, "'other'"),
    ("an OIP datatype", dict(json={"inputs": [{"name": "input", "shape": [1, 12, 12, 3], "datatype": "FP8", "data": [0] * 432}]}),
     "/v2/models/cnn/infer", 400, "FP8"),
    ("an OIP shape", dict(json={"inputs": [{"name": "input", "shape": [1, 8, 8, 3], "datatype": "FP32", "data": [0] * 192}]}),
     "/v2/models/cnn/infer", 400, "[N, 12, 12, 3]"),
    ("OIP data of the wrong length", dict(json={"inputs": [{"name": "input", "shape": [1, 12, 12, 3], "datatype": "FP32", "data": [0] * 5}]}),
     "/v2/models/cnn/infer", 400, "432 numbers"),
    ("OIP without inputs", dict(json={"outputs": []}), "/v2/models/cnn/infer", 400, "'inputs'"),
]


@pytest.fixture(scope="module")
def small_body_server(files):
    s = Server(files["cnn"], "--name", "cnn", "--max-batch-size", "8", "--max-body-mb", "1")
    yield s
    s.stop()


@pytest.mark.parametrize("what,kwargs,path,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_every_bad_request_is_a_4xx_naming_it_and_the_server_goes_on(small_body_server, files, what, kwargs, path, status, words):
    response = small_body_server.post(path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error and "\n" not in error and "Traceback" not in error
    good = small_body_server.post("/predict", files=_uploads(files["images"][:1]))
    assert good.status_code == 200


def test_metrics_docs_and_page(server, files):
    server.post("/predict", files=_uploads(files["images"][:1]))
    metrics = server.get("/metrics").text
    for name in ("kerasafe_requests_total", "kerasafe_request_seconds_bucket", "kerasafe_batch_size_bucket", "kerasafe_queue_depth"):
        assert name in metrics
    assert '/predict",status="200"' in metrics
    spec = server.get("/openapi.json").json()
    assert {"/predict", "/v2/models/{model_name}/infer", "/metrics"} <= set(spec["paths"])
    assert server.get("/docs").status_code == 200
    page = server.get("/").text
    assert 'id="drop"' in page and "/predict" in page and "cnn" in page


def _batch_count(server) -> float:
    line = next(x for x in server.get("/metrics").text.splitlines() if x.startswith("kerasafe_batch_size_count"))
    return float(line.split()[-1])


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, files):
    expected = {p.name: e for p, e in zip(files["images"], _expected(files, files["images"]))}
    before = _batch_count(server)
    paths = [files["images"][i % 4] for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda p: server.post("/predict", files=_uploads([p])).json()["predictions"][0], paths))
    for path, got in zip(paths, answers):
        _same_answers([got], [expected[path.name]])
    assert _batch_count(server) - before < len(paths)  # some predict calls answered several requests


def test_a_request_not_answered_in_time_gets_504(files):
    # A slow client is inside the server (its body still arriving), so the batch waits for it (up to 3 s):
    # the request that came first is not answered within its 0.2 s.
    s = Server(files["cnn"], "--max-latency-ms", "3000", "--max-batch-size", "64", "--timeout-s", "0.2")
    try:
        with socket.create_connection(("127.0.0.1", s.port)) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            time.sleep(0.3)
            response = s.post("/predict", files=_uploads(files["images"][:1]))
        assert response.status_code == 504 and "--timeout-s" in response.json()["error"]
    finally:
        s.stop()


def test_a_full_queue_refuses_at_once():
    from kerasafe.serving.batcher import Batcher, QueueFull

    def slow(x):
        time.sleep(0.3)
        return x

    async def flood():
        batcher = Batcher(slow, max_batch=1, max_latency_ms=1, queue_size=1)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.ones((1, 2))) for _ in range(4)), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(flood())
    assert any(isinstance(r, QueueFull) for r in results)
    assert any(isinstance(r, np.ndarray) for r in results)


def test_sigterm_while_loaded_loses_no_accepted_request(files):
    """16 requests inside the server (held there: a slow client keeps the batch waiting) when SIGTERM arrives:
    every one is answered, correctly; then the server exits."""
    s = Server(files["cnn"], "--max-latency-ms", "2000", "--max-batch-size", "32", "--timeout-s", "10")
    expected = _expected(files, files["images"][:1])

    def in_progress():
        line = next(x for x in s.get("/metrics").text.splitlines() if x.startswith("kerasafe_requests_in_progress"))
        return float(line.split()[-1])

    with socket.create_connection(("127.0.0.1", s.port)) as slow, concurrent.futures.ThreadPoolExecutor(16) as pool:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        futures = [pool.submit(lambda: s.post("/predict", files=_uploads(files["images"][:1]))) for _ in range(16)]
        deadline = time.monotonic() + 60
        while in_progress() < 17 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert in_progress() >= 17, "the requests never got inside the server"
        s.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    for response in responses:
        assert response.status_code == 200, response.text
        _same_answers(response.json()["predictions"], expected)
    assert s.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    assert "Traceback" not in s.proc.communicate()[1]


def test_a_file_scan_calls_unsafe_is_refused_unless_trusted(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2, activation="softmax")])
    ks.save(model, tmp_path / "lambda.keras", labels=["a", "b"], preprocessing={"kind": "table", "columns": ["x", "y", "z"]})
    refused = subprocess.run([sys.executable, "-m", "kerasafe.cli", "serve", str(tmp_path / "lambda.keras"), "--port", str(_free_port())],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, KERAS_BACKEND="jax"))
    assert refused.returncode != 0 and "safe_mode" in refused.stderr and "Traceback" not in refused.stderr
    s = Server(tmp_path / "lambda.keras", "--trust")
    try:
        response = s.post("/predict", json={"instances": [[1, 2, 3]]})
        assert response.status_code == 200, response.text
    finally:
        s.stop()


def test_loopback_unless_told_otherwise(server):
    with socket.socket() as sock:
        sock.settimeout(2)
        addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1", "127.0.1.1"}
        for address in addresses:
            assert sock.connect_ex((address, server.port)) != 0
    assert json.loads(server.get("/v2/health/live").text)["live"] is True


def _chromium():
    import shutil

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # Headless, and no background connections: this machine has no network beyond loopback.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def test_the_upload_page_in_headless_chromium(server, files):
    """Drop two images on the page: two cards appear, labelled as predict labels them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    paths = files["images"][:2]
    expected = [e["label"] for e in _expected(files, paths)]
    browser = _chromium()
    try:
        browser.get(server.url + "/")
        assert "cnn" in browser.title
        # A drop as the browser delivers it: a DataTransfer holding File objects, on the drop zone.
        browser.execute_script("""
            const dt = new DataTransfer();
            for (const [name, b64, type] of arguments[0]) {
              const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              dt.items.add(new File([bytes], name, {type}));
            }
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        """, [[p.name, base64.b64encode(p.read_bytes()).decode(), "image/png" if p.suffix == ".png" else "image/jpeg"] for p in paths])
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".result .label")) == 2)
        cards = browser.find_elements(By.CSS_SELECTOR, ".result")
        shown = {c.find_element(By.CSS_SELECTOR, "img").get_attribute("alt"): c.find_element(By.CSS_SELECTOR, ".label").text for c in cards}
        assert shown == {p.name: label for p, label in zip(paths, expected)}
        assert browser.find_element(By.ID, "error").text == ""
    finally:
        browser.quit()
