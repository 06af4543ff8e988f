"""The verifier of GitHub Actions OIDC tokens: `OidcVerifier.verify(token) -> OidcClaims`, or
one of the `Oidc*` errors of artemis.errors, each with its own code.

Keys come from the issuer's discovery document (`<issuer>/.well-known/openid-configuration`)
and the JWKS it names, read through the GitHub transport (no redirect followed, bounded body
and timeout) and kept in the process:

* a token naming a key id not in the cache refreshes it, at most once per `refresh_interval`
  (tokens with made-up key ids cannot make us hammer the issuer);
* keys older than `max_key_age` are refreshed on the next use, so a key the issuer withdrew
  stops passing; if that refresh fails, the cached key still serves (the issuer being down
  does not stop deploys) — but with no cached key that fits, the answer is
  `oidc_issuer_unavailable` (503), never a pass;
* the JWKS must be on the issuer's own origin, and the discovery document must name the
  issuer: otherwise the issuer is treated as unavailable.

PyJWKClient is not used: it fetches with urllib and its own rules (redirects followed, no body
limit); the transport here keeps the GitHub client's.

Each token is accepted once: its `jti` is remembered (`remember`, e.g. `replay_in_database`)
until it could no longer pass the expiry check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlsplit

from artemis.errors import (
    DependencyError,
    OidcAlg,
    OidcAudience,
    OidcExpired,
    OidcInvalid,
    OidcIssuer,
    OidcIssuerUnavailable,
    OidcNotYetValid,
    OidcReplayed,
    OidcSignature,
    OidcUnknownKey,
)
from artemis.errors import OidcClaims as OidcClaimsError
from artemis.github_transport import GitHubTransport, TransportError, shared_transport
from artemis.oidc_claims import ALGORITHM, OidcClaims, claims_from, split_token

if TYPE_CHECKING:
    import jwt

    from artemis.db.connection import Database

__all__ = ["OidcVerifier", "replay_in_database"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
TIMEOUT = 5.0  # per request to the issuer
LEEWAY = 60  # seconds of clock skew allowed on exp, nbf and iat
MAX_LIFETIME = 3600  # exp - iat; GitHub's tokens live minutes
REFRESH_INTERVAL = 10.0  # at most one key refresh per this many seconds
MAX_KEY_AGE = 3600.0  # cached keys older than this are refreshed on next use

T = TypeVar("T")

# remember(jti, keep_until epoch seconds) -> False when the jti was already remembered
Remember = Callable[[str, float], bool]


class _Unreachable(Exception):
    """The issuer's keys could not be read (why, for logs)."""


def replay_in_database(db: Database) -> Remember:
    """Remember accepted token ids in Postgres (`oidc_replay`): always there, shared by every
    environment, and it does not evict a key under memory pressure as Redis may."""
    from artemis.db.oidc_replay import remember_jti

    def remember(jti: str, keep_until: float) -> bool:
        try:
            with db.transaction() as conn:
                return remember_jti(conn, jti, keep_until)
        except Exception as err:  # unrecorded, the token could be replayed: refuse it
            raise DependencyError("oidc_replay_failed") from err

    return remember


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class OidcVerifier:
    """Verifies tokens of one issuer for one audience. Thread-safe; keep one per process so
    its key cache is shared. `clock` (monotonic seconds) paces the key refreshes; token times
    are judged on the wall clock (`wall_clock`)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        remember: Remember,
        transport: GitHubTransport | None = None,
        timeout: float = TIMEOUT,
        leeway: int = LEEWAY,
        max_lifetime: int = MAX_LIFETIME,
        refresh_interval: float = REFRESH_INTERVAL,
        max_key_age: float = MAX_KEY_AGE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._remember = remember
        self._transport = transport or shared_transport()
        self._timeout = timeout
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._refresh_interval = refresh_interval
        self._max_key_age = max_key_age
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # of the cached keys
        self._attempted_at: float | None = None  # of the last refresh, failed or not
        self.last_error: str | None = None  # why the last refresh failed, for logs

    @overload
    def verify(self, token: str) -> OidcClaims: ...
    @overload
    def verify(self, token: str, check: Callable[[OidcClaims], T]) -> T: ...
    def verify(self, token: str, check: Callable[[OidcClaims], Any] | None = None) -> Any:
        """The verified identity of `token` (or what `check` makes of it), which is then spent:
        a second verify of it raises OidcReplayed. `check` runs on the verified identity before
        the token is spent, so a token it refuses (by raising) is not spent."""
        import jwt

        header, _ = split_token(token)
        if header.get("alg") != ALGORITHM:  # `none`, HS256 with the public key as secret, ...
            raise OidcAlg()
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OidcInvalid("the OIDC token's header names no key id")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[ALGORITHM], audience=self.audience,
                issuer=self.issuer, leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud"], "verify_sub": False,
                         "verify_jti": False},
            )  # fmt: skip
        except jwt.InvalidSignatureError:
            raise OidcSignature() from None
        except jwt.ExpiredSignatureError:
            raise OidcExpired() from None
        except jwt.ImmatureSignatureError:  # nbf, or iat, in the future
            raise OidcNotYetValid() from None
        except jwt.InvalidAudienceError:
            raise OidcAudience() from None
        except jwt.InvalidIssuerError:
            raise OidcIssuer() from None
        except jwt.InvalidAlgorithmError:
            raise OidcAlg() from None
        except (jwt.MissingRequiredClaimError, jwt.InvalidIssuedAtError):
            raise OidcClaimsError() from None
        except jwt.PyJWTError:
            raise OidcInvalid() from None
        identity = claims_from(claims, max_lifetime=self._max_lifetime)
        checked = identity if check is None else check(identity)
        # Kept until the token can no longer pass the expiry check (exp plus the leeway).
        if not self._remember(identity.jti, identity.expires_at + self._leeway):
            raise OidcReplayed()
        return checked

    # --- keys -------------------------------------------------------------------------------

    def _key(self, kid: str) -> jwt.PyJWK:
        # One refresh at a time: concurrent requests wait for it rather than each fetching.
        with self._lock:
            now = self._clock()
            key = self._keys.get(kid)
            fresh = self._fetched_at is not None and now - self._fetched_at <= self._max_key_age
            if key is not None and fresh:
                return key
            paced = (
                self._attempted_at is not None and now - self._attempted_at < self._refresh_interval
            )
            if paced:
                if key is not None:
                    return key
                if self.last_error is not None:
                    raise OidcIssuerUnavailable()
                raise OidcUnknownKey()
            self._attempted_at = now
            try:
                self._keys = self._fetch_keys()
            except _Unreachable as exc:
                self.last_error = str(exc)
                if key is not None:
                    return key  # stale, but the issuer cannot say otherwise now
                raise OidcIssuerUnavailable() from None
            self._fetched_at = now
            self.last_error = None
            key = self._keys.get(kid)
            if key is None:
                raise OidcUnknownKey()
            return key

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        try:
            jwks = self._get_json(self._jwks_uri)
        except _Unreachable:
            self._jwks_uri = None  # the document may have moved the keys: read it again
            raise
        keys = self._parse_jwks(jwks)
        if not keys:
            raise _Unreachable("the JWKS holds no RS256 signing key")
        return keys

    def _discover(self) -> str:
        document = self._get_json(self.issuer + DISCOVERY_PATH)
        if document.get("issuer") != self.issuer:
            raise _Unreachable("the discovery document names another issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise _Unreachable("the discovery document has no jwks_uri")
        # Keys from elsewhere could be anyone's: only the issuer's own origin may serve them.
        if _origin(uri) != _origin(self.issuer):
            raise _Unreachable("the jwks_uri is not on the issuer's origin")
        return uri

    def _get_json(self, url: str) -> Mapping[str, Any]:
        try:
            response = self._transport.request("GET", url, None, self._timeout)
        except TransportError as exc:
            raise _Unreachable(f"{url}: {exc.kind}") from None
        if response.status != 200:
            raise _Unreachable(f"{url}: status {response.status}")
        try:
            body = response.json()
        except ValueError:
            raise _Unreachable(f"{url}: not JSON") from None
        if not isinstance(body, dict):
            raise _Unreachable(f"{url}: not a JSON object")
        return body

    @staticmethod
    def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
        import jwt

        keys: dict[str, jwt.PyJWK] = {}
        listed = jwks.get("keys")
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict) or item.get("kty") != "RSA":
                continue
            if item.get("use", "sig") != "sig" or item.get("alg", ALGORITHM) != ALGORITHM:
                continue
            kid = item.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            try:
                keys[kid] = jwt.PyJWK(item, algorithm=ALGORITHM)
            except jwt.PyJWTError:
                continue  # one unreadable key does not spoil the others
        return keys
