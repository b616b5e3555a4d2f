//! The incident end to end, with a real Docker engine: `network stop` sets
//! `net.ipv4.ip_forward=0` on a Docker host, and containers and `docker build` lose the outside
//! world. Each test builds a world of its own (`world.rs`, `world.sh`): an "internet" namespace
//! serving a file over HTTP on 198.51.100.1, a "Docker host" namespace routed to it, a private
//! dockerd (Debian's docker.io) there, and a busybox image imported from busybox-static. Each
//! asserts what a user sees: build output, Docker's warning, image contents, failed downloads,
//! fwdguard's report lines.

// The harness of tests/it; this binary uses only the daemon, its cgroup and the webhook
// receiver, so the rest is dead code here.
#[allow(dead_code)]
#[path = "../../it/common/mod.rs"]
mod common;
mod world;

use std::io::{BufRead, BufReader, Write as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use world::{IMAGE, URL, World};

/// `docker run` prints it on stderr when forwarding is off as a container starts.
const RUN_WARNING: &str = "WARNING: IPv4 forwarding is disabled. Networking will not work.";
/// The classic builder prints it on stdout, once per `RUN` step.
const BUILD_WARNING: &str =
    " ---> [Warning] IPv4 forwarding is disabled. Networking will not work.";
const SECOND: Duration = Duration::from_secs(1);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A download as a `RUN` step or a container would do it; busybox's `wget -T` crashes, so
/// `timeout` bounds it.
fn download(to: &str) -> String {
    format!("timeout 2 wget -q -O {to} {URL}")
}

/// Visible in the test's output even when it passes.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `docker run` of a download: whether it worked, and what it printed on stderr.
fn run_download(w: &World) -> (bool, String) {
    let out = w.run(IMAGE, &download("-"));
    let got = out.status.success() && text(&out.stdout) == w.payload();
    (got, text(&out.stderr))
}

/// The file the image holds at `/file` (empty if none).
fn file_in_image(w: &World, image: &str) -> String {
    text(&w.run(image, "cat /file 2>/dev/null || true").stdout)
}

/// A world with dockerd running with its default flags.
fn world_with_dockerd(test: &'static str) -> Option<World> {
    let w = World::start(test)?;
    w.dockerd(&[]);
    Some(w)
}

/// `docker build -t e2e:and` of `RUN wget ... && echo downloaded`: its output and status.
fn build_and(w: &World) -> std::process::Output {
    w.build(
        "e2e:and",
        &format!("RUN {} && echo downloaded", download("/file")),
    )
}

/// The build of `RUN wget ... && ...` failed the way it does with forwarding off.
fn assert_build_fails_with_warning(w: &World) {
    let build = build_and(w);
    let stdout = text(&build.stdout);
    assert!(!build.status.success(), "the build should fail:\n{stdout}");
    assert!(stdout.contains(BUILD_WARNING), "{stdout}");
    assert!(
        text(&build.stderr).contains("returned a non-zero code"),
        "{}",
        text(&build.stderr)
    );
}

#[test]
fn the_incident_without_fwdguard_breaks_run_and_build() {
    let Some(w) = world_with_dockerd("the_incident_without_fwdguard_breaks_run_and_build") else {
        return;
    };
    w.network_stop();
    assert_eq!(w.forwarding(), "0");

    let (downloaded, stderr) = run_download(&w);
    assert!(!downloaded, "a container downloaded with forwarding at 0");
    assert!(
        stderr.contains(RUN_WARNING),
        "docker run's stderr: {stderr}"
    );

    assert_build_fails_with_warning(&w);

    // `|| true`: the build succeeds, warns, and ships an image without the file.
    let build = w.build("e2e:or-true", &format!("RUN {} || true", download("/file")));
    let stdout = text(&build.stdout);
    assert!(build.status.success(), "{stdout}{}", text(&build.stderr));
    assert!(stdout.contains(BUILD_WARNING), "{stdout}");
    assert!(
        stdout.contains("Successfully tagged e2e:or-true"),
        "{stdout}"
    );
    assert_eq!(
        file_in_image(&w, "e2e:or-true"),
        "",
        "the image has no payload"
    );
}

#[test]
fn restore_keeps_run_and_build_whole() {
    let Some(mut w) = world_with_dockerd("restore_keeps_run_and_build_whole") else {
        return;
    };
    w.fwdguard("restore");
    w.network_stop();
    w.guard()
        .wait_stderr("net.ipv4.conf.all.forwarding was 0, restored to 1", SECOND);
    assert_eq!(w.forwarding(), "1");

    let build = build_and(&w);
    let stdout = text(&build.stdout);
    assert!(build.status.success(), "{stdout}{}", text(&build.stderr));
    assert!(!stdout.contains("IPv4 forwarding is disabled"), "{stdout}");
    assert!(stdout.contains("\ndownloaded\n"), "{stdout}");
    assert_eq!(file_in_image(&w, "e2e:and"), w.payload());

    let (downloaded, stderr) = run_download(&w);
    assert!(downloaded, "docker run could not download: {stderr}");
    assert!(!stderr.contains(RUN_WARNING), "{stderr}");
}

/// Runs `fire` while a container in the world downloads every 50 ms, and notes `what` it
/// was. Returns the container's downloads after its first one: (ok, failed).
fn downloads_during(w: &World, what: &str, fire: impl FnOnce()) -> (u32, u32) {
    let ctl = w.path("ctl");
    std::fs::create_dir_all(&ctl).expect("ctl");
    // A download fails when it has not finished within 5 s: a SYN lost at a drop is retried
    // (after 1 s and 3 s), as by a package manager, and a machine as loaded as a CI runner
    // can be does not count as a failure; a knob left at 0 fails it.
    let script = format!(
        "get() {{ timeout 5 wget -q -O /dev/null {URL}; }}; \
         get && echo started || echo 'first download failed'; ok=0; failed=0; \
         while [ ! -e /ctl/stop ]; do \
           if get; then ok=$((ok+1)); else failed=$((failed+1)); fi; \
           usleep 50000; \
         done; echo \"downloads: $ok $failed\""
    );
    let mut container = w
        .docker_command()
        .args(["run", "--init", "--rm", "--pull", "never", "-v"])
        .arg(format!("{}:/ctl", ctl.display()))
        .args([IMAGE, "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker run");
    let mut lines = BufReader::new(container.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(
        first, "started",
        "the container could not download before the restarts"
    );

    let start = Instant::now();
    fire();
    let took = start.elapsed();
    std::fs::write(ctl.join("stop"), "").expect("stop file");
    let last = lines.last().and_then(Result::ok).unwrap_or_default();
    let out = container.wait_with_output().expect("container");
    assert!(out.status.success(), "{last}\n{}", text(&out.stderr));
    let counts: Vec<u32> = last
        .strip_prefix("downloads: ")
        .unwrap_or_else(|| panic!("no counts from the container: {last:?}"))
        .split(' ')
        .map(|n| n.parse().expect("a count"))
        .collect();
    note(&format!(
        "{what} in {took:.1?}: {} downloads ok, {} failed",
        counts[0], counts[1]
    ));
    (counts[0], counts[1])
}

/// Downloads while `network.service` is restarted 20 times on a host whose sysctl drop-in says
/// `ip_forward = 0` (0.5 s each; two writes of 0 each).
fn under_fire(w: &World) -> (u32, u32) {
    downloads_during(w, "20 network restarts", || w.network_restarts(20))
}

#[test]
fn a_container_under_fire_loses_downloads_without_fwdguard() {
    let Some(w) = world_with_dockerd("a_container_under_fire_loses_downloads_without_fwdguard")
    else {
        return;
    };
    let (ok, failed) = under_fire(&w);
    assert!(
        failed > 0,
        "no download failed ({ok} ok) with forwarding left at 0"
    );
}

#[test]
fn a_container_under_fire_loses_no_download_with_fwdguard() {
    let Some(mut w) = world_with_dockerd("a_container_under_fire_loses_no_download_with_fwdguard")
    else {
        return;
    };
    w.fwdguard("restore");
    let (ok, failed) = under_fire(&w);
    assert_eq!(
        failed, 0,
        "downloads failed with fwdguard restoring ({ok} ok)"
    );
    // Every 50 ms over 10 s, less the time each download takes.
    assert!(ok >= 50, "only {ok} downloads in 10 s");
    let stderr = w.guard().stderr();
    assert!(stderr.contains("was 0, restored to 1"), "{stderr}");
}

#[test]
fn alert_reports_the_drop_and_the_build_fails_as_without() {
    let Some(mut w) = world_with_dockerd("alert_reports_the_drop_and_the_build_fails_as_without")
    else {
        return;
    };
    // The alert also goes to a webhook: a receiver in the world's network namespace.
    let rx = w.in_netns(|| common::receiver::Receiver::start(&[]));
    w.fwdguard_with(
        "alert",
        &format!(
            "\n[[webhook]]\nformat = \"json\"\nurl = \"{}\"\n",
            rx.url("/alerts")
        ),
    );
    w.network_stop();
    w.guard().wait_stderr(
        "net.ipv4.conf.all.forwarding is 0, want 1; action is alert, not changing it",
        SECOND,
    );
    assert_eq!(w.forwarding(), "0", "alert must not write");
    let start = Instant::now();
    let alert = loop {
        let got = rx.requests().into_iter().map(|r| r.json());
        if let Some(alert) = got.clone().find(|j| j["event"] == "drift-alerted") {
            break alert;
        }
        assert!(
            start.elapsed() < 5 * SECOND,
            "no drift-alerted webhook within 5 s, got: {:?}",
            got.collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (
            &alert["key"],
            &alert["observed"],
            &alert["wanted"],
            &alert["priority"]
        ),
        (
            &serde_json::json!("net.ipv4.conf.all.forwarding"),
            &serde_json::json!("0"),
            &serde_json::json!("1"),
            &serde_json::json!("err")
        ),
        "{alert}"
    );

    assert_build_fails_with_warning(&w);
}

#[test]
fn dockerd_sets_forwarding_only_at_its_start_and_fwdguard_keeps_it() {
    let Some(mut w) =
        World::start("dockerd_sets_forwarding_only_at_its_start_and_fwdguard_keeps_it")
    else {
        return;
    };
    // Default --ip-forward=true: dockerd turns forwarding on as it starts, and never again.
    w.sysctl("net.ipv4.ip_forward=0");
    w.dockerd(&[]);
    assert_eq!(w.forwarding(), "1", "dockerd sets forwarding at its start");
    w.network_stop();
    std::thread::sleep(SECOND);
    assert_eq!(
        w.forwarding(),
        "0",
        "dockerd put forwarding back after its start"
    );
    let info = w.docker(&["info"]);
    assert!(
        text(&info.stderr).contains("WARNING: IPv4 forwarding is disabled"),
        "{}",
        text(&info.stderr)
    );

    // --ip-forward=false: dockerd leaves the 0 alone; only its warnings say so.
    w.dockerd_stop();
    w.dockerd(&["--ip-forward=false"]);
    assert_eq!(
        w.forwarding(),
        "0",
        "dockerd --ip-forward=false changed forwarding"
    );
    let (downloaded, stderr) = run_download(&w);
    assert!(!downloaded);
    assert!(stderr.contains(RUN_WARNING), "{stderr}");

    // fwdguard with that dockerd: forwarding is fixed before it is ready, and kept.
    w.fwdguard("restore");
    assert_eq!(w.forwarding(), "1");
    w.network_stop();
    w.guard()
        .wait_stderr("net.ipv4.conf.all.forwarding was 0, restored to 1", SECOND);
    let (downloaded, stderr) = run_download(&w);
    assert!(downloaded, "docker run could not download: {stderr}");
    assert!(!stderr.contains(RUN_WARNING), "{stderr}");
}

#[test]
fn prevent_keeps_forwarding_at_1_through_a_storm_of_writes() {
    let Some(mut w) = world_with_dockerd("prevent_keeps_forwarding_at_1_through_a_storm_of_writes")
    else {
        return;
    };
    // The hook covers only the cgroup it is attached to, and the writers below it.
    let cgroup = common::TestCgroup::new("docker-prevent");
    w.fwdguard_attached("prevent", &cgroup.path);
    w.guard().wait_stderr("BPF sysctl hook attached at", SECOND);
    let watch = w.watch_forwarding();
    let mut writes = 0;
    let (ok, failed) = downloads_during(&w, "a storm of writes of 0", || {
        writes = w.storm(&cgroup.path, 5);
    });
    let (reads, zeros) = watch.stop();
    note(&format!(
        "{writes} writes of 0: forwarding read {reads} times, at 0 in {zeros}"
    ));
    assert!(writes > 1000, "only {writes} writes");
    assert!(reads > 1000, "only {reads} reads");
    assert_eq!(zeros, 0, "forwarding was seen at 0 during the storm");
    assert_eq!(failed, 0, "downloads failed under prevent ({ok} ok)");
    assert!(ok >= 25, "only {ok} downloads in 5 s");
    let stderr = w.guard().stderr();
    assert!(stderr.contains("replaced by 1"), "{stderr}");
    assert!(
        !stderr.contains("restored"),
        "never dropped, never restored:\n{stderr}"
    );
    drop(w);
    drop(cgroup);
}
