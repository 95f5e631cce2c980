"""The MPAI-AIF type grammar: parsing, canonical spelling, error messages, value checks and
port compatibility. Error texts are pinned here because users read them."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aif.communication import types as types_module
from aif.communication.types import (
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

I32, I16, F32, BYTE, STR = (Scalar(n) for n in ("int32", "int16", "float32", "byte", "string"))

# --- parsing -------------------------------------------------------------------------------

PARSED: list[tuple[str, RecordType]] = [
    *((name, Scalar(name)) for name in SCALAR_NAMES),
    ("any", Any()),
    ("int32[]", Array(I32)),
    ("int32[3]", Array(I32, 3)),
    ("int32[3][]", Array(Array(I32, 3))),
    ("byte[][2]", Array(Array(BYTE), 2)),
    (
        "{int32 frameNumber; int16 x; byte[] frame}",
        Struct((("frameNumber", I32), ("x", I16), ("frame", Array(BYTE)))),
    ),
    ("{int32 a}", Struct((("a", I32),))),
    ("{int32 a;}", Struct((("a", I32),))),
    ("{int32 any; string tensor}", Struct((("any", I32), ("tensor", STR)))),
    ("{int32 | string}", Variant((I32, STR))),
    ("{int32 | string | {int32 x}}", Variant((I32, STR, Struct((("x", I32),))))),
    ("{{int32 | string} | float32}", Variant((Variant((I32, STR)), F32))),
    ("{int32 | string}[]", Array(Variant((I32, STR)))),
    ("{int32 x}[4]", Array(Struct((("x", I32),)), 4)),
    ("tensor<float32>", Tensor("float32")),
    ("tensor<float32>[3,4]", Tensor("float32", (3, 4))),
    ("tensor<int64>[?,3]", Tensor("int64", (None, 3))),
    ("tensor<float32>[3][]", Array(Tensor("float32", (3,)))),
    ("(tensor<float32>)[]", Array(Tensor("float32"))),
    ("(tensor<float32>[3])[2]", Array(Tensor("float32", (3,)), 2)),
    ("(int32)", I32),
    ("((int32[]))[2]", Array(Array(I32), 2)),
    (
        "{tensor<uint8>[?,?,3] image; any meta}",
        Struct((("image", Tensor("uint8", (None, None, 3))), ("meta", Any()))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), PARSED, ids=[t for t, _ in PARSED])
def test_parse_builds_the_type(text: str, expected: RecordType) -> None:
    parsed = parse_type(text)
    assert parsed == expected
    assert parse_type(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            "  { int32 frameNumber ;int16 x ;\n\tbyte [ ] frame ; } ",
            "{int32 frameNumber; int16 x; byte[] frame}",
        ),
        ("{int32|string}", "{int32 | string}"),
        ("tensor < float32 > [ ? , 3 ]", "tensor<float32>[?,3]"),
        ("tensor<float32>[3][]", "(tensor<float32>[3])[]"),
        ("(((int32)))", "int32"),
        ("int32 [ 3 ] [ ]", "int32[3][]"),
        ("\u00a0int32\u2003", "int32"),
    ],
)
def test_canonical_spelling(text: str, canonical: str) -> None:
    assert str(parse_type(text)) == canonical
    assert str(parse_type(canonical)) == canonical


def test_named_types_are_substituted() -> None:
    point = parse_type("{int32 x; int32 y}")
    parsed = parse_type("{point a; point[] path; float32 w}", named={"point": point})
    assert parsed == Struct((("a", point), ("path", Array(point)), ("w", F32)))
    assert str(parsed) == "{{int32 x; int32 y} a; {int32 x; int32 y}[] path; float32 w}"


def test_builtin_names_win_over_named_types() -> None:
    assert parse_type("int32", named={"int32": STR}) == I32


def test_unknown_name_suggests_a_named_type() -> None:
    with pytest.raises(TypeSyntaxError) as caught:
        parse_type("{pointt a}", named={"point": I32})
    assert caught.value.args[0].splitlines()[0] == (
        "unknown type 'pointt' (did you mean 'point'?) at column 2"
    )


def test_types_are_hashable_values() -> None:
    texts = ["int32", "int32[]", "{int32 a}", "{int32 | string}", "tensor<float32>[?,3]", "any"]
    first = {parse_type(t): t for t in texts}
    assert {parse_type(t): t for t in texts} == first
    assert len(first) == len(texts)
    assert parse_type("{int32 a; int16 b}") != parse_type("{int16 b; int32 a}")  # order kept


def test_constructors_normalise_sequences() -> None:
    assert Struct([["a", I32]]) == Struct((("a", I32),))  # type: ignore[list-item,arg-type]
    assert Variant([I32, STR]) == Variant((I32, STR))  # type: ignore[arg-type]
    assert Tensor("float32", [3, None]) == Tensor("float32", (3, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Scalar("int"), "unknown scalar 'int'"),
        (lambda: Array(I32, 0), "array length must be an int of at least 1, got 0"),
        (lambda: Array(I32, True), "array length must be an int of at least 1, got True"),
        (lambda: Struct(()), "struct needs unique identifier field names, got []"),
        (lambda: Struct((("a", I32), ("a", I16))), "struct needs unique identifier"),
        (lambda: Struct((("1a", I32),)), "struct needs unique identifier"),
        (lambda: Struct((("a b", I32),)), "struct needs unique identifier"),
        (lambda: Variant((I32,)), "a variant needs two or more distinct options"),
        (lambda: Variant((I32, I32)), "a variant needs two or more distinct options"),
        (lambda: Tensor("float"), "unknown tensor dtype 'float'"),
        (lambda: Tensor("float32", ()), "tensor shape needs dims >= 1 or None"),
        (lambda: Tensor("float32", (0,)), "tensor shape needs dims >= 1 or None"),
    ],
)
def test_constructors_refuse_invalid_types(build: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        build()  # type: ignore[operator]


# --- syntax errors: message and caret -------------------------------------------------------

SYNTAX_ERRORS = [
    ("flaot32", "unknown type 'flaot32' (did you mean 'float32'?)", 0),
    ("{int32 a; unit16 b}", "unknown type 'unit16' (did you mean 'uint16'?)", 10),
    (
        "frob",
        "unknown type 'frob'; known: byte, bool, string, int8, int16, int32, int64, uint8, "
        "uint16, uint32, uint64, float32, float64, any, tensor, {...}",
        0,
    ),
    ("{int32 a int16 b}", "expected ';' or '}', got 'int16'", 9),
    ("{int32 a, int16 b}", "expected ';' or '}', got ','", 8),
    ("{int32 a; int16 b", "unterminated struct", 0),
    ("x[{int32 a;", "unknown type 'x'; known: byte", 0),
    ("int32[{int32 a;", "expected an array length or ']', got '{'", 6),
    ("{int32 a;", "unterminated struct", 0),
    ("  {int32 a", "unterminated struct", 2),
    ("{int32 a; int16 a}", "duplicate field name 'a'", 16),
    ("{int32 a; 7}", "expected a type, got '7'", 10),
    ("{int32 a; int16}", "expected a field name, got '}'", 15),
    ("{int32 a;;}", "expected a type, got ';'", 9),
    ("{int32 | string", "unterminated variant", 0),
    ("{int32 | string x}", "expected '|' or '}', got 'x'", 16),
    ("{int32 | int32}", "duplicate variant option int32", 9),
    ("{int32 |}", "expected a type, got '}'", 8),
    ("{int32}", "expected a field name or '|', got '}' (one option is just int32)", 6),
    ("{int32 ;}", "expected a field name or '|', got ';'", 7),
    ("{int32", "unterminated struct or variant", 0),
    ("{}", "empty braces: a struct needs a field, a variant two options", 1),
    ("{", "expected a type, got the end of the text", 1),
    ("", "empty type: expected a type such as int32 or {int32 x; int32 y}", 0),
    ("   ", "empty type: expected a type such as int32 or {int32 x; int32 y}", 0),
    ("int32 x", "unexpected 'x' after the end of the type", 6),
    ("int32]", "unexpected ']' after the end of the type", 5),
    ("int32 @", "unexpected character '@'", 6),
    ("int32-", "unexpected character '-'", 5),
    ("int32\u00e9", "unexpected character '\u00e9'", 5),
    ("int32[0]", "array length must be at least 1, got 0; int32[] is any length", 6),
    ("int32[-3]", "array length must be at least 1, got -3; int32[] is any length", 6),
    ("int32[3", "expected ']' after the array length", 7),
    ("int32[x]", "expected an array length or ']', got 'x'", 6),
    ("int32[", "expected an array length or ']', got the end of the text", 6),
    ("(int32", "unterminated '('", 0),
    ("(int32 x)", "expected ')', got 'x'", 7),
    ("()", "expected a type, got ')'", 1),
    ("tensor", "expected '<' after 'tensor', as in tensor<float32>[3,4]", 6),
    ("tensor[3]", "expected '<' after 'tensor', as in tensor<float32>[3,4]", 6),
    ("tensor<flaot32>", "unknown tensor dtype 'flaot32' (did you mean 'float32'?)", 7),
    (
        "tensor<string>[3]",
        "unknown tensor dtype 'string'; known: bool, int8, int16, int32, int64, uint8, uint16, "
        "uint32, uint64, float16, float32, float64, complex64, complex128",
        7,
    ),
    ("tensor<>", "expected a tensor dtype, got '>'", 7),
    ("tensor<float32", "expected '>' after the tensor dtype", 14),
    ("tensor<float32>[]", "empty tensor shape; write tensor<float32> for any shape", 16),
    ("tensor<float32>[0,3]", "tensor dimension must be at least 1 or '?', got 0", 16),
    ("tensor<float32>[3,-2]", "tensor dimension must be at least 1 or '?', got -2", 18),
    ("tensor<float32>[3 4]", "expected ',' or ']', got '4'", 18),
    ("tensor<float32>[3,]", "expected a dimension size or '?', got ']'", 18),
    ("tensor<float32>[3", "unterminated tensor shape", 15),
    ("tensor<float32>[3,", "unterminated tensor shape", 15),
    ("{" * 40, "type nested deeper than 32 levels", 32),
    ("(" * 40, "type nested deeper than 32 levels", 32),
    ("int32" + "[]" * 33, "type nested deeper than 32 levels", 0),
    # the innermost struct is 22 deep; the one opened at column 9 is the 33rd level
    ("{" * 20 + "int32" + "[]" * 20 + " a}" + " a}" * 19, "type nested deeper than 32 levels", 8),
]


@pytest.mark.parametrize(
    ("text", "message", "position"), SYNTAX_ERRORS, ids=[e[0][:30] for e in SYNTAX_ERRORS]
)
def test_syntax_error_message_and_position(text: str, message: str, position: int) -> None:
    with pytest.raises(TypeSyntaxError) as caught:
        parse_type(text)
    error = caught.value
    headline, shown, caret = str(error).split("\n")
    assert headline.startswith(message)
    assert headline.endswith(f" at column {position + 1}")
    assert error.position == position
    assert error.text == text
    assert shown == "  " + text
    assert caret == "  " + " " * position + "^"
    assert isinstance(error, PortTypeError)  # one family: callers may catch either


def test_exact_headline_of_a_typo() -> None:
    with pytest.raises(TypeSyntaxError) as caught:
        parse_type("{int32 frameNumber; flaot32 x}")
    assert str(caught.value) == (
        "unknown type 'flaot32' (did you mean 'float32'?) at column 21\n"
        "  {int32 frameNumber; flaot32 x}\n"
        "                      ^"
    )


def test_non_string_type_text_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="a type must be given as a str, got int"):
        parse_type(3)  # type: ignore[arg-type]


# --- check(): values that fit -----------------------------------------------------------------

FITS: list[tuple[str, object]] = [
    ("int8", -128),
    ("int8", 127),
    ("uint64", 2**64 - 1),
    ("int64", -(2**63)),
    ("byte", 255),
    ("int32", np.int64(7)),
    ("uint8", np.uint8(200)),
    ("float32", 1.5),
    ("float32", 3),
    ("float32", np.float32(2.5)),
    ("float32", np.int16(4)),
    ("float32", float("inf")),
    ("float32", float("nan")),
    ("float64", 1e308),
    ("float64", 2**1000),
    ("bool", True),
    ("bool", np.bool_(False)),
    ("string", ""),
    ("string", "h\u00e9"),
    ("any", object()),
    ("any", None),
    ("int32[]", []),
    ("int32[]", [1, 2, 3]),
    ("int32[]", (1, np.int32(2))),
    ("int32[2]", [1, 2]),
    ("int16[]", np.zeros(3, dtype=np.int16)),
    ("int16[]", np.zeros(3, dtype=np.int8)),
    ("int16[]", np.zeros(3, dtype=np.uint8)),
    ("{byte | bool}[]", np.zeros(3, dtype=np.uint8)),
    ("{byte | bool}[]", b"ab"),
    ("{any | int8}[]", np.array(["a"])),
    ("{int32 | string}[]", np.zeros(3, dtype=np.int16)),
    ("float64[]", np.zeros(3, dtype=np.int32)),
    ("uint16[2]", b"ab"),
    ("float32[]", bytearray(b"ab")),
    ("float32[]", [1.0, 2, np.float32(3)]),
    ("float64[]", [1.0, float("nan"), 2**70]),
    ("bool[]", np.array([True, False])),
    ("string[]", ["a", "b"]),
    ("any[]", [object(), None]),
    ("any[2]", np.array(["a", "b"])),
    ("byte[]", b"abc"),
    ("byte[3]", bytearray(b"abc")),
    ("byte[]", memoryview(b"abcd")),
    ("byte[]", [0, 255]),
    ("byte[]", np.zeros(4, dtype=np.uint8)),
    ("uint8[4]", b"abcd"),
    ("int32[2][]", [[1, 2], (3, 4)]),
    ("{int32 frameNumber; int16 x; byte[] frame}", {"frameNumber": 1, "x": -5, "frame": b"\x00"}),
    ("{int32 | string}", 3),
    ("{int32 | string}", "three"),
    ("{{int32 x} | {string y}}", {"y": "q"}),
    ("tensor<float32>", np.zeros((2, 3, 4), dtype=np.float32)),
    ("tensor<float32>", np.zeros((), dtype=np.float32)),
    ("tensor<int64>[?,3]", np.zeros((5, 3), dtype=np.int64)),
    ("tensor<bool>[2]", np.zeros(2, dtype=bool)),
    ("(tensor<uint8>[2])[]", [np.zeros(2, dtype=np.uint8)]),
]


@pytest.mark.parametrize(("text", "value"), FITS, ids=[f"{t}:{type(v).__name__}" for t, v in FITS])
def test_check_accepts(text: str, value: object) -> None:
    parse_type(text).check(value)


# --- check(): values that do not fit, with the exact message ------------------------------------

POINT = "{int32 frameNumber; int16 x; byte[] frame}"
MISFITS: list[tuple[str, object, str]] = [
    ("int32", "x", "value: expected int32, got str 'x'"),
    ("int32", True, "value: expected int32, got bool True"),
    ("int32", np.bool_(True), "value: expected int32, got numpy.bool True"),
    ("int32", 1.0, "value: expected int32, got float 1.0"),
    ("int32", None, "value: expected int32, got NoneType"),
    ("int16", 70000, "value: 70000 does not fit int16 (-32768..32767)"),
    ("uint8", -1, "value: -1 does not fit uint8 (0..255)"),
    ("byte", 256, "value: 256 does not fit byte (0..255)"),
    ("int32", np.int64(2**40), "value: 1099511627776 does not fit int32 (-2147483648..2147483647)"),
    ("uint64", 2**64, "value: 18446744073709551616 does not fit uint64 (0..18446744073709551615)"),
    ("float32", 1e39, "value: 1e+39 does not fit float32 (±3.402823e+38)"),
    ("float32", -(10**39), "value: -1e+39 does not fit float32 (±3.402823e+38)"),
    ("float64", 10**400, "value: 1" + "0" * 36 + "... does not fit float64"),
    ("float32", False, "value: expected float32, got bool False"),
    ("float64", "1.0", "value: expected float64, got str '1.0'"),
    ("bool", 1, "value: expected bool, got int 1"),
    ("string", b"x", "value: expected string, got bytes b'x'"),
    ("int32", "x" * 50, "value: expected int32, got str '" + "x" * 36 + "..."),
    ("string[]", "abc", "value: expected string[] (a list or tuple), got str 'abc'"),
    (
        "int32[]",
        {1: 2},
        "value: expected int32[] (a list, or a 1-d numpy array of int32), got dict of length 1",
    ),
    ("int32[]", [1, 2, 3, "x"], "value[3]: expected int32, got str 'x'"),
    ("int32[3]", [1, 2], "value: expected 3 elements for int32[3], got 2"),
    ("int8[]", [1, 2, 300], "value[2]: 300 does not fit int8 (-128..127)"),
    ("bool[]", [True, 1], "value[1]: expected bool, got int 1"),
    ("float32[]", [1.0, 1e39], "value[1]: 1e+39 does not fit float32 (±3.402823e+38)"),
    ("string[]", ["a", None], "value[1]: expected string, got NoneType"),
    (
        "float32[]",
        np.zeros(3),
        "value: expected float32[] (a list, or a 1-d numpy array of float32), "
        "got numpy.ndarray of float64 with shape (3,)",
    ),
    (
        "int32[]",
        np.zeros((2, 2), dtype=np.int32),
        "value: expected int32[] (a list, or a 1-d numpy array of int32), "
        "got numpy.ndarray of int32 with shape (2, 2)",
    ),
    ("int32[4]", np.zeros(3, dtype=np.int32), "value: expected 4 elements for int32[4], got 3"),
    ("byte[2]", b"abc", "value: expected 2 elements for byte[2], got 3"),
    (
        "byte[2]",
        memoryview(np.zeros(3, dtype=np.uint16)),
        "value: expected 2 elements for byte[2], got 6",
    ),
    (
        "int8[]",
        b"ab",
        "value: expected int8[] (a list, or a 1-d numpy array of int8), got bytes b'ab'",
    ),
    ("string[]", b"ab", "value: expected string[] (a list or tuple), got bytes b'ab'"),
    (
        "{int8 | string}[]",
        np.zeros(1, np.uint8),
        "value: expected {int8 | string}[] (a list or tuple), "
        "got numpy.ndarray of uint8 with shape (1,)",
    ),
    (
        "bool[]",
        np.zeros(1, np.uint8),
        "value: expected bool[] (a list, or a 1-d numpy array of bool), "
        "got numpy.ndarray of uint8 with shape (1,)",
    ),
    (
        "int16[]",
        np.zeros(1, np.uint16),
        "value: expected int16[] (a list, or a 1-d numpy array of int16), "
        "got numpy.ndarray of uint16 with shape (1,)",
    ),
    (
        "int64[]",
        np.zeros(1, np.float16),
        "value: expected int64[] (a list, or a 1-d numpy array of int64), "
        "got numpy.ndarray of float16 with shape (1,)",
    ),
    (
        "string[]",
        np.array(["a"]),
        "value: expected string[] (a list or tuple), got numpy.ndarray of str32 with shape (1,)",
    ),
    ("int32[2][]", [[1, 2], [3]], "value[1]: expected 2 elements for int32[2], got 1"),
    (
        POINT,
        {"frameNumber": 1, "x": 70000, "frame": b""},
        "value.x: 70000 does not fit int16 (-32768..32767)",
    ),
    (
        POINT,
        {"frameNumber": 1, "x": 1, "frame": "x"},
        "value.frame: expected byte[] (a list, bytes, or a 1-d numpy array of uint8), got str 'x'",
    ),
    (
        POINT,
        {"frameNumber": 1, "x": 1},
        f"value: missing field 'frame' for struct {POINT}",
    ),
    (
        POINT,
        {"frameNumber": 1, "y": 7, "z": 1, "frame": b""},
        f"value: missing field 'x'; unexpected fields 'y', 'z' for struct {POINT}",
    ),
    (
        POINT,
        {"frameNumber": 1, "x": 1, "frame": b"", 3: 4},
        f"value: unexpected field 3 for struct {POINT}",
    ),
    (POINT, [1, 2, b""], f"value: expected a dict for struct {POINT}, got list of length 3"),
    (
        "{int32 a; {int32 b; float32[] c} inner}",
        {"a": 1, "inner": {"b": 2, "c": [1.0, 2, "x"]}},
        "value.inner.c[2]: expected float32, got str 'x'",
    ),
    ("{int32 x}[]", [{"x": 1}, {"x": "no"}], "value[1].x: expected int32, got str 'no'"),
    ("{int32 | string}", 1.5, "value: expected one of {int32 | string}, got float 1.5"),
    ("{int8 | int16}", 300000, "value: expected one of {int8 | int16}, got int 300000"),
    ("{{int32 x} | string}", {"x": "a"}, "value.x: expected int32, got str 'a'"),
    ("{int32[] | string}", [1, "a"], "value[1]: expected int32, got str 'a'"),
    (
        "{tensor<float32> | int32[]}",
        np.zeros(2),
        "value: expected one of {tensor<float32> | int32[]}, "
        "got numpy.ndarray of float64 with shape (2,)",
    ),
    (
        "{int32 x; {int32 | string} v}",
        {"x": 1, "v": 2.0},
        "value.v: expected one of {int32 | string}, got float 2.0",
    ),
    (
        "tensor<float32>[?,3]",
        np.zeros((3, 4), dtype=np.float32),
        "value: expected shape [?,3], got (3, 4)",
    ),
    (
        "tensor<float32>[?,3]",
        np.zeros(3, dtype=np.float32),
        "value: expected shape [?,3], got (3,)",
    ),
    (
        "tensor<float32>[?,3]",
        np.zeros((2, 3)),
        "value: expected dtype float32 for tensor<float32>[?,3], got float64",
    ),
    (
        "tensor<float32>",
        [1.0],
        "value: expected tensor<float32> (a numpy ndarray or torch Tensor), got list of length 1",
    ),
    (
        "tensor<float32>",
        np.float32(1.0),
        "value: expected tensor<float32> (a numpy ndarray or torch Tensor), got numpy.float32 1.0",
    ),
]


@pytest.mark.parametrize(("text", "value", "message"), MISFITS, ids=[m for _, _, m in MISFITS])
def test_check_refuses_with_path_and_reason(text: str, value: object, message: str) -> None:
    with pytest.raises(PortTypeError) as caught:
        parse_type(text).check(value)
    assert str(caught.value) == message
    assert not isinstance(caught.value, TypeSyntaxError)


def test_check_path_prefix_is_the_callers() -> None:
    with pytest.raises(PortTypeError, match=r"^port 'in'\.x\[1\]: expected int32"):
        parse_type("{int32[] x}").check({"x": [1, "a"]}, path="port 'in'")


def test_a_million_element_numpy_array_is_checked_without_visiting_elements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    original = Scalar.check
    monkeypatch.setattr(
        Scalar, "check", lambda self, v, p="value": calls.append(p) or original(self, v, p)
    )
    parse_type("int32[]").check(np.arange(1_000_000, dtype=np.int32))
    parse_type("{float64[1000000] xs}").check({"xs": np.zeros(1_000_000)})
    assert calls == []


def test_a_million_element_list_of_fitting_numbers_uses_the_bulk_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    original = Scalar.check
    monkeypatch.setattr(
        Scalar, "check", lambda self, v, p="value": calls.append(p) or original(self, v, p)
    )
    parse_type("int32[]").check(list(range(1_000_000)))
    parse_type("float32[]").check([0.5] * 1_000_000)
    parse_type("string[]").check(["s"] * 1_000_000)
    assert calls == []
    with pytest.raises(PortTypeError, match=r"^value\[999999\]: 2147483648 does not fit int32"):
        parse_type("int32[]").check([*range(999_999), 2**31])


def test_numpy_array_of_another_dtype_names_the_fix() -> None:
    with pytest.raises(
        PortTypeError, match=r"a 1-d numpy array of uint8\), got numpy.ndarray of int8"
    ):
        parse_type("byte[]").check(np.zeros(2, dtype=np.int8))


# --- torch tensors (imported only when a torch value arrives) -----------------------------------


def test_importing_the_module_does_not_import_torch() -> None:
    script = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("aif")
        package.__path__ = [{str(Path(types_module.__file__).parents[1])!r}]
        sys.modules["aif"] = package
        import aif.communication.types as t
        import numpy
        t.parse_type("tensor<float32>[3]").check(numpy.zeros(3, dtype="float32"))
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_bfloat16_is_not_a_port_dtype_because_it_cannot_cross_the_wire() -> None:
    # numpy, and so the codec's zero-copy frames, have no bfloat16: refuse it at parse time
    # rather than let a port accept values that every send would then refuse.
    with pytest.raises(TypeSyntaxError, match="bfloat16"):
        parse_type("tensor<bfloat16>[2]")


def test_torch_tensors_are_checked() -> None:
    torch = pytest.importorskip("torch")
    parse_type("tensor<float32>[?,3]").check(torch.zeros(4, 3))
    parse_type("tensor<float16>[2]").check(torch.zeros(2, dtype=torch.float16))
    parse_type("tensor<bool>").check(torch.zeros(2, dtype=torch.bool))
    parse_type("{tensor<int64>[2] ids}").check({"ids": torch.tensor([1, 2])})
    with pytest.raises(PortTypeError) as caught:
        parse_type("tensor<float32>[2]").check(torch.zeros(3, dtype=torch.float64))
    assert str(caught.value) == "value: expected dtype float32 for tensor<float32>[2], got float64"
    with pytest.raises(PortTypeError) as caught:
        parse_type("{tensor<float32>[2] t}").check({"t": torch.zeros(3)})
    assert str(caught.value) == "value.t: expected shape [2], got (3,)"
    with pytest.raises(PortTypeError) as caught:
        parse_type("int32").check(torch.zeros(3))
    assert str(caught.value) == "value: expected int32, got torch.Tensor of float32 with shape (3,)"
    with pytest.raises(PortTypeError, match=r"got torch\.device"):
        parse_type("tensor<float32>").check(torch.device("cpu"))


# --- port compatibility ------------------------------------------------------------------------

COMPATIBILITY: list[tuple[str, str, str | None]] = [
    ("int32", "int32", None),
    ("int32", "any", None),
    ("{int32 x}", "any", None),
    ("any", "any", None),
    ("any", "int32", "any does not fit int32: the output may send any value"),
    ("int16", "int32", None),
    ("int32", "int16", "int32 does not fit int16"),
    ("byte", "uint8", None),
    ("uint8", "byte", None),
    ("byte[]", "uint8[]", None),
    ("bool", "int8", "bool does not fit int8"),
    ("int8", "bool", "int8 does not fit bool"),
    ("string", "byte[]", "string does not fit byte[]"),
    ("int32[3]", "int32[]", None),
    ("int16[3]", "int64[]", None),
    ("int32[]", "int32[3]", "int32[] does not fit int32[3]: the length may differ"),
    ("int32[2]", "int32[3]", "int32[2] does not fit int32[3]: the length is 2, not 3"),
    ("int32[][]", "int16[][]", "element '[][]': int32 does not fit int16"),
    ("{int32 x; float32 y}", "{float64 y; int64 x}", None),
    ("{int32 x; float64 y}", "{int64 x; float32 y}", "field 'y': float64 does not fit float32"),
    (
        "{int32 x}",
        "{int32 x; int32 y}",
        "{int32 x} does not fit {int32 x; int32 y}: missing field 'y'",
    ),
    (
        "{int32 x; int32 z}",
        "{int32 x}",
        "{int32 x; int32 z} does not fit {int32 x}: unexpected field 'z'",
    ),
    ("{{int32 a}[] xs}", "{{int16 a}[] xs}", "field 'xs[].a': int32 does not fit int16"),
    ("{{int32 a} p}", "{{int16 a} p}", "field 'p.a': int32 does not fit int16"),
    ("{int32 x}[]", "{int16 x}[]", "field '[].x': int32 does not fit int16"),
    ("{int32 | string}", "{string | int64 | bool}", None),
    ("{int32 | string}", "{string | int32}", None),
    ("{int32 | string}", "int32", "string does not fit int32 (option string of {int32 | string})"),
    (
        "{int32 x; {int32 | string} v}",
        "{int32 x; {int32 | bool} v}",
        "field 'v': string fits no option of {int32 | bool} (option string of {int32 | string})",
    ),
    ("int8", "{string | int16}", None),
    ("int8", "{string | uint16}", "int8 fits no option of {string | uint16}"),
    ("{int8 | int16}", "int32", None),
    ("tensor<float32>[3,4]", "tensor<float32>[3,4]", None),
    ("tensor<float32>[3,4]", "tensor<float32>[?,4]", None),
    ("tensor<float32>[3,4]", "tensor<float32>", None),
    (
        "tensor<float32>",
        "tensor<float32>[3]",
        "tensor<float32> does not fit tensor<float32>[3]: the shape may differ",
    ),
    (
        "tensor<float32>[?]",
        "tensor<float32>[3]",
        "tensor<float32>[?] does not fit tensor<float32>[3]: dimension 0 may differ from 3",
    ),
    (
        "tensor<float32>[4]",
        "tensor<float32>[3]",
        "tensor<float32>[4] does not fit tensor<float32>[3]: dimension 0 is 4, not 3",
    ),
    (
        "tensor<float32>[3,3]",
        "tensor<float32>[3]",
        "tensor<float32>[3,3] does not fit tensor<float32>[3]: it has 2 dimensions, not 1",
    ),
    (
        "tensor<float16>[3]",
        "tensor<float32>[3]",
        "tensor<float16>[3] does not fit tensor<float32>[3]: the dtype is float16, not float32",
    ),
    (
        "{tensor<float32>[?,3] t}",
        "{tensor<float32>[2,3] t}",
        "field 't': tensor<float32>[?,3] does not fit tensor<float32>[2,3]: "
        "dimension 0 may differ from 2",
    ),
    ("tensor<float32>[3]", "float32[]", "tensor<float32>[3] does not fit float32[]"),
    ("float32[3]", "tensor<float32>[3]", "float32[3] does not fit tensor<float32>[3]"),
    ("(tensor<float32>[3])[]", "(tensor<float32>)[]", None),
]


@pytest.mark.parametrize(
    ("produced", "accepted", "reason"),
    COMPATIBILITY,
    ids=[f"{p} -> {a}" for p, a, _ in COMPATIBILITY],
)
def test_compatibility(produced: str, accepted: str, reason: str | None) -> None:
    out, into = parse_type(produced), parse_type(accepted)
    assert compatibility_problem(out, into) == reason
    assert into.accepts(out) is (reason is None)


NUMERIC = [n for n in SCALAR_NAMES if n not in ("bool", "string")]


@pytest.mark.parametrize(("produced", "accepted"), list(itertools.product(NUMERIC, NUMERIC)))
def test_scalar_widening_is_exactly_numpys_safe_casting(produced: str, accepted: str) -> None:
    """numpy's "safe" casting is an independent oracle for lossless widening, except that
    numpy calls int64 -> float64 safe although float64 holds only 53 bits exactly."""
    as_numpy = {"byte": "uint8"}
    lossless = np.can_cast(
        as_numpy.get(produced, produced), as_numpy.get(accepted, accepted), "safe"
    )
    lossless &= not (produced in ("int64", "uint64") and accepted == "float64")
    assert Scalar(accepted).accepts(Scalar(produced)) is bool(lossless)


def test_widening_rules_named_in_the_contract() -> None:
    fits = {
        ("int8", "int16"), ("int8", "int64"), ("uint8", "int16"), ("uint16", "uint32"),
        ("float32", "float64"), ("int16", "float32"), ("uint16", "float32"),
        ("int32", "float64"), ("uint32", "float64"), ("byte", "uint8"), ("uint8", "byte"),
    }  # fmt: skip
    refused = {("int32", "float32"), ("int64", "float64"), ("uint8", "int8"), ("int8", "uint16")}
    for produced, accepted in fits:
        assert compatibility_problem(Scalar(produced), Scalar(accepted)) is None
    for produced, accepted in refused:
        assert compatibility_problem(Scalar(produced), Scalar(accepted)) is not None


def test_every_tensor_dtype_parses() -> None:
    for dtype in TENSOR_DTYPES:
        assert parse_type(f"tensor<{dtype}>[?]") == Tensor(dtype, (None,))
