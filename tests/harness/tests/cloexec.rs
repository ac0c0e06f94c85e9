//! libtss2 opens the TPM connection without close-on-exec; `TssTpm::open` marks it, so no
//! program the agent starts (the application, fstool, systemctl) inherits the agent's TPM
//! session. (Its own test binary: other tests opening descriptors at the same moment would
//! blur the check.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratls_harness::{open_tpm, Swtpm};

/// `O_CLOEXEC` as `/proc/self/fdinfo` prints it (octal flags).
const O_CLOEXEC: u32 = 0o2_000_000;

fn inheritable_descriptors() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
    {
        let Ok(fd) = entry
            .file_name()
            .to_str()
            .unwrap()
            .parse::<i32>()
        else {
            continue;
        };
        if fd <= 2 {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue; // the read_dir's own descriptor, closed by now
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        if flags & O_CLOEXEC == 0 {
            let target = std::fs::read_link(entry.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((fd, target));
        }
    }
    out
}

#[test]
fn the_tpm_connection_is_not_inherited_by_child_processes() {
    let swtpm = Swtpm::start().expect("swtpm is required (scripts/setup.sh)");
    let tpm = open_tpm(&swtpm).unwrap();
    let leaked = inheritable_descriptors();
    assert!(
        leaked.is_empty(),
        "descriptors a child would inherit after opening the TPM: {leaked:?}"
    );
    // And a child really sees none of them: it lists its own descriptors.
    let out = std::process::Command::new("sh")
        .args(["-c", "ls /proc/self/fd"])
        .output()
        .unwrap();
    let fds: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    // `ls` itself opens one directory descriptor (3); nothing else.
    assert!(fds.len() <= 1, "the child inherited descriptors: {fds:?}");
    drop(tpm);
}
