"""The JSON API for departments and operators, described by its own OpenAPI document. Importing
the package registers every endpoint of its modules."""

from pushsvc.api import (  # noqa: F401  (each module registers its endpoints)
    audit,
    callback,
    cases,
    dead_letters,
    departments,
    drafts,
    gateways,
    health,
    metrics,
    openapi,
    policies,
    provider_callbacks,
    questions,
    render,
    reports,
    staff,
    subscribers,
    wechat_server,
)
