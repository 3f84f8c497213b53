"""The compose form's fields turned into a draft's body (the API's request body, as typed) and back,
and a validation error's field path turned into the form field it is shown beside.

Field names, all single-valued: the policy's own (`title`, `doc_number`, `summary`, `body`, `url`,
`interpretation_url`, `produced_on`, `effective_on`, `expires_on`, `publish_at`, `domain`,
`notify_on_lapse`), `channel.<name>` and `audience.<slug>` (ticked: present), the targeting
builder's `combinator` (all | any) and its rows `clause.<n>.attr|op|value|not`, and `where_json`
(the advanced `where`, which wins over the rows when given). A revision takes the text fields and
dates; a repeal `reason` and `repealed_on`.

Values are kept as typed (text stays text; a list operator's value is split at commas), so that
an invalid one comes back to the form unchanged with its error beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pushsvc.core.errors import FieldError
from pushsvc.core.models import REVISABLE_FIELDS
from pushsvc.policies.validation import CHANNELS

TEXT_FIELDS = ("title", "doc_number", "summary", "body", "url", "interpretation_url", "produced_on",
               "effective_on", "expires_on", "publish_at", "domain")
REVISION_FIELDS = tuple(f for f in REVISABLE_FIELDS if f != "notify_on_lapse")
REPEAL_FIELDS = ("reason", "repealed_on")
COMBINATORS = ("all", "any")
LIST_OPS = ("in", "not_in")
MAX_ROWS = 50
_LIST_SEPARATORS = re.compile(r"[,，、;；\n]")
_LOCAL_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")  # what <input type=datetime-local> posts
_LOCAL_OFFSET = "+08:00"  # Asia/Shanghai has no daylight saving
_CLAUSE_PATH = re.compile(r"^targeting\.where\.(?:all|any)\[(\d+)\](?:\.not)?(?:\.(attr|op|value))?")
_TEXT_MAX = 200_000  # the longest policy body; validation names a field that is too long


def _text(fields: Mapping[str, str], name: str) -> str:
    return fields.get(name, "")[:_TEXT_MAX].strip()


def clause_rows(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """The builder's rows as typed, empty ones (no attribute chosen) left out."""
    rows = []
    for n in range(MAX_ROWS):
        attr = _text(fields, f"clause.{n}.attr")
        if attr:
            rows.append({"attr": attr, "op": _text(fields, f"clause.{n}.op") or "eq",
                         "value": _text(fields, f"clause.{n}.value"), "not": bool(fields.get(f"clause.{n}.not"))})
    return rows


def _clause(row: dict[str, Any]) -> dict[str, Any]:
    clause: dict[str, Any] = {"attr": row["attr"], "op": row["op"]}
    value = row["value"]
    if row["op"] in LIST_OPS:
        clause["value"] = [v.strip() for v in _LIST_SEPARATORS.split(value) if v.strip()]
    elif row["op"] == "exists":
        clause["value"] = value.lower() not in ("false", "no", "0", "否")
    else:
        clause["value"] = value
    return {"not": clause} if row["not"] else clause


def where_of(fields: Mapping[str, str], rows: list[dict[str, Any]]) -> Any:
    """The `where` predicate: the advanced JSON if given (kept as text when it is not JSON, so its
    error shows beside it with the text), else the builder's rows under the combinator."""
    advanced = fields.get("where_json", "").strip()
    if advanced:
        try:
            return json.loads(advanced)
        except ValueError:
            return advanced
    if not rows:
        return None
    combinator = fields.get("combinator") if fields.get("combinator") in COMBINATORS else "all"
    return {combinator: [_clause(r) for r in rows]}


def new_body(fields: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {f: v for f in TEXT_FIELDS if (v := _text(fields, f))}
    if _LOCAL_MINUTE.match(body.get("publish_at", "")):
        body["publish_at"] += ":00" + _LOCAL_OFFSET
    body["channels"] = [c for c in CHANNELS if fields.get(f"channel.{c}")]
    body["notify_on_lapse"] = bool(fields.get("notify_on_lapse"))
    targeting: dict[str, Any] = {"audiences": [k.removeprefix("audience.") for k in fields
                                               if k.startswith("audience.") and fields[k]]}
    where = where_of(fields, clause_rows(fields))
    if where is not None:
        targeting["where"] = where
    body["targeting"] = targeting
    return body


def revision_body(fields: Mapping[str, str], policy: Mapping[str, Any]) -> dict[str, Any]:
    """Only what differs from the policy as published (an emptied optional field clears it)."""
    body: dict[str, Any] = {}
    for f in REVISION_FIELDS:
        typed, now = _text(fields, f), policy[f]
        shown = "" if now is None else str(now)
        if typed != shown:
            body[f] = typed or None
    if bool(fields.get("notify_on_lapse")) != bool(policy["notify_on_lapse"]):
        body["notify_on_lapse"] = bool(fields.get("notify_on_lapse"))
    return body


def repeal_body(fields: Mapping[str, str]) -> dict[str, Any]:
    return {f: v for f in REPEAL_FIELDS if (v := _text(fields, f))}


def body_of(kind: str, fields: Mapping[str, str], policy: Mapping[str, Any] | None) -> dict[str, Any]:
    if kind == "revise":
        assert policy is not None
        return revision_body(fields, policy)
    if kind == "repeal":
        return repeal_body(fields)
    return new_body(fields)


# -- back to the form -------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    return str(value)


def _row(item: Any) -> dict[str, Any] | None:
    """A builder row for a clause or a negated clause; None for anything deeper."""
    negated = isinstance(item, dict) and set(item) == {"not"}
    clause = item["not"] if negated else item
    if not (isinstance(clause, dict) and {"attr", "op"} <= set(clause) <= {"attr", "op", "value"}):
        return None
    return {"attr": _shown(clause["attr"]), "op": _shown(clause["op"]), "value": _shown(clause.get("value")),
            "not": negated}


def builder_of(where: Any) -> tuple[str, list[dict[str, Any]], str]:
    """(combinator, rows, advanced JSON): a `where` one group deep goes in the rows, anything else
    in the advanced text."""
    if where is None:
        return "all", [], ""
    if isinstance(where, dict) and len(where) == 1 and next(iter(where)) in COMBINATORS \
            and isinstance(items := next(iter(where.values())), list):
        rows = [_row(item) for item in items]
        if items and all(r is not None for r in rows):
            return next(iter(where)), [r for r in rows if r is not None], ""
    single = _row(where)
    if single is not None:
        return "all", [single], ""
    return "all", [], where if isinstance(where, str) else json.dumps(where, ensure_ascii=False, indent=2)


def fields_of(kind: str, body: Any, policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the form shows for a stored body: every field as text, the channels and audiences
    ticked, the builder's rows. A revision shows the policy as published with the changes over it."""
    body = body if isinstance(body, dict) else {}
    if kind == "repeal":
        return {f: _shown(body.get(f)) for f in REPEAL_FIELDS}
    if kind == "revise":
        assert policy is not None
        merged = {f: policy[f] for f in (*REVISION_FIELDS, "notify_on_lapse")} | body
        shown = {f: _shown(merged.get(f)) for f in REVISION_FIELDS}
        return shown | {"notify_on_lapse": bool(merged.get("notify_on_lapse"))}
    shown = {f: _shown(body.get(f)) for f in TEXT_FIELDS}
    if shown["publish_at"].endswith(":00" + _LOCAL_OFFSET):
        shown["publish_at"] = shown["publish_at"].removesuffix(":00" + _LOCAL_OFFSET)
    targeting = body.get("targeting") if isinstance(body.get("targeting"), dict) else {}
    combinator, rows, advanced = builder_of(targeting.get("where"))
    channels = body.get("channels") if isinstance(body.get("channels"), list) else []
    audiences = targeting.get("audiences") if isinstance(targeting.get("audiences"), list) else []
    return shown | {"channels": [c for c in channels if isinstance(c, str)],
                    "audiences": [a for a in audiences if isinstance(a, str)],
                    "notify_on_lapse": bool(body.get("notify_on_lapse", True)),
                    "combinator": combinator, "rows": rows, "where_json": advanced}


def placed(errors: list[FieldError], advanced: bool) -> dict[str, str]:
    """Each error under the form field it belongs beside (the first per field); `advanced`: the
    `where` came from the JSON text, so its errors go there. What has no field goes under `form`."""
    shown: dict[str, str] = {}
    for error in errors:
        path = error.field
        found = _CLAUSE_PATH.match(path)
        if path.startswith("targeting.where") and (advanced or not found):
            key = "where_json"
        elif found:
            key = f"clause.{found[1]}.{found[2] or 'value'}"
        elif path.startswith("targeting"):
            key = "audiences"
        elif path.startswith("channels"):
            key = "channels"
        elif path in (*TEXT_FIELDS, *REPEAL_FIELDS, "notify_on_lapse", "comment"):
            key = path
        else:
            key = "form"
        shown.setdefault(key, error.message if key != "form" or path in ("", "body") else f"{path}: {error.message}")
    return shown
