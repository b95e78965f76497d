"""``medscope review CASES``: import the cases, then serve the workspace (or export the reviews and stop).

The command's flags are ``ReviewConfig`` (medscope/review/config.py). Binding anything but loopback needs an access
token (``--token`` or ``$MEDSCOPE_REVIEW_TOKEN``); without one the command refuses to start. The printed address
carries the token.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy.engine import Engine

from medscope.review import db
from medscope.review.config import TOKEN_ENV, ReviewConfig
from medscope.review.security import is_loopback


def database_location(config: ReviewConfig, cases: list[str]) -> str:
    """``--db``, or review.sqlite in the first CASES folder (beside the first CASES file)."""
    if config.db:
        return config.db
    if not cases:
        raise ValueError("give CASES to import, or --db of an existing review database")
    first = Path(cases[0])
    return str((first if first.is_dir() else first.parent) / "review.sqlite")


def _beside(database: str, name: str) -> Path:
    url = db.database_url(database)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / name
    return Path.home() / ".cache" / "medscope" / name


def check_binding(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} would let other machines reach the workspace: give an access token with "
                         f"--token or ${TOKEN_ENV} (e.g. `export {TOKEN_ENV}=$(python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))')`), or keep the default --host 127.0.0.1")


def main(config: ReviewConfig, cases: list[str]) -> int:
    from medscope.review.cases import import_paths

    token = config.token or os.environ.get(TOKEN_ENV) or None
    check_binding(config.host, token)  # before any work: a refused start should be instant
    database = database_location(config, cases)
    engine = db.connect(database)
    if cases:
        report = import_paths(engine, cases, videos=config.videos)
        print(f"imported: {report.summary()}", file=sys.stderr)
        for line in report.skipped[:20]:
            print(f"  skipped {line}", file=sys.stderr)
    if config.export:
        from medscope.review.export import export_all

        summary = export_all(engine, Path(config.export))
        print(f"exported {summary['reviews']} reviews → {summary['samples']} samples: "
              f"{', '.join(summary['files'])} in {config.export}")
        return 0
    serve(config, engine, database, token)
    return 0


def serve(config: ReviewConfig, engine: Engine, database: str, token: str | None) -> None:
    import socket

    import uvicorn

    from medscope.review.app import Workspace, create_app
    from medscope.review.jobs import AskSettings, Jobs
    from medscope.review.media import Media

    settings = AskSettings(config.backend, config.model, config.base_url, config.options, config.agent)
    workspace = Workspace(engine, Media(Path(config.cache_dir) if config.cache_dir else _beside(database,
                                                                                                "review-cache")),
                          Jobs(engine, settings),
                          Path(config.export_dir) if config.export_dir else _beside(database, "review-export"))
    app = create_app(workspace, token=token, host=config.host)
    # Bind first, so the printed address has the real port (with --port 0) and a port in use fails clearly.
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        raise ValueError(f"cannot listen on {config.host}:{config.port} ({exc.strerror}); choose another --port") \
            from exc
    sock.listen(128)  # connections made once the address is printed wait in the backlog until uvicorn accepts
    port = sock.getsockname()[1]
    shown = f"[{config.host}]" if ":" in config.host else config.host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"medscope review: {address}  (database {engine.url.render_as_string(hide_password=True)}; "
          "Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
