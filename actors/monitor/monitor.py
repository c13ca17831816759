"""The monitor actor: dumps for crashes and hangs, restarts of hung actors, on-demand life.

Crashes: supervisord restarts a program that exits; the monitor reads supervisord's
``exited: NAME (REASON; not expected)`` line and writes ``dumps/NAME-TIME.dump`` with the
reason, the fault-handler output and the program's last log lines.

Hangs: the broker publishes ``actor.state`` ``hung`` for a worker whose heartbeats stopped
while its process lives (SIGSTOP, deadlock, a handler far past its deadline). The monitor
asks it for all thread stacks (SIGUSR1, then SIGCONT so a stopped process can answer),
writes the dump, then kills it through supervisord, which starts it again.

On demand: programs listed in ``[ondemand] programs`` start when a request waits for their
service (``service.wanted``) or a holder asks with ``hold``; they stop when nobody holds
them and their service was idle for ``idle_stop`` seconds. Every open session of the
buffer holds every on-demand program (holder ``session:ID``): the buffer's
``session.opened``/``session.closed`` events add and drop those holds at once, and a
comparison with the buffer's session list every ``SESSIONS_EVERY`` seconds repairs what a
lost event (or a monitor restart) got wrong.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from broker import config as configlib
from broker import supervision
from broker.actor import Actor, operation
from broker.procutil import atomic_write
from broker.protocol import ACTOR_STATE, SERVICE_WANTED, SESSION_CLOSED, SESSION_OPENED, Error

from . import dumps as dumpfiles
from .exits import ExitReader, signal_of

STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "BACKOFF"}
ONDEMAND_EVERY = 1.0  # seconds between two idle checks of on-demand programs
SESSIONS_EVERY = 30.0  # seconds between two comparisons of session holds with the buffer
SESSION_HOLDER = "session:"


class Monitor(Actor):
    service = "monitor"
    tick_interval = 0.25
    subscriptions = (ACTOR_STATE, SERVICE_WANTED, "session.")

    def __init__(self, cfg: configlib.Config):
        super().__init__(cfg)
        # Nobody restarts a hung monitor but itself: its own watchdog (see Actor.watchdog).
        self.watchdog = cfg.monitor.watchdog
        self.exits: ExitReader | None = None  # reads its saved position: made at start
        self.holds_path = self.home.run / "monitor-holds.json"
        self.holds: dict[str, set[str]] = {}  # program -> holders; loaded at start
        self.released: dict[str, float] = {}  # program -> when its last holder left
        self.killed: dict[str, int] = {}  # program -> exits we caused (hang restarts)
        self.next_ondemand = 0.0
        self.next_sessions = 0.0
        self.supervisor_warned = 0.0

    def on_start(self) -> None:
        self.exits = ExitReader(self.home.logs / "supervisord.log",
                                self.home.run / "monitor-exits.json")
        self.holds = self._load_holds()

    # --- timers and events

    def on_tick(self) -> None:
        for exit in self.exits.read():
            if not exit.expected:
                self._crashed(exit.program, exit.reason)
        now = time.monotonic()
        if now >= self.next_sessions and self.cfg.ondemand.programs:
            self.next_sessions = now + SESSIONS_EVERY
            self._sync_sessions()
        if now >= self.next_ondemand:
            self.next_ondemand = now + ONDEMAND_EVERY
            self._ondemand()

    def on_event(self, topic: str, body: dict) -> None:
        if topic == ACTOR_STATE and body.get("state") == "hung":
            self._hung(body)
        elif topic == SERVICE_WANTED and isinstance(body.get("service"), str):
            self._wanted(body["service"])
        elif topic in (SESSION_OPENED, SESSION_CLOSED) and isinstance(body.get("session"), str):
            self._session(body["session"], topic == SESSION_OPENED)

    # --- crashes and hangs

    def _crashed(self, program: str, reason: str) -> None:
        if self.killed.get(program):
            self.killed[program] -= 1  # our own hang restart: its dump is written already
            return
        faults = dumpfiles.take_dead_faults(self.home.dumps, program)
        summary = {"event": "exited unexpectedly (supervisord restarts it)", "exit": reason}
        sig = signal_of(reason)
        if sig:
            summary["signal"] = sig
        self._write_dump(program, "crash", summary, faults)

    def _hung(self, body: dict) -> None:
        pid = body.get("pid")
        if pid == os.getpid():
            # We were stopped and run again (we read this event): nothing to restart.
            # A real hang of ours is the watchdog's business (see Actor.watchdog).
            self.log.warning("the broker saw the monitor hung; it runs again")
            return
        info = None if body.get("remote") else self._process_with_pid(pid)
        # The pid is the worker's own word: act only when it is a program of that service.
        if info is None or body.get("service") not in (info["group"], info["name"]):
            self.log.warning("hung worker is not one of ours; left alone",
                             service=body.get("service"), worker_pid=pid)
            return
        program = info["name"]
        stacks = self._stack_dump(program, pid)
        self.killed[program] = self.killed.get(program, 0) + 1
        self._write_dump(program, "hang", {
            "event": "stopped answering heartbeats; killed so supervisord restarts it",
            "service": body.get("service"), "pid": pid}, stacks)
        try:
            supervision.rpc(self.home).signalProcess(supervision.full_name(info), "KILL")
        except Exception as exc:
            self.killed[program] -= 1
            self.log.error("could not restart hung actor", program=program, error=str(exc))
            return
        self.log.warning("restarted hung actor", program=program, worker_pid=pid)
        for fault_pid, path in dumpfiles.fault_files(self.home.dumps, program):
            if fault_pid == pid:
                path.unlink(missing_ok=True)

    def _stack_dump(self, program: str, pid: int) -> str:
        """All thread stacks of a live process, via its fault handler (SIGUSR1)."""
        path = self.home.dumps / f".{program}.{pid}.fault"
        try:
            before = path.stat().st_size
            os.kill(pid, signal.SIGUSR1)
            os.kill(pid, signal.SIGCONT)  # a stopped process handles SIGUSR1 once resumed
        except OSError as exc:
            return f"(no stack dump: {exc})"
        end = time.monotonic() + self.cfg.monitor.hang_dump_wait
        size = before
        while time.monotonic() < end:
            time.sleep(0.02)
            new_size = path.stat().st_size if path.exists() else before
            if new_size > before and new_size == size:
                break  # grew and stopped growing: the dump is complete
            size = new_size
        try:
            with open(path, "rb") as fault:
                fault.seek(before)
                text = fault.read().decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "(the process wrote no stacks in time)"

    def _write_dump(self, program: str, kind: str, summary: dict, faults: str) -> None:
        path = dumpfiles.write(self.home.dumps, self.home.logs, program, kind, summary, faults,
                           self.cfg.monitor.log_lines)
        removed = dumpfiles.rotate(self.home.dumps, self.cfg.monitor.dump_count,
                               self.cfg.monitor.dump_total_mb * 1024 * 1024)
        self.log.warning("dump written", program=program, kind=kind, path=str(path),
                         rotated_out=len(removed), **{k: v for k, v in summary.items()
                                                      if k in ("exit", "signal")})
        self.publish("dump.written", {"program": program, "kind": kind, "path": str(path)})

    def _processes(self) -> list[dict]:
        try:
            return supervision.processes(self.home)
        except Exception as exc:
            now = time.monotonic()
            if now - self.supervisor_warned > 60:
                self.supervisor_warned = now
                self.log.warning("cannot reach supervisord", error=str(exc))
            return []

    def _process_with_pid(self, pid: Any) -> dict | None:
        if not isinstance(pid, int) or pid <= 0:
            return None
        return next((p for p in self._processes() if p["pid"] == pid), None)

    # --- on demand

    def _programs_of(self, service: str, infos: list[dict] | None = None) -> list[dict]:
        infos = self._processes() if infos is None else infos
        return [p for p in infos if service in (p["group"], p["name"])]

    def _start(self, infos: list[dict], why: str) -> None:
        for info in infos:
            if info["statename"] in STOPPED_STATES:
                name = supervision.full_name(info)
                try:
                    supervision.rpc(self.home).startProcess(name, False)
                    self.log.info("started program", program=name, why=why)
                except Exception as exc:
                    self.log.warning("could not start program", program=name, error=str(exc))

    def _wanted(self, service: str) -> None:
        self._start(self._programs_of(service), "a request waits for it")

    def _ondemand(self) -> None:
        programs = self.cfg.ondemand.programs
        if not programs:
            return
        try:
            services = self.client().call("broker", "services", timeout=2)["services"]
        except Error:
            return  # the broker is restarting; decide next time
        now = time.time()
        processes = self._processes()  # one supervisord call per pass
        for program in programs:
            infos = self._programs_of(program, processes)
            running = [p for p in infos if p["statename"] in ("RUNNING", "STARTING")]
            if self.holds.get(program):
                self._start(infos, "held by " + ", ".join(sorted(self.holds[program])))
                continue
            if not running:
                continue
            svc = services.get(program, {})
            busy = svc.get("queued", 0) or any(w["inflight"] for w in svc.get("workers", []))
            last = max(svc.get("last_activity", 0), self.released.get(program, 0),
                       max((p["start"] for p in running), default=0))
            if not busy and now - last >= self.cfg.idle_stop(program):
                for info in running:
                    name = supervision.full_name(info)
                    try:
                        supervision.rpc(self.home).stopProcess(name, False)
                        self.log.info("stopped idle program", program=name,
                                      idle=round(now - last, 1))
                    except Exception as exc:
                        self.log.warning("could not stop program", program=name,
                                         error=str(exc))

    def _session(self, session: str, opened: bool) -> None:
        for program in self.cfg.ondemand.programs:
            (self.hold if opened else self.release)(program, SESSION_HOLDER + session)

    def _sync_sessions(self) -> None:
        try:
            sessions = self.client().call("buffer", "sessions", timeout=5)
        except Error:
            return  # the buffer is restarting: events keep holds right meanwhile
        wanted = {SESSION_HOLDER + s["session"] for s in sessions}
        for program in self.cfg.ondemand.programs:
            held = self.holds.setdefault(program, set())
            for holder in [h for h in held if h.startswith(SESSION_HOLDER)]:
                if holder not in wanted:
                    self._drop_hold(program, holder)
            held |= wanted
        self._save_holds()

    def _drop_hold(self, program: str, holder: str) -> None:
        held = self.holds.get(program, set())
        if holder in held:
            held.discard(holder)
            if not held:
                self.released[program] = time.time()

    def _load_holds(self) -> dict[str, set[str]]:
        try:
            return {k: set(v) for k, v in json.loads(self.holds_path.read_text()).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def _save_holds(self) -> None:
        atomic_write(self.holds_path, json.dumps(
            {k: sorted(v) for k, v in self.holds.items() if v}).encode(), 0o600)

    def _check_ondemand(self, program: str, holder: str) -> None:
        if program not in self.cfg.ondemand.programs:
            raise Error("invalid_argument", f"{program!r} is not an on-demand program "
                        f"(on demand: {', '.join(self.cfg.ondemand.programs) or 'none'})")
        if not holder:
            raise Error("invalid_argument", "holder must be a non-empty string")

    # --- operations

    @operation
    def hold(self, program: str, holder: str) -> dict:
        """Keep an on-demand program running for ``holder`` (e.g. a session id)."""
        self._check_ondemand(program, holder)
        self.holds.setdefault(program, set()).add(holder)
        self._save_holds()
        self._start(self._programs_of(program), f"held by {holder}")
        return {"program": program, "holders": sorted(self.holds[program])}

    @operation
    def release(self, program: str, holder: str) -> dict:
        """Drop ``holder``'s hold; the idle delay starts when the last holder leaves."""
        self._check_ondemand(program, holder)
        self._drop_hold(program, holder)
        self._save_holds()
        return {"program": program, "holders": sorted(self.holds.get(program, ()))}

    @operation
    def dumps(self) -> list:
        """The dump files, newest first: name, program, time, bytes, path."""
        return dumpfiles.listing(self.home.dumps)

    @operation
    def status(self) -> dict:
        """Every program with its supervisord state, pid, uptime and on-demand holders."""
        now = time.time()
        programs = []
        for info in self._processes():
            running = info["statename"] == "RUNNING"
            programs.append({
                "name": supervision.full_name(info), "group": info["group"],
                "state": info["statename"], "pid": info["pid"] or None,
                "uptime": round(now - info["start"], 1) if running and info["start"] else None,
                "description": info["description"],
                "ondemand": info["group"] in self.cfg.ondemand.programs,
                "holders": sorted(self.holds.get(info["group"], ())),
            })
        return {"programs": programs}
