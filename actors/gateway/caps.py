"""The answer when a client holds too much open at once: sessions, live views, sockets.

Each of them costs the service memory or work for as long as it is open, so each has a
cap in ``[gateway]``; a client over one gets 429 ``too_many`` saying what to close.
"""

from __future__ import annotations

from broker.protocol import Error


def too_many(what: str, count: int, limit: int, advice: str) -> Error:
    return Error("too_many", f"too many {what}: {advice} ({count} open, limit {limit})",
                 open=count, limit=limit)
