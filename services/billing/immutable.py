"""Rows written once and never changed: receipts, invoices and their lines. A correction is a new row
(a new receipt, an invoice that supersedes the old), so an update or delete through the ORM is a bug
and raises before any SQL is sent. (The test wipe deletes with Core statements, which pass.)"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper


class RowImmutable(RuntimeError):
    """An immutable row (receipt, invoice) was about to be updated or deleted."""


def refuse_changes(model: type[Any]) -> None:
    """Make every row of `model` refuse updates and deletes from the moment it is written."""

    def refuse(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
        raise RowImmutable(f"{model.__tablename__} rows are immutable: write a new one instead")

    event.listen(model, "before_update", refuse)
    event.listen(model, "before_delete", refuse)
