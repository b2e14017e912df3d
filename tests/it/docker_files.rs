//! docker/ cannot run here, so it is checked by reading it: the compose stack has the services
//! it claims, Prometheus scrapes flowctl where flowctl listens, and the Grafana dashboard only
//! queries metrics flowctl really exposes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use marked_yaml::Node;

fn docker() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

fn yaml(path: &Path) -> Node {
    let text = std::fs::read_to_string(path).unwrap();
    marked_yaml::parse_yaml(0, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn get<'a>(n: &'a Node, path: &[&str]) -> &'a Node {
    path.iter().fold(n, |n, k| {
        n.as_mapping()
            .and_then(|m| m.get_node(k))
            .unwrap_or_else(|| panic!("missing key `{k}` in {path:?}"))
    })
}

fn scalar<'a>(n: &'a Node, path: &[&str]) -> &'a str {
    get(n, path).as_scalar().unwrap().as_str()
}

#[test]
fn compose_stack_is_complete_and_consistent() {
    let c = yaml(&docker().join("docker-compose.yml"));
    let services: BTreeSet<String> = get(&c, &["services"])
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().to_string())
        .collect();
    for s in [
        "kafka",
        "schema-registry",
        "flowctl",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains(s), "service {s} missing: {services:?}");
    }
    assert!(
        !services.iter().any(|s| s.contains("zookeeper")),
        "KRaft mode needs no ZooKeeper"
    );
    assert!(scalar(&c, &["services", "kafka", "image"]).starts_with("apache/kafka:"));
    assert!(
        scalar(
            &c,
            &["services", "kafka", "environment", "KAFKA_PROCESS_ROLES"]
        )
        .contains("controller")
    );
    assert!(
        scalar(&c, &["services", "schema-registry", "image"])
            .starts_with("confluentinc/cp-schema-registry:")
    );
    // flowctl points at the compose services, and is built from our Dockerfile.
    let env = ["services", "flowctl", "environment"];
    assert_eq!(
        scalar(&c, &[env[0], env[1], env[2], "FLOWCTL_KAFKA_BOOTSTRAP"]),
        "kafka:29092"
    );
    assert_eq!(
        scalar(&c, &[env[0], env[1], env[2], "FLOWCTL_SCHEMA_REGISTRY_URL"]),
        "http://schema-registry:8081"
    );
    assert_eq!(
        scalar(&c, &[env[0], env[1], env[2], "FLOWCTL_ADDR"]),
        "0.0.0.0:8080"
    );
    let dockerfile = scalar(&c, &["services", "flowctl", "build", "dockerfile"]);
    assert!(
        docker().parent().unwrap().join(dockerfile).is_file(),
        "{dockerfile}"
    );
    // Every bind-mounted file or directory exists.
    for svc in ["prometheus", "grafana"] {
        for v in get(&c, &["services", svc, "volumes"])
            .as_sequence()
            .unwrap()
            .iter()
        {
            let src = v.as_scalar().unwrap().as_str().split(':').next().unwrap();
            assert!(docker().join(src).exists(), "{svc} mounts missing {src}");
        }
    }
}

#[test]
fn prometheus_scrapes_flowctl_where_it_listens() {
    let p = yaml(&docker().join("prometheus.yml"));
    let jobs = get(&p, &["scrape_configs"]).as_sequence().unwrap();
    let job = jobs
        .iter()
        .find(|j| {
            j.as_mapping()
                .unwrap()
                .get_scalar("job_name")
                .map(|s| s.as_str())
                == Some("flowctl")
        })
        .expect("flowctl job");
    assert_eq!(scalar(job, &["metrics_path"]), "/metrics");
    let targets = get(job, &["static_configs"]).as_sequence().unwrap()[0]
        .as_mapping()
        .unwrap()
        .get_sequence("targets")
        .unwrap();
    assert_eq!(targets[0].as_scalar().unwrap().as_str(), "flowctl:8080");
}

/// Every flowctl metric a PromQL expression names: (as written, without a histogram suffix).
fn metric_names(expr: &str) -> Vec<(String, String)> {
    expr.match_indices("flowctl_")
        .map(|(i, _)| {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n))
                .to_string();
            (name, base)
        })
        .collect()
}

#[test]
fn dashboard_queries_only_real_metrics_and_covers_the_essentials() {
    let text = std::fs::read_to_string(docker().join("grafana/dashboards/flowctl.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let known: BTreeSet<&str> = flowctl::metrics::NAMES.iter().copied().collect();
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (name, base) in metric_names(expr) {
                assert!(
                    known.contains(base.as_str()),
                    "dashboard queries unknown metric `{name}` in `{expr}`"
                );
                used.insert(base);
            }
        }
    }
    // Every metric flowctl exports has a panel.
    for name in flowctl::metrics::NAMES {
        assert!(used.contains(*name), "dashboard has no panel for {name}");
    }
    let provisioning =
        std::fs::read_to_string(docker().join("grafana/provisioning/dashboards/flowctl.yml"))
            .unwrap();
    assert!(provisioning.contains("/var/lib/grafana/dashboards"));
}

#[test]
fn dockerfile_is_multi_stage() {
    let text = std::fs::read_to_string(docker().join("Dockerfile")).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(text.contains("COPY --from=build /src/target/release/flowctl"));
    assert!(text.contains("EXPOSE 8080"));
}

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(docker().join("prometheus"))
        .output()
        .expect("promtool is required (Debian package `prometheus`; scripts/test.sh installs it)")
}

#[test]
fn the_alert_rules_are_valid_fire_when_they_should_and_query_only_real_metrics() {
    let check = promtool(&["check", "rules", "alerts.yml"]);
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Each alert fires on a series that should page and stays silent on a healthy one.
    let test = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let rules = yaml(&docker().join("prometheus/alerts.yml"));
    let known: BTreeSet<&str> = flowctl::metrics::NAMES.iter().copied().collect();
    let mut alerts = BTreeSet::new();
    for group in get(&rules, &["groups"]).as_sequence().unwrap().iter() {
        for rule in get(group, &["rules"]).as_sequence().unwrap().iter() {
            alerts.insert(scalar(rule, &["alert"]).to_string());
            let expr = scalar(rule, &["expr"]);
            for (name, base) in metric_names(expr) {
                assert!(
                    known.contains(base.as_str()),
                    "alert queries unknown metric `{name}`"
                );
            }
        }
    }
    // Every alert the rules define is exercised by the unit tests.
    let tests = std::fs::read_to_string(docker().join("prometheus/alerts_test.yml")).unwrap();
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}")),
            "no unit test fires {a}"
        );
    }
    assert!(alerts.len() >= 6, "{alerts:?}");
    // Prometheus loads the rules and sends to the compose Alertmanager.
    let p = yaml(&docker().join("prometheus.yml"));
    let files = get(&p, &["rule_files"]).as_sequence().unwrap();
    assert_eq!(
        files[0].as_scalar().unwrap().as_str(),
        "/etc/prometheus/alerts.yml"
    );
    let c = yaml(&docker().join("docker-compose.yml"));
    assert!(
        get(&c, &["services", "alertmanager", "image"])
            .as_scalar()
            .is_some()
    );
    let mounts = get(&c, &["services", "prometheus", "volumes"])
        .as_sequence()
        .unwrap();
    assert!(
        mounts.iter().any(|m| m.as_scalar().unwrap().as_str()
            == "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"),
        "the compose Prometheus must mount the alert rules"
    );
}
