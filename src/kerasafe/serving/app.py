"""The HTTP server: ``/predict``, the Open Inference Protocol v2, ``/metrics``, OpenAPI docs, an upload page.

Every error a request can cause is a 4xx (5xx for a full queue or a timeout) with a
JSON body ``{"error": "..."}`` naming what was wrong; the server keeps serving.

Example:
    >>> from kerasafe.serving.app import Settings
    >>> Settings().max_batch_size, Settings().host
    (32, '127.0.0.1')
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from .. import __version__
from .batcher import Batcher, QueueFull
from .engine import BadInput, Engine
from .metrics import Metrics
from .page import PAGE

OIP_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT8": np.int8, "INT16": np.int16,
              "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
              "UINT64": np.uint64}


@dataclasses.dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    name: str | None = None
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    batching: bool = True
    max_body_mb: float = 16.0
    timeout_s: float = 30.0
    queue_size: int = 256
    top_k: int = 3
    trust: bool = False


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, {"error": f"a request body of {int(declared):,} bytes; at most {self.limit:,} (--max-body-mb)"})
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _send_json(send, 413, {"error": f"a request body over {self.limit:,} bytes (--max-body-mb)"})


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(model_path, settings: Settings | None = None):
    """The ASGI app serving ``model_path``: the model is loaded and warmed before this returns."""
    settings = settings or Settings()
    engine = Engine(model_path, max_batch=settings.max_batch_size, top_k=settings.top_k, safe_mode=not settings.trust)
    engine.warm(engine.sizes if settings.batching else [1])
    name = settings.name or _default_name(model_path)
    metrics = Metrics()
    state = {"batcher": None, "ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if settings.batching:
            state["batcher"] = Batcher(lambda x: engine.predict(x), max_batch=settings.max_batch_size,
                                       max_latency_ms=settings.max_latency_ms, queue_size=settings.queue_size,
                                       on_batch=metrics.batch.observe, coming=lambda: coming["n"])
            state["batcher"].start()
        # Everything alive now (Keras, the backend, the model: millions of objects) lives as long as the server.
        # A request's JSON allocates thousands of lists, and each full collection then walked all of them:
        # 100-150 ms pauses, the p99 of both servers in benchmarks/serve_throughput.py. Frozen, they are skipped.
        gc.collect()
        gc.freeze()
        state["ready"] = True
        yield
        state["ready"] = False
        if state["batcher"] is not None:
            await state["batcher"].stop()  # answer what was accepted before stopping

    app = FastAPI(title=f"kerasafe: {name}", version=__version__, lifespan=lifespan,
                  description=f"Predictions of {engine.path} ({engine.kind} input {list(engine.input_shape)}, "
                              f"{len(engine.names)} classes), decoded as `kerasafe predict` decodes them.")
    app.state.engine, app.state.settings, app.state.metrics = engine, settings, metrics
    in_flight = {"n": 0}
    coming = {"n": 0}  # requests inside a prediction endpoint: a batch waits for them (Batcher.coming)

    async def run_model(inputs: np.ndarray) -> np.ndarray:
        if len(inputs) > settings.max_batch_size:
            raise HTTPError(413, f"{len(inputs)} inputs in one request; at most {settings.max_batch_size} (--max-batch-size)")
        try:
            if state["batcher"] is not None:
                metrics.queue.set(state["batcher"].queue.qsize())
                task = state["batcher"].submit(inputs)
            else:
                if in_flight["n"] >= settings.queue_size:
                    raise QueueFull("queue full")
                in_flight["n"] += 1
                task = asyncio.get_running_loop().run_in_executor(None, lambda: engine.predict(inputs, pad=False))
            return await asyncio.wait_for(task, settings.timeout_s)
        except QueueFull:
            raise HTTPError(503, f"the server's queue is full ({settings.queue_size} requests); retry shortly", {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise HTTPError(504, f"no answer within {settings.timeout_s:g} s (--timeout-s)") from None
        finally:
            if state["batcher"] is None:
                in_flight["n"] = max(0, in_flight["n"] - 1)


    @app.exception_handler(HTTPError)
    async def http_error(request, exc: HTTPError):
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request, exc: ClientDisconnect):
        # Nobody is left to read this; answering keeps a client that hung up mid-body out of the error log.
        return JSONResponse({"error": "the client disconnected before its request body was complete"}, status_code=400)

    @app.exception_handler(BadInput)
    async def bad_input(request, exc: BadInput):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    async def json_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"malformed JSON ({exc})") from None
        if not isinstance(body, dict):
            raise HTTPError(400, f"a JSON object expected, found {type(body).__name__}")
        return body

    @app.post("/predict", summary="Label images (multipart files, or JSON instances) or table rows")
    async def predict(request: Request):
        """Multipart: one or more image files (any field name). JSON: ``{"instances": [...], "top_k": 3}`` with
        images as base64 (``"..."`` or ``{"b64": "..."}``) or arrays, or table rows (lists or objects by column)."""
        kind = request.headers.get("content-type", "")
        top_k = engine.top_k
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            uploads = [(k, v) for k, v in form.multi_items() if hasattr(v, "read")]
            if not uploads:
                raise HTTPError(400, "a multipart request with no files: send images as file fields")
            names = [v.filename or k for k, v in uploads]
            inputs = [engine.decode_upload(await v.read(), n) for n, (_, v) in zip(names, uploads)]
        elif kind.startswith("application/json"):
            body = await json_body(request)
            instances = body.get("instances")
            if not isinstance(instances, list) or not instances:
                raise HTTPError(400, "'instances': a non-empty list expected")
            top_k = body.get("top_k", top_k)
            if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= len(engine.names):
                raise HTTPError(400, f"'top_k': a whole number from 1 to {len(engine.names)} expected")
            names = [str(i) for i in range(len(instances))]
            inputs = [engine.decode_instance(v, f"instances[{i}]") for i, v in enumerate(instances)]
        else:
            raise HTTPError(415, f"content type '{kind or 'none'}': send multipart/form-data files or application/json")
        probabilities = await run_model(np.stack(inputs))
        rows = engine.answer(probabilities, top_k)
        return JSONResponse({"model": name, "predictions": [{"input": n, **r} for n, r in zip(names, rows)]})

    def check_name(model_name: str) -> None:
        if model_name != name:
            raise HTTPError(404, f"no model named '{model_name}' here; this server serves '{name}'")

    @app.get("/v2", summary="OIP v2: server metadata")
    async def server_metadata():
        return {"name": "kerasafe", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", summary="OIP v2: the server is alive")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="OIP v2: the server is ready (model loaded and warmed)")
    async def ready():
        if not state["ready"]:
            raise HTTPError(503, "not ready")
        return {"ready": True}

    @app.get("/v2/models/{model_name}", summary="OIP v2: model metadata")
    async def model_metadata(model_name: str):
        check_name(model_name)
        return {"name": name, "versions": [], "platform": f"keras-{engine.model.__class__.__name__.lower()}",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *engine.input_shape]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(engine.names)]},
                            {"name": "label", "datatype": "BYTES", "shape": [-1]}],
                "parameters": {"labels": engine.names, "preprocessing": engine.preprocessing}}

    @app.get("/v2/models/{model_name}/ready", summary="OIP v2: the model is ready")
    async def model_ready(model_name: str):
        check_name(model_name)
        return {"name": name, "ready": state["ready"]}

    @app.post("/v2/models/{model_name}/infer", summary="OIP v2: inference on named tensors")
    async def infer(model_name: str, request: Request):
        check_name(model_name)
        body = await json_body(request)
        tensors = body.get("inputs")
        if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
            raise HTTPError(400, "'inputs': a list of one tensor object expected (this model has one input)")
        tensor = tensors[0]
        datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
        if datatype not in OIP_DTYPES:
            raise HTTPError(400, f"datatype {datatype!r}: one of {sorted(OIP_DTYPES)} expected")
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
            raise HTTPError(400, f"shape {shape!r}: a list of positive whole numbers expected")
        if list(shape[1:]) != list(engine.input_shape):
            raise HTTPError(400, f"shape {shape}: [N, {', '.join(map(str, engine.input_shape))}] expected")
        try:
            array = np.asarray(data, dtype=OIP_DTYPES[datatype]).reshape(shape).astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise HTTPError(400, f"data: {int(np.prod(shape))} numbers of {datatype} expected ({exc})") from None
        if not np.isfinite(array).all():
            raise HTTPError(400, "data: values that are not finite numbers")
        probabilities = await run_model(array)
        labels = [engine.names[i] for i in np.argmax(probabilities, axis=1)]
        out = {"model_name": name, "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": list(probabilities.shape),
             "data": probabilities.astype(np.float32).reshape(-1).tolist()},
            {"name": "label", "datatype": "BYTES", "shape": [len(labels)], "data": labels}]}
        if "id" in body:
            out["id"] = body["id"]
        return JSONResponse(out)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def prometheus():
        if state["batcher"] is not None:
            metrics.queue.set(state["batcher"].queue.qsize())
        metrics.in_progress.set(coming["n"])
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", response_class=HTMLResponse, summary="A page to drop images on and see their labels")
    async def page():
        return PAGE.replace("{{NAME}}", name)

    return BodyLimit(Measured(app, metrics, coming), int(settings.max_body_mb * 2**20))


class Measured:
    """ASGI middleware: counts requests by endpoint and status, times them, and tells the batcher how many
    prediction requests are inside the server (a plain ASGI wrapper: Starlette's BaseHTTPMiddleware
    costs a task and a stream per request)."""

    def __init__(self, app, metrics: Metrics, coming: dict):
        self.app, self.metrics, self.coming = app, metrics, coming

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}
        predicting = scope.get("method") == "POST"
        self.coming["n"] += predicting

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.coming["n"] -= predicting
            route = scope.get("route")
            endpoint = route.path if route is not None else "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)


def _default_name(model_path) -> str:
    text = str(model_path).rstrip("/").rsplit("/", 1)[-1]
    return text.split(".", 1)[0] or "model"
