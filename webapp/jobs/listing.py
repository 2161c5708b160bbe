"""The jobs list as a query: search (webapp/jobs/search.py) applied in the database, sort, pages.

The page (`jobs:list`, its `?format=json`) and the API (`GET /api/jobs/`) read the same
parameters through `list_jobs()`: `q` (the search), `status`, `dataset`, `architecture`,
`archived` (`""` hides archived jobs, `only`, `all`), `sort` (a column or a numeric search name,
`-` for descending), `page`, `per_page`. Pages are offsets over an indexed order (the
`job_list_*` indexes: owner, archived, then the column), capped at MAX_OFFSET rows deep.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache

from django.db.models import CharField, Exists, F, FloatField, Func, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.db.utils import NotSupportedError

import models_zoo
from models_zoo.hparams import TASK_METRICS, TrainConfig
from models_zoo.schema import describe
from webapp.jobs.models import Job, JobTag
from webapp.jobs.search import Names, Query, SearchError, parse, resolve

PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_OFFSET = 10_000
# Sortable columns -> the model field (indexed with owner and archived, or small to sort).
COLUMNS = {"created": "created_at", "name": "name", "status": "status", "architecture": "architecture",
           "dataset": "dataset__name", "started": "started_at", "finished": "finished_at"}
DEFAULT_SORT = "-created"


@lru_cache(maxsize=1)
def names() -> Names:
    """What a bare search name may mean (search.resolve): training settings, metrics, every
    architecture's settings."""
    metrics = {m for task in TASK_METRICS.values() for m in task} | {"mse", "rmse", "perplexity", "precision",
                                                                    "recall"}
    model = {f["name"] for e in models_zoo.REGISTRY.values() for f in e.describe()}
    return Names(train=frozenset(f["name"] for f in describe(TrainConfig)), metrics=frozenset(metrics),
                 model=frozenset(model))


class JsonValue(Func):
    """A scalar at `path` inside a JSON column, or NULL when it is missing or of another type:
    `kind` "number" (a float), "text", or "bool" ("true" / "false"). The type check keeps
    comparisons honest on both databases (SQLite and PostgreSQL order mixed JSON types
    differently). Path keys come from search.resolve: letters, digits and _ only; they are
    passed as parameters all the same."""

    def __init__(self, column: str, path: list[str], kind: str = "number"):
        super().__init__(F(column), output_field=FloatField() if kind == "number" else CharField())
        self.path, self.kind = list(path), kind

    def as_sqlite(self, compiler, connection, **extra):
        col, params = compiler.compile(self.source_expressions[0])
        json_path = "$" + "".join(f'."{k}"' for k in self.path)
        types = {"number": "('integer', 'real')", "text": "('text')", "bool": "('true', 'false')"}[self.kind]
        value = "json_type" if self.kind == "bool" else "json_extract"
        sql = f"(CASE WHEN json_type({col}, %s) IN {types} THEN {value}({col}, %s) END)"
        return sql, (*params, json_path, *params, json_path)

    def as_postgresql(self, compiler, connection, **extra):
        col, params = compiler.compile(self.source_expressions[0])
        jtype = {"number": "number", "text": "string", "bool": "boolean"}[self.kind]
        cast = "::double precision" if self.kind == "number" else ""
        sql = f"(CASE WHEN jsonb_typeof({col} #> %s::text[]) = '{jtype}' THEN ({col} #>> %s::text[]){cast} END)"
        return sql, (*params, self.path, *params, self.path)

    def as_sql(self, compiler, connection, **extra):
        raise NotSupportedError("job search runs on SQLite and PostgreSQL")


def value_of(source: str, key: str, kind: str = "number"):
    """The expression for a resolved search name (search.resolve's source and key)."""
    if source == "validation":  # the final model's; while running, the latest epoch's
        return Coalesce(JsonValue("metrics", [key], kind), JsonValue("summary", ["last", key], kind))
    if source == "best":
        return JsonValue("summary", ["best", key], kind)
    if source == "test":
        return JsonValue("test_metrics", [key], kind)
    return JsonValue(source, [key], kind)


def _condition(cond) -> tuple:
    v = cond.value
    kind = "bool" if isinstance(v, bool) else "number" if isinstance(v, float) else "text"
    expr = value_of(cond.source, cond.key, kind)
    value = ("true" if v else "false") if kind == "bool" else v
    lookup = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "=": "exact", "!=": "exact"}[cond.op]
    # Lookups on an expression: Q(expr__lt=...) cannot name it, so an alias per condition.
    return lookup, expr, value


def apply_search(jobs: QuerySet, query: Query, staff: bool = False) -> QuerySet:
    for i, cond in enumerate(query.conditions):
        lookup, expr, value = _condition(cond)
        alias = f"search_{i}"
        jobs = jobs.alias(**{alias: expr})
        if cond.op == "!=":
            jobs = jobs.filter(**{f"{alias}__isnull": False}).exclude(**{alias: value})
        else:
            jobs = jobs.filter(**{f"{alias}__{lookup}": value})
    for tag in query.tags:
        jobs = jobs.filter(Exists(JobTag.objects.filter(job=OuterRef("pk"), name=tag)))
    for word in query.words:
        match = (Q(name__icontains=word) | Q(architecture__icontains=word) | Q(dataset__name__icontains=word)
                 | Q(worker_name__icontains=word) | Q(status__iexact=word)
                 | Exists(JobTag.objects.filter(job=OuterRef("pk"), name__icontains=word)))
        if staff:
            match |= Q(owner__username__icontains=word)
        jobs = jobs.filter(match)
    return jobs


def sort_jobs(jobs: QuerySet, sort: str) -> QuerySet:
    """`sort`: a COLUMNS key or a numeric search name (accuracy, learning_rate, best.loss...),
    `-` first for descending; ties by id, so pages never repeat or skip a job."""
    desc, name = sort.startswith("-"), sort.lstrip("-")
    if name in COLUMNS:
        expr = F(COLUMNS[name])
    else:
        try:
            expr = value_of(*resolve(name, names()))
        except SearchError as exc:
            raise SearchError(f"sort: {exc} (or a column: {', '.join(COLUMNS)})") from None
    order = expr.desc(nulls_last=True) if desc else expr.asc(nulls_last=True)
    return jobs.order_by(order, "-pk" if desc else "pk")


@dataclass
class Page:
    jobs: list[Job]
    total: int
    page: int
    per_page: int
    pages: int
    sort: str
    capped: bool  # more rows than MAX_OFFSET reach: narrow the search or reverse the sort


def _int(value, default: int, low: int, high: int, what: str) -> int:
    if value in (None, ""):
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise SearchError(f"{what}: give a whole number from {low} to {high}") from None
    if not low <= n <= high:
        raise SearchError(f"{what}: give a whole number from {low} to {high}")
    return n


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def filtered(visible: QuerySet, params, staff: bool = False) -> QuerySet:
    """`visible` (the access helper's jobs) narrowed by the list's parameters; SearchError for
    a query or parameter that cannot be read (the caller answers 400 with its message)."""
    jobs = visible
    # The select filters come from the page's own options: a value it does not offer (an old
    # bookmark) filters nothing, as before; the API's serializer refuses them with a 400.
    if (status := (params.get("status") or "").strip()) in Job.Status.values:
        jobs = jobs.filter(status=status)
    if _is_uuid(dataset := (params.get("dataset") or "").strip()):
        jobs = jobs.filter(dataset_id=dataset)
    if architecture := (params.get("architecture") or "").strip()[:50]:
        jobs = jobs.filter(architecture=architecture)
    archived = (params.get("archived") or "").strip()
    if archived not in ("", "only", "all"):
        raise SearchError("archived: leave it out (archived jobs hidden), or only, or all")
    if archived == "":
        jobs = jobs.filter(archived_at__isnull=True)
    elif archived == "only":
        jobs = jobs.filter(archived_at__isnull=False)
    return apply_search(jobs, parse(params.get("q") or "", names()), staff=staff)


def list_jobs(visible: QuerySet, params, staff: bool = False, max_per_page: int = MAX_PER_PAGE) -> Page:
    """One page of the jobs list: filters, search, sort, offset (see the module's docstring)."""
    jobs = filtered(visible, params, staff)
    sort = (params.get("sort") or DEFAULT_SORT).strip()
    jobs = sort_jobs(jobs, sort)
    per_page = _int(params.get("per_page"), PER_PAGE, 1, max_per_page, "per_page")
    total = jobs.count()
    reachable = min(total, MAX_OFFSET + per_page)
    pages = max(1, -(-reachable // per_page))
    page = _int(params.get("page"), 1, 1, 10**9, "page")
    page = min(page, pages)
    start = (page - 1) * per_page
    return Page(jobs=list(jobs.prefetch_related("tags")[start:start + per_page]), total=total, page=page, per_page=per_page,
                pages=pages, sort=sort, capped=total > reachable)
