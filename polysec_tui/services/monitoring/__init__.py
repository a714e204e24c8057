"""Watching live: the dashboard's figures (`dashboard`), unacknowledged high-severity
alerts (`alerts`) and the cheap change probe the console polls (`live`)."""
