"""Operations (services/operations, backup): backups, keys, audit checks, hosts, bastion."""
