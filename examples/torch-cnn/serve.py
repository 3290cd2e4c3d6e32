"""An inference server for the CNN: FastAPI on uvicorn, the weights loaded with torch.

    python3 -m uvicorn --factory serve:create_app --host 0.0.0.0 --port 8080

GET /healthz  process is alive
GET /readyz   the weights are loaded (with the version serving)
POST /predict {"instances": [[64 pixel values 0..16], ...]} -> {"predictions": [digit, ...]}
GET /metrics  Prometheus: requests by path and code, a /predict latency histogram,
              predictions by class, the version serving, the process's CPU and memory
Environment: MODEL_PATH (model.pth beside this file), MODEL_VERSION (shown in /metrics and
responses).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from model import CLASSES, load, predict
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel, Field, StrictFloat, StrictInt

MAX_BODY = 1 << 20
MAX_INSTANCES = 1000
PATHS = {"/healthz", "/readyz", "/predict", "/metrics"}

Pixel = Annotated[StrictInt | StrictFloat, Field(ge=0, le=16)]


class PredictRequest(BaseModel):
    instances: Annotated[
        list[Annotated[list[Pixel], Field(min_length=64, max_length=64)]],
        Field(min_length=1, max_length=MAX_INSTANCES),
    ]


class Metrics:
    """The server's series, on a registry of its own (one per app, so tests can make many)."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "cnn_requests",
            "HTTP requests by path and status.",
            ["path", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cnn_predict_seconds",
            "Latency of /predict.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.predictions = Counter(
            "cnn_predictions", "Digits predicted, by class.", ["class"], registry=self.registry
        )
        # Every class from the start, at 0: a series born at its first prediction is missed by
        # increase() until it has two samples, and a drift check would read the class as absent.
        for c in CLASSES:
            self.predictions.labels(str(c))
        info = Gauge("cnn_model_info", "The version serving.", ["version"], registry=self.registry)
        info.labels(version).set(1)


def create_app(model_path: Path | None = None, version: str | None = None) -> FastAPI:
    model_path = model_path or Path(
        os.environ.get("MODEL_PATH", Path(__file__).parent / "model.pth")
    )
    version = version or os.environ.get("MODEL_VERSION", "dev")
    net = load(model_path)
    metrics = Metrics(version)
    app = FastAPI(title="digits CNN", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        t0 = time.perf_counter()
        path = request.url.path if request.url.path in PATHS else "other"
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            response: Response = JSONResponse({"error": "body too large"}, status_code=413)
        else:
            response = await call_next(request)
        metrics.requests.labels(path, str(response.status_code)).inc()
        if path == "/predict":
            metrics.latency.observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        return JSONResponse(
            {"error": f'{where}: {first["msg"]}; expected {{"instances": [[64 numbers 0..16]]}}'},
            status_code=400,
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready", "model_version": version}

    @app.post("/predict")
    def predict_route(body: PredictRequest) -> dict[str, object]:
        preds = predict(net, body.instances)
        for c in preds:
            metrics.predictions.labels(str(c)).inc()
        return {"predictions": preds, "model_version": version}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
