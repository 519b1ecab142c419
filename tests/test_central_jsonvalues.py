"""The one check of a stored JSON value and its fast path (issue 15: an event batch's hot path): the fast encode
says "clean" exactly when ``problems()`` finds nothing, on random and hostile values alike."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from central.jsonvalues import INT64_MAX, INT64_MIN, MAX_DEPTH, encoded_if_clean, problems

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
    | st.sampled_from(["\ud800", "a\udfffb", "ok", ""])  # lone surrogates
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.sampled_from(["\udc80"]), inner, max_size=4)
    ),
    max_leaves=20,
)


def _nested(depth: int) -> object:
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_fast_path_agrees_with_problems(value):
    encoded = encoded_if_clean(value)
    assert (encoded is not None) == (problems(value) == [])
    if encoded is not None:
        assert encoded == json.dumps(value, ensure_ascii=False).encode()


def test_the_fast_path_refuses_what_problems_names():
    for bad in (math.nan, {"a": [math.inf]}, INT64_MAX + 1, [INT64_MIN - 1], {"k": "\ud800"}, {1: "x"},
                _nested(MAX_DEPTH + 1), _nested(5000), {"a": object()}):  # fmt: skip
        assert encoded_if_clean(bad) is None
        assert problems(bad) != []
    for good in (_nested(MAX_DEPTH), {"a": [INT64_MAX, INT64_MIN, 1.5, "中文", None, True]}):
        assert encoded_if_clean(good) is not None and problems(good) == []
