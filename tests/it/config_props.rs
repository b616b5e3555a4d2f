//! Hostile configuration, proven: whatever `Config::parse` accepts runs through the policy for
//! simulated days of drops without a panic (no overflowing `Instant + duration`, no unbounded
//! growth), and no text at all makes `Config::parse` panic.

use std::io;
use std::path::Path;
use std::time::Duration;

use fwdguard::config::{Config, Guard, Image};
use fwdguard::knob::{Op, SysctlError};
use fwdguard::policy::GuardState;
use fwdguard::report::{Report, Trigger};
use fwdguard::value::Value;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::time::Instant;

/// Duration settings as people and fuzzers write them, bounds and far past them included.
/// Mostly within the bounds, so that most generated files get to the policy.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (1u64..=86_400).prop_map(|n| format!("{n}s")),
        2 => (1u64..=1_440).prop_map(|n| format!("{n}m")),
        2 => Just("1d".to_owned()),
        1 => (0u64..=u64::MAX, prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y"]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => Just("500000000000y".to_owned()),
        1 => "[ -~]{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.conf.eth0/100.rp_filter",
            "net.ipv6.conf.default.proxy_ndp",
            "net.ipv4.ip_local_port_range",
            "net.bridge.bridge-nf-call-iptables",
            "net.ipv4.tcp_congestion_control",
            "net.core.somaxconn",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z0-9_./-]{1,30}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (-3i64..4).prop_map(|i| i.to_string()),
        1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => any::<i64>().prop_map(|i| format!("\"{i}\"")),
        3 => prop::sample::select(vec![
            "\"01\"", "\"+1\"", "\" 1\\t0 \"", "\"0x1F\"", "\"010\"", "\"yes\"", "\"1 0\"",
            "\"32768 60999\"", "\"\"", "\"bbr\"", "true", "1.5",
        ])
        .prop_map(str::to_owned),
        1 => "\"[ -~&&[^\"\\\\]]{0,20}\"",
    ]
}

/// A configuration file's text, mostly well-formed so that much of it gets past the parser.
fn config_text() -> impl Strategy<Value = String> {
    let action = prop::sample::select(vec!["", "restore", "alert"]);
    let guard = (key(), value(), action);
    (
        prop::option::of(duration()),
        prop::option::of(prop_oneof![
            6 => (2i64..=1000).prop_map(|t| t.to_string()),
            1 => any::<i64>().prop_map(|t| t.to_string()),
        ]),
        prop::option::of(duration()),
        prop::collection::vec(guard, 1..4),
    )
        .prop_map(|(reread, threshold, window, guards)| {
            let mut text = String::new();
            if let Some(r) = reread {
                text.push_str(&format!("reread-interval = \"{}\"\n", escape(&r)));
            }
            if let Some(t) = threshold {
                text.push_str(&format!("flap-threshold = {t}\n"));
            }
            if let Some(w) = window {
                text.push_str(&format!("flap-window = \"{}\"\n", escape(&w)));
            }
            for (key, value, action) in guards {
                text.push_str(&format!(
                    "[[guard]]\nkey = \"{}\"\nvalue = {value}\n",
                    escape(&key)
                ));
                if !action.is_empty() {
                    text.push_str(&format!("action = \"{action}\"\n"));
                }
            }
            text
        })
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What a simulated reading of the key returns.
#[derive(Debug, Clone)]
enum Reading {
    Want,
    Zero,
    Other(String),
    Missing,
    Refused,
}

fn reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        3 => Just(Reading::Want),
        4 => Just(Reading::Zero),
        1 => "[ -~]{0,8}".prop_map(Reading::Other),
        1 => Just(Reading::Missing),
        1 => Just(Reading::Refused),
    ]
}

/// One step of simulated time: wait, then a reading, then what restores read back.
fn step() -> impl Strategy<Value = (u64, Reading, Vec<Reading>)> {
    (
        prop_oneof![
            0u64..1_000,
            0u64..120_000,
            // Up to 6 hours at once: 60 steps span days.
            0u64..21_600_000,
        ],
        reading(),
        prop::collection::vec(reading(), 0..4),
    )
}

fn read(guard: &Guard, r: &Reading, op: Op) -> Result<Value, SysctlError> {
    let error = |kind| SysctlError {
        op,
        key: guard.key.clone(),
        source: io::Error::from(kind),
    };
    match r {
        Reading::Want => Ok(guard.want.clone()),
        Reading::Zero => Ok(Value::new("0")),
        Reading::Other(s) => Ok(Value::new(s)),
        Reading::Missing => Err(error(io::ErrorKind::NotFound)),
        Reading::Refused => Err(error(io::ErrorKind::PermissionDenied)),
    }
}

/// What the daemon does for one observation: read, let the policy decide, write and read back
/// for as long as the policy asks.
fn reconcile(
    state: &mut GuardState,
    seen: &Reading,
    write_outcomes: &[Reading],
    trigger: Trigger,
    now: Instant,
    reports: &mut Vec<Report>,
) {
    let guard = state.guard.clone();
    let mut d = state.observe(read(&guard, seen, Op::Read), trigger, None, now);
    reports.append(&mut d.reports);
    let mut outcomes = write_outcomes.iter();
    while d.restore {
        // Once the scripted outcomes run out the write sticks, so the loop ends when the
        // policy stops asking.
        let outcome = outcomes.next().unwrap_or(&Reading::Want);
        d = state.restored(read(&guard, outcome, Op::Write), trigger, None, now);
        reports.append(&mut d.reports);
    }
}

/// Feeds `steps` to every guard of `config` as the daemon would, over simulated time.
fn simulate(config: &Config, steps: &[(u64, Reading, Vec<Reading>)]) {
    let start = Instant::now();
    for guard in &config.guards {
        let mut state = GuardState::new(guard.clone(), config.flapping);
        let mut now = start;
        let mut reports: Vec<Report> = Vec::new();
        for (wait_ms, seen, write_outcomes) in steps {
            let next = now + Duration::from_millis(*wait_ms);
            // The daemon's timer fires at each deadline on the way, and a due retry re-reads.
            let mut fired = 0;
            while let Some(due) = state.next_deadline().filter(|d| *d <= next) {
                assert!(due >= now, "a deadline in the past: {due:?} < {now:?}");
                now = due;
                let mut d = state.tick(now);
                reports.append(&mut d.reports);
                if d.recheck {
                    reconcile(
                        &mut state,
                        seen,
                        write_outcomes,
                        Trigger::Retry,
                        now,
                        &mut reports,
                    );
                }
                fired += 1;
                assert!(fired < 10_000, "deadlines without end at {now:?}");
            }
            now = next;
            reconcile(
                &mut state,
                seen,
                write_outcomes,
                Trigger::Netconf,
                now,
                &mut reports,
            );
            reports.append(&mut state.tick(now).reports);
            // Every report renders, whatever durations it carries.
            for r in reports.drain(..) {
                assert!(!r.to_string().is_empty());
            }
        }
    }
}

proptest! {
    // Seeds of past failures are kept beside this file (config_props.proptest-regressions).
    // Proptest's default would look for them under tests/proptest-regressions/, as the
    // binary's main.rs is in this directory.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn accepted_configs_run_for_days_of_drops_without_panicking(
        text in config_text(),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        if let Ok(config) = Config::parse(&text, Path::new("prop.toml"), &Image) {
            prop_assert!(config.reread_interval >= Duration::from_secs(1));
            prop_assert!(config.reread_interval <= Duration::from_secs(86_400));
            // What the daemon adds to its clock for the re-read timer.
            prop_assert!(Instant::now().checked_add(config.reread_interval).is_some());
            simulate(&config, &steps);
        }
    }

    #[test]
    fn parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = Config::parse(&text, Path::new("prop.toml"), &Image);
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(
        lines in prop::collection::vec(
            prop_oneof![
                Just("[[guard]]".to_owned()),
                key().prop_map(|k| format!("key = \"{}\"", escape(&k))),
                value().prop_map(|v| format!("value = {v}")),
                duration().prop_map(|d| format!("flap-window = \"{}\"", escape(&d))),
                "[ -~]{0,30}",
            ],
            0..12,
        ),
    ) {
        let _ = Config::parse(&lines.join("\n"), Path::new("prop.toml"), &Image);
    }
}

/// The largest settings the bounds allow, over a week of a drop every few minutes.
#[test]
fn the_largest_accepted_settings_run_for_a_week() {
    let config = Config::parse(
        "reread-interval = \"1d\"\nflap-threshold = 1000\nflap-window = \"1d\"\n\
         [[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n",
        Path::new("max.toml"),
        &Image,
    )
    .expect("the bounds are valid");
    let steps: Vec<_> = (0..3000)
        .map(|i| {
            (
                200_000,
                if i % 2 == 0 {
                    Reading::Zero
                } else {
                    Reading::Want
                },
                vec![],
            )
        })
        .collect();
    simulate(&config, &steps);
}
