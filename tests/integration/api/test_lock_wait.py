"""A held site lock at the real timings: the configured 30 s wait and the API function's
timeout from template.yaml. The caller must get our `409 site_locked` while the invocation is
still running; otherwise, on AWS, API Gateway would answer for us when the function is ended."""

from __future__ import annotations

import time

import pytest

from artemis.db import lock as lock_module
from artemis.keys import Dirname
from artemis_local.template import function_timeout_ms
from tests.integration.api.conftest import STAFF, Api


@pytest.mark.slow
def test_a_held_lock_answers_site_locked_before_the_api_function_times_out(api: Api) -> None:
    api_timeout = function_timeout_ms("api") / 1000
    assert api_timeout == 29  # the template's API function timeout, as deployed
    assert lock_module.LOCK_TIMEOUT_SECONDS == 30.0  # the real default wait, not shortened
    assert api.system.gateway is not None
    assert api.system.gateway.timeout_ms == api_timeout * 1000  # local mirrors the template
    api.register("www", ["web"])
    with lock_module.site_lock(api.database_url, Dirname("www.example.org")):
        started = time.monotonic()
        reply = api.call("PATCH", "/api/site/www", token=STAFF, json_body={"teams": ["staff"]})
        waited = time.monotonic() - started
    assert waited < api_timeout  # answered by us while the invocation still ran
    assert (reply.status, reply.code) == (409, "site_locked"), reply.raw
    # It gave up leaving the margin for the section's work, and not much earlier than that.
    assert waited <= api_timeout - lock_module.LOCK_WORK_MARGIN_SECONDS + 1
    assert waited >= api_timeout - lock_module.LOCK_WORK_MARGIN_SECONDS - 3
    # Once the lock is free the same request goes through at once.
    assert api.call("PATCH", "/api/site/www", token=STAFF,
                    json_body={"teams": ["staff"]}).status == 200  # fmt: skip
