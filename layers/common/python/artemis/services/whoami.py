"""`GET /api/whoami` : the caller's login and the sites their teams own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from artemis.runtime import Runtime
from artemis.services.context import Caller

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import Whoami


def whoami(rt: Runtime, caller: Caller) -> Whoami:
    """`authorizedSites` is advisory: it counts any listed membership, while the gates
    probe for an active one."""
    from artemis.responses import Whoami

    mine = set(rt.github.teams(caller.token))
    sites = sorted(slug for slug, teams in rt.snapshot.all().items() if mine.intersection(teams))
    return Whoami(login=caller.login, authorizedSites=sites)
