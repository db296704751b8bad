"""The scale benchmark on PostgreSQL + Milvus Lite side by side with the embedded backend, in one
run, on a throwaway PostgreSQL cluster (tests/pg_support.py: Debian's postgresql, run as the
`postgres` user on 127.0.0.1 in a temp folder, stopped afterwards).

    python benchmarks/bench_backends.py --pages 8 --baseline-texts 300 --skip-http

Any arguments go to bench_scale.py; its JSON's `side_by_side` holds the PostgreSQL + Milvus run.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pg_support import Cluster, pg_bindir  # noqa: E402


def main() -> int:
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: run scripts/install-postgres.sh")
    cluster = Cluster(bindir).start()
    try:
        cluster.admin("CREATE DATABASE qa_bench")
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), *sys.argv[1:],
               "--backend", "milvus", "--store-url", cluster.url("qa_bench")]
        return subprocess.run(cmd, cwd=ROOT).returncode
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
