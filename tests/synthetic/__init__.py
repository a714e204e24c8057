"""Synthetic data (polysec_tui/synthetic): `polysec demo` and `polysec simulate`."""
