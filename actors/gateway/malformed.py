"""JSON answers for requests aiohttp's HTTP parser refuses before any handler runs.

A header line it cannot parse (``Content-Length: r_7``), a bad method or a bad chunk gets
a 400 from aiohttp's protocol itself, as ``text/plain``. Here that answer becomes our JSON
error, like every other refusal, and the connection still closes after it.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web, web_protocol, web_server


class _Protocol(web_protocol.RequestHandler):
    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses a sent answer
        if status >= 500:
            code, text = "internal", "an unexpected error; see the gateway's log"
        else:
            code = "bad_request"
            reason = (message or "").splitlines()[0] if message else HTTPStatus(status).phrase
            text = f"the request is malformed: {reason}"[:300]
        response = web.json_response({"error": {"code": code, "message": text}}, status=status)
        response.force_close()
        return response


class _Server(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


def answer_in_json(runner: web.AppRunner) -> None:
    """After ``runner.setup()``: the runner's server makes connections that answer JSON."""
    runner.server.__class__ = _Server
