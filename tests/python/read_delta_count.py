"""Reads a Delta table written by flowctl with the Python `deltalake` package (delta-rs's
Python binding, from PyPI) and prints one JSON line: row count, version, partition columns,
the transaction version of each APP_ID and the distinct (partition, offset) pair count.

Usage: python3 read_delta_count.py TABLE_PATH [APP_ID...]
Exits 3 with an install hint when the package is missing, so the Rust test fails with it.
"""

import json
import sys

try:
    from deltalake import DeltaTable, QueryBuilder
except ImportError as e:  # pragma: no cover - the hint is the point
    print(
        f"python package deltalake is missing ({e}); "
        "install it with: python3 -m pip install -r tests/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)


def scalar(qb, sql):
    values = qb.execute(sql).read_all().column(0).to_pylist()
    if len(values) != 1:
        raise SystemExit(f"expected one row from {sql}, got {values}")
    return int(values[0])


def main():
    path = sys.argv[1]
    dt = DeltaTable(path)
    qb = QueryBuilder().register("t", dt)
    rows = scalar(qb, "SELECT COUNT(*) FROM t")
    names = set(dt.schema().to_arrow().names)
    # Bronze tables carry _kafka_partition/_kafka_offset; the DLQ audit table the source's.
    cols = next(
        (c for c in [("_kafka_partition", "_kafka_offset"), ("source_partition", "original_offset")]
         if set(c) <= names),
        None,
    )
    distinct = (
        scalar(qb, f"SELECT COUNT(*) FROM (SELECT DISTINCT {cols[0]}, {cols[1]} FROM t)")
        if cols
        else None
    )
    txns = {app_id: dt.transaction_version(app_id) for app_id in sys.argv[2:]}
    print(
        json.dumps(
            {
                "rows": rows,
                "distinct_partition_offsets": distinct,
                "version": dt.version(),
                "partition_columns": dt.metadata().partition_columns,
                "txns": txns,
            }
        )
    )


if __name__ == "__main__":
    main()
