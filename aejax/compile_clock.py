"""Counting the time JAX spends compiling, apart from the time a program runs.

JAX reports each compilation's stages (tracing, lowering, XLA compile or persistent-cache
read) as duration events. ``counting_compile_time`` sums those recorded in its thread
inside the block, so a jitted function keeps JAX's ordinary dispatch and in-memory cache.
The listener is registered on first use, not at import.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import jax

COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                            "/jax/core/compile/jaxpr_to_mlir_module_duration",
                            "/jax/core/compile/backend_compile_duration"})
_clock = threading.local()  # .seconds: the list to add to while counting, else absent
_registration_lock = threading.Lock()
_registered = False


def _record(event: str, duration_secs: float, **_: Any) -> None:
    seconds = getattr(_clock, "seconds", None)
    if seconds is not None and event in COMPILE_EVENTS:
        seconds.append(duration_secs)


def _register_once() -> None:
    global _registered
    with _registration_lock:
        if not _registered:
            jax.monitoring.register_event_duration_secs_listener(_record)
            _registered = True


@contextlib.contextmanager
def counting_compile_time(into: list[float]) -> Iterator[list[float]]:
    """Appends to ``into`` the duration (s) of each compilation stage JAX records in this thread inside the block."""
    _register_once()
    outer = getattr(_clock, "seconds", None)
    _clock.seconds = into
    try:
        yield into
    finally:
        _clock.seconds = outer
