"""The receiver's verification example in docs/webhooks.md accepts what the notifier signs
and refuses a changed body or an old timestamp: the documentation stays true."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from artemis import webhook_signature

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def documented_verify() -> Callable[..., bool]:
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    return verify


def test_the_documented_check_accepts_a_signed_delivery_and_refuses_tampering() -> None:
    verify = documented_verify()
    body = b'{"id":"evt_1","type":"ping"}'
    now = int(time.time())
    header = webhook_signature.sign("whsec_secret", now, body)
    assert verify("whsec_secret", header, body)
    assert not verify("whsec_secret", header, body + b" ")
    assert not verify("whsec_other", header, body)
    stale = webhook_signature.sign("whsec_secret", now - 301, body)
    assert not verify("whsec_secret", stale, body)
    assert not verify("whsec_secret", "v1=abc", body)
