"""Clients (services/clients): 2FA resets, protection and incidents, services and console."""
