"""Printed documents carry Chinese text that a reader can extract back, and fail clearly without a font."""

import io
from datetime import UTC, datetime

import pypdf
import pytest

from kit.pdf import FontMissing, PdfDocument, TableColumn, cjk_font_path


def _text_of(document: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(document)).pages)


def test_chinese_names_and_units_come_back_out_of_the_pdf() -> None:
    document = PdfDocument(title="检验报告单", created_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    document.fields([("姓名", "张三"), ("科室", "心内科")])
    document.table(
        [TableColumn("项目", 3), TableColumn("结果", 1, "RIGHT"), TableColumn("单位", 1)],
        [("血红蛋白", "135", "g/L"), ("肌酐", "88", "μmol/L")],
    )
    text = _text_of(document.to_bytes())
    for expected in ("检验报告单", "张三", "心内科", "血红蛋白", "135", "g/L", "肌酐", "μmol/L"):
        assert expected in text


def test_a_reprint_of_the_same_record_is_byte_identical() -> None:
    def render() -> bytes:
        document = PdfDocument(title="一日清单", created_at=datetime(2026, 12, 1, tzinfo=UTC))
        document.line("床位费 50.00")
        return document.to_bytes()

    assert render() == render()


def test_long_tables_flow_onto_further_pages() -> None:
    document = PdfDocument(title="一日清单")
    document.table(
        [TableColumn("项目"), TableColumn("金额", align="RIGHT")],
        [(f"药品{i}", f"{i}.00") for i in range(120)],
    )
    reader = pypdf.PdfReader(io.BytesIO(document.to_bytes()))
    assert len(reader.pages) > 1
    assert "药品119" in _text_of(document.to_bytes())


def test_a_host_without_the_font_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATIENTFLOW_PDF_FONT", "/nonexistent/font.ttc")
    with pytest.raises(FontMissing, match="fonts-wqy-microhei"):
        cjk_font_path()
    with pytest.raises(FontMissing):
        PdfDocument(title="报告")


def test_a_rare_character_outside_the_common_set_still_renders() -> None:
    """Names can hold hanzi beyond GB 2312 (堃, 喆, 犇): they come from the whole font, not as boxes."""
    document = PdfDocument(title="检验报告单")
    document.fields([("姓名", "王堃喆"), ("单位", "μmol/L")])
    text = _text_of(document.to_bytes())
    assert "王堃喆" in text and "μmol/L" in text
