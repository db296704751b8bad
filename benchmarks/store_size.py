"""Bytes per passage in each store: an index's rows copied N times (ids renamed, vectors as
stored) into SQLite and into PostgreSQL (a throwaway cluster, as the tests start one), then the
on-disk size of each table (`pg_total_relation_size`: heap + TOAST + indexes) and of the SQLite
file, divided by the passages.

Usage::

    qa ingest seeds/ --index /tmp/seed-index
    python benchmarks/store_size.py --index /tmp/seed-index --copies 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from qa.store import DB_NAME, open_store  # noqa: E402


def _renamed(table: str, rows: list[tuple], k: int, vec_offset: int) -> list[tuple]:
    """Rows of copy `k`: ids and names suffixed, vec_ids shifted."""
    s = f"~{k}"
    if table == "issues":
        return [(r[0] + s, r[1] + s, *r[2:]) for r in rows]
    if table == "articles":
        return [(r[0] + s, r[1] + s, *r[2:]) for r in rows]
    if table == "passages":
        return [(r[0] + vec_offset, r[1] + s, r[2] + s, *r[3:]) for r in rows]
    return rows


def fill(source, target, copies: int) -> int:
    """Copy `source`'s rows `copies` times into `target`; returns the passages written."""
    top = int(source.vec_ids().max())
    for k in range(copies):
        for table in ("issues", "articles", "passages"):
            for rows in source.dump_rows(table, 2000):
                with target.transaction() as tx:
                    target.load_rows(tx, table, _renamed(table, rows, k, k * top))
    for rows in source.dump_rows("terms", 5000):
        with target.transaction() as tx:
            target.load_rows(tx, "terms", rows)
    return target.counts()["passages"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True, help="a SQLite index to copy (e.g. of the seeds)")
    ap.add_argument("--copies", type=int, default=100)
    args = ap.parse_args()
    from pg_support import Cluster, pg_bindir

    source = open_store(args.index, "")
    out = {"source_passages": source.counts()["passages"], "copies": args.copies}
    work = Path(tempfile.mkdtemp())
    sqlite = open_store(work / "sqlite", "")
    n = fill(source, sqlite, args.copies)
    sqlite.conn.execute("VACUUM")
    out["sqlite"] = {"passages": n, "bytes": (work / "sqlite" / DB_NAME).stat().st_size}
    out["sqlite"]["bytes_per_passage"] = round(out["sqlite"]["bytes"] / n)
    cluster = Cluster(pg_bindir()).start()
    try:
        cluster.admin("CREATE DATABASE size")
        pg = open_store(work / "pg", cluster.url("size"))
        n = fill(source, pg, args.copies)
        with pg.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
            sizes = {t: c.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar()
                     for t in ("issues", "articles", "passages", "terms", "manifest")}
            database = c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        pg.dispose()
        total = sum(sizes.values())
        out["postgresql"] = {"passages": n, "table_bytes": sizes, "tables_total": total,
                             "bytes_per_passage": round(total / n), "database_bytes": database}
    finally:
        cluster.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
