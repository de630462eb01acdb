"""How received names are compared with a model's: work in proportion to what was sent."""

from function.errors import name_mismatch


class CountedName(str):
    """A name that counts how often it is compared, to measure work without timing it."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_naming_the_differences_compares_each_name_a_bounded_number_of_times():
    # A 1 MB body holds about 100,000 short keys; a model may have hundreds of features. Compared
    # pairwise, that is tens of millions of comparisons on the event loop for one request.
    expected = [CountedName(f"feature_{i}") for i in range(500)]
    received = [f"k{i}" for i in range(2_000)] + ["feature_3"]
    CountedName.comparisons = 0

    text = name_mismatch(expected, received)

    assert CountedName.comparisons <= 10 * (len(expected) + len(received))
    assert text.startswith("missing ['feature_0', 'feature_1', 'feature_2', 'feature_4'")
    assert "unexpected ['k0', 'k1'" in text and "'feature_3'" not in text.split("unexpected")[1]
