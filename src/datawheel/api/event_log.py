"""The wheel's events in the server's log: the same events ``GET /v1/events`` streams, one line each.

One ``EventLog`` runs per ``datawheel serve`` (in the process that supervises the workers), tailing the
audit chain from where it stood at start-up; events written by any process (a worker's promotion, a
cycle's own process finishing, the command line) are logged once, however many workers serve.
"""

from __future__ import annotations

import logging
import threading

from datawheel.store.store import Store

log = logging.getLogger("datawheel.events")
#: seconds between reads of the chain; a log line has no one waiting on it
INTERVAL = 1.0


class EventLog:
    def __init__(self, store: Store, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._after = 0  # the last audit entry read; start() sets it to the chain's head
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)

    def start(self) -> None:
        self._after = self.store.audit_seq()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Log the events since the last poll; a failed read is logged by its type and tried again next time."""
        try:
            events, self._after = self.store.events_after(self._after, 100)
        except Exception as exc:  # noqa: BLE001 - the database may be briefly away; serving goes on
            log.warning("reading the audit chain failed: %s", type(exc).__name__)
            return
        for event in events:
            fields = {k: v for k, v in event.items() if k != "type"}
            log.info(event["type"], extra={"fields": fields})
