"""PII columns hold only ciphertext; tampering gives a clear error naming the place."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from polysec_tui.crypto.fields import DecryptionError
from polysec_tui.db.models import Account
from polysec_tui.services.clients.accounts import decrypt_pii, find_by_email
from tests.support.helpers import account, ingest

PLAINTEXTS = ["jane.doe@example.com", "Jane Doe", "+49 170 1234512", "1985-04-12",
              "Hauptstrasse 5"]


def _raw_cells(rt, table: str) -> list[object]:
    with rt.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table}")).all()
    return [cell for row in rows for cell in row]


def test_raw_tables_hold_no_plaintext_pii(runtime):
    ingest(runtime, "accounts",
           account("A1", email="jane.doe@example.com", full_name="Jane Doe",
                   address="Hauptstrasse 5, Berlin",
                   totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                   totp_enrolled_at="2025-01-02T00:00:00Z"))
    cells = _raw_cells(runtime, "accounts") + _raw_cells(runtime, "totp_enrolments")
    assert cells
    for cell in cells:
        raw = bytes(cell) if isinstance(cell, bytes | memoryview) else str(cell).encode()
        for plain in [*PLAINTEXTS, "JBSWY3DPEHPK3PXP"]:
            assert plain.encode() not in raw
            assert plain.lower().encode() not in raw.lower()


def test_lookup_by_exact_email_uses_the_blind_index(runtime):
    ingest(runtime, "accounts", account("A1", email="Jane.Doe@Example.com"), account("A2"))
    with runtime.sessions() as s:
        found = find_by_email(runtime, s, "  jane.doe@EXAMPLE.com")
        assert found is not None and found.external_id == "A1"
        assert find_by_email(runtime, s, "jane.doe@example.co") is None


def test_ciphertext_copied_to_another_row_is_refused(runtime):
    ingest(runtime, "accounts", account("A1"), account("A2"))
    with runtime.sessions() as s, s.begin():
        a1 = s.scalars(select(Account).where(Account.external_id == "A1")).one()
        a2 = s.scalars(select(Account).where(Account.external_id == "A2")).one()
        s.execute(update(Account).where(Account.id == a2.id).values(phone_enc=a1.phone_enc))
    with runtime.sessions() as s:
        a2 = s.scalars(select(Account).where(Account.external_id == "A2")).one()
        with pytest.raises(DecryptionError) as err:
            decrypt_pii(runtime, a2)
    assert str(err.value).startswith(f"cannot decrypt accounts.phone of row {a2.id}:")


def test_flipped_byte_in_the_database_is_refused(runtime):
    ingest(runtime, "accounts", account("A1"))
    with runtime.sessions() as s, s.begin():
        a1 = s.scalars(select(Account)).one()
        tampered = bytearray(a1.email_enc)
        tampered[-3] ^= 0x80
        a1.email_enc = bytes(tampered)
    with runtime.sessions() as s:
        a1 = s.scalars(select(Account)).one()
        with pytest.raises(DecryptionError, match=f"accounts.email of row {a1.id}"):
            decrypt_pii(runtime, a1)
