"""The audience catalogue: audience groups and their attribute schemas, policy domains, districts.

It is data, read from YAML under `audiences/` (settings.audiences_dir):
- `districts.yaml`: the districts, whose slugs are the values of `values_from: districts`;
- `domains.yaml`: the categories and the policy domains (the 26 pilot domains must all be there);
- `lists.yaml`: value lists shared by several enum attributes (`values_from: <list name>`);
- `groups/<slug>.yaml`: one audience group each, with its attributes.
Adding a group, an attribute or a value is a data change. Any mistake in the files stops loading
with a CatalogueError naming the file and line, so a bad catalogue never reaches the service.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yaml.constructor import SafeConstructor

from pushsvc.core.errors import FieldError
from pushsvc.core.identifiers import check_uscc

# The standard disclosure catalogues of the plan: every deployment must offer all of them.
PILOT_DOMAINS = (
    "spatial-planning", "major-construction-projects", "public-resource-trading", "fiscal-budget",
    "work-safety", "tax-administration", "land-acquisition-compensation", "housing-expropriation",
    "affordable-housing", "rural-dilapidated-housing", "environmental-protection",
    "public-cultural-services", "public-legal-services", "poverty-alleviation", "disaster-relief",
    "food-drug-supervision", "urban-law-enforcement", "employment-entrepreneurship",
    "social-insurance", "social-assistance", "elderly-care", "household-registration",
    "agricultural-subsidies", "compulsory-education", "healthcare", "municipal-services",
)  # fmt: skip

AttributeType = Literal["enum", "string", "integer", "number", "boolean", "date"]
# Which type-specific keys each attribute type takes.
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "enum": frozenset({"values", "values_from"}),
    "string": frozenset({"pattern", "check"}),
    "integer": frozenset({"min", "max"}),
    "number": frozenset({"min", "max"}),
    "boolean": frozenset(),
    "date": frozenset(),
}
_DISTRICTS_LIST = "districts"
_MAX_STRING = 500  # free-text attributes end up in JSON columns and exports


# ----------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Label:
    zh_CN: str
    zh_HK: str
    en: str

    def get(self, locale: str) -> str:
        """The label in `locale`; zh-CN for any locale the catalogue does not carry."""
        return {"zh-HK": self.zh_HK, "en": self.en}.get(locale, self.zh_CN)


@dataclass(frozen=True)
class Choice:
    value: str
    label: Label


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    required: bool
    label: Label
    choices: tuple[Choice, ...] | None
    pattern: str | None
    check: str | None
    min: float | None
    max: float | None

    def validate(self, raw: object) -> object:
        """The normalised value of `raw` (a JSON value or a CSV cell), or ValueError saying what is wrong."""
        if isinstance(raw, str):
            raw = raw.strip()
        if raw is None or raw == "":
            raise ValueError("a value is required")
        value = _PARSERS[self.type](raw)
        if self.choices is not None and not any(c.value == value for c in self.choices):
            raise ValueError("must be one of: " + ", ".join(c.value for c in self.choices))
        if isinstance(value, str):
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ValueError(f"does not have the expected form ({self.pattern})")
            if self.check == "uscc":
                value = check_uscc(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ValueError(f"must be at least {self.min:g}")
            if self.max is not None and value > self.max:
                raise ValueError(f"must be at most {self.max:g}")
        return value


@dataclass(frozen=True)
class Group:
    slug: str
    label: Label
    attributes: dict[str, Attribute]

    def validate(self, attrs: dict[str, object]) -> tuple[dict[str, object], list[FieldError]]:
        """Normalised attributes and one error per bad, missing or unknown attribute.

        Blank values (None, "", spaces: empty CSV cells) of optional attributes are left out.
        """
        errors = [
            FieldError(name, f"unknown attribute; {self.slug} has: {', '.join(self.attributes)}")
            for name in attrs
            if name not in self.attributes
        ]
        clean: dict[str, object] = {}
        for name, attribute in self.attributes.items():
            raw = attrs.get(name)
            if not attribute.required and _is_blank(raw):
                continue
            try:
                clean[name] = attribute.validate(raw)
            except ValueError as exc:
                errors.append(FieldError(name, str(exc)))
        return clean, errors


@dataclass(frozen=True)
class Domain:
    slug: str
    label: Label
    category: str


@dataclass(frozen=True)
class District:
    slug: str
    label: Label


@dataclass(frozen=True)
class Catalogue:
    groups: dict[str, Group]
    domains: dict[str, Domain]
    districts: dict[str, District]
    categories: dict[str, Label]


def _is_blank(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


# ----------------------------------------------------------------------------- attribute values
# Each parser takes a non-blank JSON value or stripped CSV string and returns the stored form.

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TRUE = frozenset({"true", "1", "yes", "y", "是"})
_FALSE = frozenset({"false", "0", "no", "n", "否"})


def _parse_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("must be text")
    if len(raw) > _MAX_STRING:
        raise ValueError(f"must not be longer than {_MAX_STRING} characters")
    return raw


def _parse_integer(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        return int(raw)
    raise ValueError("must be a whole number")


def _parse_number(raw: object) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    if isinstance(raw, str) and _NUMBER.fullmatch(raw):
        return float(raw)
    raise ValueError("must be a number")


def _parse_boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError("must be true or false (also accepted: 1/0, yes/no, 是/否)")


def _parse_date(raw: object) -> str:
    # Stored as ISO text: it survives JSON and compares in date order.
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw.isoformat()
    if isinstance(raw, str) and _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            raise ValueError(f"{raw} is not a date in the calendar") from None
    raise ValueError("must be a date written YYYY-MM-DD")


_PARSERS: dict[str, Callable[[object], object]] = {
    "enum": _parse_text,
    "string": _parse_text,
    "integer": _parse_integer,
    "number": _parse_number,
    "boolean": _parse_boolean,
    "date": _parse_date,
}


# ----------------------------------------------------------------------------- errors with file and line


class CatalogueError(Exception):
    """A mistake in the catalogue files; str() is '<file>:<line>: <message>' (lines count from 1)."""

    def __init__(self, file: Path, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


_Loc = Sequence[str | int]


@dataclass(frozen=True)
class _Source:
    """One parsed file: its path and its YAML node tree, to turn a location into a line."""

    path: Path
    root: yaml.Node

    def error(self, loc: _Loc, message: str) -> CatalogueError:
        where = _dotted(loc)
        return CatalogueError(self.path, self._line(loc), f"{where}: {message}" if where else message)

    def _line(self, loc: _Loc) -> int:
        # Follow the location as far as the file has it: a missing key points at its parent.
        node, line = self.root, self.root.start_mark.line
        for step in loc:
            if isinstance(node, yaml.MappingNode):
                found = next(((k, v) for k, v in node.value if k.value == step), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line, found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line
            else:
                break
        return line + 1


def _dotted(loc: _Loc) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in loc).lstrip(".")


def _read(path: Path) -> tuple[_Source, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(path, 1, "file not found") from None
    except UnicodeDecodeError:
        raise CatalogueError(path, 1, "not UTF-8 text") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise CatalogueError(path, *_yaml_problem(text, exc)) from None
    if root is None:
        raise CatalogueError(path, 1, "the file is empty")
    return _Source(path, root), _to_python(path, root, SafeConstructor())


def _yaml_problem(text: str, exc: yaml.YAMLError) -> tuple[int, str]:
    """Line and message of a YAML syntax error; the parser notices some only a line later."""
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: it has a position, no mark
        return text.count("\n", 0, exc.position) + 1, f"not valid YAML: {exc.reason}"
    mark = getattr(exc, "problem_mark", None)
    message = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark and mark and context_mark.line != mark.line:
        message += f" ({context} that starts on line {context_mark.line + 1})"
    return (mark.line + 1 if mark else 1), message


def _to_python(path: Path, node: yaml.Node, constructor: SafeConstructor) -> object:
    """Plain data from the node tree, refusing what yaml.safe_load lets through silently (duplicate keys)."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = _to_python(path, key_node, constructor)
            if not isinstance(key, str):
                raise CatalogueError(path, key_node.start_mark.line + 1, f"a key must be text, not {key!r}")
            if key in out:
                raise CatalogueError(path, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _to_python(path, value_node, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(path, item, constructor) for item in node.value]
    try:
        return constructor.construct_object(node)
    except (yaml.YAMLError, ValueError) as exc:  # unknown tags, merge keys, impossible timestamps
        problem = getattr(exc, "problem", None) or exc
        raise CatalogueError(path, node.start_mark.line + 1, f"unsupported value: {problem}") from None


# ----------------------------------------------------------------------------- file schemas

_Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]  # groups, attributes, lists
_Kebab = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")]  # domains, categories
_Value = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
_Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
_Spec = TypeVar("_Spec", bound="_Strict")


class _Strict(BaseModel):
    # Strict: YAML already typed the values, so `required: "no"` is a mistake, not a coercion.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _LabelSpec(_Strict):
    zh_CN: _Text = Field(alias="zh-CN")
    zh_HK: _Text = Field(alias="zh-HK")
    en: _Text

    def build(self) -> Label:
        return Label(self.zh_CN, self.zh_HK, self.en)


class _ChoiceSpec(_Strict):
    value: _Value
    label: _LabelSpec


class _AttributeSpec(_Strict):
    name: _Slug
    type: AttributeType
    required: bool
    label: _LabelSpec
    values: list[_ChoiceSpec] | None = Field(default=None, min_length=1)
    values_from: _Slug | None = None
    pattern: str | None = None
    check: Literal["uscc"] | None = None
    min: float | None = None
    max: float | None = None

    @field_validator("values", "values_from", "pattern", "check", "min", "max")
    @classmethod
    def _applies_to_type(cls, value: object, info: ValidationInfo) -> object:
        kind = info.data.get("type")  # absent when `type` itself was wrong
        if kind is not None and info.field_name not in _TYPE_KEYS[kind]:
            raise ValueError(f"does not apply to {kind} attributes")
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _complete(self) -> _AttributeSpec:
        if self.type == "enum" and (self.values is None) == (self.values_from is None):
            raise ValueError("an enum attribute needs either `values` or `values_from` (one of them)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class _GroupSpec(_Strict):
    slug: _Slug
    label: _LabelSpec
    attributes: list[_AttributeSpec] = Field(min_length=1)


class _SlugLabelSpec(_Strict):
    slug: _Kebab
    label: _LabelSpec


class _DomainSpec(_SlugLabelSpec):
    category: _Kebab


class _DomainsFile(_Strict):
    categories: list[_SlugLabelSpec] = Field(min_length=1)
    domains: list[_DomainSpec] = Field(min_length=1)


class _DistrictSpec(_Strict):
    slug: _Slug
    label: _LabelSpec


class _DistrictsFile(_Strict):
    districts: list[_DistrictSpec] = Field(min_length=1)


class _ListsFile(_Strict):
    lists: dict[_Slug, Annotated[list[_ChoiceSpec], Field(min_length=1)]]


def _parse(path: Path, model: type[_Spec]) -> tuple[_Source, _Spec]:
    source, data = _read(path)
    try:
        return source, model.model_validate(data)
    except ValidationError as exc:
        # The first problem is enough to act on; fixing it and reloading shows the next one.
        err = exc.errors()[0]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "model_type":
            message = "expected a mapping (key: value)"
        elif err["type"] == "value_error":
            message = str(err["ctx"]["error"])
        else:
            message = err["msg"]
        # pydantic marks a bad mapping key with a "[key]" step after the key itself.
        raise source.error([step for step in err["loc"] if step != "[key]"], message) from None


def _unique(source: _Source, loc: _Loc, keys: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise source.error((*loc, index), f"duplicate {what} {key!r}")
        seen.add(key)


# ----------------------------------------------------------------------------- loading


def load_catalogue(directory: Path) -> Catalogue:
    """Read and check the whole catalogue under `directory`; CatalogueError on the first mistake."""
    districts = _load_districts(directory / "districts.yaml")
    categories, domains = _load_domains(directory / "domains.yaml")
    lists = _load_lists(directory / "lists.yaml")
    lists[_DISTRICTS_LIST] = tuple(Choice(d.slug, d.label) for d in districts.values())
    groups = _load_groups(directory / "groups", lists)
    return Catalogue(groups=groups, domains=domains, districts=districts, categories=categories)


def _load_districts(path: Path) -> dict[str, District]:
    source, spec = _parse(path, _DistrictsFile)
    _unique(source, ["districts"], (d.slug for d in spec.districts), "district")
    return {d.slug: District(d.slug, d.label.build()) for d in spec.districts}


def _load_domains(path: Path) -> tuple[dict[str, Label], dict[str, Domain]]:
    source, spec = _parse(path, _DomainsFile)
    _unique(source, ["categories"], (c.slug for c in spec.categories), "category")
    _unique(source, ["domains"], (d.slug for d in spec.domains), "domain")
    categories = {c.slug: c.label.build() for c in spec.categories}
    for index, domain in enumerate(spec.domains):
        if domain.category not in categories:
            raise source.error(
                ("domains", index, "category"),
                f"unknown category {domain.category!r}; categories: {', '.join(categories)}",
            )
    missing = [slug for slug in PILOT_DOMAINS if slug not in {d.slug for d in spec.domains}]
    if missing:
        raise source.error(["domains"], f"pilot domains missing: {', '.join(missing)}")
    domains = {d.slug: Domain(d.slug, d.label.build(), d.category) for d in spec.domains}
    return categories, domains


def _load_lists(path: Path) -> dict[str, tuple[Choice, ...]]:
    source, spec = _parse(path, _ListsFile)
    if _DISTRICTS_LIST in spec.lists:
        raise source.error(("lists", _DISTRICTS_LIST), "this name is reserved for districts.yaml")
    for name, choices in spec.lists.items():
        _unique(source, ("lists", name), (c.value for c in choices), "value")
    return {name: _choices(choices) for name, choices in spec.lists.items()}


def _choices(specs: list[_ChoiceSpec]) -> tuple[Choice, ...]:
    return tuple(Choice(c.value, c.label.build()) for c in specs)


def _load_groups(directory: Path, lists: dict[str, tuple[Choice, ...]]) -> dict[str, Group]:
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise CatalogueError(directory, 1, "no audience group files (<slug>.yaml) in this directory")
    return {group.slug: group for group in (_load_group(path, lists) for path in paths)}


def _load_group(path: Path, lists: dict[str, tuple[Choice, ...]]) -> Group:
    source, spec = _parse(path, _GroupSpec)
    # The file name is the slug, which also keeps slugs unique across files.
    if spec.slug != path.stem:
        raise source.error(["slug"], f"must match the file name ({path.stem!r})")
    _unique(source, ["attributes"], (a.name for a in spec.attributes), "attribute")
    attributes: dict[str, Attribute] = {}
    for index, attr in enumerate(spec.attributes):
        choices: tuple[Choice, ...] | None = None
        if attr.values is not None:
            _unique(source, ("attributes", index, "values"), (c.value for c in attr.values), "value")
            choices = _choices(attr.values)
        elif attr.values_from is not None:
            if attr.values_from not in lists:
                raise source.error(
                    ("attributes", index, "values_from"),
                    f"unknown list {attr.values_from!r}; lists: {', '.join(sorted(lists))}",
                )
            choices = lists[attr.values_from]
        attributes[attr.name] = Attribute(
            name=attr.name,
            type=attr.type,
            required=attr.required,
            label=attr.label.build(),
            choices=choices,
            pattern=attr.pattern,
            check=attr.check,
            min=attr.min,
            max=attr.max,
        )
    return Group(slug=spec.slug, label=spec.label.build(), attributes=attributes)
