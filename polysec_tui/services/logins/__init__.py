"""Logins: anomaly detection over the login events (`anomalies`) and an account's story
as one timeline (`timeline`)."""
