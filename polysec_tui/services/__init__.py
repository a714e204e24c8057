"""Use cases. Services take a `Runtime` and never import `textual`."""
