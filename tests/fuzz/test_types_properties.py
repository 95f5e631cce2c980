"""Properties of the MPAI-AIF type grammar, over generated type trees and values:

* ``parse_type(str(t)) == t``, whatever whitespace separates the tokens;
* any text either parses or raises ``TypeSyntaxError`` pointing inside it, nothing else;
* a value generated for a type passes ``check``; one wrong node fails at that node's path;
* soundness: when ``compatibility_problem(p, a)`` is None, every value that fits ``p`` fits ``a``.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aif.communication.types import (
    MAX_DEPTH,
    SCALAR_NAMES,
    TENSOR_DTYPES,
    Any,
    Array,
    RecordType,
    Scalar,
    Struct,
    Tensor,
    Variant,
    compatibility_problem,
    parse_type,
)
from aif.errors import PortTypeError, TypeSyntaxError

PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)

IDENTS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)
NUMPY_DTYPES = [d for d in TENSOR_DTYPES if d != "bfloat16"]  # numpy has no bfloat16
INT_RANGES = {
    "byte": (0, 255),
    **{f"int{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    **{f"uint{b}": (0, 2**b - 1) for b in (8, 16, 32, 64)},
}


def height(t: RecordType) -> int:
    if isinstance(t, Array):
        return 1 + height(t.element)
    if isinstance(t, Struct):
        return 1 + max(height(c) for _, c in t.fields)
    if isinstance(t, Variant):
        return 1 + max(height(c) for c in t.options)
    return 1


def record_types(
    *, variants: bool = True, any_type: bool = True, dtypes: list[str] | None = None
) -> st.SearchStrategy[RecordType]:
    shapes = st.none() | st.lists(st.none() | st.integers(1, 4), min_size=1, max_size=3).map(tuple)
    leaves: st.SearchStrategy[RecordType] = st.sampled_from(SCALAR_NAMES).map(Scalar) | st.builds(
        Tensor, st.sampled_from(dtypes or list(TENSOR_DTYPES)), shapes
    )
    if any_type:
        leaves |= st.just(Any())

    def extend(children: st.SearchStrategy[RecordType]) -> st.SearchStrategy[RecordType]:
        arrays = st.builds(Array, children, st.none() | st.integers(1, 4))
        fields = st.lists(
            st.tuples(IDENTS, children), min_size=1, max_size=4, unique_by=lambda f: f[0]
        )
        grown = arrays | fields.map(lambda fs: Struct(tuple(fs)))
        if variants:
            options = st.lists(children, min_size=2, max_size=4, unique=True)
            grown |= options.map(lambda os: Variant(tuple(os)))
        return grown

    return st.recursive(leaves, extend, max_leaves=10).filter(lambda t: height(t) <= MAX_DEPTH)


# --- the canonical spelling round-trips -----------------------------------------------------

SPACES = st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003", max_size=3)


@PROFILE
@given(record_types())
def test_str_parses_back_to_the_same_type(t: RecordType) -> None:
    text = str(t)
    assert parse_type(text) == t
    assert str(parse_type(text)) == text
    assert hash(parse_type(text)) == hash(t)


@PROFILE
@given(record_types(), st.data())
def test_whitespace_between_tokens_does_not_matter(t: RecordType, data: st.DataObject) -> None:
    tokens = re.findall(r"[A-Za-z0-9_]+|\S", str(t))
    text = data.draw(SPACES) + tokens[0]
    for before, token in itertools.pairwise(tokens):
        space = data.draw(SPACES)
        if not space and re.match(r"\w", before[-1]) and re.match(r"\w", token[0]):
            space = " "  # two words must stay apart
        text += space + token
    assert parse_type(text + data.draw(SPACES)) == t


# --- any text: a type or a TypeSyntaxError, never anything else -------------------------------

TOKENS = st.sampled_from(
    [
        *SCALAR_NAMES, "any", "tensor", "flaot32", "x", "y", "{", "}", "[", "]", "<", ">", ";",
        "|", ",", "?", "(", ")", "3", "0", "-1", "99999999999999999999", " ", "\n", "@", "-",
    ]
)  # fmt: skip


def parses_or_points_inside(text: str) -> None:
    try:
        t = parse_type(text)
    except TypeSyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.text == text
        assert str(error).split("\n")[0].endswith(f" at column {error.position + 1}")
    else:
        assert parse_type(str(t)) == t


@PROFILE
@given(st.text())
def test_random_text_parses_or_raises_type_syntax_error(text: str) -> None:
    parses_or_points_inside(text)


@PROFILE
@given(st.lists(TOKENS, max_size=40).map(" ".join) | st.lists(TOKENS, max_size=40).map("".join))
def test_token_soup_parses_or_raises_type_syntax_error(text: str) -> None:
    parses_or_points_inside(text)


@PROFILE
@given(record_types(), st.data())
def test_cutting_a_valid_type_raises_only_type_syntax_error(
    t: RecordType, data: st.DataObject
) -> None:
    text = str(t)
    cut = data.draw(st.integers(0, len(text)))
    splice = data.draw(st.sampled_from(["", "{", "}", "[", "]", ";", "|", "x", "?", ",", "0"]))
    parses_or_points_inside(text[:cut] + splice + text[cut + 1 :])


# --- values -------------------------------------------------------------------------------


def values(t: RecordType) -> st.SearchStrategy[object]:
    """Python values that fit ``t``, in every form the grammar documents."""
    if isinstance(t, Any):
        return st.none() | st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=3)
    if isinstance(t, Scalar):
        name = t.name
        if name in INT_RANGES:
            lo, hi = INT_RANGES[name]
            numpy_type = np.dtype("uint8" if name == "byte" else name).type
            return st.integers(lo, hi) | st.integers(lo, hi).map(numpy_type)
        if name == "float32":
            return (
                st.floats(width=32)
                | st.integers(-(2**24), 2**24)
                | st.floats(width=32).map(np.float32)
            )
        if name == "float64":
            return st.floats() | st.integers(-(2**64), 2**64) | st.floats().map(np.float64)
        return st.booleans() if name == "bool" else st.text(max_size=8)
    if isinstance(t, Array):
        size = {"min_size": t.length or 0, "max_size": t.length or 4}
        items = st.lists(values(t.element), **size)
        forms = items | items.map(tuple)
        element = t.element
        if isinstance(element, Scalar) and element.name not in ("string",):
            dtype = "uint8" if element.name == "byte" else element.name
            length = st.just(t.length) if t.length else st.integers(0, 4)
            forms |= length.flatmap(lambda n: hnp.arrays(dtype, n))
            if dtype == "uint8":
                forms |= st.binary(**size) | st.binary(**size).map(bytearray)
        return forms
    if isinstance(t, Struct):
        return st.fixed_dictionaries({name: values(field) for name, field in t.fields})
    if isinstance(t, Variant):
        return st.one_of([values(option) for option in t.options])
    assert isinstance(t, Tensor)
    if t.shape is None:
        shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
    else:
        dims = [st.integers(0, 3) if d is None else st.just(d) for d in t.shape]
        shape = st.tuples(*dims)
    return hnp.arrays(t.dtype, shape)


@PROFILE
@given(record_types(dtypes=NUMPY_DTYPES).flatmap(lambda t: st.tuples(st.just(t), values(t))))
def test_generated_values_pass_check(case: tuple[RecordType, object]) -> None:
    t, value = case
    t.check(value)


def nodes(t: RecordType, value: object, path: str) -> list[tuple[str, RecordType, list[object]]]:
    """Every node of a value: (path, type, keys from the root to it)."""
    found: list[tuple[str, RecordType, list[object]]] = [(path, t, [])]
    children: list[tuple[object, str, RecordType, object]] = []
    if isinstance(t, Struct):
        assert isinstance(value, dict)
        children = [(name, f"{path}.{name}", field, value[name]) for name, field in t.fields]
    elif isinstance(t, Array) and isinstance(value, list | tuple):
        children = [(i, f"{path}[{i}]", t.element, item) for i, item in enumerate(value)]
    for key, child_path, child_type, child in children:
        found += [(p, ct, [key, *keys]) for p, ct, keys in nodes(child_type, child, child_path)]
    return found


def replaced(value: object, keys: list[object], new: object) -> object:
    if not keys:
        return new
    key, rest = keys[0], keys[1:]
    if isinstance(value, dict):
        return {**value, key: replaced(value[key], rest, new)}
    assert isinstance(value, list | tuple) and isinstance(key, int)
    items = list(value)
    items[key] = replaced(items[key], rest, new)
    return type(value)(items)


WRONG = st.sampled_from([object(), "text", 1.5, None, True, -1, 2**70, b"\x00", [], {}, ()])


@PROFILE
@given(
    record_types(variants=False, any_type=False, dtypes=NUMPY_DTYPES).flatmap(
        lambda t: st.tuples(st.just(t), values(t))
    ),
    st.data(),
)
def test_one_wrong_node_fails_at_its_path(
    case: tuple[RecordType, object], data: st.DataObject
) -> None:
    t, value = case
    path, node_type, keys = data.draw(st.sampled_from(nodes(t, value, "value")))
    wrong = data.draw(WRONG)
    try:
        node_type.check(wrong, path)
    except PortTypeError:
        pass
    else:
        assume(False)  # e.g. -1 fits int8, [] fits int32[]: not a mutation
    try:
        t.check(replaced(value, keys, wrong))
    except PortTypeError as error:
        assert str(error).startswith(f"{path}: "), (str(error), path)
    else:
        raise AssertionError(f"{t} accepted a wrong {wrong!r} at {path}")


# --- soundness of port compatibility -----------------------------------------------------------


@st.composite
def widenings(draw: st.DrawFn, t: RecordType) -> RecordType:
    """A type that should accept ``t``: widened scalars, looser sizes, shuffled fields, any."""
    if draw(st.integers(0, 9)) == 0:
        return Any()
    if isinstance(t, Scalar):
        wider = [Scalar(n) for n in SCALAR_NAMES if Scalar(n).accepts(t)]
        return draw(st.sampled_from(wider))
    if isinstance(t, Array):
        element = draw(widenings(t.element))
        return Array(element, draw(st.sampled_from([t.length, None])))
    if isinstance(t, Struct):
        fields = [(name, draw(widenings(field))) for name, field in t.fields]
        return Struct(tuple(draw(st.permutations(fields))))
    if isinstance(t, Variant):
        options = list(dict.fromkeys(draw(widenings(option)) for option in t.options))
        options += [draw(record_types())] if draw(st.booleans()) else []
        options = list(dict.fromkeys(options))
        return options[0] if len(options) == 1 else Variant(tuple(options))
    if isinstance(t, Tensor) and t.shape is not None:
        if draw(st.booleans()):
            return Tensor(t.dtype, None)
        return Tensor(t.dtype, tuple(d if draw(st.booleans()) else None for d in t.shape))
    return t


@PROFILE
@given(record_types(dtypes=NUMPY_DTYPES), st.data())
def test_what_fits_an_output_fits_every_input_that_accepts_it(
    produced: RecordType, data: st.DataObject
) -> None:
    accepted = data.draw(widenings(produced))
    assert compatibility_problem(produced, accepted) is None, (str(produced), str(accepted))
    accepted.check(data.draw(values(produced)))


@PROFILE
@given(record_types(), record_types(), st.data())
def test_compatible_pairs_are_sound(
    produced: RecordType, accepted: RecordType, data: st.DataObject
) -> None:
    assert produced.accepts(produced)
    assert Any().accepts(produced)
    if not accepted.accepts(produced):
        assert isinstance(compatibility_problem(produced, accepted), str)
    elif "bfloat16" not in str(produced):  # numpy cannot make bfloat16 values
        accepted.check(data.draw(values(produced)))
