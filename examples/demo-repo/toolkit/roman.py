"""Roman numerals from 1 to 3999."""

SYMBOLS = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]
MAX_VALUE = 3999


def to_roman(number):
    if not isinstance(number, int) or number < 1 or number > MAX_VALUE:
        raise ValueError(f"{number!r} is not an integer from 1 to {MAX_VALUE}")
    parts = []
    for value, symbol in SYMBOLS:
        while number >= value:
            parts.append(symbol)
            number -= value
    return "".join(parts)


def from_roman(numeral):
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, char in enumerate(numeral):
        if char not in values:
            raise ValueError(f"{char!r} is not a roman digit")
        value = values[char]
        if i + 1 < len(numeral) and values.get(numeral[i + 1], 0) > value:
            total -= value
        else:
            total += value
    if to_roman(total) != numeral:
        raise ValueError(f"{numeral!r} is not a canonical roman numeral")
    return total
