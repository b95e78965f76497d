"""The review workspace's routes: the case list, a case, its video, clips and frames, reviews, questions, export.

Only routes live here: the database is ``db``, importing ``cases``, the video ``media``, questions ``jobs``,
exports ``export``, the page models ``views`` and the guards ``security``. Every page is a Jinja2 template
with autoescaping; every state-changing request is a POST that must carry the page's CSRF token. A video is
served by its case id only: the path comes from the database, never from the request.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from medscope.report.timeline import VERDICTS, clock, seconds
from medscope.review import db, export
from medscope.review.jobs import Jobs
from medscope.review.media import Media, playable
from medscope.review.security import Guard, csrf_problem
from medscope.review.views import episode_view

_HERE = Path(__file__).parent
_EXPORT_NAME = re.compile(r"^(samples\.jsonl|reviews\.csv|export\.json|case-\d+\.vtt)$")
_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}


@dataclass(frozen=True)
class Workspace:
    """What the routes work on."""

    engine: Engine
    media: Media
    jobs: Jobs
    export_dir: Path


def create_app(workspace: Workspace, *, token: str | None, host: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(workspace.jobs.close)

    app = Starlette(
        routes=[
            Route("/", case_list),
            Route("/healthz", healthz),
            Route("/cases/{case_id:int}", case_page),
            Route("/cases/{case_id:int}/video", video),
            Route("/cases/{case_id:int}/clip.mp4", clip),
            Route("/cases/{case_id:int}/frames/{index:int}.jpg", frame),
            Route("/cases/{case_id:int}/ask", ask, methods=["POST"]),
            Route("/episodes/{episode_id:int}/review", review, methods=["POST"]),
            Route("/jobs/{job_id:int}", job),
            Route("/export", export_page, methods=["GET", "POST"]),
            Route("/export/{name:str}", export_file),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        middleware=[Middleware(Guard, token=token, host=host)],
        lifespan=lifespan,
    )
    app.state.workspace = workspace
    app.state.templates = _templates()
    return app


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(_HERE / "templates"),
                                    jinja2.FileSystemLoader(_HERE.parent / "report" / "templates")]),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["seconds"] = seconds
    env.filters["clock"] = clock
    return Jinja2Templates(env=env)


def _ws(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context |= {"csrf": request.state.csrf, "verdicts": VERDICTS}
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status_code)


def _int(value: str | None, default: int, *, low: int = 1, high: int = 10**9) -> int:
    try:
        return min(max(int(value or default), low), high)
    except ValueError:
        return default


def _float(request: Request, name: str) -> float:
    try:
        value = float(request.query_params[name])
    except (KeyError, ValueError):
        raise HTTPException(400, f"give ?{name}= in seconds") from None
    if not math.isfinite(value):
        raise HTTPException(400, f"?{name}= must be a finite number of seconds")
    return value


async def _case(request: Request) -> dict[str, Any]:
    found = await run_in_threadpool(db.get_case, _ws(request).engine, request.path_params["case_id"])
    if found is None:
        raise HTTPException(404, "no such case")
    return found


async def _checked_form(request: Request) -> FormData:
    form = await request.form()
    if (problem := csrf_problem(request, form)) is not None:
        raise HTTPException(403, problem)
    return form


# ---- pages --------------------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(db.counts, _ws(request).engine))


async def case_list(request: Request) -> Response:
    params = request.query_params
    filters = db.Filters(task=params.get("task", ""), verdict=params.get("verdict", ""),
                         reviewed=params.get("reviewed", ""), page=_int(params.get("page"), 1),
                         per_page=_int(params.get("per_page"), 50, high=500))
    engine = _ws(request).engine
    rows, total = await run_in_threadpool(db.list_episodes, engine, filters)
    tasks = await run_in_threadpool(db.tasks, engine)
    pages = max(1, -(-total // filters.per_page))
    return _render(request, "cases.html.jinja", rows=rows, total=total, filters=filters, pages=pages,
                   tasks=tasks, query=_query_without_page(request))


def _query_without_page(request: Request) -> str:
    return urllib.parse.urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page" and v])


async def case_page(request: Request) -> Response:
    case = await _case(request)
    engine = _ws(request).engine
    episodes = await run_in_threadpool(db.case_episodes, engine, case["id"])
    chosen = _int(request.query_params.get("episode"), episodes[-1]["id"] if episodes else 0)
    view = None
    if any(e["id"] == chosen for e in episodes):
        row = await run_in_threadpool(db.get_episode, engine, chosen)
        current = await run_in_threadpool(db.get_review, engine, chosen)
        trail = await run_in_threadpool(db.audit_trail, engine, chosen)
        view = episode_view(row or {}, current, trail)
    can_play = await run_in_threadpool(playable, Path(case["video"]))
    job_id = _int(request.query_params.get("job"), 0, low=0)
    return _render(request, "case.html.jinja", case=case, episodes=episodes, view=view, playable=can_play,
                   job_id=job_id, saved=request.query_params.get("saved") == "1")


async def export_page(request: Request) -> Response:
    ws = _ws(request)
    summary = None
    if request.method == "POST":
        await _checked_form(request)
        summary = await run_in_threadpool(export.export_all, ws.engine, ws.export_dir)
    files = sorted(p.name for p in ws.export_dir.glob("*") if _EXPORT_NAME.match(p.name)) \
        if ws.export_dir.is_dir() else []
    return _render(request, "export.html.jinja", summary=summary, files=files, export_dir=str(ws.export_dir))


# ---- media --------------------------------------------------------------------------------------------------
async def video(request: Request) -> Response:
    """The original file, with HTTP range requests (206, Content-Range; 416 for a range past the end)."""
    path = Path((await _case(request))["video"])
    if not path.is_file():
        raise HTTPException(410, "the video of this case is no longer where it was imported from")
    return FileResponse(path, media_type=_MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))


async def clip(request: Request) -> Response:
    """A window of the video transcoded to H.264 MP4, for videos a browser cannot play as they are."""
    case = await _case(request)
    start, end = max(0.0, _float(request, "start")), min(_float(request, "end"), case["duration"])
    try:
        path = await run_in_threadpool(_ws(request).media.clip, Path(case["video"]), start, end)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    return FileResponse(path, media_type="video/mp4")


async def frame(request: Request) -> Response:
    case = await _case(request)
    max_pixels = _int(request.query_params.get("max_pixels"), 0, low=0) or None
    try:
        data = await run_in_threadpool(partial(_ws(request).media.frame_jpeg, Path(case["video"]),
                                               request.path_params["index"], max_pixels=max_pixels))
    except IndexError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})


# ---- changes ------------------------------------------------------------------------------------------------
async def review(request: Request) -> Response:
    form = await _checked_form(request)
    engine = _ws(request).engine
    row = await run_in_threadpool(db.get_episode, engine, request.path_params["episode_id"])
    if row is None:
        raise HTTPException(404, "no such episode")
    case = await run_in_threadpool(db.get_case, engine, row["case_id"])
    try:
        windows = db.parse_windows_text(str(form.get("windows", "[]")), float(case["duration"]) if case else 0.0)
        stored = await run_in_threadpool(db.save_review, engine, db.Review(
            row["id"], str(form.get("reviewer", "")), str(form.get("decision", "")), windows,
            str(form.get("comment", ""))))
    except db.DatabaseError as exc:
        raise HTTPException(400, f"review not saved: {exc}") from exc
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"episode_id": stored.episode_id, "revision": stored.revision})
    return RedirectResponse(f"/cases/{row['case_id']}?episode={row['id']}&saved=1#review", status_code=303)


async def ask(request: Request) -> Response:
    form = await _checked_form(request)
    case = await _case(request)
    try:
        job_id = await run_in_threadpool(_ws(request).jobs.submit, case["id"], Path(case["video"]),
                                         str(form.get("question", "")))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    return RedirectResponse(f"/cases/{case['id']}?job={job_id}#ask", status_code=303)


async def job(request: Request) -> Response:
    found = await run_in_threadpool(_ws(request).jobs.progress, request.path_params["job_id"])
    if found is None:
        raise HTTPException(404, "no such job")
    return JSONResponse(found)


async def export_file(request: Request) -> Response:
    name = request.path_params["name"]
    path = _ws(request).export_dir / name
    if not _EXPORT_NAME.match(name) or not path.is_file():  # fixed names only: nothing else of the disk
        raise HTTPException(404, "no such export file; export first")
    return FileResponse(path, filename=name)
