"""The platform feed: validation of every field of every event (`records`) and the
streamed, idempotent ingest into the platform tables (`ingest`)."""
