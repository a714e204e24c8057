"""Officers: who may do what (`auth`), logins, sessions and step-up codes (`sessions`),
the officer registry and its privilege grants (`registry`), the four-eyes requests
every domain opens (`approvals`) and the hash-chained audit log (`auditlog`)."""
