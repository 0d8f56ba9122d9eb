"""
Protected scorer of the task-generation template. PROTECTED: agents must not edit this file.

Usage: python score.py --run-dir RUNDIR     (RUNDIR holds tasks.jsonl written by generate.py)

Reads the non-blank lines of RUNDIR/tasks.jsonl in file order and decides each one:

  1. Only the first MAX_TASKS_SCORED lines are considered; later lines are `over_cap`.
  2. A line must be a JSON object with string fields statement, solution, tests, entry_point
     (and an id, string or int); statement non-blank; entry_point an identifier; solution and tests
     parse as Python; the solution defines a top-level function named entry_point; size limits.
     Otherwise `malformed`.
  3. Each well-formed task is executed in its own forked child process (new session, fresh namespace,
     stdio to /dev/null, memory capped, temp cwd), with TASK_TIME_LIMIT_S for the whole check:
       - the reference solution is exec'd, then the tests; any exception -> `solution_fails`;
       - the tests must make at least MIN_TEST_CALLS outermost calls to it, else `too_few_tests`;
       - for each trivial solution (a function of the same name returning None, 0, 1, "", [],
         True, False, or its first argument) the tests are run again; if any trivial solution
         gets through every assert -> `trivial_passes`;
       - over the time limit -> `timeout` (SIGALRM, then SIGKILL of the child's session after
         KILL_GRACE_S more); the child dying without a result -> `crash`.
  4. Budget: each considered line costs 1 unit plus, if executed, the number of outermost calls the
     tests made to the reference function (TIMEOUT_COST_UNITS for a timed-out task). Once the
     running total would exceed CHECK_BUDGET_UNITS, that line and every later one is `over_budget`.
     A wall-clock guard (WALL_BUDGET_S) marks tasks not executed in time as `wall_budget`.
  5. A task that passed every check is a duplicate if an earlier passing task had the same
     normalised statement (lower-cased, whitespace collapsed) or the same canonical solution
     (ast.dump of the parsed solution, docstrings dropped; so formatting/comments do not matter).
     With DEDUPE_IGNORE_NUMBERS, digit runs in statements and numeric constants in solutions are
     blanked first, so tasks differing only in their numbers collide.
     -> `duplicate`.

yield = number of tasks that pass every check and are not duplicates (the objective; maximize).
valid = tasks passing every check, duplicates included (so rejected_duplicate = valid - yield).
unique = distinct keys among the well-formed considered tasks (whether or not they passed).
Invariant: yield + rejected_total == lines_total. Prints `---` then `key: value` lines.
Stdlib only.
"""

import argparse
import ast
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

MAX_TASKS_SCORED = 200          # lines beyond this are not considered (over_cap)
CHECK_BUDGET_UNITS = 1000       # total cost units; a line costs 1 + outermost calls its tests made
MIN_TEST_CALLS = 2              # tests must call the reference function at least this often (outermost calls)
TIMEOUT_COST_UNITS = 10         # cost of a task that timed out (on top of the 1 per line)
TASK_TIME_LIMIT_S = 1.0         # wall time for one task's whole check (reference + trivial solutions)
KILL_GRACE_S = 1.0              # extra time before a stuck child is killed
WALL_BUDGET_S = 120.0           # guard on the whole execution phase
WORKER_MEMORY_BYTES = 1 << 30   # address-space cap of a task's child process
MAX_SOURCE_CHARS = 20000        # solution / tests longer than this are malformed
DEDUPE_IGNORE_NUMBERS = False   # True: tasks differing only in numeric constants are duplicates (stricter)
MAX_STATEMENT_CHARS = 4000      # statement longer than this is malformed
TRIVIAL_EXPRS = ("None", "0", "1", "''", "[]", "True", "False", "(args[0] if args else None)")
REASONS = ("over_cap", "malformed", "solution_fails", "too_few_tests", "trivial_passes", "timeout", "crash",
           "over_budget", "wall_budget", "duplicate")


# ---------------------------------------------------------------------------
# Parsing and normalisation
# ---------------------------------------------------------------------------

def parse_task(line):
    """Return (task dict, None) for a well-formed line, or (None, why) for a malformed one."""
    try:
        task = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not json"
    if not isinstance(task, dict):
        return None, "not an object"
    for key in ("statement", "solution", "tests", "entry_point"):
        if not isinstance(task.get(key), str):
            return None, f"{key} missing or not a string"
    if not isinstance(task.get("id"), (str, int)) or isinstance(task.get("id"), bool):
        return None, "id missing"
    if not task["statement"].strip():
        return None, "empty statement"
    if len(task["statement"]) > MAX_STATEMENT_CHARS or max(len(task["solution"]), len(task["tests"])) > MAX_SOURCE_CHARS:
        return None, "too long"
    if not task["entry_point"].isidentifier():
        return None, "bad entry_point"
    try:
        sol = ast.parse(task["solution"])
        ast.parse(task["tests"])
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None, "does not parse"
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == task["entry_point"] for n in sol.body):
        return None, "solution does not define entry_point"
    task["_sol_key"] = canonical_solution(sol)
    stmt = " ".join(task["statement"].lower().split())
    task["_stmt_key"] = re.sub(r"\d+", "#", stmt) if DEDUPE_IGNORE_NUMBERS else stmt
    return task, None


def canonical_solution(tree):
    """ast.dump of the solution with docstrings removed (formatting and comments never reach the AST)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        if DEDUPE_IGNORE_NUMBERS and isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)):
            node.value = 0
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


# ---------------------------------------------------------------------------
# Sandbox: one forked child per task (POSIX), at most n_workers at a time
# ---------------------------------------------------------------------------

class _Timeout(BaseException):
    pass


class _Sink:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


def _check(task):
    """Run one task's checks in the current (child) process. Returns (status, calls)."""
    entry = task["entry_point"]
    depth, calls = [0], [0]

    def run(solution_fn):
        ns = {"__name__": "__task__"}
        exec(compile(task["solution"], "<solution>", "exec"), ns)
        if solution_fn is None:
            ref = ns.get(entry)
            if not callable(ref):
                raise TypeError("entry_point is not callable")

            def counted(*args, **kwargs):
                if depth[0] == 0:
                    calls[0] += 1
                depth[0] += 1
                try:
                    return ref(*args, **kwargs)
                finally:
                    depth[0] -= 1
            ns[entry] = counted
        else:
            ns[entry] = solution_fn
        exec(compile(task["tests"], "<tests>", "exec"), ns)

    try:
        run(None)
    except _Timeout:
        return "timeout", calls[0]
    except BaseException:
        return "solution_fails", calls[0]
    if calls[0] < MIN_TEST_CALLS:
        return "too_few_tests", calls[0]
    for expr in TRIVIAL_EXPRS:
        trivial = eval(f"lambda *args, **kwargs: {expr}")
        try:
            run(trivial)
        except _Timeout:
            return "timeout", calls[0]
        except BaseException:
            continue
        return "trivial_passes", calls[0]
    return "ok", calls[0]


def _child(task, write_fd, workdir):
    """Body of the forked child: never returns."""
    status, calls = "crash", 0
    try:
        os.setsid()
        os.chdir(workdir)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        sys.stdout = sys.stderr = _Sink()
        sys.stdin = open(os.devnull)
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
        sys.setrecursionlimit(5000)

        def on_alarm(signum, frame):
            raise _Timeout()
        signal.signal(signal.SIGALRM, on_alarm)
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, TASK_TIME_LIMIT_S)
        try:
            status, calls = _check(task)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if time.monotonic() - start > TASK_TIME_LIMIT_S:
            status = "timeout"
    except _Timeout:
        status = "timeout"
    except BaseException:
        status = "crash"
    try:
        os.write(write_fd, json.dumps({"status": status, "calls": calls}).encode())
    finally:
        os._exit(0)


def execute(tasks, n_workers):
    """tasks: {idx: task}. Runs each in its own forked child. Returns {idx: {"status", "calls"}}."""
    results = {}
    queue = sorted(tasks)
    running = {}  # read fd -> [idx, pid, deadline, bytes]
    wall_deadline = time.monotonic() + WALL_BUDGET_S
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryDirectory(prefix="taskgen-score-") as workdir:
        while queue or running:
            now = time.monotonic()
            while queue and len(running) < n_workers and now < wall_deadline:
                idx = queue.pop(0)
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # child
                    os.close(r)
                    for other in running:
                        os.close(other)
                    _child(tasks[idx], w, workdir)
                os.close(w)
                running[r] = [idx, pid, now + TASK_TIME_LIMIT_S + KILL_GRACE_S, b""]
            if not running:  # the wall budget ran out
                for idx in queue:
                    results[idx] = {"status": "wall_budget", "calls": 0}
                break
            timeout = max(0.0, min(entry[2] for entry in running.values()) - time.monotonic())
            ready, _, _ = select.select(list(running), [], [], timeout)
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                running[fd][3] += chunk
                if chunk and len(running[fd][3]) < 1 << 16:
                    continue
                idx, pid, _, data = running.pop(fd)
                os.close(fd)
                _reap(pid)
                try:
                    msg = json.loads(data.decode())
                    status, calls = msg["status"], int(msg["calls"])
                    if status not in ("ok", "solution_fails", "too_few_tests", "trivial_passes", "timeout", "crash"):
                        raise ValueError(status)
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    status, calls = "crash", 0
                results[idx] = {"status": status, "calls": max(0, calls)}
            now = time.monotonic()
            for fd in [fd for fd, entry in running.items() if now >= entry[2]]:
                idx, pid, _, _ = running.pop(fd)
                os.close(fd)
                _reap(pid, kill=True)
                results[idx] = {"status": "timeout", "calls": 0}
    return results


def _reap(pid, kill=False):
    """Kill the child's whole session (it called setsid) and collect it."""
    if kill:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass
    else:
        try:
            os.killpg(pid, signal.SIGKILL)  # leftovers the task may have spawned
        except OSError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------

def score(run_dir, n_workers=None):
    t0 = time.time()
    path = os.path.join(run_dir, "tasks.jsonl")
    lines = []
    if os.path.isfile(path):
        with open(path, "rb") as f:
            raw = f.read()
        lines = [l for l in raw.decode("utf-8", errors="replace").split("\n") if l.strip()]
    considered = lines[:MAX_TASKS_SCORED]
    parsed = [parse_task(line)[0] for line in considered]
    well_formed = {i: t for i, t in enumerate(parsed) if t is not None}
    n_workers = n_workers or max(1, min(4, os.cpu_count() or 1))
    results = execute(well_formed, n_workers)

    rejected = {r: 0 for r in REASONS}
    rejected["over_cap"] = len(lines) - len(considered)
    spent, exhausted = 0, False
    seen_stmt, seen_sol = set(), set()
    valid = accepted = 0
    for i, task in enumerate(parsed):
        if task is None:
            cost = 1
        else:
            res = results[i]
            cost = 1 + (TIMEOUT_COST_UNITS if res["status"] == "timeout" else min(res["calls"], CHECK_BUDGET_UNITS + 1))
        if exhausted or spent + cost > CHECK_BUDGET_UNITS:
            exhausted = True
            rejected["over_budget"] += 1
            continue
        spent += cost
        if task is None:
            rejected["malformed"] += 1
            continue
        status = results[i]["status"]
        if status != "ok":
            rejected[status] += 1
            continue
        valid += 1
        if task["_stmt_key"] in seen_stmt or task["_sol_key"] in seen_sol:
            rejected["duplicate"] += 1
            continue
        seen_stmt.add(task["_stmt_key"])
        seen_sol.add(task["_sol_key"])
        accepted += 1

    unique = _count_unique(well_formed.values())
    rejected_total = sum(rejected.values())
    assert accepted + rejected_total == len(lines)
    return {
        "yield": accepted,
        "valid": valid,
        "unique": unique,
        "lines_total": len(lines),
        "considered": len(considered),
        "budget_spent": spent,
        "rejected_total": rejected_total,
        **{f"rejected_{r}": n for r, n in rejected.items()},
        "score_seconds": round(time.time() - t0, 3),
    }


def _count_unique(tasks):
    """Tasks that are not duplicates (same statement key or solution key) of an earlier well-formed task."""
    seen_stmt, seen_sol, n = set(), set(), 0
    for t in tasks:
        if t["_stmt_key"] in seen_stmt or t["_sol_key"] in seen_sol:
            continue
        seen_stmt.add(t["_stmt_key"])
        seen_sol.add(t["_sol_key"])
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--run-dir", default=".", help="folder holding tasks.jsonl")
    ap.add_argument("--workers", type=int, default=None, help="tasks checked in parallel (default: min(4, cores))")
    ap.add_argument("--json", action="store_true", help="also print the metrics as one JSON line")
    args = ap.parse_args()
    metrics = score(args.run_dir, args.workers)
    if args.json:
        print(json.dumps(metrics))
    print("---")
    for key, value in metrics.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
