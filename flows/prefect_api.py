"""The temporary Prefect server of a CLI run, started so that Ctrl-C stops the run, not the server.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server as a child process at the run's
first API call. That child shares the terminal's process group, so Ctrl-C (SIGINT to the whole
group) kills it at the same moment as the run: the run can no longer report how it ended, stays
"Running" for good, and the CLI spends minutes retrying a server that is gone (measured: 2.5 min).

:func:`start_temporary_api` starts that same server earlier, with SIGINT blocked while the child is
spawned. A blocked signal stays blocked across ``exec``, so the terminal's Ctrl-C never reaches the
server; the CLI process itself still gets ``KeyboardInterrupt`` at once, Prefect marks the flow run
Crashed on the live server, and the server is stopped at exit as before (SIGTERM).
"""

from __future__ import annotations

import signal
import threading


def start_temporary_api() -> None:
    """Start Prefect's temporary server now, out of Ctrl-C's reach; a no-op with a real server."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        SubprocessASGIServer().start()  # the instance Prefect's client uses for this process
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
