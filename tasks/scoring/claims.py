"""Claims: one run at a time scores a batch, whatever process, machine or settings each run has.

A claim is a lease on one batch key (content hash), kept as numbered *generations* under
``claims/<key>/``: ``000000000001.json``, ``000000000002.json``... The newest generation says who holds
the batch and until when. Every change, whether taking a free or expired claim, renewing it or
releasing it, is the **create-only write of the next generation** (:meth:`Storage.create`: a hard
link locally, a PUT with ``If-None-Match: *`` on S3). Two runs that saw generation *n* both try
to write *n+1*; exactly one succeeds, the other gets ``FileExistsError`` and looks again. That is a
compare-and-swap built from the one primitive both stores guarantee, so the same code is correct on
a local disk (also between processes on one machine) and on S3/MinIO, with no conditional
overwrite (``If-Match``) and no rename trick needed. Generations never restart from 1 (a release
is a generation too), so a run acting on an old listing can never succeed. Older generations are
deleted once a newer one exists; they only matter to a run that is about to lose its write anyway.

A holder renews its lease every third of the lease time (``--claim-seconds``) from a background
thread. A claim whose lease has run out (a killed or hung run) is taken over by the next run that
needs the batch. On the same machine (same host name, boot and PID namespace) a claim whose process
is gone is taken over at once, so a rerun right after ``kill -9`` does not wait for the lease.

The holder stops writing as soon as it can no longer be sure it holds the claim: when a renewal
finds that another run has written the next generation, or when its own clock passes the expiry it
last wrote (renewals failing, storage unreachable). :meth:`Claim.check` is called before every
output file is published, before every delete and before the ledger entry
(:mod:`tasks.scoring.batch_writer`). A holder paused longer than its lease (SIGSTOP, a suspended VM) finds
out at its next check; what it could still do in between is bounded by *fencing*: the generation at
which a run took the claim (:attr:`Claim.fence`, kept by renewals) names every part it writes, so
its parts are told apart from the next holder's, and the ledger entry lists the fence it commits.
The guarantee rests on clocks that agree to well within the lease; the default of 60 s leaves
ample room on ordinary hosts.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from functools import cache
from types import TracebackType

from tasks.store.ledger import GENERATION_DIGITS
from tasks.store.ledger import claim_generation
from tasks.store.ledger import claim_generations
from tasks.store.storage import Storage

# Claims held by live Claim objects of this process: a claim record naming this process but missing
# here was left by a task that ended without releasing it (storage unreachable at the time).
_HELD: dict[str, Claim | _Reservation] = {}
_HELD_LOCK = threading.Lock()


class ClaimHeld(Exception):
    """Another run (or another task of this run) holds the claim; the message says who and until when."""

    def __init__(self, record: ClaimRecord):
        self.record = record
        until = datetime.fromtimestamp(record.expires_at, UTC).isoformat(timespec="seconds")
        super().__init__(f"claimed by {record.owner} (scoring {record.batch}) until {until}")


class ClaimLost(RuntimeError):
    """This run can no longer be sure it holds the claim: it must stop writing the batch's outputs."""


@dataclass(frozen=True)
class ProcessId:
    """Identifies a process on a machine, to tell a dead holder from a live one without waiting."""

    machine: str  # host name, boot id and PID namespace: equal only for processes that can see each other
    pid: int
    started: str  # the process's start time in clock ticks since boot (PIDs are reused)

    def is_gone(self) -> bool:
        """True only when certain: the holder ran on this machine and its process no longer exists."""
        here = _this_process()
        if here is None or self.machine != here.machine:
            return False
        return _start_ticks(self.pid) != self.started


@dataclass(frozen=True)
class ClaimRecord:
    key: str
    generation: int
    owner: str  # who holds it, for log lines: run id, host, pid
    batch: str  # the file it is scoring, for log lines
    expires_at: float  # epoch seconds
    released: bool = False
    process: ProcessId | None = None
    # The generation at which the holder took the claim; renewals keep it. It names the holder's
    # output parts (:func:`tasks.store.tables.part_name`), so whose part a file is can be told from its name.
    fence: int = 0

    def is_free(self, now: float) -> bool:
        if self.released or now >= self.expires_at:
            return True
        if self.process is None:
            return False
        if self.process == _this_process():  # held by this process: free unless a live Claim holds it
            with _HELD_LOCK:
                return not isinstance(_HELD.get(self.key), Claim)
        return self.process.is_gone()

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ClaimRecord:
        raw = json.loads(data)
        process = raw.pop("process", None)
        raw.setdefault("fence", raw["generation"])  # written before fences: its own generation
        return cls(**raw, process=ProcessId(**process) if process else None)

    def fence_token(self) -> str:
        return fence_token(self.fence)


def fence_token(fence: int) -> str:
    """A fence as it appears in part names: zero-padded, so names sort by writer."""
    return f"{fence:0{GENERATION_DIGITS}d}"


def live_fence(storage: Storage, key: str) -> str | None:
    """The fence of the run that holds ``key``'s claim now (its lease running), or None if nobody does."""
    current = current_claim(storage, key)
    if current is None or current.is_free(time.time()):
        return None
    return current.fence_token()


def current_claim(storage: Storage, key: str) -> ClaimRecord | None:
    """The newest generation of the key's claim, or None if the batch was never claimed."""
    for _ in range(5):  # a generation can be deleted between the listing and the read: look again
        generations = claim_generations(storage, key)
        if not generations:
            return None
        try:
            return ClaimRecord.from_json(storage.read_bytes(generations[-1][1]))
        except FileNotFoundError:
            continue
    raise ClaimLost(f"the claim of {key[:12]} changes too fast to be read")


def _write_next(storage: Storage, record: ClaimRecord) -> bool:
    """Write ``record`` (its generation must be the next one); False if another run wrote it first."""
    try:
        storage.create(claim_generation(record.key, record.generation), record.to_json())
    except FileExistsError:
        return False
    try:
        for generation, rel in claim_generations(storage, record.key):  # tidy: only the newest one counts
            if generation < record.generation:
                storage.delete(rel)
    except OSError:
        pass  # an older generation left behind is harmless; the next write tidies it
    return True


def acquire(storage: Storage, key: str, *, owner: str, batch: str, lease_seconds: float, log=None) -> Claim:
    """Claim batch ``key`` for ``lease_seconds`` (renewed until released), or raise :class:`ClaimHeld`.

    Within one process the attempt is first reserved in memory, so two threads never both decide
    that a claim this process left behind is free; between processes the create-only write decides.
    """
    log = log or (lambda *a: None)
    wanted = ClaimRecord(key, 0, owner, batch, time.time() + lease_seconds, process=_this_process())
    with _HELD_LOCK:
        mine = _HELD.get(key)
        if mine is not None:
            raise ClaimHeld(mine.record)
        _HELD[key] = _Reservation(wanted)
    try:
        return _acquire(storage, wanted, lease_seconds, log)
    finally:
        with _HELD_LOCK:
            if isinstance(_HELD.get(key), _Reservation):
                del _HELD[key]


def _acquire(storage: Storage, wanted: ClaimRecord, lease_seconds: float, log) -> Claim:
    for _ in range(5):
        now = time.time()
        current = current_claim(storage, wanted.key)
        if current is not None and not current.is_free(now):
            raise ClaimHeld(current)
        generation = (current.generation + 1) if current else 1
        record = replace(wanted, generation=generation, fence=generation, expires_at=now + lease_seconds)
        if _write_next(storage, record):
            if current is not None and not current.released:
                why = "its process is gone" if now < current.expires_at else "its lease ran out"
                log(f"Took over the claim on {record.batch} from {current.owner} ({why})")
            return Claim(storage, record, lease_seconds)
    current = current_claim(storage, wanted.key)
    if current is None:
        raise ClaimLost(f"could not claim {wanted.key[:12]}")
    raise ClaimHeld(current)


@dataclass(frozen=True)
class _Reservation:
    """An acquisition in progress in this process (stands in :data:`_HELD` until it succeeds or fails)."""

    record: ClaimRecord


class Claim:
    """A held claim, renewed by a background thread until :meth:`release` (or the ``with`` block ends)."""

    def __init__(self, storage: Storage, record: ClaimRecord, lease_seconds: float):
        self.storage = storage
        self.record = record
        self.lease_seconds = lease_seconds
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"claim-{record.key[:8]}", daemon=True)
        with _HELD_LOCK:
            _HELD[record.key] = self
        self._thread.start()

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def fence(self) -> str:
        """This holder's fence token: in the name of every part it writes, and in its ledger entry."""
        return self.record.fence_token()

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless this run still holds the claim (by its own clock)."""
        with self._lock:
            lost, expires_at = self._lost, self.record.expires_at
        if lost is not None:
            raise ClaimLost(f"{self.record.batch}: {lost}")
        if time.time() >= expires_at:
            raise ClaimLost(f"{self.record.batch}: the claim expired before it could be renewed")

    def renew(self) -> None:
        """Write the next generation with a new expiry; on losing the race the claim is lost."""
        with self._lock:
            if self._lost is not None:
                return
            if time.time() >= self.record.expires_at:
                self._lost = "the claim expired before it could be renewed"
                return
            renewed = replace(
                self.record,
                generation=self.record.generation + 1,
                expires_at=time.time() + self.lease_seconds,
            )
            if _write_next(self.storage, renewed):
                self.record = renewed
            else:
                holder = current_claim(self.storage, self.key)
                self._lost = f"another run took the claim over ({holder.owner if holder else 'unknown'})"

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.renew()
            except Exception:  # a storage hiccup: the next tick tries again; check() enforces the expiry
                continue

    def release(self) -> None:
        """Stop renewing and mark the claim free (a released generation), unless it was lost already.

        Best effort: if storage cannot be reached, the claim is free anyway once its lease runs out
        (and at once for this process, which knows it no longer holds it).
        """
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with _HELD_LOCK:
            if _HELD.get(self.key) is self:
                del _HELD[self.key]
        with self._lock:
            if self._lost is not None:
                return
            self._lost = "released"
            released = replace(self.record, generation=self.record.generation + 1, released=True)
        try:
            _write_next(self.storage, released)
        except Exception:
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def owner_name(run_id: str) -> str:
    """How a claim names its holder in log lines."""
    return f"run {run_id} on {socket.gethostname()} (pid {os.getpid()})"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 (starttime), counted after "(comm)"


@cache
def _machine() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None  # not Linux: a holder's process cannot be checked, only its lease
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _this_process() -> ProcessId | None:
    machine = _machine()
    if machine is None:
        return None
    return ProcessId(machine, os.getpid(), _start_ticks(os.getpid()))
