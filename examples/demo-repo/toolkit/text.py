"""Greedy word wrapping."""


def word_wrap(text, width):
    """Wrap ``text`` into lines of at most ``width`` characters; longer words stand alone."""
    if width < 1:
        raise ValueError("width must be positive")
    lines = []
    current = ""
    for word in text.split():
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current = current + " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines
