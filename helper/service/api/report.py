"""``GET /api/v1/report?date=&site=``: the day per site, as ``sidep-helper report --json`` (no patient data);
``GET /api/v1/report/waiting?site=&limit=``: the certificates still to hand over, oldest first (panel tab
« À remettre »), with the site directory so that a desk without a configured site can choose one.

``date`` is ``AAAA-MM-JJ`` (today when absent; 400 when not a real date); ``site`` a FINESS (400 otherwise).
The figures and the list come from ``helper.index.report`` on a reader thread; each site carries its directory name.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from helper.index import report
from helper.index.store import Store
from helper.service.api import params
from helper.service.api.context import CTX, client
from helper.service.api.errors import error

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def day(text: str | None) -> dt.date:
    if text is None:
        return dt.date.today()
    try:
        if _DATE.fullmatch(text):
            return dt.date.fromisoformat(text)
    except ValueError:
        pass
    raise params.BadParameter(error(400, "bad_date", "« date » doit être une date AAAA-MM-JJ."))


async def daily(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    when = day(request.query.get("date"))
    site = params.site(request.query.get("site"))

    def run(store: Store) -> dict[str, Any]:
        return report.daily(store, when, site)

    rows = await ctx.read(run)
    return web.json_response({"date": when.isoformat(), "sites": [
        {"finess": f, "name": ctx.settings.sites.get(f, ""), **v} for f, v in rows.items()]})


async def waiting(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    site = params.site(request.query.get("site"))
    limit = params.limit(request.query.get("limit"), default=100)
    answer = await ctx.read(lambda store: report.waiting(store, site, limit))
    names = ctx.settings.sites
    for cert in answer["results"]:
        cert["site_name"] = names.get(cert.get("site_finess") or "")
    ctx.trace("waiting", [c["id"] for c in answer["results"]], client(request), f"total={answer['total']}")
    return web.json_response({
        "site": site, "name": names.get(site or "", ""), **answer,
        "sites": [{"finess": f, "name": n} for f, n in sorted(names.items())]})
