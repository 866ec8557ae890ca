"""`patientflow catalogue check`: a catalogue file checked offline, as an upload would be."""

from pathlib import Path

import pytest

from patientflow.cli import main
from services.billing.config import CATALOGUE_PATH


def test_the_seed_file_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue", "check", str(CATALOGUE_PATH)]) == 0
    assert "every row valid" in capsys.readouterr().out


def test_every_bad_line_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = CATALOGUE_PATH.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",registration,", ",surgery,")
    lines[5] = lines[5].replace(",2500,", ",25.00,")
    bad = tmp_path / "catalogue.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["catalogue", "check", str(bad)]) == 1
    printed = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1:3] for line in printed] == [["3", " category"], ["6", " price_fen"]]
    assert main(["catalogue", "check", str(tmp_path / "missing.csv")]) == 2
