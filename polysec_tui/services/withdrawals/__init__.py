"""Withdrawals: screening by IP address and behaviour (`screening`), the review queue
where officers claim and decide (`review`), the destination blocklist (`blocklist`) and
the account holds that stop approvals (`holds`)."""
