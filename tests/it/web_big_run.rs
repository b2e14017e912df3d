//! Issue 18 item 5: after a 10,000-task run, three parallel GETs of its run page (8.7 MB, 22 s
//! each here) made /healthz time out. The page and the API's run detail are paged now, built
//! in time linear in the run, and rendered off the threads that answer /healthz.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::server::{Server, agent, get};

const TASKS: usize = 10_000;

/// 100 chains of 100 `noop` tasks: a deep and wide DAG.
fn big_flow() -> String {
    let mut y = String::from("name: big\ntasks:\n");
    for i in 0..TASKS {
        if i >= 100 {
            y.push_str(&format!(
                "  - {{id: t{i}, kind: noop, depends_on: [t{}]}}\n",
                i - 100
            ));
        } else {
            y.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
        }
    }
    y
}

fn body(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (
        r.status().as_u16(),
        r.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap(),
    )
}

#[test]
fn a_ten_thousand_task_run_page_is_bounded_and_health_stays_fast() {
    let env = Env::new();
    env.flow("big", &big_flow());
    let out = env.run(&["trigger", "big"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        crate::common::stderr(&out)
    );
    let s = Server::start(&env, &[("FLOWCTL_LOG", "error")]);
    let (_, runs) = get(&s.url("/api/runs"));
    let id = runs["runs"][0]["id"].as_i64().unwrap();

    // The page: one page of tasks, no 10,000-box graph, a pager, the state counts.
    let (code, page) = body(&s.url(&format!("/runs/{id}")));
    assert_eq!(code, 200);
    assert!(page.len() < 1_000_000, "run page is {} bytes", page.len());
    assert_eq!(page.matches("<tr data-task=").count(), 200);
    assert!(page.contains("tasks 1–200 of 10000"), "no pager");
    assert!(page.contains("success 10000"), "no state counts");
    assert!(
        !page.contains("class=\"dag\""),
        "a graph of 10,000 tasks was drawn"
    );
    let (_, last) = body(&s.url(&format!("/runs/{id}?offset=9900&partial=1")));
    assert!(last.contains("data-task=\"t9999\"") && !last.contains("rel=\"next\""));
    let (code, _) = body(&s.url(&format!("/runs/{id}?task_state=exploded")));
    assert_eq!(code, 400);

    // The API: 1,000 tasks by default with their attempts, then pages on.
    let (code, d) = get(&s.url(&format!("/api/runs/{id}")));
    assert_eq!(code, 200);
    assert_eq!(d["tasks"].as_array().unwrap().len(), 1000);
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1000);
    assert_eq!(
        (d["tasks_total"].as_u64(), d["next_offset"].as_u64()),
        (Some(10_000), Some(1000))
    );
    assert_eq!(d["task_states"]["success"], 10_000);
    let (_, tail) = get(&s.url(&format!("/api/runs/{id}?offset=9990&limit=50")));
    assert_eq!(tail["tasks"].as_array().unwrap().len(), 10);
    assert!(tail["next_offset"].is_null());
    assert_eq!(tail["tasks"][9]["task"], "t9999");
    let (_, none) = get(&s.url(&format!("/api/runs/{id}?task_state=failed")));
    assert_eq!(
        (
            none["tasks_matching"].as_u64(),
            none["tasks"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    assert_eq!(get(&s.url(&format!("/api/runs/{id}?limit=1001"))).0, 400);

    // Several big pages and API pages at once, while /healthz is polled.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (url, stop) = (s.url("/healthz"), stop.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                assert_eq!(get(&url).0, 200);
                worst = worst.max(t.elapsed());
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, polls)
        })
    };
    let started = Instant::now();
    let loaders: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 {
                s.url(&format!("/runs/{id}"))
            } else {
                s.url(&format!("/api/runs/{id}"))
            };
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let (code, b) = body(&url);
                    assert_eq!(code, 200);
                    assert!(b.len() < 1_000_000, "{url}: {} bytes", b.len());
                }
            })
        })
        .collect();
    for l in loaders {
        l.join().unwrap();
    }
    let loading = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst, polls) = poller.join().unwrap();
    eprintln!("18 big pages in {loading:?}; /healthz worst {worst:?} over {polls} polls");
    assert!(polls >= 3, "only {polls} polls");
    assert!(
        worst < Duration::from_secs(1),
        "/healthz took {worst:?} while big pages rendered"
    );
}
