"""Reads a gold table written by flowctl with the Python `deltalake` package and prints one JSON
line: rows, the sum of its `orders` column (when it has one), version, partition columns and
the latest commit's userMetadata (flowctl writes `run=<id>` there).

Usage: python3 read_gold.py TABLE_PATH
"""

import json
import sys

try:
    from deltalake import DeltaTable, QueryBuilder
except ImportError as e:  # pragma: no cover - the hint is the point
    print(f"{e}; install: python3 -m pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)


def main():
    dt = DeltaTable(sys.argv[1])
    qb = QueryBuilder().register("t", dt)
    names = [f.name for f in dt.schema().fields]
    rows = qb.execute("SELECT COUNT(*) FROM t").read_all().column(0).to_pylist()[0]
    orders = None
    if "orders" in names:
        orders = qb.execute("SELECT SUM(orders) FROM t").read_all().column(0).to_pylist()[0]
    history = dt.history(1)
    print(json.dumps({
        "rows": rows,
        "orders": orders,
        "version": dt.version(),
        "partition_columns": dt.metadata().partition_columns,
        "user_metadata": history[0].get("userMetadata") if history else None,
    }))


if __name__ == "__main__":
    main()
