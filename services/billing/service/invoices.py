"""Invoices (发票): a settlement issues one for the lines it settles, split between the insurer and the
patient (insurance.py); an invoice is never changed (`immutable.py`). Paying the supplementary bill
(补费) after settlement issues a new invoice for the old lines plus the new ones, split again over all of
them, that supersedes the old one; the insurer pays the growth of its share, the patient the rest.
Emits `invoice.issued`."""

import uuid

from sqlmodel import Session, col, select

from services.billing.immutable import refuse_changes
from services.billing.models import CatalogueEntry, Charge, Invoice, InvoiceLine, VisitAccount
from services.billing.schemas import InvoiceLinePublic, InvoicePublic, PaymentPublic
from services.billing.service import insurance
from services.billing.service.accounts import hospital_today, known_account, record
from services.billing.service.deposits import next_serial

refuse_changes(Invoice)
refuse_changes(InvoiceLine)


def scheme_of(account: VisitAccount) -> str:
    return account.insurance_scheme or insurance.SELF_PAY


def classes_of(session: Session, charges: list[Charge]) -> dict[str, str]:
    """Each charge's insurance class from the catalogue entry it was priced from (丙 without one)."""
    entry_ids = {c.price_entry_id for c in charges if c.price_entry_id is not None}
    found: dict[int, str] = {}
    if entry_ids:
        query = select(CatalogueEntry.id, CatalogueEntry.insurance_class).where(
            col(CatalogueEntry.id).in_(entry_ids)
        )
        found = {int(entry_id): cls for entry_id, cls in session.exec(query).all() if entry_id is not None}
    return {
        c.id: found.get(c.price_entry_id, insurance.UNCOVERED_CLASS)
        if c.price_entry_id is not None
        else insurance.UNCOVERED_CLASS
        for c in charges
    }


def current_invoice(session: Session, visit_id: str) -> Invoice | None:
    """The visit's invoice no later one supersedes."""
    superseded = select(Invoice.supersedes).where(
        Invoice.visit_id == visit_id, col(Invoice.supersedes).is_not(None)
    )
    query = select(Invoice).where(Invoice.visit_id == visit_id, col(Invoice.id).not_in(superseded))
    return session.exec(query).first()


def lines_of(session: Session, invoice_id: str) -> list[InvoiceLine]:
    query = select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(col(InvoiceLine.line))
    return list(session.exec(query).all())


def split_for(
    session: Session, table: insurance.SplitTable, account: VisitAccount, charges: list[Charge]
) -> tuple[insurance.Split, Invoice | None]:
    """The split of `charges` (the lines about to be paid) together with the current invoice's lines,
    when there is one (then also returned: the invoice the new one supersedes). Deductible and cap are
    per visit, so the split of the whole is what counts, never the split of the new lines alone."""
    previous = current_invoice(session, account.visit_id)
    old = (
        [(line.insurance_class, line.amount_fen) for line in lines_of(session, previous.id)]
        if previous
        else []
    )
    classes = classes_of(session, charges)
    new = [(classes[c.id], c.amount_fen) for c in charges]
    return insurance.split(table, scheme=scheme_of(account), lines=old + new), previous


def paid_by(payment: PaymentPublic) -> dict[str, int]:
    """The money of one settlement or supplementary payment by method (zeros left out): the insurer's
    separate payment, the deposit's part, and what was handed over by the payment's own method."""
    by_method = {"insurance": payment.insurer_fen, "deposit": payment.deposit_fen}
    method = payment.method.value
    by_method[method] = by_method.get(method, 0) + payment.amount_fen - payment.deposit_fen
    return {method: fen for method, fen in by_method.items() if fen}


def issue(
    session: Session,
    account: VisitAccount,
    *,
    charges: list[Charge],
    split: insurance.Split,
    paid_by: dict[str, int],
    previous: Invoice | None,
) -> InvoicePublic:
    """Write the invoice for `charges` (plus `previous`'s lines, which it supersedes)."""
    old_lines = lines_of(session, previous.id) if previous else []
    merged = dict(previous.paid_by) if previous else {}
    for method, fen in paid_by.items():
        merged[method] = merged.get(method, 0) + fen
    invoice = Invoice(
        id=str(uuid.uuid4()),
        number=next_serial(session, f"FP{hospital_today().year}"),
        visit_id=account.visit_id,
        patient_id=account.patient_id,
        insurance_scheme=scheme_of(account),
        total_fen=split.total_fen,
        insurer_fen=split.insurer_fen,
        patient_fen=split.patient_fen,
        paid_by={method: fen for method, fen in merged.items() if fen},
        supersedes=previous.id if previous else None,
    )
    session.add(invoice)
    session.flush()
    classes = classes_of(session, charges)
    lines = [
        InvoiceLine(
            invoice_id=invoice.id,
            line=n,
            charge_id=old.charge_id,
            item_code=old.item_code,
            item_name=old.item_name,
            insurance_class=old.insurance_class,
            quantity=old.quantity,
            amount_fen=old.amount_fen,
        )
        for n, old in enumerate(old_lines, start=1)
    ] + [
        InvoiceLine(
            invoice_id=invoice.id,
            line=n,
            charge_id=c.id,
            item_code=c.item_code,
            item_name=c.item_name,
            insurance_class=classes[c.id],
            quantity=c.quantity,
            amount_fen=c.amount_fen,
        )
        for n, c in enumerate(charges, start=len(old_lines) + 1)
    ]
    session.add_all(lines)
    session.flush()
    record(
        session,
        account,
        "invoice.issued",
        {
            "invoice_id": invoice.id,
            "number": invoice.number,
            "total_fen": invoice.total_fen,
            "insurer_fen": invoice.insurer_fen,
            "patient_fen": invoice.patient_fen,
            "insurance_scheme": invoice.insurance_scheme,
            "supersedes": invoice.supersedes,
        },
    )
    return to_public(invoice, lines)


def to_public(invoice: Invoice, lines: list[InvoiceLine]) -> InvoicePublic:
    return InvoicePublic(
        **invoice.model_dump(exclude={"paid_by"}),
        paid_by=dict(invoice.paid_by),
        lines=[InvoiceLinePublic.model_validate(line, from_attributes=True) for line in lines],
    )


def list_invoices(session: Session, *, visit_id: str, acting_for: str | None) -> list[InvoicePublic]:
    """Every invoice of the visit, oldest first; `superseded_by` marks the replaced ones."""
    known_account(session, visit_id, acting_for)
    query = (
        select(Invoice)
        .where(Invoice.visit_id == visit_id)
        .order_by(col(Invoice.issued_at), col(Invoice.number))
    )
    invoices = list(session.exec(query).all())
    replaced_by = {i.supersedes: i.id for i in invoices if i.supersedes}
    return [
        to_public(i, lines_of(session, i.id)).model_copy(update={"superseded_by": replaced_by.get(i.id)})
        for i in invoices
    ]
