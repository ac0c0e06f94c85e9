//! Attacks on the files `cosmian_certtool` writes: another local user (or a process that should
//! not see secrets) reading them. Against a real ACME server on loopback (Debian's pebble);
//! nothing skips: a missing pebble fails the test (scripts/setup.sh installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod pebble;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pebble::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `--dns-01-hook` is saved for `renew` in `settings.json`; a hook usually carries the DNS
/// provider's API token. The file must be 0600 (it was 0644), and so must the ACME account's
/// credentials and the certificate's key; the certificate itself may be 0644. A `renew` that
/// finds an older 0644 `settings.json` narrows it to 0600.
#[test]
fn attack_certtool_hook_file_world_readable() {
    let p = Pebble::start("attack-hook").expect("pebble is required (scripts/setup.sh)");
    let out = scratch("attack-hook-out").join("tls");
    let out_s = out.display().to_string();
    const TOKEN: &str = "dns-provider-api-token-5f3a9c";
    // A real hook (sets the record through challtestsrv) that carries a token, as a real one
    // would (`curl -H "Authorization: Bearer ..."`).
    let hook = format!(
        r#"API_TOKEN={TOKEN} bash -c 'body="{{\"host\":\"$CERTTOOL_DNS_NAME\",\"value\":\"$CERTTOOL_DNS_VALUE\"}}"; exec 3<>/dev/tcp/127.0.0.1/{port}; printf "POST /set-txt HTTP/1.0\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" "${{#body}}" "$body" >&3; head -1 <&3 | grep -q " 200"'"#,
        port = p.chall_mgmt_port
    );
    let o = run(&acme_args(
        &p,
        &out_s,
        "hook.example.com",
        &["--dns-01-hook", &hook],
    ));
    assert_eq!(o.status.code(), Some(0));
    check_issued(&out, "hook.example.com", &p.issuing_root());

    let settings = out.join("settings.json");
    let text = std::fs::read_to_string(&settings).unwrap();
    assert!(
        text.contains(TOKEN),
        "the hook (and its token) is saved for renew: {text}"
    );
    assert_eq!(
        mode(&settings),
        0o600,
        "settings.json holds the hook's token"
    );
    assert_eq!(mode(&out.join("account.json")), 0o600, "ACME account key");
    assert_eq!(mode(&out.join("key.pem")), 0o600, "certificate key");
    assert_eq!(mode(&out.join("cert.pem")), 0o644, "certificate (public)");
    assert_eq!(mode(&out) & 0o077, 0, "output directory is private");
    // No temporary file (with whatever mode) is left next to them.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["account.json", "cert.pem", "key.pem", "settings.json"]
    );

    // A settings.json left 0644 by an older version: renew narrows it before reading it.
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = certtool(&["renew", "--output", &out_s]);
    assert_eq!(o.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("was mode 644") && stderr.contains("now 0600"),
        "{stderr}"
    );
    assert_eq!(mode(&settings), 0o600);

    // A forced renewal rewrites every file: the modes stay.
    let o = certtool(&["renew", "--output", &out_s, "--force", "--timeout", "30"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(mode(&settings), 0o600);
    assert_eq!(mode(&out.join("account.json")), 0o600);
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(mode(&out.join("cert.pem")), 0o644);
}
