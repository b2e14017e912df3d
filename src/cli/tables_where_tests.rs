//! Unit tests of the `--where` parser and its Polars expressions.

use super::*;
use polars::prelude::{IntoLazy, df};

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

#[test]
fn parses_comparisons_and_precedence() {
    let p = parse("a = 'x' or b > 3 and c is not null").unwrap();
    assert_eq!(
        p,
        Pred::Or(
            Box::new(Pred::Cmp("a".into(), Op::Eq, s("x"))),
            Box::new(Pred::And(
                Box::new(Pred::Cmp("b".into(), Op::Gt, Value::Int(3))),
                Box::new(Pred::IsNull("c".into(), true)),
            )),
        )
    );
    assert_eq!(
        parse("NOT (x in (1, 2.5, 'q')) AND `my col` <> 'it''s'").unwrap(),
        Pred::And(
            Box::new(Pred::Not(Box::new(Pred::In(
                "x".into(),
                vec![Value::Int(1), Value::Float(2.5), s("q")],
                false
            )))),
            Box::new(Pred::Cmp("my col".into(), Op::Ne, s("it's"))),
        )
    );
    assert_eq!(
        parse("n not in (-1) and f <= -2.5e3 and ok = true").unwrap(),
        Pred::And(
            Box::new(Pred::And(
                Box::new(Pred::In("n".into(), vec![Value::Int(-1)], true)),
                Box::new(Pred::Cmp("f".into(), Op::Le, Value::Float(-2500.0))),
            )),
            Box::new(Pred::Cmp("ok".into(), Op::Eq, Value::Bool(true))),
        )
    );
}

#[test]
fn errors_say_what_and_where() {
    assert_eq!(
        parse("amount >").unwrap_err(),
        "--where: expected a value after `>` at column 9 (end of input)"
    );
    assert_eq!(
        parse("amount > and").unwrap_err(),
        "--where: expected a value after `>` at column 10, found `and`"
    );
    assert!(parse("a = 'x").unwrap_err().contains("unterminated"));
    assert!(
        parse("a = 1 b = 2")
            .unwrap_err()
            .contains("expected `and`, `or` or the end")
    );
    assert!(parse("(a = 1").unwrap_err().contains("expected `)`"));
    assert!(parse("a is 3").unwrap_err().contains("expected `null`"));
    assert!(parse("a = null").unwrap_err().contains("use `is null`"));
    assert!(parse("a in 1").unwrap_err().contains("expected `(`"));
    assert!(
        parse("= 3")
            .unwrap_err()
            .contains("expected a column name at column 1")
    );
    assert!(
        parse("a ; 3")
            .unwrap_err()
            .contains("unexpected `;` at column 3")
    );
}

#[test]
fn expressions_filter_a_frame() {
    let frame = df! {
        "name" => ["a", "b", "c", "d"],
        "n" => [Some(1i64), Some(5), None, Some(9)],
        "x" => [0.5f64, 1.5, 2.5, 3.5],
    }
    .unwrap();
    let rows = |w: &str| {
        let e = compile(w, frame.schema()).unwrap();
        let out = frame.clone().lazy().filter(e).collect().unwrap();
        let names = out.column("name").unwrap();
        (0..out.height())
            .map(|i| match names.get(i).unwrap() {
                polars::prelude::AnyValue::String(s) => s.to_string(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows("n > 3"), ["b", "d"]);
    assert_eq!(rows("n is null or name = 'a'"), ["a", "c"]);
    assert_eq!(rows("name in ('a', 'd') and x >= 1"), ["d"]);
    assert_eq!(rows("not (n < 6)"), ["d"]);
    assert_eq!(rows("name not in ('a')"), ["b", "c", "d"]);
    let err = compile("missing = 1", frame.schema()).unwrap_err();
    assert!(
        err.contains("no column `missing`") && err.contains("name, n, x"),
        "{err}"
    );
    let dated = df! { "d" => [1i32] }
        .unwrap()
        .lazy()
        .select([polars::prelude::col("d").cast(DataType::Date)])
        .collect()
        .unwrap();
    let err = compile("d > 'soon'", dated.schema()).unwrap_err();
    assert!(err.contains("'soon' is not a date"), "{err}");
    let err = compile("n = 'x'", frame.schema()).unwrap_err();
    assert!(err.contains("column n is i64"), "{err}");
}

/// Issue 18: 10,000 nested `(` aborted `tables show` on a stack overflow.
#[test]
fn deep_nesting_and_long_chains_are_refused_not_overflowed() {
    let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(
        parse(&deep)
            .unwrap_err()
            .contains("nested more than 64 deep")
    );
    let nots = format!("{}a = 1", "not ".repeat(10_000));
    assert!(
        parse(&nots)
            .unwrap_err()
            .contains("nested more than 64 deep")
    );
    let chain = vec!["a = 1"; 100_000].join(" and ");
    assert!(
        parse(&chain)
            .unwrap_err()
            .contains("more than 256 comparisons")
    );
    // Within the limits all is as before.
    let ok = format!("{}a = 1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(
        parse(&ok).unwrap(),
        Pred::Cmp("a".into(), Op::Eq, Value::Int(1))
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]
    /// Garbage in, an error or a predicate out: never a panic, never an overflow.
    #[test]
    fn the_where_parser_never_panics(text in "[()a-z0-9 '\"=<>!,.:-]{0,200}|(not |\\(|and |or |a = 1 |'x' |in |is null ){0,300}") {
        if let Ok(p) = parse(&text) {
            let schema = polars::prelude::Schema::from_iter([
                polars::prelude::Field::new("a".into(), polars::prelude::DataType::Int64),
            ]);
            let _ = to_expr(&p, &schema);
        }
    }
}
