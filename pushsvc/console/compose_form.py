"""What the compose form draws, in the page's language: the department's domains, the channels,
the audience groups and every attribute a clause can name (from the audience catalogue, as the
subscribe form has them), the operators, the builder's rows as typed, each error beside its field."""

from __future__ import annotations

from typing import Any

from pushsvc.core.catalogue import Attribute, Catalogue
from pushsvc.core.msgid import N_
from pushsvc.core.targeting import OPS
from pushsvc.i18n import Words
from pushsvc.policies.validation import CHANNELS

CHANNEL_LABELS = {"email": N_("E-mail"), "sms": N_("SMS"), "wechat": N_("WeChat")}
OP_LABELS = {"eq": N_("is"), "in": N_("is one of"), "not_in": N_("is none of"), "exists": N_("is given"),
             "gte": N_("is at least"), "lte": N_("is at most")}
BLANK_ROW = {"attr": "", "op": "eq", "value": "", "not": False}
MAX_BLANK_ROWS = 10


def _hint(attribute: Attribute, locale: str) -> list[dict[str, str]]:
    return [{"value": c.value, "label": c.label.get(locale)} for c in attribute.choices or ()]


def attributes(catalogue: Catalogue, locale: str) -> list[dict[str, Any]]:
    """Every `<group>.<attribute>` a clause can name, labelled, with its choices (for a datalist)."""
    return [{"value": f"{g.slug}.{a.name}", "label": f"{g.label.get(locale)} · {a.label.get(locale)}",
             "list_id": f"choices-{g.slug}-{a.name}".replace("_", "-"), "choices": _hint(a, locale)}
            for g in catalogue.groups.values() for a in g.attributes.values()]


def compose_view(shown: dict[str, Any], catalogue: Catalogue, domains: list[str], locale: str, said: Words,
                 errors: dict[str, str], blank_rows: int = 0) -> dict[str, Any]:
    """The context of `_compose_new.html`'s fields for a new policy's draft."""
    rows = list(shown["rows"]) + [dict(BLANK_ROW)] * min(max(blank_rows, 0 if shown["rows"] else 1), MAX_BLANK_ROWS)
    lists = {a["value"]: a["list_id"] for a in attributes(catalogue, locale)}
    return {
        "v": shown, "errors": errors,
        "domains": [{"slug": d, "label": catalogue.domains[d].label.get(locale) if d in catalogue.domains else d,
                     "selected": d == shown["domain"]} for d in domains],
        "channels": [{"name": c, "label": said.gettext(CHANNEL_LABELS[c]), "checked": c in shown["channels"]}
                     for c in CHANNELS],
        "audiences": [{"slug": g.slug, "label": g.label.get(locale), "checked": g.slug in shown["audiences"]}
                      for g in catalogue.groups.values()],
        "attributes": attributes(catalogue, locale),
        "ops": [{"op": op, "label": said.gettext(OP_LABELS[op])} for op in OPS],
        "rows": [dict(r, n=n, list_id=lists.get(r["attr"], "")) for n, r in enumerate(rows)],
    }


def reach_labels(catalogue: Catalogue, locale: str, said: Words) -> dict[str, str]:
    """The reach's keys (audience slugs, channel names) as the page says them."""
    return ({g.slug: g.label.get(locale) for g in catalogue.groups.values()}
            | {c: said.gettext(CHANNEL_LABELS[c]) for c in CHANNELS})
