"""Withdrawals (services/withdrawals): screening, review and decisions, services and console."""
