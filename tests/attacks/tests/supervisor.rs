//! The agent's `supervisor` app control with a real `supervisord` (Debian's supervisor package):
//! `cosmian_vm app start|stop|restart` on a verified session drive `supervisorctl`, and
//! supervisord's own status shows the app running, stopped, and restarted (a new process).
//! Nothing here skips: a missing supervisord fails the test (scripts/setup.sh installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratls_attacks::{text, Vm};

struct Supervisord(Child);

impl Drop for Supervisord {
    /// SIGTERM: supervisord stops its programs before it exits (SIGKILL would orphan them).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn supervisorctl(conf: &Path, args: &[&str]) -> String {
    let out = Command::new("supervisorctl")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("supervisorctl (Debian package supervisor; scripts/setup.sh)");
    text(&out)
}

/// `my_app`'s state and pid as supervisord reports them.
fn status(conf: &Path) -> (String, Option<u32>) {
    let line = supervisorctl(conf, &["status", "my_app"]);
    let mut words = line.split_whitespace();
    let state = words.nth(1).unwrap_or("").to_owned();
    let pid = line
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.trim().parse().ok());
    (state, pid)
}

#[test]
fn app_start_stop_restart_drive_a_real_supervisord() {
    let vm = Vm::start_with_app(
        "supervisor",
        "",
        "[app]\nservice_type = \"supervisor\"\nservice_name = \"my_app\"\napp_storage = \"app\"\n",
    );
    let dir = &vm.dir.0;
    // The agent runs in the VM's directory: supervisorctl reads ./supervisord.conf there.
    let conf = dir.join("supervisord.conf");
    std::fs::write(
        &conf,
        format!(
            "[unix_http_server]\nfile={d}/supervisor.sock\nchmod=0700\n\n\
             [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
             nodaemon=true\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
             [program:my_app]\ncommand=sleep 600\nautostart=false\nautorestart=false\n\
             startsecs=0\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let _supervisord = Supervisord(
        Command::new("supervisord")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("supervisord (Debian package supervisor; scripts/setup.sh)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&conf).0 != "STOPPED" {
        assert!(
            Instant::now() < deadline,
            "supervisord did not come up: {}",
            supervisorctl(&conf, &["status"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (home, snap) = vm.snapshot();
    let snap = snap.to_str().unwrap();
    let app = |action: &str| {
        let out = vm.cli(&home, &["app", action, "--snapshot", snap]);
        assert_eq!(out.status.code(), Some(0), "app {action}: {}", text(&out));
    };
    app("start");
    let (state, first) = status(&conf);
    assert_eq!(state, "RUNNING", "{}", supervisorctl(&conf, &["status"]));
    app("restart");
    let (state, second) = status(&conf);
    assert_eq!(state, "RUNNING");
    assert!(
        first.is_some() && second.is_some() && first != second,
        "restart kept the process: {first:?} {second:?}"
    );
    app("stop");
    assert_eq!(status(&conf).0, "STOPPED");
    // A program supervisord does not know: the agent's error names supervisorctl's answer.
    std::fs::write(
        &conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("[program:my_app]", "[program:other_app]"),
    )
    .unwrap();
    let reread = supervisorctl(&conf, &["update"]);
    eprintln!("{reread}");
    let out = vm.cli(&home, &["app", "start", "--snapshot", snap]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("supervisorctl start my_app failed"),
        "{}",
        text(&out)
    );
}
