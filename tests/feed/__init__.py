"""The platform feed (services/feed): ingest of every format, hostile input, a seeded fuzz."""
