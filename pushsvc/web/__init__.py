"""Server-rendered pages for people: a policy's page, QR codes and posters, subscribing and
managing a subscription, a case's progress, digests, and the operator's /admin. Importing the
package registers every page of its modules."""

from pushsvc.web import (  # noqa: F401  (each module registers its pages)
    admin_pages,
    case_pages,
    check_pages,
    digest_pages,
    feedback_pages,
    feeds,
    follow_pages,
    index_pages,
    manage_pages,
    pages,
    qr_pages,
    subscribe_pages,
)
