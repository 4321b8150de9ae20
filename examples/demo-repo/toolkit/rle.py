"""Run-length encoding of strings: 'aaab' <-> '3a1b'."""


def rle_encode(text):
    if not text:
        return ""
    pieces = []
    current, count = text[0], 1
    for char in text[1:]:
        if char == current:
            count += 1
        else:
            pieces.append(f"{count}{current}")
            current, count = char, 1
    pieces.append(f"{count}{current}")
    return "".join(pieces)


def rle_decode(encoded):
    result = []
    digits = ""
    for char in encoded:
        if char.isdigit():
            digits += char
        else:
            if not digits:
                raise ValueError(f"missing count before {char!r}")
            result.append(char * int(digits))
            digits = ""
    if digits:
        raise ValueError("encoded text ends with a count")
    return "".join(result)
