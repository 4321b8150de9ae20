import pytest

from toolkit import (bisect_left, find_all, from_roman, merge_intervals, rle_decode, rle_encode, to_roman,
                     total_covered, word_wrap)


def test_merge_overlapping():
    assert merge_intervals([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]


def test_merge_touching():
    assert merge_intervals([(1, 2), (3, 4)]) == [(1, 4)]


def test_merge_unsorted_and_nested():
    assert merge_intervals([(5, 9), (1, 2), (6, 7)]) == [(1, 2), (5, 9)]


def test_merge_rejects_reversed():
    with pytest.raises(ValueError):
        merge_intervals([(3, 1)])


def test_total_covered():
    assert total_covered([(1, 3), (2, 5), (10, 10)]) == 6
    assert total_covered([]) == 0


def test_rle_roundtrip():
    for text in ["", "a", "aaab", "abcd", "zzzzzzzzzzzz"]:
        assert rle_decode(rle_encode(text)) == text


def test_rle_encode():
    assert rle_encode("aaabccdddd") == "3a1b2c4d"


def test_rle_decode_multidigit():
    assert rle_decode("12x1y") == "x" * 12 + "y"


def test_rle_decode_errors():
    with pytest.raises(ValueError):
        rle_decode("a")
    with pytest.raises(ValueError):
        rle_decode("3a2")


def test_to_roman():
    assert to_roman(1) == "I"
    assert to_roman(4) == "IV"
    assert to_roman(1994) == "MCMXCIV"
    assert to_roman(3999) == "MMMCMXCIX"


def test_to_roman_range():
    for bad in (0, 4000, -1, 2.5):
        with pytest.raises(ValueError):
            to_roman(bad)


def test_from_roman():
    assert from_roman("XLII") == 42
    assert from_roman("MMXXIV") == 2024


def test_from_roman_rejects_noncanonical():
    with pytest.raises(ValueError):
        from_roman("IIII")
    with pytest.raises(ValueError):
        from_roman("AB")


def test_bisect_left():
    items = [1, 3, 3, 5, 9]
    assert bisect_left(items, 3) == 1
    assert bisect_left(items, 4) == 3
    assert bisect_left(items, 0) == 0
    assert bisect_left(items, 10) == 5
    assert bisect_left([], 1) == 0


def test_find_all_overlapping():
    assert find_all("aaaa", "aa") == [0, 1, 2]
    assert find_all("abcabc", "abc") == [0, 3]
    assert find_all("abc", "") == []
    assert find_all("ab", "abc") == []


def test_word_wrap():
    assert word_wrap("the quick brown fox", 9) == ["the quick", "brown fox"]
    assert word_wrap("a verylongword b", 4) == ["a", "verylongword", "b"]
    assert word_wrap("", 5) == []


def test_word_wrap_width_error():
    with pytest.raises(ValueError):
        word_wrap("x", 0)
