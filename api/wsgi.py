"""WSGI entry point for gunicorn: ``gunicorn -c gunicorn.conf.py api.wsgi:app``.

Settings are read from the environment once, when each worker imports this.
"""

from __future__ import annotations

from api import create_app

app = create_app()
