"""The JSON API for departments and operators, described by its own OpenAPI document. Importing
the package registers every endpoint of its modules."""

from pushsvc.api import (  # noqa: F401  (each module registers its endpoints)
    audit,
    cases,
    dead_letters,
    departments,
    gateways,
    health,
    metrics,
    openapi,
    policies,
    render,
    reports,
    subscribers,
)
