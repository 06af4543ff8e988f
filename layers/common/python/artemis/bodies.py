"""Request bodies: pydantic models and the one parser.

JSON is decoded without looking at Content-Type, only the first JSON value is read (trailing
bytes are ignored, as the reference does), unknown fields are ignored, and wrong types answer
400 bad_request. The byte limit is enforced before parsing.

Hostile JSON answers 400 too, never a crash: nesting deeper than MAX_DEPTH is refused by a
linear scan before the decoder (which recurses per level and would overflow the stack), and a
number the decoder cannot convert (Python refuses integers of more than 4,300 digits) is a
malformed body.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from artemis.errors import BadRequest, TooLarge

MANIFEST_LIMIT = 8 * 1024 * 1024  # init and finalize may carry a file manifest
SMALL_LIMIT = 64 * 1024
MAX_DEPTH = 64  # every body is an object of lists of objects at most: 3 levels

# A JSON string, escapes included, up to its closing quote or, unterminated, to the end (so a
# failed match never rescans: the scan stays linear); possessive, so it never backtracks.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]++")
_STEP = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 / -1 as signed bytes

Model = TypeVar("Model", bound=BaseModel)


class _Body(BaseModel):
    # defer_build: validators are built on first use, not at cold start
    model_config = ConfigDict(
        strict=True, extra="ignore", populate_by_name=True, frozen=True, defer_build=True
    )


def _integral(value: object) -> object:
    """JSON has one number type: 1.0 is the integer 1 (an OpenAPI `integer` admits it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class InitBody(_Body):
    site: str = ""
    sha: str = ""
    # Accepted and ignored, since clients may send it: the manifest comes at finalize.
    files: list[str] | None = None
    # Where the deploy comes from, all optional (rules: artemis.deploy_metadata).
    branch: str | None = None
    message: str | None = None
    pr: Annotated[int, BeforeValidator(_integral)] | None = None
    repo: str | None = None
    ci_url: str | None = Field(None, alias="ciUrl")


class FinalizeBody(_Body):
    mode: str | None = None
    files: list[str] | None = None
    # A named preview to publish to (with mode preview) instead of the preview alias.
    alias: str | None = None


class PromoteBody(_Body):
    deploy_id: str = Field("", alias="deployId")
    expected_current: str = Field("", alias="expectedCurrent")
    expect_no_current: bool = Field(False, alias="expectNoCurrent")  # no production alias yet
    preview: str = ""  # a named preview whose deploy to promote


class RollbackBody(_Body):
    to: str = ""
    expected_current: str = Field("", alias="expectedCurrent")
    expect_no_current: bool = Field(False, alias="expectNoCurrent")


class RegisterBody(_Body):
    slug: str = ""
    teams: list[str] | None = None


class TeamsBody(_Body):
    teams: list[str] | None = None


class TrustRuleBody(_Body):
    # Defaults, not required fields: the route answers invalid_trust_rule naming the field.
    repository: str = ""
    repository_id: Annotated[int, BeforeValidator(_integral)] | None = Field(
        None, alias="repositoryId"
    )
    workflow: str = ""
    environment: str | None = None
    ref: str | None = None
    aliases: list[str] | None = None


class HookBody(_Body):
    # Defaults, not required fields: the route answers its own codes for each.
    url: str = ""
    events: list[str] | None = None


SHA256_HEX = r"^[0-9a-f]{64}$"


class UploadFile(_Body):
    path: str
    size: Annotated[int, BeforeValidator(_integral)] = Field(ge=0)
    content_type: str | None = Field(None, alias="contentType")
    # Optional: the presigned POST then binds it, so S3 accepts only those bytes.
    sha256: str | None = Field(None, pattern=SHA256_HEX)


class UploadsBody(_Body):
    files: list[UploadFile] = Field(default_factory=list)


class DigestFile(_Body):
    path: str
    sha256: str = Field(pattern=SHA256_HEX)
    size: Annotated[int, BeforeValidator(_integral)] = Field(ge=0)
    content_type: str | None = Field(None, alias="contentType")


class DigestsBody(_Body):
    files: list[DigestFile] = Field(default_factory=list)


class RepoCreateBody(_Body):
    name: str = ""
    visibility: str = ""
    description: str = ""
    template: str = ""


class RejectBody(_Body):
    reason: str = ""


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting outside strings, over the whole body. Works on the raw
    bytes: UTF-8 never encodes a non-ASCII character with an ASCII byte."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    steps = memoryview(brackets.translate(_STEP)).cast("b")
    return max(itertools.accumulate(steps), default=0)


def parse(
    model: type[Model], raw: bytes, *, limit: int = SMALL_LIMIT, required: bool = True
) -> Model:
    if len(raw) > limit:
        raise TooLarge(f"body over {limit} bytes")
    text = raw.decode("utf-8", errors="replace").lstrip()
    if not text:
        if required:
            raise BadRequest("a JSON body is required")
        return model()
    if nesting_depth(raw) > MAX_DEPTH:
        raise BadRequest(f"body nests deeper than {MAX_DEPTH} levels")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:  # JSONDecodeError, or a number too long to convert
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None
