"""Logins (services/logins): anomaly detection and the account timeline, services and console."""
