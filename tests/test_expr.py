"""Routing-condition expressions: tokenizer, parser, evaluator and error positions (no broker)."""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamcompose.conditions import expr, expr_lexer
from streamcompose.conditions.expr import (
    MAX_DEPTH,
    And,
    Compare,
    Condition,
    ExpressionError,
    Field,
    Has,
    Literal,
    Not,
    Or,
    parse,
)
from streamcompose.errors import StreamComposeError


def holds(source: str, payload: Any = None, /, **fields: Any) -> bool:
    """Parse ``source`` and evaluate it on ``payload`` (or on the keyword arguments)."""
    return parse(source).evaluate(fields if payload is None else payload)


def error(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    return info.value


# ---- the syntax tree and precedence ----

def test_condition_keeps_text_tree_and_fields() -> None:
    cond = parse("kind == 'image' and not has(meta.skip) or score > 0.5")
    assert isinstance(cond, Condition)
    assert cond.text == "kind == 'image' and not has(meta.skip) or score > 0.5"
    assert cond.fields == frozenset({"kind", "meta.skip", "score"})
    assert cond.root == Or((
        And((Compare("==", Field("kind"), Literal("image")), Not(Has(Field("meta.skip"))))),
        Compare(">", Field("score"), Literal(0.5)),
    ))


def test_nodes_are_frozen_and_hashable() -> None:
    cond = parse("a == 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.root.op = "!="  # type: ignore[union-attr]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.text = "b"  # type: ignore[misc]
    assert hash(parse("a == 1")) == hash(cond)
    assert parse("a == 1") == cond


def test_and_binds_tighter_than_or() -> None:
    assert parse("a or b and c").root == Or((Field("a"), And((Field("b"), Field("c")))))
    assert parse("a and b or c").root == Or((And((Field("a"), Field("b"))), Field("c")))
    assert holds("a or b and c", a=1, b=0, c=0)
    assert not holds("(a or b) and c", a=1, b=0, c=0)


def test_not_binds_tighter_than_and_but_looser_than_comparison() -> None:
    assert parse("not a and b").root == And((Not(Field("a")), Field("b")))
    assert parse("not a == 1").root == Not(Compare("==", Field("a"), Literal(1)))
    assert parse("not not a").root == Not(Not(Field("a")))
    assert holds("not a and b", a=0, b=1)
    assert not holds("not (a and b)", a=1, b=1)
    assert holds("not a == 1", a=2)


def test_chains_are_flat_and_short_circuit() -> None:
    assert parse("a and b and c").root == And((Field("a"), Field("b"), Field("c")))
    assert parse("a or b or c").root == Or((Field("a"), Field("b"), Field("c")))
    long_chain = " and ".join(f"f{i} == {i}" for i in range(2000))
    assert holds(long_chain, {f"f{i}": i for i in range(2000)})
    assert not holds(long_chain, {f"f{i}": i for i in range(1999)})


def test_parentheses_group_and_nest() -> None:
    assert parse("((a))").root == Field("a")
    assert holds("(a or b) and (c or d)", a=0, b=1, c=0, d=1)
    assert not holds("(a or b) and (c or d)", a=0, b=1, c=0, d=0)
    assert holds("(a == 1) == true", a=1)
    assert holds("(a == 1) != (b == 1)", a=1, b=2)


def test_nesting_limit_is_an_expression_error_not_a_recursion_error() -> None:
    ok = "(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert holds(ok, x=1)
    assert holds("not " * MAX_DEPTH + "x", x=1)  # an even number of nots
    too_deep = "(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1)
    assert error(too_deep).position == MAX_DEPTH
    assert error("not " * 1000 + "x").position == 4 * MAX_DEPTH
    assert error("(" * 5000).position == MAX_DEPTH


# ---- operators ----

@pytest.mark.parametrize(("text", "expected"), [
    ("n == 3", True), ("n == 3.0", True), ("n == 4", False),
    ("n != 4", True), ("n != 3", False),
    ("n < 4", True), ("n < 3", False), ("n <= 3", True), ("n <= 2.5", False),
    ("n > 2", True), ("n > 3", False), ("n >= 3", True), ("n >= 3.5", False),
    ("2 < n", True), ("3 == n", True),
    ("s == 'b'", True), ("s != 'b'", False), ("s < 'c'", True), ("s > 'a'", True),
    ("s <= 'b'", True), ("s >= 'bb'", False),
    ("n in [1, 2, 3]", True), ("n in [1, 2]", False), ("n not in [1, 2]", True),
    ("n not in [3]", False), ("s in 'abc'", True), ("s not in 'xyz'", True),
])
def test_every_operator(text: str, expected: bool) -> None:
    assert holds(text, n=3, s="b") is expected


def test_not_in_is_one_operator_whatever_the_spacing() -> None:
    assert parse("x not in y").root == Compare("not in", Field("x"), Field("y"))
    assert parse("x not\t in  y").root == Compare("not in", Field("x"), Field("y"))
    assert parse("not x in y").root == Not(Compare("in", Field("x"), Field("y")))
    assert parse("x not in in_list").fields == frozenset({"x", "in_list"})
    assert error("x not in_list").position == 2  # 'in_list' is a name, not 'in'


def test_in_on_lists_strings_and_maps() -> None:
    assert holds("'urgent' in tags", tags=["low", "urgent"])
    assert not holds("'urgent' in tags", tags=["low"])
    assert holds("'urgent' not in tags", tags=["low"])
    assert holds("'ab' in text", text="xxabyy")
    assert not holds("'ba' in text", text="xxabyy")
    assert holds("'' in text", text="")
    assert holds("'k' in meta", meta={"k": 0})  # a map's keys
    assert holds("'v' not in meta", meta={"k": "v"})
    assert holds("x in (tags)", x=2, tags=(1, 2))
    assert holds("x in tags", x=2, tags={1, 2})
    assert holds("pair in [1, 2] or pair in pairs", pair=[1, 2], pairs=[[0, 1], [1, 2]])


def test_in_where_it_does_not_apply_is_false_both_ways() -> None:
    for right in (5, 2.5, True, None, object()):
        assert not holds("1 in r", r=right)
        assert not holds("1 not in r", r=right)
    assert not holds("1 in text", text="a1b")  # a number is never a substring
    assert not holds("1 not in text", text="a1b")
    assert not holds("'a' in missing")
    assert not holds("'a' not in missing")
    assert not holds("missing in [1]")
    assert not holds("missing not in [1]")


def test_in_uses_the_languages_equality() -> None:
    assert not holds("x in [1, 2]", x=True)  # bools are not numbers
    assert holds("x in [true]", x=True)
    assert holds("x in [1.0]", x=1)
    assert not holds("x in ['1']", x=1)
    assert holds("x in [null]", x=None)
    assert holds("x in []", x=1) is False
    assert holds("x not in []", x=1)


# ---- literals ----

@pytest.mark.parametrize(("source", "value"), [
    ("0", 0), ("42", 42), ("-7", -7), ("3.25", 3.25), ("-0.5", -0.5), (".5", 0.5),
    ("-.5", -0.5), ("1.", 1.0), ("1e3", 1000.0), ("2E-2", 0.02), ("-1.5e+2", -150.0),
    ("12345678901234567890", 12345678901234567890),
])
def test_numbers(source: str, value: int | float) -> None:
    literal = parse(source).root
    assert literal == Literal(value)
    assert type(literal.value) is type(value)  # type: ignore[union-attr]


def test_negative_numbers_need_no_space() -> None:
    assert holds("x == -1", x=-1)
    assert holds("x>-1", x=0)
    assert holds("x in [-1, -2.5]", x=-2.5)


@pytest.mark.parametrize(("source", "value"), [
    ("'single'", "single"), ('"double"', "double"), ("''", ""), ('""', ""),
    ("'it\\'s'", "it's"), ('"say \\"hi\\""', 'say "hi"'),
    ("'\"inner\"'", '"inner"'), ('"it\'s"', "it's"),
    ("'a\\\\b'", "a\\b"), ("'tab\\there'", "tab\there"), ("'l1\\nl2\\r'", "l1\nl2\r"),
    ("'nul\\0'", "nul\0"), ("'\\u00e9t\\u00C9'", "étÉ"), ("'héllo ✓'", "héllo ✓"),
    ("'and or not in'", "and or not in"),
])
def test_strings(source: str, value: str) -> None:
    assert parse(source).root == Literal(value)
    assert holds(f"s == {source}", s=value)


def test_constants_and_lists() -> None:
    assert parse("true").root == Literal(True)
    assert parse("false").root == Literal(False)
    assert parse("null").root == Literal(None)
    assert parse("[]").root == Literal(())
    assert parse("[1, 'a', true, null, -2e0]").root == Literal((1, "a", True, None, -2.0))
    assert holds("tags == ['a', 'b']", tags=["a", "b"])
    assert holds("tags == []", tags=[])
    assert not holds("tags == ['b', 'a']", tags=["a", "b"])
    assert holds("tags != ['a']", tags=["a", "b"])


def test_literal_only_conditions_are_truth_tested() -> None:
    assert holds("true") and not holds("false") and not holds("null")
    assert holds("1") and not holds("0") and not holds("''") and holds("'x'")
    assert holds("[0]") and not holds("[]")
    assert holds("1 == 1.0") and not holds("1 == '1'")


# ---- fields ----

def test_nested_fields() -> None:
    payload = {"meta": {"source": "camera", "size": {"w": 640}, "in": 1}}
    assert holds("meta.source == 'camera'", payload)
    assert holds("meta.size.w >= 640", payload)
    assert holds("meta.in == 1", payload)  # a keyword may be a later part of a dotted name
    assert parse("meta.size.w").fields == frozenset({"meta.size.w"})
    assert not holds("meta.size.h == 1", payload)
    assert not holds("meta.source.x == 1", payload)  # a string is not a map
    assert not holds("meta.size.w.x")
    assert holds("_private_1 == 2", {"_private_1": 2})


def test_fields_never_reach_attributes_or_indexes() -> None:
    payload = {"s": "text", "items": [10, 20], "d": {"k": 1}}
    assert not holds("has(s.__class__)", payload)
    assert not holds("has(d.keys)", payload)
    assert error("items.0 == 10").position == 6


def test_has() -> None:
    payload = {"a": None, "b": 0, "m": {"x": None}}
    assert holds("has(a)", payload)  # present, even as null
    assert holds("has(b) and not b", payload)
    assert holds("has(m.x)", payload)
    assert not holds("has(m.y)", payload)
    assert not holds("has(c)", payload)
    assert holds("not has(c)", payload)
    assert holds("has( m.x )", payload)
    assert parse("has(m.x)").fields == frozenset({"m.x"})


def test_bare_fields_are_truth_tested() -> None:
    assert holds("flag", flag=True)
    for falsy in (False, 0, 0.0, "", [], {}, None):
        assert not holds("flag", flag=falsy)
        assert holds("not flag", flag=falsy)
    assert holds("flag", flag=[0])
    assert not holds("missing")
    assert holds("not missing")


def test_comparisons_with_a_missing_field_are_false() -> None:
    for op in ("==", "!=", "<", "<=", ">", ">=", "in", "not in"):
        assert not holds(f"missing {op} 1"), op
        assert not holds(f"1 {op} missing"), op
        assert not holds(f"missing {op} null"), op
        assert not holds(f"a.missing {op} 1", a={}), op
    assert not holds("missing == missing")
    assert holds("not (missing == 1)")


def test_payloads_that_are_not_maps_have_no_fields() -> None:
    for payload in (None, [], ["x"], "text", "x", 5, object()):
        assert not parse("x == 1").evaluate(payload)
        assert parse("not has(x)").evaluate(payload)


# ---- types ----

@pytest.mark.parametrize("text", [
    "n == '1'", "n != '1'", "n < '2'", "s > 0", "s in [1]",
    "b == 1", "b != 1", "b < 2", "b >= 0", "1 == b", "t == 1",
    "n == [1]", "n != [1]", "l == 'x'", "l != 'x'", "m == 'x'", "m != ['k']",
    "n < null", "null < n", "l < [2]", "m < m", "t < f", "o == 1", "o != 1",
])
def test_comparing_different_types_is_false(text: str) -> None:
    payload = {"n": 1, "s": "1", "b": True, "t": True, "f": False, "l": ["x"], "m": {"k": 1},
               "o": object()}
    assert holds(text, payload) is False


def test_null_compares_with_anything_by_equality() -> None:
    assert holds("x == null", x=None)
    assert not holds("x == null", x=0)
    assert holds("x != null", x=0)
    assert holds("x != null", x="")
    assert not holds("x != null", x=None)
    assert holds("null == null")


def test_bools_compare_only_with_bools() -> None:
    assert holds("b == true", b=True)
    assert holds("b != false", b=True)
    assert not holds("b == 1", b=True)
    assert not holds("n == true", n=1)


def test_maps_and_lists_compare_item_by_item() -> None:
    assert holds("a == b", a={"x": [1, {"y": 2}]}, b={"x": [1.0, {"y": 2}]})
    assert not holds("a == b", a={"x": [1]}, b={"x": [True]})
    assert holds("a != b", a={"x": 1}, b={"x": 2})
    assert holds("a != b", a={"x": 1}, b={"y": 1})
    assert holds("a == b", a=(1, 2), b=[1, 2])


def test_floats_and_nan() -> None:
    assert holds("x == 0.1", x=0.1)
    assert not holds("x == x", x=math.nan)
    assert holds("x != x", x=math.nan)
    assert not holds("x < 1", x=math.nan) and not holds("x >= 1", x=math.nan)
    assert holds("x > 1e308", x=math.inf)


def test_numpy_scalars_act_as_python_scalars() -> None:
    assert holds("x == 3", x=np.int64(3))
    assert holds("x > 0.25", x=np.float32(0.5))
    assert holds("x < 1", x=np.array(0.5))  # 0-d array
    assert holds("x == true", x=np.bool_(True))
    assert not holds("x == 1", x=np.bool_(True))
    assert holds("x == 'cat'", x=np.str_("cat"))
    assert holds("x in [1, 2]", x=np.uint8(2))
    assert holds("x", x=np.float64(0.1)) and not holds("x", x=np.int32(0))
    assert holds("x == y", x=np.int16(7), y=np.array(7.0))


def test_numpy_arrays_work_with_in_only() -> None:
    assert holds("2 in x", x=np.array([1, 2, 3]))
    assert holds("5 not in x", x=np.array([1, 2, 3]))
    assert holds("'b' in x", x=np.array(["a", "b"]))
    assert holds("[1, 2] in x", x=np.array([[1, 2], [3, 4]]))
    assert holds("x in [2, 3]", x=np.array([2]).reshape(()))
    assert not holds("x == [1, 2]", x=np.array([1, 2]))
    assert not holds("x != [1, 2]", x=np.array([1, 2]))
    assert not holds("x == x", x=np.array([1, 2]))
    assert not holds("x < 3", x=np.array([1, 2]))
    assert not holds("x in [1]", x=np.array([1]))
    assert holds("2 in x", x=[np.int64(1), np.int64(2)])
    assert holds("x", x=np.array([0, 0])) and not holds("x", x=np.array([]))


class _Hostile:
    """A payload value whose every operation raises."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")

    __hash__ = object.__hash__


class _HostileMap(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("getitem")

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("contains")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("iter")

    def __len__(self) -> int:
        raise RuntimeError("len")


def test_evaluation_never_raises() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    payloads: list[Any] = [
        {"x": _Hostile()}, {"x": [_Hostile()]}, {"x": {"y": _Hostile()}}, _HostileMap(),
        {"x": _HostileMap()}, {"x": loop}, {"x": np.array([np.nan, 1])},
        {"x": np.array(["a", 1], dtype=object)}, {"x": b"bytes"}, {"x": 1j}, None,
    ]
    texts = ["x", "not x", "x == 1", "x != 1", "x == x", "x != x", "x < 1", "1 in x",
             "x in [1]", "'a' in x", "x not in x", "has(x.y)", "x.y == 1", "(x == 1) == false"]
    for payload in payloads:
        for text in texts:
            assert parse(text).evaluate(payload) in (True, False)
    assert not holds("x", x=_Hostile())
    assert not holds("x == 1", x=_Hostile())
    assert holds("(x == 1) == false", x=_Hostile())
    assert not holds("has(x.y)", x=_HostileMap())


# ---- errors ----

@pytest.mark.parametrize(("text", "position", "message"), [
    ("kind == 'image' and )", 20, "unexpected ')'"),
    ("", 0, "empty expression"),
    ("   ", 3, "empty expression"),
    ("(a == 1", 7, "expected ')' to close '(' at position 0"),
    ("((a == 1) and b", 15, "expected ')' to close '(' at position 0"),
    ("a == 1 b", 7, "unexpected 'b'"),
    ("a ==", 4, "unexpected end of expression"),
    ("a == and", 5, "unexpected 'and'"),
    ("a or", 4, "unexpected end of expression"),
    ("a & b", 2, "unexpected '&' (use 'and')"),
    ("a && b", 2, "unexpected '&&' (use 'and')"),
    ("a || b", 2, "unexpected '||' (use 'or')"),
    ("!a", 0, "unexpected '!' (use 'not')"),
    ("x = 1", 2, "did you mean '=='?"),
    ("a == $x", 5, "unexpected '$'"),
    ("a == 'abc", 5, "unterminated string"),
    ('a == "abc\\"', 5, "unterminated string"),
    ("a == 'x\\q'", 7, "invalid escape '\\q'"),
    ("a == '\\u12g4'", 6, "invalid \\u escape"),
    ("n > 1e", 5, "malformed exponent"),
    ("n > 12abc", 6, "unexpected 'a' after number"),
    ("n > 1.2.3", 7, "unexpected '.' after number"),
    ("n > - 1", 4, "unexpected '-'"),
    ("a. == 1", 2, "expected a name after '.'"),
    ("a.b. == 1", 4, "expected a name after '.'"),
    ("café == 1", 3, "unexpected 'é'"),
    ("[1, 2", 5, "expected ']' to close '[' at position 0"),
    ("x in [1 2]", 8, "expected ']'"),
    ("x in [1,]", 8, "expected a number, string, true, false or null"),
    ("x in [y]", 6, "expected a number, string"),
    ("x in [[1]]", 6, "unexpected '['"),
    ("has x", 4, "expected has(field)"),
    ("has(1)", 4, "expected has(field)"),
    ("has(x", 5, "expected ')' to close '('"),
    ("has", 3, "unexpected end of expression"),
    ("a < b < c", 6, "comparisons cannot be chained"),
    ("a in b not in c", 7, "comparisons cannot be chained"),
    ("a not b", 2, "unexpected 'not'"),
    ("x == 1)", 6, "unexpected ')'"),
    ("()", 1, "unexpected ')'"),
    ("True", 0, "keywords are lower case: did you mean true?"),
    ("x == False", 5, "did you mean false?"),
    ("x == None", 5, "did you mean null?"),
    ("x == NULL", 5, "did you mean null?"),
    ("a AND b", 2, "did you mean and?"),
    ("Not a", 0, "did you mean not?"),
    ("x == 'a' 'b'", 9, "unexpected string 'b'"),
    ("in", 0, "unexpected 'in'"),
])
def test_error_positions(text: str, position: int, message: str) -> None:
    exc = error(text)
    assert exc.position == position, str(exc)
    assert message in exc.message
    assert exc.expression == text


def test_a_number_with_too_many_digits_is_an_expression_error() -> None:
    exc = error("n > " + "9" * 5000)
    assert (exc.position, exc.message) == (4, "number too long")
    assert holds("n < " + "9" * 4000, n=1)


def test_error_attributes_and_format() -> None:
    exc = error("kind == 'image' and )")
    assert isinstance(exc, StreamComposeError)
    assert not exc.retriable
    assert str(exc) == "unexpected ')' at position 20 in: kind == 'image' and )"
    assert exc.pointer() == "kind == 'image' and )\n" + " " * 20 + "^"
    assert exc.context == {"expression": "kind == 'image' and )", "position": 20}
    assert error("\ta ==").pointer() == "\ta ==\n\t    ^"
    lexical = error("a == $")
    assert lexical.__cause__ is None and lexical.__suppress_context__  # no internal error shown


# ---- safety: the text is never evaluated as Python ----

@pytest.mark.parametrize(("text", "position"), [
    ("__import__('os')", 10),
    ("__import__('os').system('true')", 10),
    ("open('/etc/passwd').read()", 4),
    ("x.__class__.__bases__[0]", 21),
    ("lambda: 1", 6),
    ("[c for c in ()]", 1),
    ("1 if x else 2", 2),
    ("x ; y", 2),
    ("'a' + 'b'", 4),
])
def test_python_is_not_accepted(text: str, position: int) -> None:
    assert error(text).position == position


def test_dunder_names_are_just_missing_fields() -> None:
    assert not holds("__builtins__")
    assert not holds("has(__class__)")
    assert not holds("x.__class__ == 'str'", x="s")


@pytest.mark.parametrize("module", [expr, expr_lexer])
def test_modules_never_call_eval_exec_or_compile(module: Any) -> None:
    source = Path(module.__file__).read_text(encoding="utf-8")
    for banned in ("eval(", "exec(", "compile(", "literal_eval", "__import__", "importlib"):
        assert banned not in source, banned
    forbidden = {"eval", "exec", "compile", "__import__", "getattr", "literal_eval"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
            assert name not in forbidden, ast.unparse(node)
        if isinstance(node, ast.Import | ast.ImportFrom):
            assert not {alias.name for alias in node.names} & {"ast", "builtins"}


# ---- the tokenizer on its own ----

def test_tokens_carry_kinds_positions_and_values() -> None:
    tokens = list(expr_lexer.tokenize("a.b not  in ['x', 2]"))
    assert [(t.kind, t.pos) for t in tokens] == [
        ("name", 0), ("not in", 4), ("[", 12), ("string", 13), (",", 16), ("number", 18),
        ("]", 19), ("end", 20),
    ]
    assert tokens[1].text == "not  in"
    assert tokens[3].value == "x" and tokens[3].text == "'x'"
    assert tokens[5].value == 2
    assert [t.kind for t in expr_lexer.tokenize("not x not")] == ["not", "name", "not", "end"]
    with pytest.raises(expr_lexer.TokenizeError) as info:
        list(expr_lexer.tokenize("a @ b"))
    assert info.value.position == 2


@pytest.mark.parametrize(("text", "position"), [
    ("a b $", 2), ("has x $", 4), ("(a == 1 ] 'unterminated", 8), ("a == ) 1e", 5),
    ("not $", 4), ("x in [y, 'unterminated", 6),
])
def test_the_first_error_wins_over_a_bad_character_further_on(text: str, position: int) -> None:
    assert error(text).position == position
