"""Uploaded CSV files (pass and status imports): odd line endings are read, broken files are
refused with a reason (schemathesis once found a lone CR turning into a server error)."""

from __future__ import annotations

import pytest

from server.control import ControlError, read_csv


def test_crlf_and_lone_cr_line_endings_are_read():
    for text in ("kind,subject\r\nresident,p_1\r\n", "kind,subject\rresident,p_1\r", "kind,subject\nresident,p_1\n"):
        header, rows = read_csv(text, 10)
        assert header == ["kind", "subject"] and rows == [{"kind": "resident", "subject": "p_1"}]


def test_a_stray_carriage_return_in_a_field_does_not_break_the_reader():
    header, rows = read_csv('kind,subject\r\n"resident\r",p_1\r\n', 10)
    assert rows[0]["subject"] == "p_1"


def test_malformed_csv_is_a_clear_refusal():
    with pytest.raises(ControlError, match="not a readable CSV"):
        read_csv("kind,subject\n" + "x" * 200_000 + ",p_1\n", 10)  # a field over the csv module's limit


def test_row_limit():
    header, rows = read_csv("kind\n" + "resident\n" * 50, 5)
    assert len(rows) == 5
