"""
Task generator: writes programming tasks to tasks.jsonl. This is the file you edit.

Each line of tasks.jsonl is one task:
  {"id", "statement", "solution" (python source defining `entry_point`),
   "tests" (python source with asserts calling it), "entry_point"}
The protected scorer (score.py) keeps a task only if its reference solution passes its tests,
no trivial solution (returning None / 0 / 1 / "" / [] / True / False / its first argument)
passes them, it runs within the time limit, and it is not a duplicate. Objective: `yield`, the
number of such tasks (maximize), within the scorer's cap of tasks and its budget of function calls.

Run: SEED=1 python generate.py && python score.py --run-dir .
Stdlib only. Prints `---` then `key: value` lines.
"""

import ast
import json
import os
import random
import sys
import time

# ---------------------------------------------------------------------------
# Knobs (each overridable by an environment variable of the same name)
# ---------------------------------------------------------------------------

NUM_TASKS = int(os.environ.get("NUM_TASKS", 100))                      # tasks written to tasks.jsonl
TEMPLATE_MIX = os.environ.get("TEMPLATE_MIX", "balanced")              # family weights preset: a key of MIXES
PARAM_RANGE = int(os.environ.get("PARAM_RANGE", 6))                    # task constants drawn from 1..PARAM_RANGE; also scales recursion inputs
TEST_COUNT = int(os.environ.get("TEST_COUNT", 2))                      # asserts per task (each costs one scorer budget unit)
CREATIVITY = float(os.environ.get("CREATIVITY", 0.5))                  # chance of each extra twist: more variety, more broken references
SEED = int(os.environ.get("SEED", 1))                                  # seeds the generator's RNG

# Fixed (not knobs).
OUT_FILE = "tasks.jsonl"                 # written to the current directory
MAX_TWISTS = 3                           # at most this many twists chained onto one task
BUG_PER_TWIST = 0.3                      # chance each twist leaves the reference solution subtly broken
BASE_BUG = 0.02                          # chance any reference solution is subtly broken
MIXES = {                                # family weights: arith, string, list, predicate, recursion
    "balanced": (1, 1, 1, 1, 1),
    "arith_heavy": (4, 1, 1, 1, 1),
    "string_heavy": (1, 4, 1, 1, 1),
    "list_heavy": (1, 1, 4, 1, 1),
    "predicate_heavy": (1, 1, 1, 4, 1),
    "recursion_heavy": (1, 1, 1, 1, 4),
}
LETTERS = "abcdefgh"                     # alphabet of generated strings and character parameters


# ---------------------------------------------------------------------------
# Task families. An op is a function body computing `result`; `out` is its result type.
# ---------------------------------------------------------------------------

def _int(rng, lo=-20, hi=20):
    return rng.randint(lo, hi)


def _str(rng, max_len=8):
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(0, max_len)))


def _list(rng, max_len=6):
    return [rng.randint(-9, 9) for _ in range(rng.randint(0, max_len))]


def arith_ops(rng, R):
    a, b = rng.randint(1, R), rng.randint(1, R)
    x = lambda: (_int(rng),)
    return rng.choice([
        dict(name="add_const", args="x", out="int", gen=x, desc=f"returns x plus {a}",
             body=f"result = x + {a}"),
        dict(name="times_const", args="x", out="int", gen=x, desc=f"returns x multiplied by {a}",
             body=f"result = x * {a}"),
        dict(name="affine", args="x", out="int", gen=x, desc=f"returns {a} * x + {b}",
             body=f"result = {a} * x + {b}"),
        dict(name="mod_const", args="x", out="int", gen=x, desc=f"returns x modulo {a + 1} (Python semantics)",
             body=f"result = x % {a + 1}"),
        dict(name="clamp", args="x", out="int", gen=x, desc=f"returns x clamped to the range [-{a}, {a}]",
             body=f"result = max(-{a}, min({a}, x))"),
        dict(name="digit_sum", args="x", out="int", gen=x, desc="returns the sum of the decimal digits of abs(x)",
             body="result = sum(int(d) for d in str(abs(x)))"),
        dict(name="floor_div", args="x", out="int", gen=x, desc=f"returns x floor-divided by {a + 1}",
             body=f"result = x // {a + 1}"),
    ])


def string_ops(rng, R):
    c, d, k = rng.choice(LETTERS), rng.choice(LETTERS), rng.randint(1, R)
    s = lambda: (_str(rng),)
    return rng.choice([
        dict(name="reverse_string", args="s", out="str", gen=s, desc="returns s reversed",
             body="result = s[::-1]"),
        dict(name="to_upper", args="s", out="str", gen=s, desc="returns s in upper case",
             body="result = s.upper()"),
        dict(name="count_char", args="s", out="int", gen=s, desc=f"returns how many times '{c}' occurs in s",
             body=f"result = s.count('{c}')"),
        dict(name="remove_char", args="s", out="str", gen=s, desc=f"returns s with every '{c}' removed",
             body=f"result = s.replace('{c}', '')"),
        dict(name="repeat_string", args="s", out="str", gen=s, desc=f"returns s repeated {k} times",
             body=f"result = s * {k}"),
        dict(name="prefix", args="s", out="str", gen=s, desc=f"returns the first {k} characters of s",
             body=f"result = s[:{k}]"),
        dict(name="caesar", args="s", out="str", gen=s,
             desc=f"shifts every letter of the lower-case string s forward by {k % 26} places in the alphabet (wrapping)",
             body=f"result = ''.join(chr((ord(ch) - 97 + {k % 26}) % 26 + 97) for ch in s)"),
        dict(name="swap_chars", args="s", out="str", gen=s, desc=f"returns s with every '{c}' replaced by '{d}'",
             body=f"result = s.replace('{c}', '{d}')"),
    ])


def list_ops(rng, R):
    k = rng.randint(1, R)
    xs = lambda: (_list(rng),)
    return rng.choice([
        dict(name="list_sum", args="xs", out="int", gen=xs, desc="returns the sum of the integers in xs",
             body="result = sum(xs)"),
        dict(name="list_max", args="xs", out="int", gen=xs, desc="returns the largest integer in xs, or 0 if xs is empty",
             body="result = max(xs) if xs else 0"),
        dict(name="sorted_list", args="xs", out="list", gen=xs, desc="returns xs sorted in ascending order",
             body="result = sorted(xs)"),
        dict(name="filter_greater", args="xs", out="list", gen=xs, desc=f"returns the elements of xs greater than {k - 5}, in order",
             body=f"result = [v for v in xs if v > {k - 5}]"),
        dict(name="scale_list", args="xs", out="list", gen=xs, desc=f"returns xs with every element multiplied by {k}",
             body=f"result = [v * {k} for v in xs]"),
        dict(name="count_value", args="xs", out="int", gen=xs, desc=f"returns how many elements of xs equal {k - 5}",
             body=f"result = xs.count({k - 5})"),
        dict(name="rotate_left", args="xs", out="list", gen=xs, desc=f"returns xs rotated left by {k} positions",
             body=f"result = xs[{k} % len(xs):] + xs[:{k} % len(xs)] if xs else []"),
        dict(name="prefix_sums", args="xs", out="list", gen=xs, desc="returns the running (prefix) sums of xs",
             body="result = []\nfor v in xs:\n    result.append(v + (result[-1] if result else 0))"),
    ])


def predicate_ops(rng, R):
    c, k = rng.choice(LETTERS), rng.randint(1, R)
    short = lambda: ("".join(rng.choice("ab") for _ in range(rng.randint(0, 4))),)
    return rng.choice([
        dict(name="is_palindrome", args="s", out="bool", gen=short, desc="returns True if s reads the same backwards",
             body="result = s == s[::-1]"),
        dict(name="is_even", args="x", out="bool", gen=lambda: (_int(rng),), desc="returns True if x is even",
             body="result = x % 2 == 0"),
        dict(name="divisible_by", args="x", out="bool", gen=lambda: (_int(rng),), desc=f"returns True if x is divisible by {k + 1}",
             body=f"result = x % {k + 1} == 0"),
        dict(name="contains_char", args="s", out="bool", gen=lambda: (_str(rng),), desc=f"returns True if '{c}' occurs in s",
             body=f"result = '{c}' in s"),
        dict(name="all_positive", args="xs", out="bool", gen=lambda: (_list(rng, 3),), desc="returns True if every element of xs is positive",
             body="result = all(v > 0 for v in xs)"),
        dict(name="is_sorted", args="xs", out="bool", gen=lambda: (_list(rng, 3),), desc="returns True if xs is in non-decreasing order",
             body="result = all(xs[i] <= xs[i + 1] for i in range(len(xs) - 1))"),
        dict(name="longer_than", args="s", out="bool", gen=lambda: (_str(rng, k + 3),), desc=f"returns True if s has more than {k} characters",
             body=f"result = len(s) > {k}"),
    ])


def recursion_ops(rng, R):
    """Naive exponential-time references: fine for small inputs, too slow for big ones (inputs scale with R)."""
    a, b, k = rng.randint(0, R), rng.randint(1, R), rng.randint(2, min(R, 6) + 1)
    n_max, half = 8 + R, 6 + R // 2
    return rng.choice([
        dict(name="gen_fib", args="n", out="int", gen=lambda: (rng.randint(0, n_max),),
             desc=f"returns the n-th term of the sequence f(0) = {a}, f(1) = {b}, f(n) = f(n-1) + f(n-2), computed recursively",
             body=f"def go(m):\n    if m == 0:\n        return {a}\n    if m == 1:\n        return {b}\n"
                  f"    return go(m - 1) + go(m - 2)\nresult = go(n)",
             oracle=lambda n: _gfib(a, b, n)),
        dict(name="climb_ways", args="n", out="int", gen=lambda: (rng.randint(0, half),),
             desc=f"returns the number of ways to climb n stairs taking 1 to {k} steps at a time, computed recursively",
             body=f"def go(m):\n    if m == 0:\n        return 1\n    if m < 0:\n        return 0\n"
                  f"    return sum(go(m - s) for s in range(1, {k + 1}))\nresult = go(n)",
             oracle=lambda n: _climb(k, n)),
        dict(name="subset_count", args="xs", out="int",
             gen=lambda: ([rng.randint(1, 5) for _ in range(rng.randint(0, half))],),
             desc=f"returns how many subsets of xs (by position) sum to exactly {b}, by trying every subset",
             body=f"def go(i, t):\n    if i == len(xs):\n        return 1 if t == 0 else 0\n"
                  f"    return go(i + 1, t) + go(i + 1, t - xs[i])\nresult = go(0, {b})",
             oracle=lambda xs: _subsets(xs, b)),
    ])


def _gfib(a, b, n):
    for _ in range(n):
        a, b = b, a + b
    return a


def _climb(k, n):
    ways = [1] + [0] * n
    for m in range(1, n + 1):
        ways[m] = sum(ways[m - s] for s in range(1, k + 1) if m - s >= 0)
    return ways[n]


def _subsets(xs, t):
    counts = {0: 1}
    for v in xs:
        new = dict(counts)
        for s, c in counts.items():
            new[s + v] = new.get(s + v, 0) + c
        counts = new
    return counts.get(t, 0)


FAMILIES = (arith_ops, string_ops, list_ops, predicate_ops, recursion_ops)


# ---------------------------------------------------------------------------
# Twists: "creative" post-processing of the result, chained with probability CREATIVITY
# ---------------------------------------------------------------------------

def pick_twist(rng, out, R):
    m, c, d = rng.randint(2, R + 1), rng.choice(LETTERS), rng.choice(LETTERS)
    options = {
        "int": [(f"Then add {m} to the result.", f"result = result + {m}", "int"),
                (f"Then multiply the result by {m}.", f"result = result * {m}", "int"),
                (f"Then return the result modulo {m + 1}.", f"result = result % {m + 1}", "int"),
                (f"Then subtract the result from {m}.", f"result = {m} - result", "int")],
        "str": [("Then reverse it.", "result = result[::-1]", "str"),
                (f"Then append '{c}' {m} times.", f"result = result + '{c}' * {m}", "str"),
                (f"Then replace every '{c}' with '{d}'.", f"result = result.replace('{c}', '{d}')", "str"),
                ("Then return its length.", "result = len(result)", "int")],
        "list": [("Then reverse the list.", "result = result[::-1]", "list"),
                 (f"Then drop every element equal to {m - 3}.", f"result = [v for v in result if v != {m - 3}]", "list"),
                 (f"Then add {m} to every element.", f"result = [v + {m} for v in result]", "list"),
                 ("Then return its length.", "result = len(result)", "int")],
        "bool": [("Then negate the answer.", "result = not result", "bool"),
                 (f"Then return {m} if the answer is True and -1 otherwise.", f"result = {m} if result else -1", "int")],
    }
    return rng.choice(options[out])


# ---------------------------------------------------------------------------
# Bugs: a subtle mutation of the reference (off-by-one, flipped comparison or operator)
# ---------------------------------------------------------------------------

SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv}


def mutate(src, rng):
    tree = ast.parse(src)
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            sites.append(node)
        elif isinstance(node, ast.Compare) or (isinstance(node, ast.BinOp) and type(node.op) in SWAPS):
            sites.append(node)
    if not sites:
        return src
    node = rng.choice(sites)
    if isinstance(node, ast.Constant):
        node.value += rng.choice((-1, 1))
    elif isinstance(node, ast.Compare):
        node.ops[0] = SWAPS.get(type(node.ops[0]), ast.Eq)()
    else:
        node.op = SWAPS[type(node.op)]()
    return ast.unparse(tree) + "\n"


# ---------------------------------------------------------------------------
# Task assembly
# ---------------------------------------------------------------------------

def make_task(rng, idx):
    weights = MIXES[TEMPLATE_MIX]
    family = rng.choices(FAMILIES, weights=weights)[0]
    op = family(rng, PARAM_RANGE)
    statement = f"Write a Python function `{op['name']}({op['args']})` that {op['desc']}."
    lines = op["body"].split("\n")
    out, twists = op["out"], []
    while len(twists) < MAX_TWISTS and rng.random() < CREATIVITY:
        text, line, out = pick_twist(rng, out, PARAM_RANGE)
        twists.append(line)
        statement += " " + text
    src = f"def {op['name']}({op['args']}):\n" + "".join(f"    {l}\n" for l in lines + twists) + "    return result\n"

    # expected outputs come from the correct reference (or a fast oracle for the naive recursive ones)
    if "oracle" in op:
        def correct(*args):
            ns = {"result": op["oracle"](*args)}
            for line in twists:
                exec(line, ns)
            return ns["result"]
    else:
        ns = {}
        exec(src, ns)
        correct = ns[op["name"]]
    asserts = []
    for _ in range(TEST_COUNT):
        args = op["gen"]()
        call = f"{op['name']}({', '.join(repr(a) for a in args)})"
        asserts.append(f"assert {call} == {correct(*[list(a) if isinstance(a, list) else a for a in args])!r}")

    p_bug = 1 - (1 - BASE_BUG) * (1 - BUG_PER_TWIST) ** len(twists)
    if rng.random() < p_bug:
        src = mutate(src, rng)
    return {"id": f"task-{SEED}-{idx}", "statement": statement, "solution": src,
            "tests": "\n".join(asserts) + "\n", "entry_point": op["name"]}


def main():
    if TEMPLATE_MIX not in MIXES:
        sys.exit(f"TEMPLATE_MIX must be one of {sorted(MIXES)}, got {TEMPLATE_MIX!r}")
    t0 = time.time()
    rng = random.Random(SEED)
    with open(OUT_FILE, "w", encoding="utf-8") as f:
        for i in range(NUM_TASKS):
            f.write(json.dumps(make_task(rng, i)) + "\n")
    print("---")
    print(f"tasks_written: {NUM_TASKS}")
    print(f"gen_seconds: {time.time() - t0:.3f}")


if __name__ == "__main__":
    main()
