"""``toOthers`` at the bridge: leave out the session a REST request named, if it is the
request's user's (its proof checks out, see sandbar/session_proof.py); otherwise publish
to everyone as usual, log it and count it by reason."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

from bridge.routes import Publication
from sandbar.session_proof import verify

log = logging.getLogger("sandbar.bridge.others")


def leave_out(pub: Publication, secret: str, ignored: Counter[str]) -> Publication:
    """``pub`` publishing with ``exclude=[session]``, or unchanged when the claim fails."""
    others = pub.envelope.others
    if others is None:
        return pub
    session, user, proof = others.get("session"), others.get("user"), others.get("proof")
    if (
        isinstance(session, bool)
        or not isinstance(session, int)
        or not isinstance(user, str)
        or not isinstance(proof, str)
    ):
        reason = "malformed"
    elif not verify(secret, session, user, proof):
        reason = "not_the_users_session"
    else:
        excluded = [*pub.options.get("exclude", []), session]
        return replace(pub, options={**pub.options, "exclude": excluded})
    ignored[reason] += 1
    log.warning(
        "event %s '%s': ignored the request's session to leave out (%s); everyone gets it",
        pub.envelope.id,
        pub.envelope.name,
        reason,
    )
    return pub
