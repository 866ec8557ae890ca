"""The 18-digit resident identity number (公民身份号码, GB 11643-1999) and its ISO 7064 MOD 11-2 check."""

from datetime import date

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"


def normalise_id_number(raw: str) -> str:
    """Strip spaces and upper-case the trailing x."""
    return raw.strip().upper()


def id_number_problem(id_number: str) -> str | None:
    """Why an identity number is invalid, or None when it is valid. Never echoes the number."""
    # isascii: str.isdigit and int() take ٠ and ０ too, which would register the same number twice.
    digits = id_number[:17]
    if (
        len(id_number) != 18
        or not (digits.isascii() and digits.isdigit())
        or id_number[17] not in "0123456789X"
    ):
        return "An identity number has 17 digits followed by a digit or X."
    try:
        date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return "The birth date inside the identity number is not a real date."
    total = sum(int(digit) * weight for digit, weight in zip(id_number[:17], WEIGHTS, strict=True))
    if CHECK_CHARS[total % 11] != id_number[17]:
        return "The identity number's check character does not match (GB 11643)."
    return None


def birth_date_of(id_number: str) -> date:
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def sex_of(id_number: str) -> str:
    """Odd sequence digit: male; even: female."""
    return "male" if int(id_number[16]) % 2 else "female"


def mask_id_number(id_number: str | None) -> str | None:
    """Keep the region code and the last four: `110105********002X`."""
    if not id_number:
        return None
    return f"{id_number[:6]}********{id_number[-4:]}"
