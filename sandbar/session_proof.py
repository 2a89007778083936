"""Session proofs for ``toOthers``: which WAMP session belongs to which user, unforgeably.

The topics service authenticates every signed-in browser session (it is the router's
dynamic authenticator), so it alone learns, from the router itself, that session ``id``
is user ``authid``. It signs that fact with a key derived from the backend secret and
hands the proof to the browser in its WELCOME (authextra ``session_proof``). The browser
sends ``X-Sandbar-Session: <id>.<proof>`` with a REST request; the bridge, which holds the
same secret, checks the proof against the request's user (named by the API in the
envelope) before it leaves that session out. Nobody without the backend secret can make
a proof, and a proof names one user, so a forged or borrowed header cannot silence
another user's tab. The API needs no new secret, and no state is kept anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_CONTEXT = b"sandbar.session-proof.v1"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


def sign(secret: str, session_id: int, authid: str) -> str:
    """The proof that ``session_id`` is ``authid``'s (22 URL-safe characters)."""
    mac = hmac.new(_key(secret), f"{session_id}:{authid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()


def verify(secret: str, session_id: int, authid: str, proof: str) -> bool:
    return hmac.compare_digest(sign(secret, session_id, authid), proof)
