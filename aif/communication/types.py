"""The MPAI-AIF type grammar: parse a port's type, check values against it, compare ports.

A port type is written as MPAI-AIF writes it, plus ``bool``, ``string``, ``any`` and tensors.
Grammar (EBNF; whitespace may separate any two tokens)::

    type    = primary , { "[" , [ size ] , "]" } ;           (* T[] any length, T[N] fixed *)
    primary = scalar | "any" | tensor | braces | "(" , type , ")" | name ;
    scalar  = "byte" | "bool" | "string" | "int8" | "int16" | "int32" | "int64"
            | "uint8" | "uint16" | "uint32" | "uint64" | "float32" | "float64" ;
    tensor  = "tensor" , "<" , dtype , ">" , [ "[" , dim , { "," , dim } , "]" ] ;
    dim     = size | "?" ;                                     (* "?": any size *)
    dtype   = "bool" | "int8" .. "int64" | "uint8" .. "uint64" | "float16"
            | "float32" | "float64" | "complex64" | "complex128" ;
    braces  = "{" , ( struct | variant ) , "}" ;
    struct  = type , ident , { ";" , type , ident } , [ ";" ] ;  (* unique field names *)
    variant = type , "|" , type , { "|" , type } ;              (* distinct options *)
    size    = digit , { digit } ;                              (* at least 1 *)
    name    = ident ;                                          (* a key of ``named`` *)
    ident   = ( letter | "_" ) , { letter | digit | "_" } ;

Suffixes read left to right: ``int32[3][]`` is a list of any length of 3-element lists. The
first ``[...]`` after ``tensor<dtype>`` is its shape, so an array of tensors groups the
tensor: ``(tensor<float32>)[]``, ``(tensor<float32>[3])[2]``. Built-in names win over
``named`` ones. ``str(t)`` is the canonical spelling and ``parse_type(str(t)) == t``.

Python values that fit each type (``check``):

=========================  ===================================================================
``int8`` .. ``uint64``,    ``int`` or numpy integer scalar in range (``bool`` is not an int)
``byte``
``float32``, ``float64``   ``float`` or ``int`` (or numpy scalar) within the type's range
``bool`` / ``string``      ``bool`` (or ``numpy.bool_``) / ``str``
``any``                    anything
``T[]``, ``T[N]``          ``list`` or ``tuple`` of T; also a 1-d numpy array whose dtype is
                           a scalar type T accepts (``int32[]``: int32, int16, uint8...;
                           checked in O(1)), and bytes, bytearray or memoryview where T
                           accepts ``uint8`` (``byte[]``, ``uint8[]``...)
``{T a; U b}``             ``dict`` with exactly the keys ``a`` and ``b``
``{T | U}``                a value that fits one of the options
``tensor<dt>[...]``        numpy ndarray or torch Tensor of dtype ``dt`` and that shape
=========================  ===================================================================

An output port of type P may feed an input port of type A (``A.accepts(P)``, or
``compatibility_problem(P, A) is None``) when: P == A; A is ``any`` (an ``any`` output feeds
only ``any``); scalars widen losslessly (intN -> intM and uintN -> uintM for M > N, uintN ->
intM for M > N, up to 16-bit ints -> float32, up to 32-bit ints -> float64, float32 -> float64,
byte = uint8); arrays element-wise, ``T[N]`` into ``T[]`` but not back; structs field by field,
with the same field names; every option of a variant P fits A, or a non-variant P fits one
option of a variant A; tensors of one dtype whose accepted dims are ``?`` or equal (an
any-shape tensor feeds only an any-shape one). The rules are sound: a value that fits P also
fits every A that accepts P, so checking at the writer suffices.

This module is the public home of the type grammar and re-exports it from three modules,
one concern each. Imports run one way: ``type_parser`` and ``type_compat`` import
``type_model``, which imports neither (``RecordType.accepts`` imports ``compatibility_problem``
when called), so any of them may be imported first::

    type_model.py    RecordType and its subclasses, with ``check`` for Python values
    type_parser.py   parse_type: tokenizer, recursive descent, TypeSyntaxError positions
    type_compat.py   compatibility_problem: which output port type may feed which input

Import from here (``from aif.communication.types import parse_type``); the modules behind
it may be rearranged without notice.
"""

from __future__ import annotations

from aif.communication.type_compat import compatibility_problem
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
from aif.communication.type_parser import parse_type

__all__ = [
    "MAX_DEPTH",
    "SCALAR_NAMES",
    "TENSOR_DTYPES",
    "Any",
    "Array",
    "RecordType",
    "Scalar",
    "Struct",
    "Tensor",
    "Variant",
    "compatibility_problem",
    "parse_type",
]
