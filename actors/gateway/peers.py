"""Which local account a connection comes from, and whether that account may use us.

Any account on this computer can connect to 127.0.0.1, so without this check every
local user could open a session and use the scanners and the webcam of whoever runs
the service. A TCP socket carries no credentials (``SO_PEERCRED`` is for Unix sockets
only), but Linux lists every TCP socket of this network namespace, with the uid that
owns it, in ``/proc/net/tcp`` and ``/proc/net/tcp6``. The client's end of a connection
is the row whose local address is the peer address the gateway sees and whose remote
address is the gateway's own end; its uid is the account that opened the connection.

The answer is looked up once per connection (keep-alive requests and WebSockets reuse
it) and holds for HTTPS too: TLS runs over the same TCP socket. A peer with no row is on
another machine (LAN mode, which has its own pairing), unless it is a loopback address:
then the account cannot be told and the request is refused.

``[access] local_users`` says who may use the service: ``owner`` (the account the
service runs as; the default), ``any``, or user names and ``@group`` names, e.g. for a
system-wide service whose desktop users are in one group. ``root`` always may: it can
read the service's files anyway.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import sys
import weakref

from aiohttp import web

TABLES = {4: "/proc/net/tcp", 6: "/proc/net/tcp6"}
REMOTE = -1  # a peer on another machine: not a local account


def _row_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """An address as /proc/net/tcp* print it: each 32-bit word in host byte order."""
    packed = ip.packed
    words = "".join(f"{int.from_bytes(packed[i:i + 4], sys.byteorder):08X}"
                    for i in range(0, len(packed), 4))
    return f"{words}:{port:04X}"


def _forms(host: str) -> dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address in each table it may be listed in (an IPv4 address is listed in
    tcp6 as ``::ffff:a.b.c.d`` when the client used an IPv6 socket)."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return {6: ip}
    return {4: ip, 6: ipaddress.IPv6Address(f"::ffff:{ip}")}


def connection_uid(transport) -> int | None:
    """The uid owning the client end of ``transport``'s connection; ``REMOTE`` for a
    peer on another machine; None when it cannot be told."""
    peer = transport.get_extra_info("peername")
    own = transport.get_extra_info("sockname")
    if not peer or not own:
        return None
    try:
        peers, owns = _forms(peer[0]), _forms(own[0])
    except ValueError:
        return None
    for version, table in TABLES.items():
        if version not in peers or version not in owns:
            continue
        local = _row_address(peers[version], peer[1])
        remote = _row_address(owns[version], own[1])
        try:
            with open(table, encoding="ascii") as rows:
                for row in rows:
                    fields = row.split()
                    if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                        return int(fields[7])
        except (OSError, ValueError):
            continue
    return None if next(iter(peers.values())).is_loopback else REMOTE


def _user_allowed(uid: int, allowed: list[str]) -> bool:
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    groups: list[int] | None = None
    for entry in allowed:
        if not entry.startswith("@"):
            if entry == user.pw_name:
                return True
            continue
        try:
            gid = grp.getgrnam(entry[1:]).gr_gid
        except KeyError:
            continue
        if groups is None:
            groups = os.getgrouplist(user.pw_name, user.pw_gid)
        if gid in groups:
            return True
    return False


def account(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class LocalUsers:
    """The ``[access] local_users`` check; ``users()`` gives the current setting (the
    allowlist re-reads it when user_config.ini changes)."""

    def __init__(self, users, log):
        self.users = users
        self.log = log
        self.owner = os.geteuid()
        self.uids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def refusal(self, request: web.Request) -> str | None:
        """Why the request's account may not use the service, or None if it may."""
        allowed = self.users()
        if "any" in allowed:
            return None
        transport = request.transport
        if transport is None:  # the client is gone already
            return "the connection is closed"
        try:
            uid = self.uids[transport]
        except KeyError:
            uid = self.uids[transport] = connection_uid(transport)
        if uid in (REMOTE, 0, self.owner):
            return None
        if uid is None:
            return ("this service could not tell which local account the connection comes "
                    "from, and only its own account may use it")
        if _user_allowed(uid, allowed):
            return None
        self.log.warning("refused local user", uid=uid, path=request.path[:200])
        return (f"the local account {account(uid)} may not use this service, which runs as "
                f"{account(self.owner)}; an administrator can allow it in user_config.ini: "
                "[access] local_users = owner, USER (or @GROUP, or any)")
