"""The silver + gold logic of flowctl's transform_silver / aggregate_gold, in Python Polars, for
`flowctl bench transform` to compare against. It reads the bronze Delta tables flowctl generated
(with the `deltalake` package), applies the same row rules, normalisation, dedup by business key
(latest event_time, then highest offset), order-item explosion and gold aggregates, and writes
silver and gold Delta tables partitioned by event_date under --out.

Prints one JSON line: seconds per layer, silver rows, gold revenue totals, peak memory.

Usage: python3 benches/transform.py --lake LAKE_DIR --out OUT_DIR
Needs: python3 -m pip install -r tests/python/requirements.txt
"""

import argparse
import json
import resource
import sys
import time

try:
    import polars as pl
except ImportError as e:  # pragma: no cover - the hint is the point
    print(f"{e}; install: python3 -m pip install -r tests/python/requirements.txt", file=sys.stderr)
    sys.exit(3)

CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY"]
ORDER_STATUSES = ["CREATED", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"]
CHANNELS = ["web", "app", "store", "partner"]
ACTIONS = ["view", "click", "add_to_cart", "remove_from_cart", "checkout", "purchase"]
DEVICES = ["desktop", "mobile", "tablet"]
METHODS = ["card", "paypal", "bank_transfer", "gift_card"]
PAY_STATUSES = ["AUTHORIZED", "CAPTURED", "FAILED", "REFUNDED"]
EPOCH_2000_US = 946_684_800_000_000
SLACK_US = 3_600_000_000
KEYS = {"orders": "order_id", "clickstream": "event_id", "payments": "payment_id"}


def trimmed(c):
    return pl.col(c).str.strip_chars()


def in_list(c, values):
    return trimmed(c).is_in(values)


def not_blank(c):
    return trimmed(c).str.len_chars() > 0


def rules(entity):
    if entity == "orders":
        r = [
            ("order_id_present", not_blank("order_id")),
            ("customer_id_present", not_blank("customer_id")),
            ("amount_positive", pl.col("amount") > 0),
            ("currency_valid", in_list("currency", CURRENCIES)),
            ("status_valid", in_list("status", ORDER_STATUSES)),
            ("channel_valid", pl.col("channel").is_null() | in_list("channel", CHANNELS)),
        ]
    elif entity == "clickstream":
        r = [
            ("event_id_present", not_blank("event_id")),
            ("session_id_present", not_blank("session_id")),
            ("action_valid", in_list("action", ACTIONS)),
            ("device_valid", in_list("device", DEVICES)),
        ]
    else:
        r = [
            ("payment_id_present", not_blank("payment_id")),
            ("order_id_present", not_blank("order_id")),
            ("amount_positive", pl.col("amount") > 0),
            ("currency_valid", in_list("currency", CURRENCIES)),
            ("method_valid", in_list("method", METHODS)),
            ("status_valid", in_list("status", PAY_STATUSES)),
        ]
    t = pl.col("event_time").cast(pl.Int64)
    r += [
        ("event_time_not_null", pl.col("event_time").is_not_null()),
        ("event_time_after_2000", t >= EPOCH_2000_US),
        ("event_time_not_in_future", t <= pl.col("_ingested_at").cast(pl.Int64) + SLACK_US),
    ]
    return r


def failed_rules(entity):
    parts = [
        pl.when(p.fill_null(False)).then(pl.lit(None, dtype=pl.String)).otherwise(pl.lit(name))
        for name, p in rules(entity)
    ]
    joined = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(joined.str.len_chars() > 0).then(joined).otherwise(None)


def cents(e):
    return e.round(2, mode="half_away_from_zero")


def normalise(entity, lf, version):
    lineage = [pl.col("_kafka_partition"), pl.col("_kafka_offset"), pl.lit(version, pl.Int64).alias("_bronze_version")]
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


def silver(lake, out):
    from deltalake import DeltaTable

    rows = 0
    for entity, key in KEYS.items():
        path = f"{lake}/bronze_{entity}"
        version = DeltaTable(path).version()
        inc = pl.scan_delta(path).with_columns(failed_rules(entity).alias("_failed")).collect()
        bad = inc.filter(pl.col("_failed").is_not_null())
        quarantine = bad.select(
            pl.lit(f"silver_{entity}").alias("target_table"), trimmed(key).alias("business_key"),
            pl.col("_failed").alias("failed_rules"), pl.lit(f"bronze_{entity}").alias("source_table"),
            pl.lit(version, pl.Int64).alias("source_version"), pl.col("_kafka_partition"), pl.col("_kafka_offset"),
            pl.struct(pl.exclude("_failed", "_kafka_key")).struct.json_encode().alias("row_json"),
        )
        good = (
            normalise(entity, inc.lazy().filter(pl.col("_failed").is_null()), version)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = silver(a.lake, a.out)
    t1 = time.perf_counter()
    orders, revenue = gold(a.out)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "polars": pl.__version__, "silver_s": t1 - t0, "gold_s": t2 - t1, "silver_rows": rows,
        "revenue_orders": orders, "revenue": revenue, "peak_mib": peak,
    }))


if __name__ == "__main__":
    main()
