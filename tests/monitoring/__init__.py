"""Monitoring (services/monitoring): the dashboard, `polysec status`, the live dashboard."""
