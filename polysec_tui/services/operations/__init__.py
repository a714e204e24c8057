"""Running the console's own house: encrypted, signed backups (`backups`), field key
rotation (`keys`), audit checks of the encrypted database (`audit_checks`) and of the
servers over SSH (`host_audit`)."""
