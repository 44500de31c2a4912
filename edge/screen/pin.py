"""Make the argon2 hash of a volunteer's PIN for `screen.volunteers` in the gate config.

    python -m edge.screen.pin v01        # asks for the PIN twice, prints a YAML line

The PIN itself is never stored on the gate, only this hash.
"""

from __future__ import annotations

import getpass
import sys

MIN_PIN_DIGITS = 4


def hash_pin(pin: str) -> str:
    from argon2 import PasswordHasher

    if len(pin) < MIN_PIN_DIGITS or not pin.isdigit():
        raise ValueError(f"a PIN is at least {MIN_PIN_DIGITS} digits")
    return PasswordHasher().hash(pin)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m edge.screen.pin OPERATOR_ID", file=sys.stderr)
        return 2
    pin = getpass.getpass("PIN: ")
    if getpass.getpass("PIN again: ") != pin:
        print("the two PINs differ", file=sys.stderr)
        return 2
    try:
        print(f'    {args[0]}: "{hash_pin(pin)}"')
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
