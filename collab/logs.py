"""Logging set-up (called once, by the CLI): JSON lines or plain text.

Modules log through named loggers (``collab.rooms``, ``collab.transport``...) and attach
fields with ``extra={"project": ..., "sid": ...}``; the JSON formatter writes them out
with the instance id on every line.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


class _InstanceFilter(logging.Filter):
    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self.instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance_id
        return True


def configure_logging(level: str, fmt: str, instance_id: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(instance)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(instance)s] %(message)s")
        )
    handler.addFilter(_InstanceFilter(instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request; keep it at WARNING unless asked.
    logging.getLogger("aiohttp.access").setLevel(
        logging.INFO if level.upper() == "DEBUG" else logging.WARNING
    )
