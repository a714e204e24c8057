"""Use cases, one package per part of the officers' work; no Textual below this line.

`runtime` (settings, engine, keyring, clock, the audit chain) is what every use case
runs on; the packages below own one domain each (see ARCHITECTURE.md)."""
