"""The sockets the broker binds, made in one place so its loop only routes.

- the frontend: a ROUTER on the home's ipc socket (``run/broker.sock``, 0600), where local
  clients and workers connect;
- the remote frontend, when ``[broker] tcp_endpoint`` is set: a ROUTER that admits only the
  CURVE keys listed in ``curve_clients`` (a ZAP authenticator thread checks each one);
- the event pair: publishers send to the XSUB, subscribers read from the XPUB, and the
  broker relays between them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import zmq

from . import config as configlib
from . import logs

log = logs.Log("broker")

IPC_NAMES = ("broker.sock", "events-in.sock", "events-out.sock")


@dataclass(frozen=True, slots=True)
class Sockets:
    frontends: list[zmq.Socket]  # the ipc ROUTER, then the CURVE one if any
    remote: zmq.Socket | None  # the CURVE tcp ROUTER
    rights: dict[str, configlib.CurveClient]  # Z85 key -> its curve_clients entry
    auth: Any  # the ZAP authenticator thread of the CURVE endpoint, or None
    events_in: zmq.Socket  # XSUB: what publishers send
    events_out: zmq.Socket  # XPUB: what subscribers read


def open_sockets(ctx: zmq.Context, cfg: configlib.Config, endpoints: tuple[str, str, str],
                 ipc: bool) -> Sockets:
    """Bind (frontend, events in, events out); ``ipc``: they are the home's socket files,
    which are replaced and made 0600."""
    frontend, events_in, events_out = endpoints
    home = cfg.home
    if ipc:
        home.ensure()
        for name in IPC_NAMES:
            try:
                (home.run / name).unlink()
            except FileNotFoundError:
                pass
    local = router(ctx)
    local.bind(frontend)
    remote, rights, auth = None, {}, None
    if cfg.broker.tcp_endpoint:
        remote, rights, auth = _bind_curve(ctx, cfg, cfg.broker.tcp_endpoint)
    relay_in = ctx.socket(zmq.XSUB)
    relay_in.bind(events_in)
    relay_in.send(b"\x01")  # subscribe to everything the publishers send
    relay_out = ctx.socket(zmq.XPUB)
    relay_out.setsockopt(zmq.SNDHWM, 100000)
    relay_out.bind(events_out)
    if ipc:
        for name in IPC_NAMES:
            os.chmod(home.run / name, 0o600)
    return Sockets([local, remote] if remote else [local], remote, rights, auth, relay_in,
                   relay_out)


def router(ctx: zmq.Context) -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable -> error, not silence
    sock.setsockopt(zmq.SNDHWM, 100000)
    sock.setsockopt(zmq.RCVHWM, 100000)
    sock.setsockopt(zmq.MAXMSGSIZE, 1 << 31)
    return sock


def _bind_curve(ctx: zmq.Context, cfg: configlib.Config,
                endpoint: str) -> tuple[zmq.Socket, dict[str, configlib.CurveClient], Any]:
    """The CURVE ROUTER, the rights of the keys it admits, and its authenticator."""
    from zmq.auth.thread import ThreadAuthenticator

    from .curve import server_keys

    public, secret = server_keys(cfg.home)
    rights = {entry.key: entry for entry in cfg.broker.curve_clients}
    allowed = {key.encode() for key in rights}

    # The ZAP handler asks this for each connecting key (Z85); an admitted connection's
    # messages then carry the key as their User-Id, which the broker's _route_remote reads.
    class Allowlist:
        @staticmethod
        def callback(domain: str, key: bytes) -> bool:
            return key in allowed

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=Allowlist())
    sock = router(ctx)
    # libzmq drops the connection of a peer that sends a bigger frame; _route_remote checks
    # the sum of a message's frames.
    sock.setsockopt(zmq.MAXMSGSIZE, cfg.broker.tcp_max_message_mb << 20)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    sock.bind(endpoint)
    log.info("curve endpoint open", endpoint=endpoint, clients=len(allowed))
    return sock, rights, auth
