"""Sample subscribers for the demo and the benchmarks.

Every attribute a group requires is filled from the group's schema in the catalogue (type, allowed
values, bounds), so adding a group or an attribute to `audiences/` needs no change here. A few
tables below only make the data look like Guangzhou: district sizes, common surnames, how audience
groups overlap, who reads which channel. Generation is deterministic for a given seed and index,
and cheap: the benches make a million of these.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from pushsvc.core.catalogue import Attribute, Catalogue, Group
from pushsvc.core.identifiers import USCC_ALPHABET, uscc_check_char

# Rough shares of Guangzhou's registered businesses and residents; a district not listed weighs 1.
DISTRICT_WEIGHTS = {
    "tianhe": 16, "baiyun": 14, "panyu": 13, "haizhu": 10, "yuexiu": 9, "huangpu": 8,
    "zengcheng": 8, "huadu": 7, "liwan": 6, "nansha": 5, "conghua": 3,
}  # fmt: skip
# Administrative division codes (GB/T 2260), the 3rd to 8th characters of a USCC.
DIVISION_CODES = {
    "liwan": "440103", "yuexiu": "440104", "haizhu": "440105", "tianhe": "440106", "baiyun": "440111",
    "huangpu": "440112", "panyu": "440113", "huadu": "440114", "nansha": "440115", "conghua": "440117",
    "zengcheng": "440118",
}  # fmt: skip
CITY_DIVISION = "440100"

# How often each group is a subscriber's main group; a group not listed weighs GROUP_DEFAULT_WEIGHT.
GROUP_WEIGHTS = {
    "enterprise": 22, "market_entity": 18, "employment_social_security": 16, "tech_talent": 12,
    "taxpayer": 10, "aid_recipient": 10, "financing_enterprise": 8, "research_institution": 4,
}  # fmt: skip
GROUP_DEFAULT_WEIGHT = 10
# Groups that come together: most enterprises are also registered market entities and taxpayers.
COMPANIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "enterprise": (("market_entity", 0.8), ("taxpayer", 0.5)),
    "financing_enterprise": (("enterprise", 0.7), ("taxpayer", 0.5)),
    "market_entity": (("taxpayer", 0.4),),
    "tech_talent": (("employment_social_security", 0.3),),
    "aid_recipient": (("employment_social_security", 0.3),),
}
# Realistic skew for some enum attributes (by attribute name); others are uniform over their values.
VALUE_WEIGHTS: dict[str, dict[str, int]] = {
    "scale": {"micro": 45, "small": 35, "medium": 15, "large": 5},
    "entity_type": {"company": 55, "individual_business": 38, "partnership": 5, "cooperative": 2},
}
OPTIONAL_SHARE = 0.5  # how often an optional attribute is filled in

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高梁郑谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏方邹熊白孟秦邱侯江尹薛段雷黎史陶贺毛郝顾龚邵万覃武钱戴严莫孔汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚英华玉兰萍红鹏辉俊建国志文斌宇浩凯晨欣怡婷雪琳颖嘉乐思雨涵轩晴锦荣坤泽铭"
TRADE_NAMES = (
    "粤信", "穗达", "珠江", "华晟", "南粤", "羊城", "恒通", "越秀", "天骄", "海珠", "云山", "白鹅潭",
    "岭南", "广利", "穗丰", "宏图", "中恒", "鼎盛", "瑞丰", "汇智", "博雅", "创新", "联合", "金穗",
)  # fmt: skip
# A business word per GB/T 4754 section (the `industry` attribute's values), for company names.
INDUSTRY_WORDS = {
    "A": "农业科技", "B": "矿业", "C": "精密制造", "D": "能源", "E": "建筑工程", "F": "贸易", "G": "物流",
    "H": "餐饮管理", "I": "信息技术", "J": "投资咨询", "K": "置业", "L": "商务服务", "M": "检测技术",
    "N": "环保科技", "O": "家政服务", "P": "教育科技", "Q": "健康管理", "R": "文化传播", "S": "社会服务",
    "T": "咨询",
}  # fmt: skip
ENTITY_SUFFIXES = {"individual_business": "经营部", "partnership": "合伙企业（有限合伙）", "cooperative": "农民专业合作社"}
INSTITUTION_SUFFIXES = {"university": "大学", "institute": "研究院", "lab": "重点实验室", "new_rd_institution": "新型研发机构"}
LOCALES = (("zh-CN", 85), ("zh-HK", 10), ("en", 5))
# Mixed channels (SampleFactory(mixed_channels=True)): who reads what. Organisations read e-mail
# and their WeCom group chat; people (and one-person businesses) read SMS and their own WeChat.
ORGANISATION_CHANNELS = {"email": 35, "email;wechat": 20, "email;sms": 15, "email;sms;wechat": 10, "wechat": 10, "sms": 10}
PERSON_CHANNELS = {"sms": 30, "sms;wechat": 25, "wechat": 15, "email;sms": 15, "email": 15}
PERSONAL_ENTITY_TYPES = {"individual_business"}  # run by one person: reached on the owner's own WeChat
# Mobile ranges of the three carriers (all allocated); the other 8 digits come from the index.
PHONE_PREFIXES = ("138", "139", "150", "186", "135", "137", "158", "188")
PHONE_STRIDE = 7_654_321  # coprime with 10**8: consecutive indexes get scattered, still unique numbers
WECOM_ROBOT_WEBHOOK = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
HOME_DOMAIN = "employment-entrepreneurship"  # the demo policy's domain: a popular subscription
ALL_DOMAINS_SHARE = 0.4  # subscribers who take every domain ("*")


@dataclass(frozen=True, slots=True)
class SampleSubscriber:
    """One subscriber in the JSON shape of POST /v1/subscribers, the WeChat contacts flattened."""

    name: str
    email: str
    audiences: dict[str, dict[str, Any]]
    domains: tuple[str, ...]
    channels: tuple[str, ...]
    locale: str
    frequency: str = "immediate"
    phone: str | None = None
    wechat_openid: str | None = None
    wechat_webhook: str | None = None


Filler = Callable[[random.Random, dict[str, Any]], Any]


def uscc(index: int, division: str = CITY_DIVISION, kind: str = "91") -> str:
    """A valid, unique-per-index Unified Social Credit Code: `kind` (registration authority and
    type, 91 = enterprise), the division code, "MA" + the index in base 31, the check character."""
    digits = []
    for _ in range(7):
        index, r = divmod(index, 31)
        digits.append(USCC_ALPHABET[r])
    if index:
        raise ValueError("index too large for a sample USCC")
    body = f"{kind}{division}MA{''.join(reversed(digits))}"
    return body + uscc_check_char(body)


def _weighted(values: list[str], weights: dict[str, int] | None) -> Callable[[random.Random], str]:
    """A picker by small integer weights (1 when not given): an expanded table, since
    `random.choices` costs several times more per call and a million subscribers make many calls."""
    table = [v for v in values for _ in range((weights or {}).get(v, 1))] or values
    size = len(table)
    return lambda rng: table[int(rng.random() * size)]


def _filler(attr: Attribute, index_offset: int) -> Filler:
    """A value generator for one attribute, decided once from its schema. Values shared by name
    (district, uscc, industry...) are taken from `shared` when the attribute allows them, so one
    subscriber's groups agree with each other."""
    if attr.choices is not None:
        values = [c.value for c in attr.choices]
        weights = DISTRICT_WEIGHTS if attr.name == "district" else VALUE_WEIGHTS.get(attr.name)
        pick = _weighted(values, weights)
        allowed = set(values)

        def enum(rng: random.Random, shared: dict[str, Any]) -> Any:
            value = shared.get(attr.name)
            if value not in allowed:
                value = shared[attr.name] = pick(rng)
            return value

        return enum
    if attr.type == "string" and attr.check == "uscc":
        if attr.name == "uscc":
            return lambda rng, shared: shared["uscc"]
        # Someone else's code (an employer's): any valid one, far from the subscribers' own.
        return lambda rng, shared: uscc(index_offset + rng.randrange(1_000_000))
    if attr.type == "string":
        if attr.pattern is not None:
            raise ValueError(f"no sample value for '{attr.name}' (pattern {attr.pattern}); add one to demo_data")
        return lambda rng, shared: f"示例{attr.label.zh_CN}"
    if attr.type in ("integer", "number"):
        lo = attr.min if attr.min is not None else 0
        hi = attr.max if attr.max is not None else lo + 500
        if attr.type == "integer":
            return lambda rng, shared: rng.randint(int(lo), int(hi))
        return lambda rng, shared: round(rng.uniform(lo, hi), 1)
    if attr.type == "boolean":
        return lambda rng, shared: rng.random() < 0.3
    if attr.type == "date":
        return lambda rng, shared: (date(2016, 1, 1) + timedelta(days=rng.randrange(3650))).isoformat()
    raise ValueError(f"no sample value for attribute type '{attr.type}'")


@dataclass(frozen=True)
class _GroupPlan:
    slug: str
    required: tuple[tuple[str, Filler], ...]
    optional: tuple[tuple[str, Filler], ...]
    organisation: bool  # identified by a credit code: gets a company name and a USCC

    def attrs(self, rng: random.Random, shared: dict[str, Any]) -> dict[str, Any]:
        out = {name: fill(rng, shared) for name, fill in self.required}
        for name, fill in self.optional:
            if rng.random() < OPTIONAL_SHARE:
                out[name] = fill(rng, shared)
        return out


def _plan(group: Group) -> _GroupPlan:
    fills = [(a, _filler(a, 20_000_000)) for a in group.attributes.values()]
    return _GroupPlan(
        slug=group.slug,
        required=tuple((a.name, f) for a, f in fills if a.required),
        optional=tuple((a.name, f) for a, f in fills if not a.required),
        organisation="uscc" in group.attributes,
    )


class SampleFactory:
    """`make(i)` is the i-th sample subscriber; the same seed and sequence of calls give the same data."""

    def __init__(self, catalogue: Catalogue, *, seed: int = 2026, channels: tuple[str, ...] = ("email",),
                 domains: tuple[str, ...] | None = None, email_domain: str = "example.com",
                 mixed_channels: bool = False, robot_webhook: str = WECOM_ROBOT_WEBHOOK) -> None:
        """`domains`: the same subscriptions for everyone instead of a realistic mix.
        `mixed_channels`: each subscriber's channels drawn from ORGANISATION_CHANNELS or
        PERSON_CHANNELS instead of `channels`, with the contact each needs: a mobile number for
        SMS; for WeChat a robot webhook (a key at `robot_webhook`) for an organisation, an openid
        for a person. Without it the random stream is as before, so the benches' data stays the same."""
        self._rng = random.Random(seed)  # one stream: seeding a Random per subscriber would double the cost
        self._seed = seed
        self.channels = channels
        self.domains = domains
        self.email_domain = email_domain
        self.mixed_channels = mixed_channels
        self.robot_webhook = robot_webhook
        self._org_channels = _weighted(list(ORGANISATION_CHANNELS), ORGANISATION_CHANNELS)
        self._person_channels = _weighted(list(PERSON_CHANNELS), PERSON_CHANNELS)
        self.plans = {slug: _plan(group) for slug, group in catalogue.groups.items()}
        slugs = list(self.plans)
        self._main_group = _weighted(slugs, {s: GROUP_WEIGHTS.get(s, GROUP_DEFAULT_WEIGHT) for s in slugs})
        self._district = _weighted(list(catalogue.districts), DISTRICT_WEIGHTS)
        self._locale = _weighted([loc for loc, _ in LOCALES], dict(LOCALES))
        self._other_domains = [d for d in catalogue.domains if d != HOME_DOMAIN]

    def make(self, i: int) -> SampleSubscriber:
        rng = self._rng
        main = self._main_group(rng)
        groups = [main] + [g for g, p in COMPANIONS.get(main, ()) if g in self.plans and rng.random() < p]
        district = self._district(rng)
        shared: dict[str, Any] = {"district": district}
        organisation = self.plans[main].organisation
        if any(self.plans[g].organisation for g in groups):
            shared["uscc"] = uscc(i, DIVISION_CODES.get(district, CITY_DIVISION))
        audiences = {g: self.plans[g].attrs(rng, shared) for g in groups}
        sub = SampleSubscriber(
            name=self._org_name(rng, shared, main) if organisation else self._person_name(rng),
            email=f"{'org' if organisation else 'person'}{i:07d}@{self.email_domain}",
            audiences=audiences,
            domains=self.domains or self._domains(rng),
            channels=self.channels,
            locale=self._locale(rng),
        )
        if not self.mixed_channels:
            return sub
        personal = not organisation or shared.get("entity_type") in PERSONAL_ENTITY_TYPES
        channels = tuple((self._person_channels if personal else self._org_channels)(rng).split(";"))
        wechat = "wechat" in channels
        return replace(
            sub,
            channels=channels,
            phone=phone_number(i) if "sms" in channels else None,
            wechat_openid=self._openid(i) if wechat and personal else None,
            wechat_webhook=f"{self.robot_webhook}?key={self._robot_key(i)}" if wechat and not personal else None,
        )

    def _openid(self, i: int) -> str:
        """28 characters like the platform's (an 'o' and 27 of URL-safe base64), fixed per seed and index."""
        digest = hashlib.blake2b(f"openid:{self._seed}:{i}".encode(), digest_size=21).digest()
        return "o" + base64.urlsafe_b64encode(digest).decode()[:27]

    def _robot_key(self, i: int) -> str:
        """A UUID, as WeCom robot keys are: one robot (group chat) per organisation."""
        return str(uuid.UUID(bytes=hashlib.blake2b(f"robot:{self._seed}:{i}".encode(), digest_size=16).digest()))

    def _domains(self, rng: random.Random) -> tuple[str, ...]:
        if rng.random() < ALL_DOMAINS_SHARE:
            return ("*",)
        picked = rng.sample(self._other_domains, rng.randint(0, 3))
        return tuple(([HOME_DOMAIN] if rng.random() < 0.6 or not picked else []) + picked)

    @staticmethod
    def _person_name(rng: random.Random) -> str:
        return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))

    @staticmethod
    def _org_name(rng: random.Random, shared: dict[str, Any], main: str) -> str:
        trade = "".join(rng.sample(TRADE_NAMES, 2))
        if main == "research_institution":
            return f"广州{trade}{INSTITUTION_SUFFIXES.get(shared.get('institution_type', ''), '研究院')}"
        business = INDUSTRY_WORDS.get(shared.get("industry", ""), "实业")
        # Only a market entity's own type says it is not a company.
        suffix = ENTITY_SUFFIXES.get(shared.get("entity_type", ""), "有限公司") if main == "market_entity" else "有限公司"
        return f"广州市{trade}{business}{suffix}"


def phone_number(i: int) -> str:
    """A mainland mobile number in E.164 form, unique per index below 8 * 10**8."""
    prefix = PHONE_PREFIXES[i % len(PHONE_PREFIXES)]
    return f"+86{prefix}{(i // len(PHONE_PREFIXES) + 1) * PHONE_STRIDE % 10**8:08d}"


def samples(catalogue: Catalogue, n: int, *, start: int = 0, **factory: Any) -> Iterator[SampleSubscriber]:
    make = SampleFactory(catalogue, **factory).make
    return (make(i) for i in range(start, start + n))


def csv_header(catalogue: Catalogue) -> list[str]:
    """The import CSV's columns: contacts and lists, then `<group>.<attribute>` for every attribute."""
    columns = ["name", "email", "phone", "wechat_openid", "wechat_webhook", "domains", "channels", "frequency", "locale"]
    return columns + [f"{slug}.{name}" for slug, group in catalogue.groups.items() for name in group.attributes]


def csv_text(catalogue: Catalogue, subs: Iterable[SampleSubscriber]) -> str:
    """Subscribers as the CSV that POST /v1/subscribers/import and `pushsvc subscribers import` take."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = csv_header(catalogue)
    writer.writerow(header)
    for sub in subs:
        row: dict[str, Any] = {
            "name": sub.name, "email": sub.email, "phone": sub.phone or "", "wechat_openid": sub.wechat_openid or "",
            "wechat_webhook": sub.wechat_webhook or "", "domains": ";".join(sub.domains),
            "channels": ";".join(sub.channels), "frequency": sub.frequency, "locale": sub.locale,
        }  # fmt: skip
        for slug, attrs in sub.audiences.items():
            row.update({f"{slug}.{name}": _cell(value) for name, value in attrs.items()})
        writer.writerow([row.get(column, "") for column in header])
    return out.getvalue()


def _cell(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def demo_policy(produced_on: date, channels: tuple[str, ...] = ("email",)) -> dict[str, Any]:
    """The sample policy: a job-stabilisation subsidy for small and micro businesses in Haizhu and Tianhe."""
    districts = ["haizhu", "tianhe"]
    return {
        "title": "关于支持海珠区、天河区中小微企业稳岗扩岗的若干措施",
        "summary": "对在海珠区、天河区登记的小型、微型企业和个体工商户，按稳定岗位人数给予一次性稳岗补贴，"
                   "新吸纳高校毕业生就业的另给予扩岗补助。",
        "body": "一、补贴对象：在海珠区、天河区依法登记的小型、微型企业和个体工商户。\n"
                "二、补贴标准：按上年度末参保职工人数每人500元给予一次性稳岗补贴。\n"
                "三、申领方式：通过广东政务服务网免申即享，无需提交材料。",
        "domain": HOME_DOMAIN,
        "doc_number": f"穗人社规字〔{produced_on.year}〕3号",
        "url": "https://example.gov.cn/gzrsj/zcfg/2026/3.html",
        "interpretation_url": "https://example.gov.cn/gzrsj/zcjd/2026/3.html",
        "produced_on": produced_on.isoformat(),
        "effective_on": (produced_on + timedelta(days=10)).isoformat(),
        "expires_on": (produced_on + timedelta(days=10 + 2 * 365)).isoformat(),
        "targeting": {
            "audiences": ["enterprise", "market_entity"],
            "where": {"any": [
                {"all": [
                    {"attr": "enterprise.district", "op": "in", "value": districts},
                    {"attr": "enterprise.scale", "op": "in", "value": ["small", "micro"]},
                ]},
                {"all": [
                    {"attr": "market_entity.district", "op": "in", "value": districts},
                    {"attr": "market_entity.entity_type", "op": "eq", "value": "individual_business"},
                ]},
            ]},
        },  # fmt: skip
        "channels": list(channels),
    }
