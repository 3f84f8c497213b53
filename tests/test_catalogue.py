"""The audience catalogue: the real data loads, broken files are reported by file and line,
and group schemas validate subscriber attributes from JSON and from CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushsvc.core.catalogue import PILOT_DOMAINS, Attribute, Catalogue, CatalogueError, Choice, Label, load_catalogue
from pushsvc.core.errors import FieldError

AUDIENCES = Path(__file__).resolve().parents[1] / "audiences"

DOMAIN_MD_SLUGS = {
    "spatial-planning", "major-construction-projects", "public-resource-trading", "fiscal-budget",
    "work-safety", "tax-administration", "land-acquisition-compensation", "housing-expropriation",
    "affordable-housing", "rural-dilapidated-housing", "environmental-protection",
    "public-cultural-services", "public-legal-services", "poverty-alleviation", "disaster-relief",
    "food-drug-supervision", "urban-law-enforcement", "employment-entrepreneurship",
    "social-insurance", "social-assistance", "elderly-care", "household-registration",
    "agricultural-subsidies", "compulsory-education", "healthcare", "municipal-services",
}  # fmt: skip
DISTRICTS = {
    "yuexiu", "haizhu", "liwan", "tianhe", "baiyun", "huangpu",
    "panyu", "huadu", "nansha", "conghua", "zengcheng",
}  # fmt: skip
GROUPS = {
    "enterprise", "market_entity", "research_institution", "tech_talent", "aid_recipient",
    "employment_social_security", "financing_enterprise", "taxpayer",
}  # fmt: skip
USCC = "91350100M000100Y43"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(AUDIENCES)


# ----------------------------------------------------------------------------- the real catalogue


def test_real_catalogue_has_the_plans_groups_domains_and_districts(catalogue: Catalogue) -> None:
    assert set(catalogue.groups) == GROUPS
    assert set(catalogue.domains) == DOMAIN_MD_SLUGS == set(PILOT_DOMAINS)
    assert len(catalogue.domains) == 26
    assert set(catalogue.districts) == DISTRICTS
    assert catalogue.districts["haizhu"].label == Label("海珠区", "海珠區", "Haizhu District")
    assert catalogue.domains["healthcare"].label.get("zh-CN") == "医疗卫生"


def test_every_domain_has_a_known_category_and_every_category_is_used(catalogue: Catalogue) -> None:
    used = {d.category for d in catalogue.domains.values()}
    assert used == set(catalogue.categories)


def test_every_group_has_a_required_district_taking_the_district_slugs(catalogue: Catalogue) -> None:
    for group in catalogue.groups.values():
        district = group.attributes["district"]
        assert district.required and district.type == "enum", group.slug
        assert district.choices is not None
        assert [c.value for c in district.choices] == list(catalogue.districts), group.slug


def test_enterprise_schema(catalogue: Catalogue) -> None:
    attrs = catalogue.groups["enterprise"].attributes
    assert attrs["uscc"].check == "uscc" and attrs["uscc"].required
    industry = attrs["industry"].choices
    assert industry is not None
    assert [c.value for c in industry] == list("ABCDEFGHIJKLMNOPQRST")  # GB/T 4754 sections
    assert industry[2].label.get("zh-CN") == "制造业"
    scale = attrs["scale"].choices
    assert scale is not None and [c.value for c in scale] == ["large", "medium", "small", "micro"]
    assert not attrs["employees"].required and attrs["employees"].min == 0
    assert attrs["high_tech"].type == "boolean" and not attrs["high_tech"].required


def test_every_label_is_filled_in_all_three_locales(catalogue: Catalogue) -> None:
    labels: list[Label] = [*catalogue.categories.values()]
    labels += [d.label for d in catalogue.domains.values()] + [d.label for d in catalogue.districts.values()]
    for group in catalogue.groups.values():
        labels.append(group.label)
        for attr in group.attributes.values():
            labels.append(attr.label)
            labels += [c.label for c in attr.choices or ()]
    for label in labels:
        assert label.zh_CN and label.zh_HK and label.en, label


def test_label_falls_back_to_zh_cn() -> None:
    label = Label("越秀区", "越秀區", "Yuexiu District")
    assert label.get("zh-HK") == "越秀區"
    assert label.get("en") == "Yuexiu District"
    assert label.get("fr") == "越秀区"


# ----------------------------------------------------------------------------- Group.validate


def test_good_json_attributes_pass_normalised(catalogue: Catalogue) -> None:
    clean, errors = catalogue.groups["enterprise"].validate(
        {"uscc": "91350100m000100y43", "district": "haizhu", "industry": "C", "scale": "small",
         "employees": 12, "high_tech": True}  # fmt: skip
    )
    assert errors == []
    assert clean == {"uscc": USCC, "district": "haizhu", "industry": "C", "scale": "small",
                     "employees": 12, "high_tech": True}  # fmt: skip


def test_csv_strings_are_converted(catalogue: Catalogue) -> None:
    clean, errors = catalogue.groups["financing_enterprise"].validate(
        {"uscc": f" {USCC} ", "district": "tianhe ", "scale": "micro", "financing_need": "loan",
         "amount_wan": "250.5", "industry": ""}  # fmt: skip
    )
    assert errors == []
    assert clean == {"uscc": USCC, "district": "tianhe", "scale": "micro", "financing_need": "loan",
                     "amount_wan": 250.5}  # fmt: skip
    clean, errors = catalogue.groups["enterprise"].validate(
        {"uscc": USCC, "district": "panyu", "industry": "I", "scale": "large",
         "employees": "1200", "high_tech": "是", "specialised_sme": "0"}  # fmt: skip
    )
    assert errors == []
    assert clean["employees"] == 1200 and clean["high_tech"] is True and clean["specialised_sme"] is False


def test_bad_missing_and_unknown_attributes_each_get_an_error(catalogue: Catalogue) -> None:
    clean, errors = catalogue.groups["enterprise"].validate(
        {"uscc": USCC[:17] + "4", "district": "Haizhu", "industry": "Z", "employees": -1,
         "high_tech": "maybe", "colour": "red"}  # fmt: skip
    )
    by_field = {e.field: e.message for e in errors}
    assert set(by_field) == {"uscc", "district", "industry", "scale", "employees", "high_tech", "colour"}
    assert "check character" in by_field["uscc"]
    assert "must be one of" in by_field["district"] and "haizhu" in by_field["district"]
    assert "required" in by_field["scale"]
    assert "at least 0" in by_field["employees"]
    assert "true or false" in by_field["high_tech"]
    assert "unknown attribute" in by_field["colour"]
    assert clean == {}
    assert all(isinstance(e, FieldError) for e in errors)


def test_blank_required_attribute_is_missing_and_blank_optional_is_dropped(catalogue: Catalogue) -> None:
    clean, errors = catalogue.groups["aid_recipient"].validate(
        {"district": "  ", "assistance_type": "dibao", "household_size": None}
    )
    assert errors == [FieldError("district", "a value is required")]
    assert clean == {"assistance_type": "dibao"}


def test_integer_range_from_the_schema(catalogue: Catalogue) -> None:
    group = catalogue.groups["aid_recipient"]
    for size, ok in [("1", True), (20, True), (0, False), ("21", False), ("2.5", False), (3.0, True)]:
        _, errors = group.validate({"district": "liwan", "assistance_type": "tekun", "household_size": size})
        assert (errors == []) is ok, size


def test_enum_values_compare_exactly(catalogue: Catalogue) -> None:
    group = catalogue.groups["taxpayer"]
    _, errors = group.validate({"district": "yuexiu", "taxpayer_type": "Small_Scale"})
    assert [e.field for e in errors] == ["taxpayer_type"]
    _, errors = group.validate({"district": "yuexiu", "taxpayer_type": 1})
    assert [e.field for e in errors] == ["taxpayer_type"]


def _attribute(type_: str, **kw: object) -> Attribute:
    fields: dict[str, object] = dict(choices=None, pattern=None, check=None, min=None, max=None)
    fields.update(kw)
    label = Label("x", "x", "x")
    return Attribute(name="x", type=type_, required=True, label=label, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw, expected",
    [(True, True), (False, False), ("true", True), ("FALSE", False), ("1", True), ("0", False),
     (1, True), (0, False), ("是", True), ("否", False), (" yes ", True), ("No", False)],
)  # fmt: skip
def test_boolean_spellings(raw: object, expected: bool) -> None:
    assert _attribute("boolean").validate(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, "2", [], {}])
def test_boolean_refuses_the_rest(raw: object) -> None:
    with pytest.raises(ValueError):
        _attribute("boolean").validate(raw)


def test_integer_refuses_booleans_and_fractions() -> None:
    attr = _attribute("integer")
    assert attr.validate("-7") == -7
    for raw in [True, 1.5, "1.5", "1e3", "abc", "1 000"]:
        with pytest.raises(ValueError, match="whole number"):
            attr.validate(raw)


def test_number_accepts_numeric_text_only() -> None:
    attr = _attribute("number", min=0.0, max=100.0)
    assert attr.validate("12.5") == 12.5
    assert attr.validate(7) == 7.0
    assert attr.validate("1e2") == 100.0
    for raw in ["nan", "inf", float("nan"), True, "12,5"]:
        with pytest.raises(ValueError, match="must be a number"):
            attr.validate(raw)
    with pytest.raises(ValueError, match="at most 100"):
        attr.validate("100.5")


def test_date_is_iso_text() -> None:
    from datetime import date, datetime

    attr = _attribute("date")
    assert attr.validate("2026-12-01") == "2026-12-01"
    assert attr.validate(date(2026, 2, 28)) == "2026-02-28"
    for raw, message in [("2026-02-30", "calendar"), ("01/12/2026", "YYYY-MM-DD"), (datetime(2026, 1, 1), "YYYY")]:
        with pytest.raises(ValueError, match=message):
            attr.validate(raw)


def test_string_pattern_and_uscc_check() -> None:
    zip_code = _attribute("string", pattern=r"51[0-9]{4}")
    assert zip_code.validate(" 510000 ") == "510000"
    with pytest.raises(ValueError, match="expected form"):
        zip_code.validate("5100001")
    with pytest.raises(ValueError, match="must be text"):
        zip_code.validate(510000)
    with pytest.raises(ValueError, match="longer than"):
        _attribute("string").validate("x" * 501)
    assert _attribute("string", check="uscc").validate(USCC.lower()) == USCC


def test_enum_choices() -> None:
    attr = _attribute("enum", choices=(Choice("a", Label("甲", "甲", "A")),))
    assert attr.validate("a") == "a"
    with pytest.raises(ValueError, match="one of: a"):
        attr.validate("A")


# ----------------------------------------------------------------------------- broken files


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "audiences"
    shutil.copytree(AUDIENCES, target)
    return target


def _edit(path: Path, old: str, new: str) -> int:
    """Replace `old` once; return the 1-based line on which `new` starts."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    before = text.index(old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text.count("\n", 0, before) + 1


def _line_of(path: Path, line_text: str) -> int:
    return path.read_text(encoding="utf-8").splitlines().index(line_text) + 1


def _error(directory: Path) -> CatalogueError:
    with pytest.raises(CatalogueError) as info:
        load_catalogue(directory)
    return info.value


def _assert_error(err: CatalogueError, path: Path, line: int, *fragments: str) -> None:
    assert err.file == path and err.line == line, str(err)
    assert str(err).startswith(f"{path}:{line}: "), str(err)
    for fragment in fragments:
        assert fragment in err.message, str(err)


def test_bad_yaml(copy: Path) -> None:
    path = copy / "districts.yaml"
    line = _edit(path, "en: Tianhe District}}\n", "en: Tianhe District}\n")
    # The parser notices the unclosed mapping where the next one starts.
    _assert_error(_error(copy), path, line + 1, "not valid YAML", f"starts on line {line}")


def test_tab_indentation(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "    type: enum\n", "\ttype: enum\n")
    _assert_error(_error(copy), path, line, "not valid YAML")


def test_unknown_attribute_type(copy: Path) -> None:
    path = copy / "groups" / "enterprise.yaml"
    line = _edit(path, "    type: integer\n", "    type: integr\n")
    _assert_error(_error(copy), path, line, "attributes[4].type", "'integer'")


def test_unknown_key(copy: Path) -> None:
    path = copy / "groups" / "enterprise.yaml"
    line = _edit(path, "    check: uscc\n", "    check: uscc\n    colour: red\n") + 1
    _assert_error(_error(copy), path, line, "attributes[0].colour", "unknown key")


def test_duplicate_key(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "    required: true\n", "    required: true\n    required: false\n") + 1
    _assert_error(_error(copy), path, line, "duplicate key 'required'")


def test_enum_without_values(copy: Path) -> None:
    path = copy / "groups" / "enterprise.yaml"
    line = _edit(path, "    values_from: enterprise_scale\n", "")
    # Reported on the attribute, which starts two lines above where `values_from` was.
    _assert_error(_error(copy), path, line - 2, "attributes[3]", "values_from")


def test_empty_values(copy: Path) -> None:
    path = copy / "groups" / "tech_talent.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("    values:\n      - {value: A")
    end = text.index("  - name: field")
    path.write_text(text[:start] + "    values: []\n" + text[end:], encoding="utf-8")
    _assert_error(_error(copy), path, text.count("\n", 0, start) + 1, "attributes[1].values", "at least 1")


def test_unknown_value_list(copy: Path) -> None:
    path = copy / "groups" / "market_entity.yaml"
    line = _edit(path, "    values_from: industry\n", "    values_from: industries\n")
    _assert_error(_error(copy), path, line, "unknown list 'industries'", "districts")


def test_key_that_does_not_apply_to_the_type(copy: Path) -> None:
    path = copy / "groups" / "enterprise.yaml"
    line = _edit(path, "    min: 0\n", "    pattern: '[0-9]+'\n")
    _assert_error(_error(copy), path, line, "attributes[4].pattern", "integer")


def test_bad_regex(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "    check: uscc\n", "    pattern: '[0-9'\n")
    _assert_error(_error(copy), path, line, "attributes[2].pattern", "regular expression")


def test_min_above_max(copy: Path) -> None:
    path = copy / "groups" / "aid_recipient.yaml"
    _edit(path, "    max: 20\n", "    max: 0\n")
    line = _line_of(path, "  - name: household_size")
    _assert_error(_error(copy), path, line, "attributes[2]", "min is greater than max")


def test_duplicate_enum_value(copy: Path) -> None:
    path = copy / "groups" / "market_entity.yaml"
    line = _edit(path, "{value: partnership,", "{value: company,")
    _assert_error(_error(copy), path, line, "duplicate value 'company'")


def test_duplicate_attribute(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "  - name: uscc\n", "  - name: district\n")
    _assert_error(_error(copy), path, line, "duplicate attribute 'district'")


def test_group_slug_must_match_its_file(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "slug: taxpayer\n", "slug: enterprise\n")
    _assert_error(_error(copy), path, line, "file name")


def test_missing_label_locale(copy: Path) -> None:
    path = copy / "groups" / "enterprise.yaml"
    line = _edit(path, "label: {zh-CN: 企业规模, zh-HK: 企業規模, en: Enterprise size}",
                 "label: {zh-CN: 企业规模, en: Enterprise size}")  # fmt: skip
    _assert_error(_error(copy), path, line, "attributes[3].label.zh-HK", "missing")


def test_non_boolean_required(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "    required: false\n", "    required: perhaps\n")
    _assert_error(_error(copy), path, line, "attributes[2].required", "boolean")


def test_missing_domain(copy: Path) -> None:
    path = copy / "domains.yaml"
    start = _line_of(path, "  - slug: healthcare")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[: start - 1] + lines[start + 2 :]), encoding="utf-8")  # drop its 3 lines
    line = _line_of(path, "domains:")
    _assert_error(_error(copy), path, line, "pilot domains missing: healthcare")


def test_duplicate_domain(copy: Path) -> None:
    path = copy / "domains.yaml"
    line = _edit(path, "  - slug: healthcare\n", "  - slug: elderly-care\n")
    _assert_error(_error(copy), path, line, "duplicate domain 'elderly-care'")


def test_domain_in_unknown_category(copy: Path) -> None:
    path = copy / "domains.yaml"
    line = _edit(path, "    category: economy\n", "    category: economics\n")
    _assert_error(_error(copy), path, line, "unknown category 'economics'")


def test_duplicate_district(copy: Path) -> None:
    path = copy / "districts.yaml"
    line = _edit(path, "{slug: nansha,", "{slug: tianhe,")
    _assert_error(_error(copy), path, line, "duplicate district 'tianhe'")


def test_list_may_not_shadow_districts(copy: Path) -> None:
    path = copy / "lists.yaml"
    line = _edit(path, "  tech_field:\n", "  districts:\n")
    _assert_error(_error(copy), path, line, "reserved")


def test_unquoted_number_as_enum_value(copy: Path) -> None:
    path = copy / "lists.yaml"
    line = _edit(path, "{value: B,", "{value: 2,")
    _assert_error(_error(copy), path, line, "lists.industry[1].value", "string")


def test_unsafe_tag_is_refused(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    line = _edit(path, "slug: taxpayer\n", "slug: !!python/name:os.system taxpayer\n")
    _assert_error(_error(copy), path, line, "unsupported value")


def test_empty_and_missing_files(copy: Path) -> None:
    (copy / "groups" / "taxpayer.yaml").write_text("# nothing yet\n", encoding="utf-8")
    _assert_error(_error(copy), copy / "groups" / "taxpayer.yaml", 1, "empty")
    (copy / "groups" / "taxpayer.yaml").unlink()
    (copy / "lists.yaml").unlink()
    _assert_error(_error(copy), copy / "lists.yaml", 1, "not found")


def test_a_new_attribute_is_a_data_change(copy: Path) -> None:
    path = copy / "groups" / "taxpayer.yaml"
    with path.open("a", encoding="utf-8") as f:
        f.write(
            "  - name: registered_on\n    type: date\n    required: false\n"
            "    label: {zh-CN: 登记日期, zh-HK: 登記日期, en: Registration date}\n"
        )
    group = load_catalogue(copy).groups["taxpayer"]
    clean, errors = group.validate({"district": "huadu", "taxpayer_type": "general", "registered_on": "2024-03-01"})
    assert errors == [] and clean["registered_on"] == "2024-03-01"
