"""Crash/resume soak: SIGKILL `hive start` at random moments, restart it, and check nothing was lost.

After every kill and restart: no finished experiment lost or changed, no number used twice, no run of a seed
recorded twice, no orphan run process, no git lock left, the best branch on a kept commit, no Optuna trial left
RUNNING at the end, every side-by-side recheck decided on pairs whose two sides both ran, at the same time
(every keep runs again beside the best on 2 fresh seeds here, so kills land in those pairs too). With --db-url
(PostgreSQL) the store lives there, in a schema of its own, and the soak lists the files the campaign folder
holds at the end: none of them may be a SQLite database.
Run: python bench/soak.py [--trials 20] [--seed 1] [--db-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import sqlalchemy as sa  # noqa: E402

from bench._common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQLITE_MAGIC = b"SQLite format 3\x00"


class Db:
    """Read-only queries on the campaign's store, SQLite file or PostgreSQL schema (absent until Hive makes it)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})

    def exists(self) -> bool:
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table("experiment")

    def rows(self, sql: str) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]


def sqlite_files(folder: Path) -> list[str]:
    """Files under the folder that are SQLite databases (or their WAL and journal), by content and by name."""
    found = []
    for path in folder.rglob("*"):
        if not path.is_file() or "/.git/" in str(path):
            continue
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head == SQLITE_MAGIC or path.name.endswith(("-wal", "-shm", "-journal")):
            found.append(str(path.relative_to(folder)))
    return found


def pg_schema(url: str, name: str) -> str:
    """A fresh schema in the PostgreSQL database for the soak's store; the URL that points into it."""
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    admin.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it for inspection")
    parser.add_argument("--db-url", default=None, help="keep the store in this PostgreSQL database (a new schema)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    problems: list[str] = []
    kills = 0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.keep or tmp)
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HIVE_HOME": str(home / "workspaces")}
        env.pop("HIVE_DB_URL", None)
        root = home / "workspaces" / "quickstart"
        if args.db_url:
            env["HIVE_DB_URL"] = url = pg_schema(args.db_url, f"soak_{os.getpid()}")
        else:
            url = f"sqlite:///{root / 'hive.db'}"
        db = Db(url)
        budget = args.trials * 2 + 6
        cmd = [sys.executable, "-m", "hive", "start", str(ROOT / "playbooks" / "quickstart.yaml"), "--headless",
               "--max-experiments", str(budget), "-c", "run.command=sleep 0.3 && python train.py",
               # every keep runs again beside the best on 2 fresh seeds: kills land in side-by-side pairs too
               "-c", "objective.recheck_seeds=2"]
        finished_before: dict[int, str] = {}
        for trial in range(1, args.trials + 1):
            proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 4.0))
            if proc.poll() is None:
                pids = [int(p.read_text()) for p in root.glob("logs/**/*.pid") if p.read_text().strip().isdigit()]
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
            else:
                pids = []
            # restart briefly: the resume must reap orphans and keep every finished record
            check = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            orphans = [p for p in pids if alive(p)]
            if orphans:
                problems.append(f"trial {trial}: orphan run processes survived a restart: {orphans}")
            check.send_signal(signal.SIGKILL)
            check.wait()
            if not (db.exists() if args.db_url else (root / "hive.db").exists()):
                continue
            now = dict(db.rows("select number, verdict from experiment where status = 'done'"))
            lost = {n: v for n, v in finished_before.items() if now.get(n) != v}
            if lost:
                problems.append(f"trial {trial}: finished experiments lost or changed: {lost}")
            finished_before = now
            numbers = [n for (n,) in db.rows("select number from experiment")]
            if len(numbers) != len(set(numbers)):
                problems.append(f"trial {trial}: an experiment number was used twice")
            dupes = db.rows("select experiment_id, seed from run group by experiment_id, seed having count(*) > 1")
            if dupes:
                problems.append(f"trial {trial}: seeds recorded twice: {dupes}")
            print(f"trial {trial:>2}/{args.trials}: killed at a random moment; {len(now)} experiment(s) finished, "
                  f"{len(problems)} problem(s) so far", flush=True)
        final = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=900)
        if final.returncode != 0:
            problems.append(f"the final resume failed: {final.stderr[-500:]}")
        statuses = {s for (s,) in db.rows("select status from experiment")}
        if statuses != {"done"}:
            unfinished = db.rows("select number, status from experiment where status != 'done'")
            problems.append(f"experiments not all finished after the final resume: {unfinished}")
        numbers = sorted(n for (n,) in db.rows("select number from experiment"))
        # a side-by-side recheck decided on whole pairs: both sides of each seed its verdict names ran to the end,
        # at the same time (a pair a kill cut in half is replaced, never completed alone)
        ok_runs = {(n, seed): (start, end) for n, seed, start, end in db.rows(
            "select e.number, r.seed, r.started_at, r.finished_at from run r join experiment e "
            "on r.experiment_id = e.id where r.status = 'ok'")}
        rechecked = 0
        # (%% is one % to psycopg and two wildcards, as good as one, to SQLite)
        for number, reason in db.rows("select number, verdict_reason from experiment where verdict_reason like "
                                      "'%%side by side with exp-%%'"):
            side = re.search(r"side by side with exp-(\d+) on fresh seeds (\d+(?:,\d+)*)", reason or "")
            if not side:
                continue
            rechecked += 1
            best, fresh = int(side.group(1)), [int(x) for x in side.group(2).split(",")]
            sides = {seed: (ok_runs.get((number, seed)), ok_runs.get((best, seed))) for seed in fresh}
            half = [seed for seed, (mine, theirs) in sides.items() if mine is None or theirs is None]
            if half:
                problems.append(f"exp-{number}'s recheck names seeds without both sides run: {half}")
            apart = [seed for seed, (mine, theirs) in sides.items() if mine and theirs
                     and not (mine[0] < theirs[1] and theirs[0] < mine[1])]
            if apart:
                problems.append(f"exp-{number}'s recheck pairs on seeds {apart} did not run at the same time")
        # feed lines of pairs a kill cut in half, each replaced by the next fresh seed on resume
        (cut,), = db.rows("select count(*) from event where kind = 'recheck' and message like '%%was cut by a stop%%'")
        repo = root / "repo"
        best_msg = subprocess.run(["git", "log", "-1", "--format=%B", "hive/quickstart/best"], cwd=repo,
                                  capture_output=True, text=True).stdout
        kept = {n for (n,) in db.rows("select number from experiment where verdict = 'keep'")}
        match = re.search(r"keep exp-(\d+)", best_msg)
        if kept and (not match or int(match.group(1)) not in kept):
            problems.append("the best branch does not point at a kept experiment")
        if list(repo.glob(".git/**/*.lock")):
            problems.append("a git lock file was left behind")
        from hive.agents.search import study_storage
        import optuna

        study = optuna.load_study(study_name="quickstart", storage=study_storage(root / "optuna.journal"))
        running = [t.number for t in study.trials if t.state.name == "RUNNING"]
        if running:
            problems.append(f"Optuna trials left RUNNING: {running}")
        files = sorted(str(p.relative_to(root)) for p in root.iterdir())
        stray = sqlite_files(root) if args.db_url else []
        if stray:
            problems.append(f"SQLite files in the campaign folder with the store in PostgreSQL: {stray}")
        db.engine.dispose()
        if args.db_url and not args.keep:
            with sa.create_engine(args.db_url).begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "soak_{os.getpid()}" CASCADE')
    print(f"\n{kills} SIGKILLs, {len(numbers)} experiments, numbers 1..{max(numbers)} "
          f"({'contiguous' if numbers == list(range(1, len(numbers) + 1)) else 'with gaps'}), "
          f"{len(kept)} keep(s), {rechecked} side-by-side recheck(s) ({cut} pair(s) cut by a kill, replaced), "
          f"{len(problems)} problem(s)")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(f"the campaign folder holds: {', '.join(files)}")
    database = "postgresql" if args.db_url else "sqlite"
    write(f"soak_{database}" if args.db_url else "soak",
          {"database": database, "trials": args.trials, "kills": kills, "experiments": len(numbers),
           "keeps": len(kept), "rechecks": rechecked, "cut_pairs": cut, "problems": problems,
           "campaign_folder": files, "sqlite_files": stray})
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
