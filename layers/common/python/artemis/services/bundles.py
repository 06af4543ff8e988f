"""Bundled uploads: many small files in one request (a tar stream, maybe gzip-compressed),
written into the deploy with the same rules and the same lock as the upload route, so a
deploy of thousands of small files takes a few requests instead of one per file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from artemis import content_types, session
from artemis.db import content as content_db
from artemis.db import deploy_lock
from artemis.db.content import FileDigest
from artemis.errors import ArtemisError, DependencyError
from artemis.invocation import stop_time
from artemis.runtime import Runtime
from artemis.services.deploys import refuse_closed, site_of

# What one request may spend writing: well inside the API's time limit however slow the bucket
# is; a member not started by then is answered in `remaining` and sent again by the client.
BUNDLE_SECONDS = 10.0
BUNDLE_RESERVE_SECONDS = 5.0

# The answer's model is imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import BundleResponse


def upload_bundle(
    rt: Runtime, claims: session.SessionClaims, deploy_id: str, body: bytes
) -> BundleResponse:
    """Unpack and check the whole bundle, then write its files and their digests: a bundle
    with one bad member (a link, a bad path, a size over a limit, a header that lies) is
    refused before the first write. The writes are bounded in time: members not started
    within the request's budget are answered as `remaining`, and no digest is recorded for
    them."""
    from artemis import bundles  # tarfile (~10 ms) loads with the first bundle, not at init
    from artemis.responses import BundleResponse

    _, site = site_of(rt, claims.site)
    prefix = rt.settings.key_layout.deploy_prefix(site, deploy_id)
    members = bundles.parse(body, member_limit=rt.settings.upload_max_bytes, key_prefix=prefix)
    items = [
        (prefix + m.path, m.data, content_types.content_type_for(m.path, None)) for m in members
    ]
    stop_at = stop_time(BUNDLE_SECONDS, BUNDLE_RESERVE_SECONDS)
    # As the upload route: the check and the writes are one critical section under the deploy
    # lock (shared), so no file of a bundle lands in a deploy once a finalize or delete of it
    # committed; the digests the server computed while unpacking are recorded in the same
    # transaction, so a failed write records none.
    try:
        with rt.db.transaction() as conn:
            refuse_closed(deploy_lock.share(conn, site, deploy_id))
            written = rt.bucket.put_many(items, stop_at=stop_at)
            done = [m for m, ok in zip(members, written, strict=True) if ok]
            content_db.record(
                conn, site, deploy_id, [FileDigest(m.path, m.sha256, len(m.data)) for m in done]
            )
    except ArtemisError:
        raise
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    return BundleResponse(
        received=[m.path for m in done],
        files=len(done),
        bytes=sum(len(m.data) for m in done),
        remaining=[m.path for m, ok in zip(members, written, strict=True) if not ok],
    )
