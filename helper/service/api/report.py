"""``GET /api/v1/report?date=&site=``: the day per site, as ``sidep-helper report --json`` (no patient data).

``date`` is ``AAAA-MM-JJ`` (today when absent; 400 when not a real date); ``site`` a FINESS (400 otherwise).
The figures come from ``helper.index.report.daily`` on a reader thread; each site carries its directory name.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from helper.index import report
from helper.index.store import Store
from helper.service.api import params
from helper.service.api.context import CTX
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
