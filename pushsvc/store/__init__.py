"""The store: schema, migrations and queries; one code path for SQLite and PostgreSQL."""
