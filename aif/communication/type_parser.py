"""The MPAI-AIF type parser: turn a port's type text into a ``RecordType``.

A tokenizer and a recursive-descent parser for the grammar drawn in the docstring of
``aif.communication.types`` (the public home of ``parse_type``). It exists on its own
because reading text is a separate concern from checking values (``type_model``) or
comparing ports (``type_compat``): its job is to refuse bad text with a ``TypeSyntaxError``
that points at the fault, suggests the nearest known name, and bounds nesting at
``MAX_DEPTH`` so that hostile text cannot exhaust the stack. It imports the classes from
``type_model``; nothing there imports it back.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import NamedTuple

from aif.communication.type_model import (
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
)
from aif.errors import TypeSyntaxError

__all__ = ["parse_type"]

_SCALARS = frozenset(SCALAR_NAMES)


class _Token(NamedTuple):
    kind: str  # "ident", "int", "punct", "bad" or "end"
    text: str
    pos: int


_TOKEN = re.compile(
    r"\s*(?:(?P<int>-?[0-9]+)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[][{}<>;|,?()])|(?P<bad>\S))"
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "bad"
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        if kind == "bad":
            break  # the parser stops here at the latest
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _height(t: RecordType) -> int:
    if isinstance(t, Array):
        return 1 + _height(t.element)
    if isinstance(t, Struct | Variant):
        children = [c for _, c in t.fields] if isinstance(t, Struct) else list(t.options)
        return 1 + max(map(_height, children))
    return 1


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    """Recursive descent over the token list; every method returns (type, height)."""

    def __init__(self, text: str, named: Mapping[str, RecordType]) -> None:
        self.text = text
        self.named = named
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def error(self, message: str, pos: int) -> TypeSyntaxError:
        return TypeSyntaxError(message, self.text, pos)

    def peek(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "bad":
            raise self.error(f"unexpected character {token.text!r}", token.pos)
        return token

    def next(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def expect(self, text: str, message: str) -> _Token:
        token = self.next()
        if token.text != text or token.kind != "punct":
            raise self.error(message, token.pos)
        return token

    @staticmethod
    def what(token: _Token) -> str:
        return "the end of the text" if token.kind == "end" else repr(token.text)

    def parse(self) -> RecordType:
        if self.peek().kind == "end":
            raise self.error("empty type: expected a type such as int32 or {int32 x; int32 y}", 0)
        result, _ = self.type()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {self.what(token)} after the end of the type", token.pos)
        return result

    def type(self) -> tuple[RecordType, int]:
        start = self.peek().pos
        result, height = self.primary()
        if height > MAX_DEPTH:
            raise self.error(f"type nested deeper than {MAX_DEPTH} levels", start)
        while self.peek().text == "[":
            self.next()
            token = self.next()
            if token.text == "]":
                result = Array(result, None)
            elif token.kind == "int":
                length = int(token.text)
                if length < 1:
                    message = (
                        f"array length must be at least 1, got {length}; {result}[] is any length"
                    )
                    raise self.error(message, token.pos)
                self.expect("]", "expected ']' after the array length")
                result = Array(result, length)
            else:
                raise self.error(
                    f"expected an array length or ']', got {self.what(token)}", token.pos
                )
            height += 1
            if height > MAX_DEPTH:
                raise self.error(f"type nested deeper than {MAX_DEPTH} levels", start)
        return result, height

    def primary(self) -> tuple[RecordType, int]:
        token = self.next()
        if token.kind == "ident":
            word = token.text
            if word in _SCALARS:
                return Scalar(word), 1
            if word == "any":
                return Any(), 1
            if word == "tensor":
                return self.tensor(), 1
            if word in self.named:
                named = self.named[word]
                return named, _height(named)
            known = [*SCALAR_NAMES, "any", "tensor", *self.named]
            hint = _suggest(word, known) or f"; known: {', '.join(known)}, {{...}}"
            raise self.error(f"unknown type {word!r}{hint}", token.pos)
        if token.text not in ("(", "{"):
            raise self.error(f"expected a type, got {self.what(token)}", token.pos)
        self.depth += 1  # bounds the recursion on the way down, whatever the text
        if self.depth > MAX_DEPTH:
            raise self.error(f"type nested deeper than {MAX_DEPTH} levels", token.pos)
        if token.text == "{":
            result = self.braces(token)
        else:
            result = self.type()
            closing = self.next()
            if closing.text != ")":
                if closing.kind == "end":
                    raise self.error("unterminated '('", token.pos)
                raise self.error(f"expected ')', got {self.what(closing)}", closing.pos)
        self.depth -= 1
        return result

    def tensor(self) -> Tensor:
        self.expect("<", "expected '<' after 'tensor', as in tensor<float32>[3,4]")
        token = self.next()
        if token.text not in TENSOR_DTYPES or token.kind != "ident":
            if token.kind != "ident":
                raise self.error(f"expected a tensor dtype, got {self.what(token)}", token.pos)
            hint = (
                _suggest(token.text, list(TENSOR_DTYPES)) or f"; known: {', '.join(TENSOR_DTYPES)}"
            )
            raise self.error(f"unknown tensor dtype {token.text!r}{hint}", token.pos)
        self.expect(">", "expected '>' after the tensor dtype")
        if self.peek().text != "[":
            return Tensor(token.text, None)
        opening = self.next()
        if self.peek().text == "]":
            message = f"empty tensor shape; write tensor<{token.text}> for any shape"
            raise self.error(message, self.peek().pos)
        dims: list[int | None] = []
        while True:
            dim = self.next()
            if dim.text == "?":
                dims.append(None)
            elif dim.kind == "int":
                if int(dim.text) < 1:
                    raise self.error(
                        f"tensor dimension must be at least 1 or '?', got {dim.text}", dim.pos
                    )
                dims.append(int(dim.text))
            elif dim.kind == "end":
                raise self.error("unterminated tensor shape", opening.pos)
            else:
                raise self.error(f"expected a dimension size or '?', got {self.what(dim)}", dim.pos)
            separator = self.next()
            if separator.text == "]":
                return Tensor(token.text, tuple(dims))
            if separator.kind == "end":
                raise self.error("unterminated tensor shape", opening.pos)
            if separator.text != ",":
                raise self.error(f"expected ',' or ']', got {self.what(separator)}", separator.pos)

    def braces(self, opening: _Token) -> tuple[RecordType, int]:
        if self.peek().text == "}":
            message = "empty braces: a struct needs a field, a variant two options"
            raise self.error(message, self.peek().pos)
        first, height = self.type()
        token = self.peek()
        if token.kind == "ident":
            return self.struct(opening, first, height)
        if token.text == "|":
            return self.variant(opening, first, height)
        if token.kind == "end":
            raise self.error("unterminated struct or variant", opening.pos)
        if token.text == "}":
            message = f"expected a field name or '|', got '}}' (one option is just {first})"
            raise self.error(message, token.pos)
        raise self.error(f"expected a field name or '|', got {self.what(token)}", token.pos)

    def struct(
        self, opening: _Token, field_type: RecordType, height: int
    ) -> tuple[RecordType, int]:
        fields: dict[str, RecordType] = {}
        while True:
            name = self.next()
            if name.kind != "ident":
                if name.kind == "end":
                    raise self.error("unterminated struct", opening.pos)
                raise self.error(f"expected a field name, got {self.what(name)}", name.pos)
            if name.text in fields:
                raise self.error(f"duplicate field name {name.text!r}", name.pos)
            fields[name.text] = field_type
            separator = self.next()
            if separator.text == ";" and self.peek().text == "}":
                separator = self.next()  # a trailing ';' is fine, as in C
            if separator.text == "}":
                break
            if separator.kind == "end" or (separator.text == ";" and self.peek().kind == "end"):
                raise self.error("unterminated struct", opening.pos)
            if separator.text != ";":
                raise self.error(f"expected ';' or '}}', got {self.what(separator)}", separator.pos)
            field_type, field_height = self.type()
            height = max(height, field_height)
        return Struct(tuple(fields.items())), height + 1

    def variant(self, opening: _Token, first: RecordType, height: int) -> tuple[RecordType, int]:
        options = [first]
        while True:
            separator = self.next()
            if separator.text == "}":
                break
            if separator.kind == "end":
                raise self.error("unterminated variant", opening.pos)
            if separator.text != "|":
                raise self.error(f"expected '|' or '}}', got {self.what(separator)}", separator.pos)
            start = self.peek().pos
            option, option_height = self.type()
            if option in options:
                raise self.error(f"duplicate variant option {option}", start)
            options.append(option)
            height = max(height, option_height)
        return Variant(tuple(options)), height + 1


def parse_type(text: str, named: Mapping[str, RecordType] | None = None) -> RecordType:
    """Parse an MPAI-AIF type string; raise ``TypeSyntaxError`` pointing at the fault.

    ``named`` maps the names of types declared elsewhere (MPAI-AIF metadata ``Types``) to
    their parsed types; a reference is replaced by the type it names.
    """
    if not isinstance(text, str):
        raise TypeError(f"a type must be given as a str, got {type(text).__name__}")
    return _Parser(text, named or {}).parse()
