"""gateway: the HTTP side of Scanbridge (aiohttp) - the v1 API, its events, the pages.

Always running. Serves every ``[ports] http`` port on every ``[network] bind`` address:

==========================  ============================================================
GET /                       welcome page: version, actor states, devices, allowed origins
GET /scanbridge.js          the ES module client for web pages (static/scanbridge.js)
GET /demo/                  the demo app (static/demo/), built on scanbridge.js only
GET /docs/NAME.md           the operator documentation of this checkout, as text
/api/v1/...                 the v1 API: ``GET /api/v1/openapi.json`` describes it all;
                            docs/api.md explains sessions, jobs, images and events
==========================  ============================================================

Every request passes the guard (``app.py``): a loopback ``Host``, an allowed ``Origin``
(``security.py``), the session's token on session endpoints (``sessions.py``). Errors
are JSON ``{"error": {"code", "message"}}``. Broker operations (``scanbridge call gateway
OP``): ``listening`` (the addresses served), plus the built-in ``ping`` and ``ops``.
"""
