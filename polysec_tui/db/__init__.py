"""SQLAlchemy 2.0 models, column types, engines and migrations (no `textual` here)."""
