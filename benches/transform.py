"""The silver + gold logic of flowctl's transform_silver / aggregate_gold, in Python Polars, for
`flowctl bench transform` to compare against. It reads the bronze Delta tables flowctl generated
(with the `deltalake` package), applies the same row rules (read from the expectation files), normalisation, dedup by business key
(latest event_time, then highest offset), order-item explosion and gold aggregates, and writes
silver and gold Delta tables partitioned by event_date under --out.

Prints one JSON line: seconds per layer, silver rows, gold revenue totals, peak memory.

Silver's row rules are read from the same expectation files flowctl uses
(`expectations/silver_<entity>.yaml`) and evaluated on the normalised rows, as flowctl does.

Usage: python3 benches/transform.py --lake LAKE_DIR --out OUT_DIR --expectations DIR
Needs: python3 -m pip install -r tests/python/requirements.txt
"""

import argparse
import json
import datetime
import re
import sys
import time

try:
    import polars as pl
    import yaml
except ImportError as e:  # pragma: no cover - the hint is the point
    print(f"{e}; install: python3 -m pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)

KEYS = {"orders": "order_id", "clickstream": "event_id", "payments": "payment_id"}
UNITS_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


def trimmed(c):
    return pl.col(c).str.strip_chars()


def time_us(text):
    """A bound of the expectation vocabulary (`2000-01-01`, `now + 1h`, RFC 3339) as µs since the
    epoch: a literal, or for `now` an expression on the row's `_ingested_at` (silver judges a row
    by when it was ingested, as flowctl does)."""
    text = str(text).strip()
    if text.startswith("now"):
        rest = text[3:].replace(" ", "")
        delta = 0
        if rest:
            m = re.fullmatch(r"([+-])(\d+)(ms|s|m|h|d)", rest)
            if not m:
                raise SystemExit(f"unsupported time bound {text!r}")
            delta = int(m.group(2)) * UNITS_US[m.group(3)] * (1 if m.group(1) == "+" else -1)
        return pl.col("_ingested_at").dt.cast_time_unit("us").cast(pl.Int64) + delta
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return pl.lit(int(dt.timestamp() * 1_000_000))


def bound(c, dtype, value, op):
    if dtype.is_numeric():
        return op(pl.col(c).cast(pl.Float64), float(value))
    if isinstance(dtype, pl.Datetime) and dtype.time_unit == "us":
        return op(pl.col(c).cast(pl.Int64), time_us(value))
    raise SystemExit(f"bound on {c} of type {dtype} is not supported here")


def rules(entity, schema, expectations):
    """The row rules of expectations/silver_<entity>.yaml as (name, "row breaks it") pairs, with
    the semantics of flowctl's quality module (src/quality/rows.rs, expr.rs): a `missing` rule
    makes its column required, and then an `invalid` rule on it fails missing values too."""
    with open(f"{expectations}/silver_{entity}.yaml") as f:
        spec = yaml.safe_load(f)
    # `valid_values: {domain: NAME}` names a list of domains.yaml, as in flowctl.
    try:
        with open(f"{expectations}/domains.yaml") as f:
            domains = yaml.safe_load(f) or {}
    except FileNotFoundError:
        domains = {}
    specs = spec.get("rules", [])
    required = {r["missing"] for r in specs if "missing" in r}
    out = []
    for r in specs:
        c = r.get("missing", r.get("invalid"))
        dtype = schema[c]
        missing = pl.col(c).is_null()
        for v in r.get("missing_values", []):
            missing = missing | (pl.col(c) == v if dtype == pl.String else pl.col(c).cast(pl.Float64) == float(v))
        if "missing" in r:
            out.append((r["name"], missing.fill_null(False)))
            continue
        conds = []
        for key, op in [("valid_min", lambda a, b: a >= b), ("valid_max", lambda a, b: a <= b),
                        ("valid_min_exclusive", lambda a, b: a > b), ("valid_max_exclusive", lambda a, b: a < b)]:
            if key in r:
                conds.append(bound(c, dtype, r[key], op))
        if "valid_values" in r:
            vals = r["valid_values"]
            if isinstance(vals, dict):
                vals = domains[vals["domain"]]
            conds.append(pl.col(c).is_in([str(v) for v in vals]) if dtype == pl.String
                         else pl.col(c).cast(pl.Float64).is_in([float(v) for v in vals]))
        if "valid_regex" in r:
            conds.append(pl.col(c).str.contains(r["valid_regex"]))
        unsupported = set(r) - {"name", "category", "invalid", "severity", "missing_values", "valid_min", "valid_max",
                                "valid_min_exclusive", "valid_max_exclusive", "valid_values", "valid_regex"}
        if unsupported:
            raise SystemExit(f"silver_{entity}.yaml rule {r['name']}: {sorted(unsupported)} not supported here")
        ok = conds[0]
        for x in conds[1:]:
            ok = ok & x
        ok = ok.fill_null(False)
        fail = (missing | ~ok) if c in required else (~missing & ~ok)
        out.append((r["name"], fail.fill_null(False)))
    return out


def failed_rules(named):
    parts = [pl.when(p).then(pl.lit(name)).otherwise(pl.lit(None, dtype=pl.String)) for name, p in named]
    joined = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(joined.str.len_chars() > 0).then(joined).otherwise(None)


def cents(e):
    return e.round(2, mode="half_away_from_zero")


def normalise(entity, lf, version):
    lineage = [pl.col("_kafka_partition"), pl.col("_kafka_offset"), pl.lit(version, pl.Int64).alias("_bronze_version"),
               pl.col("_row"), pl.col("_ingested_at")]
    if entity == "orders":
        guess = pl.when(pl.col("coupon_code").is_not_null() | (pl.col("channel") != "web")).then(2).otherwise(1)
        cols = [
            trimmed("order_id"), trimmed("customer_id"), trimmed("campaign_id"), cents(pl.col("amount")),
            trimmed("currency").str.to_uppercase(), trimmed("status"),
            trimmed("channel").fill_null("web"), trimmed("coupon_code"),
            pl.col("items").list.len().cast(pl.Int32).alias("item_count"),
            pl.col("event_time"), pl.col("event_date"),
            pl.when(pl.col("_schema_id") == 2).then(2).when(pl.col("_schema_id") == 1).then(1)
            .otherwise(guess).cast(pl.Int32).alias("schema_version"),
            *lineage, pl.col("items"),
        ]
    elif entity == "clickstream":
        cols = [trimmed(c) for c in ["event_id", "session_id", "user_id", "campaign_id", "page", "action", "device"]]
        cols += [pl.col("event_time"), pl.col("event_date"), *lineage]
    else:
        cols = [trimmed("payment_id"), trimmed("order_id"), cents(pl.col("amount")),
                trimmed("currency").str.to_uppercase(), trimmed("method"), trimmed("status"),
                pl.col("event_time"), pl.col("event_date"), *lineage]
    return lf.select(cols)


def write(df, path, partition_by=("event_date",)):
    df.write_delta(path, mode="overwrite", delta_write_options={"partition_by": list(partition_by)})


def silver(lake, out, expectations):
    from deltalake import DeltaTable

    rows = 0
    for entity, key in KEYS.items():
        path = f"{lake}/bronze_{entity}"
        version = DeltaTable(path).version()
        # Silver's rules judge the normalised rows; quarantine records the bronze rows.
        inc = pl.scan_delta(path).with_row_index("_row").collect()
        norm = normalise(entity, inc.lazy(), version)
        named = rules(entity, norm.collect_schema(), expectations)
        norm = norm.with_columns(failed_rules(named).alias("_failed")).collect()
        refused = norm.filter(pl.col("_failed").is_not_null()).select("_row", "_failed")
        bad = inc.join(refused, on="_row")
        quarantine = bad.select(
            pl.lit(f"silver_{entity}").alias("target_table"), trimmed(key).alias("business_key"),
            pl.col("_failed").alias("failed_rules"), pl.lit(f"bronze_{entity}").alias("source_table"),
            pl.lit(version, pl.Int64).alias("source_version"), pl.col("_kafka_partition"), pl.col("_kafka_offset"),
            pl.struct(pl.exclude("_failed", "_kafka_key", "_row")).struct.json_encode().alias("row_json"),
        )
        good = (
            norm.lazy()
            .filter(pl.col("_failed").is_null())
            .drop("_failed", "_row", "_ingested_at")
            .sort(["event_time", "_kafka_offset"], descending=[True, True], nulls_last=True)
            .unique(subset=[key], keep="first", maintain_order=True)
            .collect()
        )
        rows += good.height
        if entity == "orders":
            items = (
                good.lazy()
                .select("order_id", "items", "currency", "event_time", "event_date",
                        pl.int_ranges(1, pl.col("items").list.len() + 1, dtype=pl.Int32).alias("line_no"))
                .explode("items", "line_no")
                .select(
                    "order_id", "line_no",
                    pl.col("items").struct.field("sku").str.strip_chars().alias("sku"),
                    pl.col("items").struct.field("quantity").alias("quantity"),
                    cents(pl.col("items").struct.field("unit_price")).alias("unit_price"),
                    cents(pl.col("items").struct.field("quantity").cast(pl.Float64)
                          * pl.col("items").struct.field("unit_price")).alias("line_amount"),
                    "currency", "event_time", "event_date",
                )
                .collect()
            )
            write(items, f"{out}/silver_order_items")
            good = good.drop("items")
        write(good, f"{out}/silver_{entity}")
        if quarantine.height:
            write(quarantine, f"{out}/silver_quarantine_{entity}", partition_by=())
    return rows


def gold(out):
    campaign = pl.col("campaign_id").fill_null("(none)")
    orders = pl.scan_delta(f"{out}/silver_orders")
    revenue = (
        orders.filter(~pl.col("status").is_in(["CANCELLED", "REFUNDED"]))
        .with_columns(campaign)
        .group_by("event_date", "campaign_id", "currency")
        .agg(pl.len().cast(pl.Int64).alias("orders"), pl.col("amount").sum().alias("revenue"),
             pl.col("customer_id").n_unique().cast(pl.Int64).alias("distinct_customers"))
        .with_columns(cents(pl.col("revenue")).alias("revenue"))
        .with_columns(cents(pl.col("revenue") / pl.col("orders")).alias("avg_order_value"))
        .collect()
    )
    write(revenue, f"{out}/gold_daily_revenue")
    pays = (
        pl.scan_delta(f"{out}/silver_payments")
        .group_by("event_date", "method")
        .agg(pl.len().cast(pl.Int64).alias("attempts"),
             pl.col("status").is_in(["AUTHORIZED", "CAPTURED"]).cast(pl.Int64).sum().alias("successes"))
        .with_columns((pl.col("successes") / pl.col("attempts")).alias("success_rate"))
        .collect()
    )
    write(pays, f"{out}/gold_payment_success_rate")
    count = lambda a, n: (pl.col("action") == a).cast(pl.Int64).sum().alias(n)  # noqa: E731
    eng = (
        pl.scan_delta(f"{out}/silver_clickstream")
        .with_columns(campaign)
        .group_by("event_date", "campaign_id")
        .agg(count("view", "views"), count("click", "clicks"), count("add_to_cart", "add_to_cart"),
             count("purchase", "purchases"))
        .with_columns(pl.when(pl.col("views") > 0).then(pl.col("purchases") / pl.col("views"))
                      .otherwise(0.0).alias("conversion_rate"))
        .collect()
    )
    write(eng, f"{out}/gold_campaign_engagement")
    return int(revenue["orders"].sum()), float(revenue["revenue"].sum())


def peak_mib():
    """This process's peak resident memory. Not getrusage: ru_maxrss survives exec, so a child of
    flowctl would report flowctl's peak when it is higher."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--expectations", required=True, help="the expectations/ dir (silver's row rules)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = silver(a.lake, a.out, a.expectations)
    t1 = time.perf_counter()
    orders, revenue = gold(a.out)
    t2 = time.perf_counter()
    peak = peak_mib()
    print(json.dumps({
        "polars": pl.__version__, "silver_s": t1 - t0, "gold_s": t2 - t1, "silver_rows": rows,
        "revenue_orders": orders, "revenue": revenue, "peak_mib": peak,
    }))


if __name__ == "__main__":
    main()
