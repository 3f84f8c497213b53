"""Subscriptions as people and departments make them: sign-up, proofs of a contact, a person's own
changes and data, imports, replies from phones, and the confirmation and manage-link messages.
Functions take the services and plain values, never a request."""
