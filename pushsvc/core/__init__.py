"""The domain core: models, validation, targeting and rendering. No I/O lives here."""
