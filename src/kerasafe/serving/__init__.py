"""``kerasafe serve``: a model file behind HTTP, with dynamic batching (see :mod:`.app`).

Example:
    >>> from kerasafe.serving import serve  # serve("run/model.keras", port=8000) blocks until SIGTERM
"""

from __future__ import annotations

from .. import errors

try:  # the server's libraries are an extra; say which, in one line
    import fastapi  # noqa: F401
    import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:
    raise errors.MissingDependencyError(None, "the server's libraries (FastAPI, uvicorn, python-multipart, prometheus-client)",
                                        f"they are not installed ({exc})", "pip install 'kerasafe[serve]'") from None

from .app import Settings, create_app  # noqa: E402

__all__ = ["Settings", "create_app", "serve"]


def serve(model_path, settings: Settings | None = None) -> None:
    """Load and warm the model, then serve it until SIGTERM/SIGINT, which drains: requests already
    accepted are answered, new connections are refused."""
    import uvicorn

    settings = settings or Settings()
    app = create_app(model_path, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=settings.timeout_s)
