//! Issue 18: generated garbage fed to every parser of user input — durations, cron strings, run
//! parameters, flow files, expectation files — gets an error or a value, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use flowctl::flow::{Schedule, parse_flow};
use flowctl::tasks::{TaskRegistry, TaskSettings};
use flowctl::vocab::{MAX_DURATION, parse_duration};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of flow files: keys, values and structure a user (or a fuzzer) might write.
fn yaml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name: x\n".to_string()),
        Just("tasks:\n".to_string()),
        Just("  - id: a\n".to_string()),
        Just("  - id: b\n    depends_on: [a]\n".to_string()),
        Just("    kind: noop\n".to_string()),
        Just("    kind: shell\n    params: {command: 'true'}\n".to_string()),
        Just(
            "    retries: {count: 3, delay: 1s, backoff: 2, max_delay: 1m, jitter: 0.5}\n"
                .to_string()
        ),
        Just("retries: 5\n".to_string()),
        Just("params: {p: v, Q: [1]}\n".to_string()),
        Just("schedule: \"@daily\"\n".to_string()),
        Just("max_active_runs: 99999999999999999999\n".to_string()),
        Just("- a\n".to_string()),
        Just("{\n".to_string()),
        Just("&a x: *a\n".to_string()),
        "[a-z_]{1,8}: [a-z0-9:{}\\[\\], ]{0,20}\n",
        "    (timeout|delay|max_delay): [0-9.]{1,30}(ms|s|m|h|d|x)?\n",
        "    trigger_rule: [a-z_]{0,12}\n",
        "  {0,6}[^\\n]{0,30}\n",
    ]
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn durations_parse_or_explain_and_never_exceed_the_maximum(
        text in "[0-9.]{0,40}(ms|s|m|h|d|sec|min|hr|x|)[0-9.]{0,25}(ms|s|m|h|d|)|[ -~]{0,40}"
    ) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d <= MAX_DURATION);
            prop_assert!(std::time::Instant::now().checked_add(d).is_some());
            prop_assert!(chrono::Duration::from_std(d).is_ok());
        }
    }

    #[test]
    fn cron_strings_parse_or_explain(text in "(@[a-z]{0,9}|([0-9*,/\\-LW#?A-Z]{0,6} ){0,7})|[ -~]{0,40}") {
        if let Ok(s) = Schedule::parse(&text) {
            let _ = s.next_after(chrono::Utc::now());
        }
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn flow_files_validate_or_explain_with_lines(pieces in proptest::collection::vec(yaml_piece(), 0..14)) {
        let text: String = pieces.concat();
        let registry = TaskRegistry::builtin(TaskSettings::default());
        match parse_flow(Path::new("f.yaml"), &text, &registry) {
            Ok(flow) => {
                // A valid flow's parameters resolve, and nothing in it overflows a clock.
                let _ = flow.resolve_params(&BTreeMap::new()).unwrap();
                for t in &flow.tasks {
                    if let Some(d) = t.timeout {
                        prop_assert!(d <= MAX_DURATION && !d.is_zero());
                    }
                    prop_assert!(t.retry.delay <= MAX_DURATION && t.retry.max_delay <= MAX_DURATION);
                }
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(!e.message.is_empty());
                    // At most one past the last line: an empty value at the end of the file.
                    prop_assert!(e.line <= text.split(['\n', '\r']).count() + 1, "{e} in {text:?}");
                }
            }
        }
    }

    #[test]
    fn expectation_files_parse_or_explain(
        pieces in proptest::collection::vec(prop_oneof![
            Just("rules:\n".to_string()),
            Just("checks:\n".to_string()),
            Just("  - name: r\n    category: C\n".to_string()),
            Just("    invalid: amount\n    valid_min: 0\n".to_string()),
            Just("    missing: id\n".to_string()),
            Just("  - row_count: \"> 0\"\n".to_string()),
            Just("  - freshness: ts\n    must_be: \"< 99999999999999999999d\"\n".to_string()),
            Just("    valid_max: now + 9999999999d\n".to_string()),
            Just("    valid_regex: \"(\"\n".to_string()),
            "    [a-z_]{1,14}: [ -~]{0,20}\n",
            "  {0,6}[^\\n]{0,30}\n",
        ], 0..12)
    ) {
        let text: String = pieces.concat();
        let _ = flowctl::quality::parse_file(Path::new("expectations/t.yaml"), &text);
    }

    #[test]
    fn run_parameters_resolve_or_explain(given in proptest::collection::btree_map("[ -~]{0,10}", "[ -~]{0,10}", 0..5)) {
        let registry = TaskRegistry::builtin(TaskSettings::default());
        let flow = parse_flow(
            Path::new("p.yaml"),
            "name: p\nparams: {from: '', to: ''}\ntasks:\n  - {id: a, kind: noop}\n",
            &registry,
        )
        .unwrap();
        let _ = flow.resolve_params(&given);
    }
}
