"""The server-made SVG charts and the report's pure arithmetic: valid SVG, lengths proportional to
the values, empty data said plainly, labels escaped; reasons, percentiles and periods."""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from datetime import date, datetime, timezone

import pytest

from pushsvc.core.charts import Group, Series, bar_groups, stacked_columns
from pushsvc.core.errors import ValidationFailed
from pushsvc.core.figures import failure_reason, parse_period, percentile
from pushsvc.core.messages import Outcome
from pushsvc.core.retry import ledger_update

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))  # raises if the SVG is not well-formed XML
    assert root.tag == f"{SVG}svg" and float(root.get("width", 0)) > 0 and float(root.get("height", 0)) > 0
    assert root.find(f"{SVG}title") is not None and root.get("role") == "img"
    assert "style=" not in str(markup)  # the strict CSP forbids style attributes
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in (r.get("class") or "").split()]


def test_bar_groups_are_proportional_and_classed() -> None:
    stages = [Series("matched", "stage-matched"), Series("sent", "stage-sent"), Series("failed", "stage-failed")]
    root = parse(bar_groups("Funnel", stages, [Group("policy A", [40, 30, 10]), Group("policy B", [20, 0, 5])], empty="none"))
    widths = [float(r.get("width", -1)) for r in bars(root)]
    assert len(widths) == 5  # the zero draws no bar
    for w, v in zip(widths, [40, 30, 10, 20, 5]):
        assert w == pytest.approx(widths[0] * v / 40, abs=0.01)
    assert [t.text for t in root.iter(f"{SVG}text")].count("0") == 1  # but says 0
    assert [r.get("class") for r in bars(root)][:3] == ["bar stage-matched", "bar stage-sent", "bar stage-failed"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "policy A" in texts and "matched" in texts and "40" in texts


def test_stacked_columns_stack_to_the_day_total() -> None:
    series = [Series("email", "channel-email"), Series("sms", "channel-sms")]
    root = parse(stacked_columns("Per day", series, ["11-27", "11-28", "11-29"], [[10, 0, 5], [10, 0, 0]], empty="none"))
    rects = bars(root)
    assert len(rects) == 3  # zero values draw nothing
    heights = [float(r.get("height", 0)) for r in rects]
    assert heights[0] == pytest.approx(heights[1]) and heights[2] == pytest.approx(heights[0] / 2)
    # The day's second series sits on top of its first.
    assert float(rects[1].get("y", 0)) + heights[1] == pytest.approx(float(rects[0].get("y", 0)))


@pytest.mark.parametrize("chart", [
    lambda: bar_groups("Empty", [Series("a", "x")], [], empty="暂无数据"),
    lambda: bar_groups("Zeros", [Series("a", "x")], [Group("g", [0])], empty="暂无数据"),
    lambda: stacked_columns("Empty", [Series("a", "x")], [], [[]], empty="暂无数据"),
    lambda: stacked_columns("Zeros", [Series("a", "x")], ["d"], [[0]], empty="暂无数据"),
])
def test_empty_data_says_so(chart: object) -> None:
    root = parse(chart())  # type: ignore[operator]
    assert not bars(root) and any(t.text == "暂无数据" for t in root.iter(f"{SVG}text"))


def test_labels_are_escaped_and_long_ones_cut() -> None:
    nasty = '<i>"x"</i> & co'
    long_title = "关于支持中小微企业稳岗扩岗和高校毕业生就业创业的若干措施"
    markup = bar_groups(nasty, [Series('"><b>', 'c" onload="x')], [Group(nasty, [1]), Group(long_title, [2])], empty="")
    assert "<i>" not in markup and "<b>" not in markup and 'onload="x"' not in markup
    root = parse(markup)
    assert root.get("aria-label") == nasty  # escaped in the markup, intact once parsed
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert nasty in texts
    cut = next(t for t in texts if t.startswith("关于"))
    assert cut.endswith("…") and len(cut) < len(long_title)
    assert any(long_title in (t.text or "") for t in root.iter(f"{SVG}title"))  # whole on hover


def test_failure_reasons_group_and_only_exhausted_temporary_ones_retry() -> None:
    at = datetime(2026, 11, 28, tzinfo=timezone.utc)
    # Pinned to core/retry.py: what it writes when a temporary failure runs out of attempts.
    gave_up = ledger_update(Outcome(1, "retry", "451 4.3.0 try again later"), 6, 6, at, 1, 2)
    assert gave_up["new_status"] == "failed"
    assert failure_reason(gave_up["new_error"]) == ("gave up: 451 4.3.0", True)
    assert failure_reason("550 5.1.1 mailbox unavailable") == ("550 5.1.1", False)
    assert failure_reason("isv.MOBILE_NUMBER_ILLEGAL: illegal mobile number") == ("isv.MOBILE_NUMBER_ILLEGAL", False)
    assert failure_reason("not delivered: UNDELIV") == ("not delivered: UNDELIV", False)
    assert failure_reason("43101 user refuse to accept the msg") == ("43101", False)
    assert failure_reason("gateway unreachable: ClientConnectorError Cannot connect to host") == ("gateway unreachable", False)
    assert failure_reason("unsubscribed before sending") == ("unsubscribed before sending", False)
    assert failure_reason(None) == ("unknown", False)
    assert len(failure_reason("x" * 500)[0]) <= 60


def test_percentiles_match_percentile_cont() -> None:
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3, 5.8])
    assert percentile(values, 0.5) == pytest.approx(statistics.median(values))
    inclusive = statistics.quantiles(values, n=20, method="inclusive")  # PERCENTILE.INC, percentile_cont
    assert percentile(values, 0.95) == pytest.approx(inclusive[-1])
    assert percentile([], 0.5) is None and percentile([7.0], 0.95) == 7.0


def test_period_defaults_and_errors_name_the_field() -> None:
    today = date(2026, 11, 28)
    assert parse_period(None, "", today) == (date(2026, 1, 1), today)
    assert parse_period("2026-03-01", "2026-03-01", today) == (date(2026, 3, 1), date(2026, 3, 1))
    for raw_from, raw_to, field in [("2026-13-01", None, "from"), ("20260101", None, "from"), (None, "soon", "to"),
                                    ("2026-05-02", "2026-05-01", "to"), ("0001-01-01", None, "from"),
                                    (None, "9999-12-31", "to")]:
        with pytest.raises(ValidationFailed) as caught:
            parse_period(raw_from, raw_to, today)
        assert [e.field for e in caught.value.errors] == [field]
