"""The JSON API of the web UI (``/api/...``): each handler reads and checks its request,
asks the daemon through the User API, and answers JSON.

A request that does not fit gets a 4xx ``{"error": ..., "field": "dotted.path"}``
naming what is wrong (an experiment with problems: 422 with every ``problems`` entry);
an unknown job 404, a job in the wrong state for the verb 409. docs/ui.md lists the
routes.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aif.api import user as user_api
from aif.daemon.records import EventRow, JobRecord, JobState, JobStatus
from aif.errors import AIFError, InputError, JobNotFound, LifecycleError, WorkflowError
from aif.ui import compose, templates, views
from aif.ui.auth import error

if TYPE_CHECKING:
    from aif.daemon.daemon import Daemon
    from aif.ui.events import LiveEvents

#: Jobs a list returns unless told, and at most.
DEFAULT_LIMIT, MAX_LIMIT = 1000, 5000
#: Jobs a comparison takes.
MIN_COMPARE, MAX_COMPARE = 2, 10
#: Log lines the detail view gets.
LOG_LINES = 200
#: Events read per User API ``logs`` call (its most).
LOG_PAGE = 10_000
#: The folder (under the state directory) UI jobs run in; their reports land in its results/.
WORK_FOLDER = "ui-runs"


#: The fields of a check's body, and a submission's.
CHECK_FIELDS = frozenset({"experiment", "yaml"})
SUBMIT_FIELDS = CHECK_FIELDS | {"priority", "name"}


class BadRequest(Exception):
    """A request that does not fit: its status, message and field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.problems: list[dict[str, str]] | None = None

    def response(self) -> web.Response:
        if self.problems is None:
            return error(self.status, self.message, self.field)
        body = {"error": self.message, "field": self.field, "problems": self.problems}
        return _json(body, status=self.status)


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (strict: NaN and infinities become null)."""
    return web.json_response(data, status=status, dumps=views.dumps)


def _failure(exc: AIFError) -> BadRequest:
    """The daemon's refusal as an HTTP one."""
    if isinstance(exc, JobNotFound):
        return BadRequest(404, str(exc), "id")
    if isinstance(exc, LifecycleError):
        return BadRequest(409, str(exc), "state")
    if isinstance(exc, WorkflowError | InputError):
        return BadRequest(422, str(exc), "experiment")
    return BadRequest(400, str(exc))


async def _body(request: web.Request, fields: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object, with no field but ``fields``."""
    try:
        data = await request.json(loads=json.loads)
    except web.HTTPRequestEntityTooLarge as exc:
        raise BadRequest(
            413, f"the body is larger than {request.client_max_size} bytes", "body"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}", "body") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "the body must be a JSON object", "body")
    unknown = sorted(set(data) - fields)
    if unknown:
        known = ", ".join(sorted(fields))
        raise BadRequest(400, f"unknown field {unknown[0][:100]!r} (known: {known})", unknown[0])
    return data


def _int(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(400, f"{field} must be a whole number from {low} to {high}", field)
    return value


def _job_id(request: web.Request) -> str:
    job = request.match_info["id"]
    if not 1 <= len(job) <= 200:
        raise BadRequest(404, "no job has that id", "id")
    return job


class Api:
    """The handlers, bound to one serving daemon."""

    def __init__(self, daemon: Daemon, live: LiveEvents, csrf: str) -> None:
        self.daemon = daemon
        self.live = live
        self.csrf = csrf
        self.work_dir = daemon.state_dir / WORK_FOLDER

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/info", self.info),
            web.get("/api/jobs", self.jobs),
            web.post("/api/jobs", self.submit),
            web.get("/api/jobs/{id}", self.job),
            web.get("/api/jobs/{id}/events", self.events),
            web.get("/api/jobs/{id}/results.zip", self.results_zip),
            web.post("/api/jobs/{id}/{verb:suspend|resume|cancel}", self.control),
            web.post("/api/check", self.check),
            web.get("/api/templates", self.templates),
            web.get("/api/schema", self.schema),
            web.post("/api/compare", self.compare),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Turn refusals into JSON errors."""
        try:
            response: web.StreamResponse = await handler(request)
        except BadRequest as exc:
            return exc.response()
        except AIFError as exc:
            return _failure(exc).response()
        return response

    # -- talking to the daemon -----------------------------------------------------------

    async def _status(self, job: str) -> JobStatus:
        return JobStatus.from_json(await self.daemon.handle(user_api.Status(job=job)))

    def _summary(self, record: JobRecord) -> dict[str, Any]:
        return views.summary(record, self.live.progress.get(record.id))

    async def _events(self, job: str) -> list[EventRow]:
        """Every event the daemon keeps of ``job``."""
        rows: list[EventRow] = []
        after = 0
        while True:
            page = await self.daemon.handle(user_api.Logs(job=job, after=after, limit=LOG_PAGE))
            events = page["events"]
            rows += [EventRow.from_json({**e, "job": job}) for e in events]
            if len(events) < LOG_PAGE:
                return rows
            after = rows[-1].seq

    async def _experiments(self, record: JobRecord) -> list[dict[str, Any]]:
        """The experiments a job ran, read back from its workflow (the store is read here,
        in the loop's thread, as SQLite wants; the YAML in a worker thread)."""
        assert self.daemon.jobs is not None
        text = self.daemon.jobs.store.text(record.id)
        return await asyncio.to_thread(views.experiments_of, text, record.base_dir)

    # -- the routes ----------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.Response:
        from aif.version import __version__

        ping = await self.daemon.handle(user_api.Ping())
        return _json({"version": __version__, "daemon": ping, "csrf": self.csrf})

    async def jobs(self, request: web.Request) -> web.Response:
        query = request.query
        states = [s.value for s in JobState]
        if "state" in query:
            wanted = [s for s in query["state"].split(",") if s]
            unknown = [s for s in wanted if s not in states]
            if unknown or not wanted:
                raise BadRequest(400, f"state must be one of {', '.join(states)}", "state")
            states = wanted
        limit = DEFAULT_LIMIT
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                limit = -1
            limit = _int(limit, "limit", 1, MAX_LIMIT)
        text = query.get("q", "")[:200]
        listed = await self.daemon.handle(user_api.ListJobs(states=states))
        out = []
        for data in reversed(listed):  # newest first
            record = JobRecord.from_json(data)
            if text and not views.matches(record, text):
                continue
            out.append(self._summary(record))
            if len(out) >= limit:
                break
        return _json({"jobs": out})

    async def job(self, request: web.Request) -> web.Response:
        status = await self._status(_job_id(request))
        record = status.job
        events = await self._events(record.id)
        folder = views.report_folder(record)
        metrics_csv = folder / "metrics.csv" if folder is not None else None
        if metrics_csv is not None and metrics_csv.is_file():
            metrics = await asyncio.to_thread(views.metrics_from_csv, metrics_csv)
        else:
            metrics = views.metrics_from_events(events)
        results = await asyncio.to_thread(views.results_from_report, folder) if folder else []
        aims = [
            {
                "name": aim.name,
                "type": aim.type,
                "instance": record.instance,
                "host": aim.host,
                "state": aim.state,
                "capabilities": aim.capabilities,
            }
            for aim in status.aims
        ]
        return _json(
            {
                "job": self._summary(record),
                "experiments": await self._experiments(record),
                "metrics": metrics,
                "results": results,
                "aims": aims,
                "log": [views.log_line(e) for e in events[-LOG_LINES:]],
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        after = 0
        given = request.query.get("after", request.headers.get("Last-Event-ID"))
        if given is not None:  # an EventSource that reconnects sends Last-Event-ID
            try:
                after = int(given)
            except ValueError:
                after = -1
            after = _int(after, "after", 0, 2**63 - 1)
        record = (await self._status(_job_id(request))).job
        return await self.live.stream(request, record.id, after)

    async def results_zip(self, request: web.Request) -> web.Response:
        record = (await self._status(_job_id(request))).job
        folder = views.report_folder(record)
        if folder is None:
            raise BadRequest(404, f"job {record.id} has no results folder", "id")
        data = await asyncio.to_thread(views.zip_folder, folder)
        return web.Response(
            body=data,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{record.id}-results.zip"'},
        )

    async def control(self, request: web.Request) -> web.Response:
        job = _job_id(request)
        verb = request.match_info["verb"]
        make = {"suspend": user_api.Suspend, "resume": user_api.Resume, "cancel": user_api.Cancel}
        data = await self.daemon.handle(make[verb](job=job))
        return _json({"job": self._summary(JobRecord.from_json(data))})

    async def _experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """The experiment of a check or submit body (``experiment`` or ``yaml``)."""
        if ("experiment" in body) == ("yaml" in body):
            raise BadRequest(400, "give either experiment (a mapping) or yaml (text)", "experiment")
        if "experiment" in body:
            if not isinstance(body["experiment"], dict):
                raise BadRequest(400, "experiment must be a JSON object", "experiment")
            return body["experiment"]
        text = body["yaml"]
        if not isinstance(text, str):
            raise BadRequest(400, "yaml must be a string", "yaml")
        from aif.inputs.safe_yaml import load_yaml

        try:
            data, _ = load_yaml(text, "<yaml>", kind="experiments")
        except InputError as exc:
            raise BadRequest(400, str(exc), "yaml") from exc
        if not isinstance(data, dict):
            raise BadRequest(400, "the YAML must hold one experiment (a mapping)", "yaml")
        return data

    async def _review(self, raw: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(compose.review, raw, self.work_dir)

    async def check(self, request: web.Request) -> web.Response:
        raw = await self._experiment(await _body(request, CHECK_FIELDS))
        return _json(await self._review(raw))

    async def submit(self, request: web.Request) -> web.Response:
        body = await _body(request, SUBMIT_FIELDS)
        raw = await self._experiment(body)
        priority = _int(body.get("priority", 0), "priority", -1000, 1000)
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 64):
            raise BadRequest(400, "name must be text of at most 64 characters", "name")
        review = await self._review(raw)
        if not review["ok"]:
            problems = review["problems"]
            refusal = BadRequest(
                422,
                "the experiment has problems; fix them and submit again",
                problems[0]["field"] if problems else "experiment",
            )
            refusal.problems = problems
            raise refusal
        given = name or str(raw.get("name", ""))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        data = await self.daemon.handle(
            user_api.Submit(
                text=compose.workflow_text(compose.workflow_name(given), raw),
                source=f"<web ui: {given[:64]}>",
                base_dir=str(self.work_dir),
                work_dir=str(self.work_dir),
                priority=priority,
            )
        )
        summary = self._summary(JobRecord.from_json(data))
        return _json({"job": summary}, status=201)

    async def templates(self, request: web.Request) -> web.Response:
        found = await asyncio.to_thread(templates.templates)
        return _json({"templates": list(found)})

    async def schema(self, request: web.Request) -> web.Response:
        return _json(await templates.schema())

    async def compare(self, request: web.Request) -> web.Response:
        ids = (await _body(request, frozenset({"jobs"}))).get("jobs")
        if not isinstance(ids, list) or not MIN_COMPARE <= len(ids) <= MAX_COMPARE:
            raise BadRequest(
                400, f"jobs must be a list of {MIN_COMPARE} to {MAX_COMPARE} job ids", "jobs"
            )
        for index, job in enumerate(ids):
            if not isinstance(job, str) or not 1 <= len(job) <= 200:
                raise BadRequest(400, "a job id is text", f"jobs.{index}")
        out = []
        ran: dict[str, list[dict[str, Any]]] = {}
        for index, job in enumerate(ids):
            try:
                record = (await self._status(job)).job
            except JobNotFound as exc:
                raise BadRequest(404, str(exc), f"jobs.{index}") from exc
            folder = views.report_folder(record)
            metrics_csv = folder / "metrics.csv" if folder is not None else None
            ran[record.id] = await self._experiments(record)
            out.append(
                {
                    "id": record.id,
                    "name": record.workflow,
                    "results": views.results_from_report(folder) if folder else [],
                    "metrics": views.metrics_from_csv(metrics_csv)
                    if metrics_csv is not None and metrics_csv.is_file()
                    else [],
                }
            )
        return _json({"jobs": out, "differences": views.differences(ran)})
