"""Server-rendered pages for people: a policy's page, QR codes and posters, subscribing and
managing a subscription, a case's progress, digests, and the operator's /admin. Importing the
package registers every page of its modules."""

from pushsvc.web import admin_pages, case_pages, digest_pages, manage_pages, pages, qr_pages, subscribe_pages  # noqa: F401  (each module registers its pages)
