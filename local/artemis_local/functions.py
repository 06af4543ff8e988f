"""Load a function's handler from `functions/<name>/app.py`, as Lambda would, and a context."""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from artemis.deadlines import Deadline

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"

Handler = Callable[[dict[str, Any], Any], Any]


def function_names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/app.py"))


class _RouterState(threading.local):
    current_event: Any = None
    lambda_context: Any = None


_router_state = _RouterState()


class _PerThread:
    """A class attribute whose value is the calling thread's own."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return getattr(_router_state, self.name)

    def __set__(self, obj: object, value: Any) -> None:
        setattr(_router_state, self.name, value)


def invocations_apart() -> None:
    """Give each thread its own Powertools routing state.

    Powertools' resolvers keep the event being resolved on a class attribute
    (`BaseRouter.current_event`, and `lambda_context`), which is safe on Lambda, where an
    execution environment runs one invocation at a time. The local gateway invokes the API
    function from a thread per connection, so two concurrent requests would read each other's
    event (route, path parameters, body). Here both attributes become per-thread: reads
    through an instance see the class-level descriptor, and assignments to the class go
    through the metaclass, which forwards to the same per-thread value. Idempotent.
    """
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if isinstance(BaseRouter.__dict__.get("current_event"), _PerThread):
        return
    names = ("current_event", "lambda_context")
    meta = type(BaseRouter)
    per_thread = type(
        f"PerThread{meta.__name__}", (meta,), {name: _PerThread(name) for name in names}
    )
    for name in names:
        setattr(BaseRouter, name, _PerThread(name))  # instance reads
    setattr(BaseRouter, "__class__", per_thread)  # noqa: B010  (class-level assignments)


def load_module(name: str) -> ModuleType:
    """Import `functions/<name>/app.py` under a unique module name, as Lambda would."""
    path = FUNCTIONS_DIR / name / "app.py"
    if not path.is_file():
        known = ", ".join(function_names())
        raise LookupError(f"no function {name!r} (known: {known})")
    spec = importlib.util.spec_from_file_location(f"artemis_fn_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_handler(name: str) -> Handler:
    """Import `functions/<name>/app.py` and return its `handler`."""
    handler: Handler = load_module(name).handler
    return handler


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that our code and Powertools read.

    `LocalContext.invocation(...)` counts down from its creation, as Lambda's context does (the
    local gateway makes one per request). A context made directly reports the whole
    `timeout_ms` at every call, so a test can reuse one across many handler calls.
    """

    function_name: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    timeout_ms: int = 30_000
    deadline: Deadline | None = None  # when the invocation is ended, if counting

    @classmethod
    def invocation(cls, function_name: str, timeout_ms: int) -> LocalContext:
        return cls(function_name, timeout_ms=timeout_ms, deadline=Deadline.after(timeout_ms / 1000))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return self.timeout_ms
        return int(self.deadline.remaining() * 1000)
