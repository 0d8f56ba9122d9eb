"""Crash/resume soak: SIGKILL `hive start` at random moments, restart it, and check nothing was lost.

After every kill and restart: no finished experiment lost or changed, no number used twice, no run of a seed
recorded twice, no orphan run process, no git lock left, the best branch on a kept commit, no Optuna trial left
RUNNING at the end. Run: python bench/soak.py [--trials 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


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
    args = parser.parse_args()
    rng = random.Random(args.seed)
    problems: list[str] = []
    kills = 0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.keep or tmp)
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HIVE_HOME": str(home / "workspaces")}
        env.pop("HIVE_DB_URL", None)
        budget = args.trials * 2 + 6
        cmd = [sys.executable, "-m", "hive", "start", str(ROOT / "playbooks" / "quickstart.yaml"), "--headless",
               "--max-experiments", str(budget), "-c", "run.command=sleep 0.3 && python train.py"]
        root = home / "workspaces" / "quickstart"
        db = root / "hive.db"
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
            if not db.exists():
                continue
            now = dict(rows(db, "select number, verdict from experiment where status = 'done'"))
            lost = {n: v for n, v in finished_before.items() if now.get(n) != v}
            if lost:
                problems.append(f"trial {trial}: finished experiments lost or changed: {lost}")
            finished_before = now
            numbers = [n for (n,) in rows(db, "select number from experiment")]
            if len(numbers) != len(set(numbers)):
                problems.append(f"trial {trial}: an experiment number was used twice")
            dupes = rows(db, "select experiment_id, seed from run group by experiment_id, seed having count(*) > 1")
            if dupes:
                problems.append(f"trial {trial}: seeds recorded twice: {dupes}")
            print(f"trial {trial:>2}/{args.trials}: killed at a random moment; {len(now)} experiment(s) finished, "
                  f"{len(problems)} problem(s) so far", flush=True)
        final = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=900)
        if final.returncode != 0:
            problems.append(f"the final resume failed: {final.stderr[-500:]}")
        statuses = {s for (s,) in rows(db, "select status from experiment")}
        if statuses != {"done"}:
            unfinished = rows(db, "select number, status from experiment where status != 'done'")
            problems.append(f"experiments not all finished after the final resume: {unfinished}")
        numbers = sorted(n for (n,) in rows(db, "select number from experiment"))
        repo = root / "repo"
        best_msg = subprocess.run(["git", "log", "-1", "--format=%B", "hive/quickstart/best"], cwd=repo,
                                  capture_output=True, text=True).stdout
        kept = {n for (n,) in rows(db, "select number from experiment where verdict = 'keep'")}
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
    print(f"\n{kills} SIGKILLs, {len(numbers)} experiments, numbers 1..{max(numbers)} "
          f"({'contiguous' if numbers == list(range(1, len(numbers) + 1)) else 'with gaps'}), "
          f"{len(kept)} keep(s), {len(problems)} problem(s)")
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    write("soak", {"trials": args.trials, "kills": kills, "experiments": len(numbers), "keeps": len(kept),
                   "problems": problems})
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
