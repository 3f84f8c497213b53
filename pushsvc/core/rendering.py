"""Rendering messages from the jinja2 templates under `templates/<channel>/<kind>.<locale>.<part>`.

Only our own template files are ever compiled: whatever a department or the public supplies is
passed in `context` as data, so `{{ … }}` in a policy title stays literal text. `.html` templates
autoescape; a missing variable is an error, never a silently empty string.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
    select_autoescape,
)

DEFAULT_LOCALE = "zh-CN"
_LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")  # BCP 47-ish; also keeps paths out of names
_MONTHS = ("January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December")  # not strftime: no process locale


class RenderError(Exception):
    """A template could not be rendered: missing, or it used a variable the context lacks."""


def format_date(value: date | None, locale: str) -> str:
    """A date as people of `locale` write it: 2026年12月1日 / 1 December 2026; '' for None."""
    if value is None:
        return ""
    if locale.startswith("zh"):
        return f"{value.year}年{value.month}月{value.day}日"
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def make_environment(templates_dir: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates are deployed with the code; don't stat files per render
    )
    env.filters["date"] = format_date
    return env


class Renderer:
    """Renders one part of one message kind for a channel and locale."""

    def __init__(self, templates_dir: Path) -> None:
        self.env = make_environment(templates_dir)

    def _select(self, kind: str, channel: str, part: str, locale: str) -> Template:
        names = [f"{channel}/{kind}.{loc}.{part}" for loc in dict.fromkeys((locale, DEFAULT_LOCALE))
                 if _LOCALE.fullmatch(loc)]
        try:
            return self.env.select_template(names)
        except TemplateNotFound as exc:
            raise RenderError(f"no template for {channel}/{kind}.{locale}.{part} (tried {', '.join(names)})") from exc

    def render(self, kind: str, channel: str, part: str, locale: str, context: dict[str, Any]) -> str:
        """Render `templates/<channel>/<kind>.<locale>.<part>` (zh-CN if that locale has none)."""
        template = self._select(kind, channel, part, locale)
        try:
            return template.render(context)
        except UndefinedError as exc:  # jinja's message names the variable: "'page_url' is undefined"
            raise RenderError(f"{template.name}: {exc.message}") from exc
