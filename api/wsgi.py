"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py api.wsgi:app``.

Settings are read from the environment once, when each worker imports this.
"""

from __future__ import annotations

import logging

from api import create_app


def _log_through_gunicorn() -> None:
    # gunicorn configures only its own loggers; without this the app's INFO
    # lines (accepted uploads, cancellations) would be dropped. Share its
    # error-log handlers (stderr by default) and level.
    gunicorn_error = logging.getLogger("gunicorn.error")
    root = logging.getLogger()
    if gunicorn_error.handlers and not root.handlers:
        for handler in gunicorn_error.handlers:
            root.addHandler(handler)
        root.setLevel(gunicorn_error.level)
        gunicorn_error.propagate = False  # its lines would otherwise print twice


_log_through_gunicorn()
app = create_app()
