"""The temporary Prefect server of a CLI run: started early, in the background, out of Ctrl-C's reach.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server as a child process at the run's first
API call. Two things are wrong with letting it do so:

* **Time.** The child takes 6-14 s to answer on a 2-core machine, and the CLI has spent about 5 s
  importing torch, Great Expectations and pandas before that first call. Started first, in a thread,
  the server boots on the other core while this process imports.
* **Ctrl-C.** The child shares the terminal's process group, so Ctrl-C (SIGINT to the whole group) kills
  it at the same moment as the run: the run can no longer report how it ended, stays "Running" for good,
  and the CLI spends minutes retrying a server that is gone (measured: 2.5 min). The thread that spawns
  the child blocks SIGINT first; a blocked signal stays blocked across ``exec``, so the terminal's Ctrl-C
  never reaches the server, while the CLI's main thread still gets ``KeyboardInterrupt`` at once, Prefect
  marks the flow run Crashed on the live server, and the server is stopped at exit as before (SIGTERM).

Prefect keeps one temporary server per process (a singleton), so the flow run uses the one started here.
"""

from __future__ import annotations

import signal
import threading


def start_temporary_api() -> threading.Thread | None:
    """Start Prefect's temporary server in a background thread; None with a configured server.

    ``join()`` the thread before running a flow: the server is then up (or, if starting it here
    failed, the flow run starts it itself and reports the error where it belongs).
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None

    def start() -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(
                signal.SIG_BLOCK, {signal.SIGINT}
            )  # this thread only; its child inherits it
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()  # the instance Prefect's client uses for this process
        except Exception:
            pass

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread
