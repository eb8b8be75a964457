"""Rules for values several domains share: emails, currency codes, money, names."""

from __future__ import annotations

import enum
import functools
import math
import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import phonenumbers

from crm_graphql.services.errors import Invalid

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_AMOUNT = Decimal("999999999999.99")


def email(value: str | None, field: str = "email") -> str | None:
    """A trimmed, lower-cased email, or ``Invalid``."""
    if value is None:
        return None
    cleaned = value.strip().lower()
    if not cleaned:
        return None
    if len(cleaned) > 320 or not _EMAIL.match(cleaned):
        raise Invalid(f"`{value}` is not a valid email address", field)
    return cleaned


MAX_PHONE_LENGTH = 50  # the column's width


def phone(value: Any, field: str = "phone") -> str | None:
    """A phone number in E.164 (``+442079460000``; ``;ext=12`` after it for an
    extension) when it names its country (``+44 ...`` or ``0044 ...``) and has a possible
    length for it; otherwise the trimmed text as given (a local number this server cannot
    place in a country). Blank is None; longer than the column is ``Invalid``."""
    cleaned = optional_text(value, field, max_length=MAX_PHONE_LENGTH)
    if cleaned is None:
        return None
    international = "+" + cleaned[2:].lstrip() if cleaned.startswith("00") else cleaned
    try:
        number = phonenumbers.parse(international, None)
    except phonenumbers.NumberParseException:
        return cleaned
    if not phonenumbers.is_possible_number(number):
        return cleaned
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164};ext={number.extension}" if number.extension else e164


def required_text(value: Any, field: str, *, max_length: int = 200) -> str:
    cleaned = str(value or "").strip()
    if not cleaned:
        raise Invalid(f"`{field}` must not be blank", field)
    if len(cleaned) > max_length:
        raise Invalid(f"`{field}` is longer than {max_length} characters", field)
    return cleaned


def optional_text(value: Any, field: str, *, max_length: int = 200) -> str | None:
    if value is None:
        return None
    cleaned = str(value).strip()
    if len(cleaned) > max_length:
        raise Invalid(f"`{field}` is longer than {max_length} characters", field)
    return cleaned or None


def currency(value: str | None, field: str = "currency") -> str:
    code = (value or "").strip().upper()
    if not _CURRENCY.match(code):
        raise Invalid("Currency must be a three-letter ISO 4217 code such as EUR", field)
    return code


def amount(value: Any, field: str = "amount") -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise Invalid(f"`{field}` must be a decimal number", field) from exc
    if not number.is_finite() or number < 0:
        raise Invalid(f"`{field}` must be zero or more", field)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number's
    if number > MAX_AMOUNT or exponent < -2:
        raise Invalid(f"`{field}` allows at most 12 digits and 2 decimals", field)
    return number


def tags(values: list[str] | None, field: str = "tags") -> list[str]:
    """Trimmed, de-duplicated tags in the given order."""
    result: list[str] = []
    for value in values or []:
        tag = value.strip()
        if not tag:
            raise Invalid("Tags must not be blank", field)
        if len(tag) > 64:
            raise Invalid("A tag is at most 64 characters", field)
        if tag not in result:
            result.append(tag)
    return result


# The dates and times the API accepts, in UTC (README "Dates and times"). PostgreSQL's
# driver (asyncpg) stores Python's first and last representable instant and date as
# -infinity / infinity, and an offset can move a value of the first or last day out of
# Python's range: one day inside Python's range on each side is safe for every offset.
EARLIEST_DATE = date(1, 1, 2)
LATEST_DATE = date(9999, 12, 30)
EARLIEST = datetime.combine(EARLIEST_DATE, time.min, UTC)
LATEST = datetime.combine(LATEST_DATE, time.max, UTC)
_RANGE = "between 0001-01-02T00:00:00Z and 9999-12-30T23:59:59.999999Z"
_DATE_RANGE = "between 0001-01-02 and 9999-12-30"


def aware_datetime(value: Any, field: str) -> datetime:
    """A timezone-aware instant in the accepted range, converted to UTC; a naive one is
    ambiguous, so ``Invalid``."""
    if not isinstance(value, datetime):
        raise Invalid(f"`{field}` must be a date and time", field)
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"`{field}` needs a timezone offset, e.g. 2025-01-31T09:00:00Z", field)
    return instant(value, field)


def instant(value: datetime, field: str) -> datetime:
    """``value`` in UTC when it lies in the accepted range (a naive value is read as UTC,
    as filters allow), else ``Invalid``."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # an offset moved it out of Python's range
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise Invalid(f"`{field}` must be {_RANGE}", field)
    return utc


def calendar_date(value: Any, field: str) -> date:
    """A date (not a date and time) in the accepted range, else ``Invalid``."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise Invalid(f"`{field}` must be a date (YYYY-MM-DD)", field)
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise Invalid(f"`{field}` must be {_DATE_RANGE}", field)
    return value


def stored_instant(value: datetime) -> datetime:
    """A stored instant as clients see it (answers and cursors): with its offset. The
    only naive values the database driver returns are its readings of -infinity and
    infinity (Python's first and last instant), shown as those instants in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# JSON values (custom fields, preferences, order items) keep whole numbers that JSON
# parsers read exactly: 64 bits, signed or not (README "JSON values").
_JSON_INT_MIN = -(2**63)
_JSON_INT_MAX = 2**64 - 1


def json_value(value: Any, field: str) -> Any:
    """``value`` when every number in it is a finite float or a whole number of 64 bits,
    else ``Invalid`` (walked without recursion: the nesting is limited elsewhere)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list | tuple):
            stack.extend(current)
        elif isinstance(current, bool):
            continue
        elif isinstance(current, int):
            if not _JSON_INT_MIN <= current <= _JSON_INT_MAX:
                raise Invalid(
                    f"`{field}` holds a whole number outside the 64-bit range "
                    f"({_JSON_INT_MIN} to {_JSON_INT_MAX}); send it as a string",
                    field,
                )
        elif isinstance(current, float) and not math.isfinite(current):
            raise Invalid(f"`{field}` holds a number that is not finite", field)
    return value


E = TypeVar("E", bound=enum.Enum)


def choice(enum_cls: type[E], value: Any, field: str) -> E:
    """One member of ``enum_cls``, given as the member or its value."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_cls)
        raise Invalid(f"`{field}` must be one of: {allowed}", field) from None


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: str | None, field: str = "timeZone") -> zoneinfo.ZoneInfo:
    """The IANA time zone a caller names (UTC when not given), else ``Invalid``. Only the
    names of the time zone database count (no file paths, no empty or NUL names)."""
    if name is None:
        name = "UTC"
    if name not in _known_zones():
        raise Invalid(f"`{field}` must be an IANA time zone name, such as Europe/Berlin", field)
    return zoneinfo.ZoneInfo(name)


def utc_month_start(value: datetime) -> datetime:
    """The start of ``value``'s calendar month in UTC."""
    value = value.astimezone(UTC)
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def utc_next_month(value: datetime) -> datetime:
    """The start of the UTC calendar month after ``value``'s."""
    return utc_month_start(utc_month_start(value) + timedelta(days=32))


def nearest_utc_month_start(value: datetime) -> datetime:
    """The UTC month start closest to ``value`` (a month boundary in any time zone is within
    hours of one)."""
    earlier = utc_month_start(value)
    later = utc_next_month(value)
    return earlier if value - earlier <= later - value else later
