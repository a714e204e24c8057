"""polysec: the security-operations console of the POLYCOIN exchange."""

__version__ = "0.1.0"
