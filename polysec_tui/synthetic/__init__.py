"""Synthetic data, never part of a real console: the seeded demo exchange (`demo`) and
live traffic with attacks streamed through ingest (`simulate`)."""
