"""The canonical model's `Contact` and `Invoice` (stream `contacts` and
`invoices`), with the same JSON shape as the Rust SDK's `nexo_sdk::model`:
snake_case fields, absent optionals left out, amounts as decimal strings
(a JSON number is refused), unknown top-level fields kept in `extra`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from .errors import Rejected

#: Decimal places of each known currency's minor unit (as the Rust model).
CURRENCY_MINOR_UNITS: dict[str, int] = {
    code: 2
    for code in (
        "AED ARS AUD BRL CAD CHF CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR KES MAD MXN "
        "MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RUB SAR SEK SGD THB TRY TWD UAH USD ZAR"
    ).split()
} | {"CLP": 0, "ISK": 0, "JPY": 0, "KRW": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3}


class ModelError(Rejected):
    """A payload that does not fit the model; names the field."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}")
        self.field = field_path


@dataclass
class ExternalRef:
    system: str
    id: str

    def to_json(self) -> dict[str, Any]:
        return {"system": self.system, "id": self.id}

    @classmethod
    def from_json(cls, data: Any, at: str) -> "ExternalRef":
        obj = _object(data, at)
        return cls(_text(obj, "system", at, required=True), _text(obj, "id", at, required=True))  # type: ignore[arg-type]


@dataclass
class Address:
    lines: list[str] = field(default_factory=list)
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, data: Any, at: str) -> "Address":
        obj = _object(data, at)
        country = _text(obj, "country", at)
        if country is not None and not (len(country) == 2 and country.isascii() and country.isupper()):
            raise ModelError(f"{at}.country", f"{country!r} is not an ISO 3166-1 alpha-2 code (e.g. \"DE\")")
        return cls(
            lines=[str(x) for x in obj.get("lines", [])],
            city=_text(obj, "city", at),
            region=_text(obj, "region", at),
            postal_code=_text(obj, "postal_code", at),
            country=country,
        )


@dataclass
class PartyRef:
    """Who an invoice is addressed to: `kind` is `contact` or `company`."""

    kind: str
    system: str
    id: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "system": self.system, "id": self.id}

    @classmethod
    def from_json(cls, data: Any, at: str) -> "PartyRef":
        obj = _object(data, at)
        kind = obj.get("kind")
        if kind not in ("contact", "company"):
            raise ModelError(f"{at}.kind", f"must be \"contact\" or \"company\", not {kind!r}")
        ref = ExternalRef.from_json(obj, at)
        return cls(kind, ref.system, ref.id)


_CONTACT_FIELDS = (
    "id external_refs first_name last_name email phone job_title company address roles updated_at"
).split()


@dataclass
class Contact:
    """A person (stream `contacts`)."""

    id: str | None = None
    external_refs: list[ExternalRef] = field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    job_title: str | None = None
    company: ExternalRef | None = None
    address: Address | None = None
    roles: list[str] = field(default_factory=list)
    updated_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "Contact":
        obj = _object(data, "contact")
        return cls(
            id=_text(obj, "id", ""),
            external_refs=[ExternalRef.from_json(r, f"external_refs[{i}]") for i, r in enumerate(obj.get("external_refs", []))],
            first_name=_text(obj, "first_name", ""),
            last_name=_text(obj, "last_name", ""),
            email=_text(obj, "email", ""),
            phone=_text(obj, "phone", ""),
            job_title=_text(obj, "job_title", ""),
            company=ExternalRef.from_json(obj["company"], "company") if obj.get("company") is not None else None,
            address=Address.from_json(obj["address"], "address") if obj.get("address") is not None else None,
            roles=sorted(set(_roles(obj.get("roles", [])))),
            updated_at=_text(obj, "updated_at", ""),
            extra={k: v for k, v in obj.items() if k not in _CONTACT_FIELDS},
        )

    def to_json(self) -> dict[str, Any]:
        out = _compact(
            {
                "id": self.id,
                "external_refs": [r.to_json() for r in self.external_refs],
                "first_name": self.first_name,
                "last_name": self.last_name,
                "email": self.email,
                "phone": self.phone,
                "job_title": self.job_title,
                "company": self.company.to_json() if self.company else None,
                "address": self.address.to_json() if self.address else None,
                "roles": sorted(set(self.roles)),
                "updated_at": self.updated_at,
            }
        )
        return {**self.extra, **out}


@dataclass
class InvoiceLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    line_amount: Decimal
    discount: Decimal = Decimal(0)
    tax_rate: Decimal = Decimal(0)
    account_code: str | None = None
    product: ExternalRef | None = None

    def expected_amount(self, currency: str) -> Decimal:
        return round_money(self.quantity * self.unit_price - self.discount, currency)

    def tax_amount(self, currency: str) -> Decimal:
        return round_money(self.line_amount * self.tax_rate / 100, currency)

    @classmethod
    def from_json(cls, data: Any, at: str) -> "InvoiceLine":
        obj = _object(data, at)
        return cls(
            description=_text(obj, "description", at) or "",
            quantity=_decimal(obj, "quantity", at, required=True),
            unit_price=_decimal(obj, "unit_price", at, required=True),
            line_amount=_decimal(obj, "line_amount", at, required=True),
            discount=_decimal(obj, "discount", at),
            tax_rate=_decimal(obj, "tax_rate", at),
            account_code=_text(obj, "account_code", at),
            product=ExternalRef.from_json(obj["product"], f"{at}.product") if obj.get("product") is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {
                "description": self.description,
                "quantity": str(self.quantity),
                "unit_price": str(self.unit_price),
                "discount": str(self.discount),
                "tax_rate": str(self.tax_rate),
                "line_amount": str(self.line_amount),
                "account_code": self.account_code,
                "product": self.product.to_json() if self.product else None,
            },
            keep=("description",),
        )


_INVOICE_FIELDS = (
    "id external_refs number customer issue_date due_date currency status reference lines "
    "subtotal total_tax total updated_at"
).split()
INVOICE_STATUSES = ("draft", "submitted", "authorised", "paid", "voided")


@dataclass
class Invoice:
    """A sales invoice (stream `invoices`)."""

    customer: PartyRef
    issue_date: str
    currency: str
    status: str
    subtotal: Decimal
    total_tax: Decimal
    total: Decimal
    lines: list[InvoiceLine] = field(default_factory=list)
    id: str | None = None
    external_refs: list[ExternalRef] = field(default_factory=list)
    number: str | None = None
    due_date: str | None = None
    reference: str | None = None
    updated_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "Invoice":
        """Parse (shape only; see `validate` for the arithmetic)."""
        obj = _object(data, "invoice")
        currency = _text(obj, "currency", "", required=True) or ""
        if currency not in CURRENCY_MINOR_UNITS:
            raise ModelError("currency", f"{currency!r} is not a known ISO 4217 code")
        status = _text(obj, "status", "", required=True)
        if status not in INVOICE_STATUSES:
            raise ModelError("status", f"must be one of {', '.join(INVOICE_STATUSES)}, not {status!r}")
        if "customer" not in obj:
            raise ModelError("customer", "is required")
        return cls(
            customer=PartyRef.from_json(obj["customer"], "customer"),
            issue_date=_date(obj, "issue_date", required=True) or "",
            currency=currency,
            status=status,
            subtotal=_decimal(obj, "subtotal", "", required=True),
            total_tax=_decimal(obj, "total_tax", "", required=True),
            total=_decimal(obj, "total", "", required=True),
            lines=[InvoiceLine.from_json(line, f"lines[{i}]") for i, line in enumerate(obj.get("lines", []))],
            id=_text(obj, "id", ""),
            external_refs=[ExternalRef.from_json(r, f"external_refs[{i}]") for i, r in enumerate(obj.get("external_refs", []))],
            number=_text(obj, "number", ""),
            due_date=_date(obj, "due_date"),
            reference=_text(obj, "reference", ""),
            updated_at=_text(obj, "updated_at", ""),
            extra={k: v for k, v in obj.items() if k not in _INVOICE_FIELDS},
        )

    def validate(self) -> None:
        """Raise `ModelError` (a `Rejected`) naming the first field whose
        arithmetic or content is wrong."""
        if self.due_date is not None and self.due_date < self.issue_date:
            raise ModelError("due_date", f"{self.due_date} is before the issue date {self.issue_date}")
        for i, line in enumerate(self.lines):
            at = f"lines[{i}]"
            if not line.description.strip() and line.product is None:
                raise ModelError(f"{at}.description", "must not be empty")
            if line.discount < 0 or line.tax_rate < 0:
                raise ModelError(f"{at}.{'discount' if line.discount < 0 else 'tax_rate'}", "must not be negative")
            expected = line.expected_amount(self.currency)
            if line.line_amount != expected:
                raise ModelError(f"{at}.line_amount", f"is {line.line_amount} but quantity × unit_price − discount gives {expected}")
        lines_sum = sum((line.line_amount for line in self.lines), Decimal(0))
        if self.subtotal != lines_sum:
            raise ModelError("subtotal", f"is {self.subtotal} but the sum of the line amounts is {lines_sum}")
        if not is_exact(self.total_tax, self.currency):
            raise ModelError("total_tax", f"{self.total_tax} has more decimals than {self.currency} allows")
        if self.total != self.subtotal + self.total_tax:
            raise ModelError("total", f"is {self.total} but subtotal + total_tax is {self.subtotal + self.total_tax}")

    def to_json(self) -> dict[str, Any]:
        out = _compact(
            {
                "id": self.id,
                "external_refs": [r.to_json() for r in self.external_refs],
                "number": self.number,
                "customer": self.customer.to_json(),
                "issue_date": self.issue_date,
                "due_date": self.due_date,
                "currency": self.currency,
                "status": self.status,
                "reference": self.reference,
                "lines": [line.to_json() for line in self.lines],
                "subtotal": str(self.subtotal),
                "total_tax": str(self.total_tax),
                "total": str(self.total),
                "updated_at": self.updated_at,
            },
            keep=("lines",),
        )
        return {**self.extra, **out}


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded to the currency's minor unit, halves away from zero."""
    return amount.quantize(Decimal(1).scaleb(-CURRENCY_MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def is_exact(amount: Decimal, currency: str) -> bool:
    exponent = amount.normalize().as_tuple().exponent
    return isinstance(exponent, int) and -exponent <= CURRENCY_MINOR_UNITS[currency]


def _object(data: Any, at: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ModelError(at or "(payload)", "must be a JSON object")
    return data


def _path(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name


def _text(obj: dict[str, Any], name: str, at: str, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ModelError(_path(at, name), "is required")
        return None
    if not isinstance(value, str):
        raise ModelError(_path(at, name), f"must be a string, not {type(value).__name__}")
    return value


def _decimal(obj: dict[str, Any], name: str, at: str, required: bool = False) -> Decimal:
    value = obj.get(name)
    if value is None:
        if required:
            raise ModelError(_path(at, name), "is required")
        return Decimal(0)
    if not isinstance(value, str):
        raise ModelError(_path(at, name), "must be a decimal string such as \"12.50\", not a JSON number")
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise ModelError(_path(at, name), f"{value!r} is not a decimal number") from None
    if not parsed.is_finite():
        raise ModelError(_path(at, name), f"{value!r} is not a finite number")
    return parsed


def _date(obj: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = _text(obj, name, "", required)
    if value is None:
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ModelError(name, f"{value!r} is not a date (YYYY-MM-DD)") from None
    if len(value) != 10:
        raise ModelError(name, f"{value!r} is not a date (YYYY-MM-DD)")
    return value


def _roles(values: Any) -> list[str]:
    if not isinstance(values, list) or any(v not in ("customer", "supplier") for v in values):
        raise ModelError("roles", "must be a list of \"customer\" and \"supplier\"")
    return list(values)


def _compact(data: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Drop absent values and empty lists (as `skip_serializing_if`)."""
    return {k: v for k, v in data.items() if k in keep or (v is not None and v != [])}
