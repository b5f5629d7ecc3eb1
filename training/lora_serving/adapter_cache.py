"""The adapters loaded on one pipeline: loaded on first use, the most recently used kept.

- `activated(name, scale)` loads `name` from the store when it is not loaded yet
  (`load_lora_weights(folder, adapter_name=name)`), makes it the only active adapter at `scale`
  (`enable_lora` then `set_adapters([name], [scale])`), and with `name=None` answers from the
  base model (`disable_lora`: diffusers 0.35 refuses `set_adapters([])`, and `set_adapters`
  does not undo `disable_lora`, hence `enable_lora` first). A request for what is active already
  changes nothing on the pipeline.
- The loaded adapters' parameters (bytes on the pipeline's device, measured after each load)
  stay within `max_bytes`, and at most `max_adapters` are loaded. Before a load the adapter's size
  is read from its safetensors header (in the pipeline's dtype), and least recently used adapters
  are unloaded (`delete_adapters`) until it fits, so the budget holds at every moment; an adapter
  larger than the whole budget is refused with a message naming the setting.
- One lock covers loading, switching and the generation that follows (`activated` is a context
  manager held for the whole request): the pipeline has one set of active adapters, so two
  requests in one process cannot generate at once anyway. The model server's workers are separate
  processes, each with its own pipeline and cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from lora_serving.adapter_store import (
    WEIGHTS_FILE,
    AdapterError,
    AdapterStore,
    BrokenAdapterError,
    checked_name,
    read_metadata,
)

LOGGER = logging.getLogger(__name__)
# The pipeline components that take LoRA layers (StableDiffusionXLPipeline._lora_loadable_modules).
LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    bytes: int
    metadata: dict[str, Any]


class AdapterTooLargeError(AdapterError):
    pass


def estimated_bytes(weights: Path, dtype: torch.dtype) -> int:
    """The adapter's parameter bytes once loaded in `dtype`, from the safetensors header only."""
    element = torch.empty((), dtype=dtype).element_size()
    total = 0
    with safe_open(str(weights), framework="pt") as tensors:
        for key in tensors.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            count = 1
            for extent in tensors.get_slice(key).get_shape():
                count *= int(extent)
            total += count * element
    return total


def adapter_parameter_bytes(pipeline: Any, name: str) -> int:
    """Bytes of the parameters peft added for adapter `name` (`...lora_A.<name>.weight`, ...)."""
    total = 0
    for component in LORA_COMPONENTS:
        model = getattr(pipeline, component, None)
        if model is None:
            continue
        for parameter_name, parameter in model.named_parameters():
            parts = parameter_name.split(".")
            if any(
                part.startswith("lora_") and parts[index + 1 : index + 2] == [name]
                for index, part in enumerate(parts)
            ):
                total += parameter.numel() * parameter.element_size()
    return total


class AdapterCache:
    def __init__(
        self, pipeline: Any, store: AdapterStore, *, max_bytes: int, max_adapters: int
    ) -> None:
        if max_bytes < 1 or max_adapters < 1:
            raise ValueError("the adapter cache needs a positive byte budget and adapter count")
        self.pipeline = pipeline
        self.store = store
        self.max_bytes = max_bytes
        self.max_adapters = max_adapters
        self._loaded: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._lock = threading.Lock()
        # What the pipeline has active: (name or None, scale), or None when unknown (after a load
        # or an unload). Switching walks every module of the UNet and text encoders (~16,000 in
        # SDXL with a few adapters), so a request for what is already active skips it.
        self._active: tuple[str | None, float] | None = None

    @property
    def loaded(self) -> list[str]:
        """Loaded adapter names, least recently used first."""
        return list(self._loaded)

    @property
    def used_bytes(self) -> int:
        return sum(adapter.bytes for adapter in self._loaded.values())

    @contextmanager
    def activated(self, name: str | None, scale: float = 1.0) -> Iterator[LoadedAdapter | None]:
        """Hold the pipeline with `name` active at `scale` (the base model for None)."""
        with self._lock:
            if name is None:
                if self._loaded and self._active != (None, 0.0):
                    self.pipeline.disable_lora()
                    self._active = (None, 0.0)
                yield None
                return
            adapter = self._ensure_loaded(checked_name(name))
            if self._active != (name, scale):
                self.pipeline.enable_lora()
                self.pipeline.set_adapters([name], adapter_weights=[scale])
                self._active = (name, scale)
            yield adapter

    def _ensure_loaded(self, name: str) -> LoadedAdapter:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        started = time.perf_counter()
        self._active = None
        with self.store.fetched(name) as folder:
            try:
                needed = estimated_bytes(folder / WEIGHTS_FILE, self.pipeline.unet.dtype)
            except (SafetensorError, OSError) as error:
                raise BrokenAdapterError(
                    name, f"{WEIGHTS_FILE} is not a readable safetensors file: {error}"
                ) from error
            if needed > self.max_bytes:
                raise AdapterTooLargeError(
                    f'adapter "{name}" needs {needed / 2**20:.1f} MiB; the endpoint keeps at most '
                    f"{self.max_bytes / 2**20:.1f} MiB of adapters (LORA_CACHE_MAX_MB)"
                )
            self._evict_until(extra_bytes=needed, extra_adapters=1)
            metadata = read_metadata(folder, name)
            self._load(name, folder)
        adapter = LoadedAdapter(name, adapter_parameter_bytes(self.pipeline, name), metadata)
        self._loaded[name] = adapter
        # The estimate and the measurement agree for plain LoRA; if they ever do not, the
        # measurement wins and older adapters make room.
        self._evict_until(extra_bytes=0, extra_adapters=0, keep=name)
        LOGGER.info(
            "loaded adapter %s (%d bytes) in %.2f s; %d loaded, %d bytes",
            name, adapter.bytes, time.perf_counter() - started, len(self._loaded), self.used_bytes,
        )  # fmt: skip
        return adapter

    def _load(self, name: str, folder: Path) -> None:
        try:
            self.pipeline.load_lora_weights(
                str(folder), weight_name=WEIGHTS_FILE, adapter_name=name
            )
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            # A half-loaded adapter (e.g. shapes of another base model) must not stay behind.
            self._unload(name)
            raise BrokenAdapterError(
                name, f"its weights do not load into this endpoint's model: {error}"
            ) from error

    def _evict_until(self, *, extra_bytes: int, extra_adapters: int, keep: str = "") -> None:
        while self._loaded and (
            self.used_bytes + extra_bytes > self.max_bytes
            or len(self._loaded) + extra_adapters > self.max_adapters
        ):
            oldest = next(iter(self._loaded))
            if oldest == keep:
                break
            del self._loaded[oldest]
            self._unload(oldest)
            LOGGER.info("evicted adapter %s (least recently used)", oldest)

    def _unload(self, name: str) -> None:
        self._active = None
        present = {n for names in self.pipeline.get_list_adapters().values() for n in names}
        if name in present:
            # The adapter's layers go with their last reference (peft holds no cycles): no
            # gc.collect, which costs a few hundred milliseconds in a process this size.
            self.pipeline.delete_adapters(name)
        if torch.cuda.is_available():
            # Hand the freed blocks back to the driver, so the GPU's memory reads true.
            torch.cuda.empty_cache()
