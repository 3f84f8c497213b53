"""Server-rendered pages for people: the policy page, unsubscribing."""
