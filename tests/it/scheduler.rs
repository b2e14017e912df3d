//! The cron scheduler across restarts and crashes: never a double fire, and with catch-up,
//! never a skipped window.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::common::Env;
use crate::server::Server;

fn fire_times(env: &Env) -> Vec<DateTime<Utc>> {
    let (_, v) = env.json(&["runs", "list", "--limit", "1000"]);
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger_source"] == "schedule")
        .map(|r| {
            let key = r["idempotency_key"]
                .as_str()
                .expect("scheduled runs carry a key");
            let at = key.strip_prefix("schedule:").expect("schedule key");
            DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc)
        })
        .collect()
}

const EVERY_SECOND: &str = "name: tick\nschedule: \"* * * * * *\"\ncatchup: CATCHUP\nmax_active_runs: 100\ntasks:\n  - {id: a, kind: noop}\n";

#[test]
fn catchup_fires_every_missed_second_exactly_once_across_a_crash() {
    let env = Env::new();
    env.flow("tick", &EVERY_SECOND.replace("CATCHUP", "true"));
    let s = Server::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    s.kill(); // SIGKILL: a crash, not a shutdown
    std::thread::sleep(Duration::from_millis(2500)); // windows missed while down
    let s = Server::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    s.kill();
    let times = fire_times(&env);
    let distinct: BTreeSet<_> = times.iter().collect();
    assert_eq!(
        distinct.len(),
        times.len(),
        "a window fired twice: {times:?}"
    );
    assert!(times.len() >= 5, "too few fires: {times:?}");
    // Every second from the first fire to the last fired once: nothing skipped over the crash.
    let first = *distinct.first().unwrap();
    let last = *distinct.last().unwrap();
    let span = (*last - *first).num_seconds() + 1;
    assert_eq!(
        span as usize,
        distinct.len(),
        "a window was skipped: {times:?}"
    );
    // Runs left behind by the crashed server are adopted and finished by the next one.
    let (_, runs) = env.json(&["runs", "list", "--limit", "1000", "--state", "success"]);
    assert!(runs["runs"].as_array().unwrap().len() >= times.len() - 2);
}

#[test]
fn without_catchup_a_restart_fires_once_for_the_missed_windows() {
    let env = Env::new();
    env.flow("tick", &EVERY_SECOND.replace("CATCHUP", "false"));
    // Polls instead of fixed sleeps: on a loaded machine the first fire can take a while.
    let wait_until = |pred: &dyn Fn(&[DateTime<Utc>]) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !pred(&fire_times(&env)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the scheduler never fired"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let s = Server::start(&env, &[]);
    wait_until(&|t| !t.is_empty());
    s.kill();
    let before = fire_times(&env);
    let last_before = *before.iter().max().expect("fired before the restart");
    std::thread::sleep(Duration::from_millis(3000));
    let s = Server::start(&env, &[]);
    wait_until(&|t| t.iter().any(|x| *x > last_before));
    s.kill();
    let after = fire_times(&env);
    let distinct: BTreeSet<_> = after.iter().collect();
    assert_eq!(
        distinct.len(),
        after.len(),
        "a window fired twice: {after:?}"
    );
    let new: Vec<_> = after.iter().filter(|t| **t > last_before).collect();
    // About 3 windows were missed; catch-up fired only the latest (plus at most the live tick
    // that may land in the 300 ms the server ran).
    assert!(
        !new.is_empty() && new.len() <= 2,
        "fires after restart: {new:?}"
    );
}

#[test]
fn a_paused_flow_does_not_fire() {
    let env = Env::new();
    env.flow("tick", &EVERY_SECOND.replace("CATCHUP", "true"));
    let out = env.run(&["schedules", "pause", "tick"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, list) = env.json(&["schedules", "list"]);
    assert_eq!(list["schedules"][0]["paused"], true);
    let s = Server::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(2200));
    s.kill();
    assert!(fire_times(&env).is_empty());
    assert!(env.run(&["schedules", "unpause", "tick"]).status.success());
    let s = Server::start(&env, &[]);
    std::thread::sleep(Duration::from_millis(2200));
    s.kill();
    let n = fire_times(&env).len();
    // Unpausing skips the paused windows instead of replaying them all.
    assert!((1..=3).contains(&n), "fires after unpause: {n}");
}
