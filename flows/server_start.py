"""Starting Prefect's temporary server early, while the heavy modules import.

Without ``PREFECT_API_URL``, a flow run starts a temporary local Prefect server (a uvicorn subprocess,
6-14 s on a 2-core machine) at its first API call, after the CLI has spent about 5 s importing torch,
Great Expectations and pandas. Starting that subprocess first lets the two overlap: the server boots
on the other core while this process imports. Prefect keeps one temporary server per process (a
singleton), so the flow run then uses the one started here.
"""

from __future__ import annotations

import threading


def start_temporary_server() -> threading.Thread | None:
    """Start Prefect's temporary server in a background thread, unless a server is configured.

    ``join()`` the thread before running a flow: the server is then up (or the flow run will start it
    itself and report any error, if starting it here failed).
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except Exception:  # the flow run starts it again and reports the error where it belongs
            pass

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread
