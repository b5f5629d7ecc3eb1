"""Serve a model archive through the real SageMaker Hugging Face inference toolkit, in process.

`HuggingFaceHandlerService` is what the inference containers run: it puts `<model_dir>/code` on
`sys.path`, imports `inference`, picks up `model_fn`/`input_fn`/`predict_fn`/`output_fn` by
signature and turns every exception into a 400 `PredictionException`. Only the model server
around it (multi-model-server's Java front end) is replaced, by the small context below.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService


class _RequestProcessor:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class _Metrics:
    def add_time(self, name: str, value: float) -> None:
        pass


class ServingContext:
    """The parts of multi-model-server's request context the toolkit touches."""

    def __init__(self, model_dir: Path, headers: dict[str, str] | None = None) -> None:
        self.system_properties = {"model_dir": str(model_dir), "batch_size": 1, "gpu_id": 0}
        self.request_processor = [_RequestProcessor(headers or {})]
        self.metrics = _Metrics()
        self.response_content_types: dict[int, str] = {}

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.response_content_types[index] = content_type


@contextmanager
def served(model_dir: Path) -> Iterator[HuggingFaceHandlerService]:
    """An initialised handler for the archive in `model_dir`; cleans `sys.path`/`sys.modules`."""
    saved_path = list(sys.path)
    sys.modules.pop("inference", None)
    try:
        service = HuggingFaceHandlerService()
        service.initialize(ServingContext(model_dir))
        yield service
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("inference", None)


def invoke(
    service: HuggingFaceHandlerService,
    body: bytes,
    *,
    content_type: str = "application/json",
    accept: str = "application/json",
) -> Any:
    context = ServingContext(
        Path(service.model_dir), {"Content-Type": content_type, "Accept": accept}
    )
    return service.handle([{"body": body}], context)[0]
