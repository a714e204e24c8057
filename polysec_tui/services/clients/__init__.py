"""The exchange's clients: accounts and their masked PII (`accounts`, `masking`), the
four-eyes reset of a client's 2FA (`twofa`), freezes and lockdowns (`protection`) and
the incidents that gather a case (`incidents`)."""
