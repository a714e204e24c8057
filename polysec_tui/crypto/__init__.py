"""Keyring, AES-256-GCM field encryption and blind indexes. No primitive is written here:
everything cryptographic comes from the `cryptography` package."""
