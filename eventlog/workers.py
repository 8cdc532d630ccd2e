"""Worker processes that do not outlive the process that forked them."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(parent: int) -> None:
    """Pool initializer: leave when ``parent`` is gone (a pool cannot tell its workers),
    and take SIGTERM's default action (a forked worker inherits its parent's handler)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
