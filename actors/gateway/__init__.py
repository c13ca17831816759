"""gateway: the HTTP side of Scanbridge (aiohttp) - welcome page and the v1 API.

Always running. Serves every ``[ports] http`` port on every ``[network] bind`` address.
Routes so far:

======================  =================================================================
GET /                   welcome page: service name, version, actor states, links
GET /api/v1/status      {name, display_name, version, actors: {program: {...}}, services}
======================  =================================================================

Every request must carry a loopback ``Host`` (DNS-rebinding defence); errors are JSON
``{"error": {"code", "message"}}``. Broker operations (``scanbridge call gateway OP``):
``listening`` (the addresses served), plus the built-in ``ping`` and ``ops``.
"""
