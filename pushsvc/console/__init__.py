"""The department console (`/console`): pages for staff who draft, review, publish and follow
policies, keep their roster and read their figures. Importing this package registers its pages."""

from pushsvc.console import (  # noqa: F401  (each module registers its pages)  # noqa: F401  (compose and review)  # noqa: F401  (following policies, figures)  # noqa: F401  (the roster, its import, the audit log)
    account,
    audit_pages,
    drafts,
    figures_pages,
    home,
    policy_pages,
    questions_pages,
    review_pages,
    roster_pages,
    settings_pages,
    sign_in,
    staff_pages,
    static,
)
