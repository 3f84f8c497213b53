"""Live reach: the preview's counts from an in-memory index of audience data (roaring bitmaps),
equal to the SQL matcher's and kept current from the database's change log. Layer: below
`pushsvc.services` (which holds it), above `pushsvc.channels` (it imports only store and core)."""
