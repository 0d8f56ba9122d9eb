"""Knob constraints: arithmetic comparisons over knob values ("NUM_HEADS % NUM_KV_HEADS == 0"), parsed safely
(no names but knobs, no calls) and checked on a whole configuration before a run starts."""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.Name, ast.Load,
            ast.Constant, *_BINARY, *_UNARY, *_COMPARE)


def parse_constraint(text: str, names: set[str]) -> ast.Expression:
    """The parsed expression; ValueError naming what is wrong (syntax, a name that is no knob, a call)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"knob constraint {text!r} is not an expression like 'A % B == 0'") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ValueError(f"knob constraint {text!r}: {type(node).__name__} is not allowed (only knob names, "
                             f"numbers, + - * / // % **, comparisons, and/or/not)")
        if isinstance(node, ast.Name) and node.id not in names:
            raise ValueError(f"knob constraint {text!r}: {node.id!r} is not a knob (knobs: {', '.join(sorted(names))})")
    if not isinstance(tree.body, (ast.Compare, ast.BoolOp)) and not (
            isinstance(tree.body, ast.UnaryOp) and isinstance(tree.body.op, ast.Not)):
        raise ValueError(f"knob constraint {text!r} compares nothing (write e.g. 'A % B == 0')")
    return tree


def _eval(node: ast.AST, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, values)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.BoolOp):
        parts = (_eval(v, values) for v in node.values)
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    left = _eval(node.left, values)
    for op, right_node in zip(node.ops, node.comparators):
        right = _eval(right_node, values)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def constraint_holds(text: str, values: dict[str, Any]) -> bool | None:
    """Whether the configuration satisfies the constraint; None when a knob it names has no value."""
    tree = parse_constraint(text, set(values) | _names(text))
    if any(name not in values for name in _names(text)):
        return None
    try:
        result = _eval(tree, values)
    except (ZeroDivisionError, TypeError, OverflowError, ValueError):
        return False  # e.g. A % 0: no configuration that divides by zero is a valid one
    if isinstance(result, float) and math.isnan(result):
        return False
    return bool(result)


def _names(text: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}


def check_configuration(knobs: list, constraints: list[str], values: dict[str, Any],
                        proposed: set[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The values with integer knobs as ints, and every problem: a non-integer for an int knob, a value outside
    its range or choices (of the `proposed` knobs; default all), a knob constraint that fails over all of them.
    `knobs` are the playbook's Knob declarations."""
    out = dict(values)
    problems = []
    for knob in knobs:
        if knob.name not in out or (proposed is not None and knob.name not in proposed):
            continue
        value = out[knob.name]
        if knob.type == "categorical":
            if value not in knob.choices:
                problems.append(f"{knob.name}={value!r} is not one of its choices {knob.choices}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{knob.name}={value!r} is not a number")
            continue
        if knob.type == "int":
            if value != int(value):
                problems.append(f"{knob.name}={value!r} is not an integer (an int knob)")
                continue
            out[knob.name] = value = int(value)
        if not knob.low <= value <= knob.high:
            problems.append(f"{knob.name}={value!r} is outside [{knob.low:g}, {knob.high:g}]")
    for text in constraints:
        if constraint_holds(text, out) is False:
            named = ", ".join(f"{n}={out[n]!r}" for n in sorted(_names(text)))
            problems.append(f"knob constraint {text!r} fails for {named}")
    return out, problems
