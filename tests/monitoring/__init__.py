"""Monitoring (services/monitoring): the dashboard, `polysec status`, the live dashboard,
the detector service (`polysec watch`)."""
