#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ratls::attest::TeeKind;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("agent.toml"))
}

#[test]
fn seed_minimal_file_with_defaults() {
    let c = parse(
        r#"
[agent]
host = "127.0.0.1"
port = 5555
ssl_certificate = "data/cert.pem"
ssl_private_key = "data/key.pem"
tpm_device = "/dev/tpmrm0"
"#,
    )
    .unwrap();
    let a = &c.agent;
    assert_eq!(a.port, 5555);
    assert_eq!(a.tpm_tcti, "device:/dev/tpmrm0");
    assert_eq!(a.data_dir, PathBuf::from("/var/lib/cosmian_vm"));
    assert_eq!(
        a.ssl_certificate,
        PathBuf::from("/var/lib/cosmian_vm/data/cert.pem")
    );
    assert_eq!(a.tee, TeeChoice::Auto);
    assert_eq!(a.rotation_period, Duration::from_secs(3600));
    assert_eq!(a.max_body_bytes, 16 * 1024 * 1024);
    assert_eq!(a.snapshot_roots, vec![PathBuf::from("/")]);
    assert_eq!(
        a.ima_log,
        PathBuf::from("/sys/kernel/security/ima/binary_runtime_measurements")
    );
    assert_eq!(
        a.event_log,
        PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements")
    );
    assert!(c.app.is_none());
}

#[test]
fn relative_paths_resolve_under_data_dir() {
    let c = parse(
        r#"
[agent]
data_dir = "/srv/agent"
ssl_certificate = "tls/cert.pem"
ssl_private_key = "/etc/keys/key.pem"
ima_log = "ima.bin"
event_log = "/boot/eventlog.bin"
owner_certificate = "owner.pem"

[app]
service_type = "systemd"
service_name = "my_app"
app_storage = "data/app"
"#,
    )
    .unwrap();
    assert_eq!(
        c.agent.ssl_certificate,
        PathBuf::from("/srv/agent/tls/cert.pem")
    );
    assert_eq!(c.agent.ssl_private_key, PathBuf::from("/etc/keys/key.pem"));
    assert_eq!(c.agent.ima_log, PathBuf::from("/srv/agent/ima.bin"));
    assert_eq!(c.agent.event_log, PathBuf::from("/boot/eventlog.bin"));
    assert_eq!(
        c.agent.owner_certificate,
        Some(PathBuf::from("/srv/agent/owner.pem"))
    );
    let app = c.app.unwrap();
    assert_eq!(app.app_storage, PathBuf::from("/srv/agent/data/app"));
    assert_eq!(app.service_type, ServiceType::Systemd);
}

#[test]
fn unknown_keys_are_named() {
    let e = parse("[agent]\nport = 1\nbogus_key = 2\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus_key"), "{e}");
    let e = parse("[agent]\n[app]\nservice_type = \"systemd\"\nservice_name = \"x\"\nfoo = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("foo"), "{e}");
    let e = parse("[agnet]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("agnet"), "{e}");
}

#[test]
fn tcti_strings_and_tee_names() {
    let c = parse(
        "[agent]\ntpm_device = \"swtpm:host=127.0.0.1,port=2321\"\ntee = \"sim\"\nrotation_period_secs = 5\n",
    )
    .unwrap();
    assert_eq!(c.agent.tpm_tcti, "swtpm:host=127.0.0.1,port=2321");
    assert_eq!(c.agent.tee, TeeChoice::Kind(TeeKind::Simulated));
    assert_eq!(c.agent.rotation_period, Duration::from_secs(5));
    let e = parse("[agent]\ntee = \"sgx\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("agent.tee") && e.contains("sgx"), "{e}");
    let e = parse("[agent]\ntpm_device = \"tpm0\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("agent.tpm_device"), "{e}");
    let e = parse("[agent]\ntee = \"none\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("agent.tee") && e.contains("always attests"),
        "{e}"
    );
    for (name, kind) in [
        ("sev-snp", TeeKind::SevSnp),
        ("tdx", TeeKind::Tdx),
        ("azure-snp", TeeKind::AzureSnp),
        ("azure-tdx", TeeKind::AzureTdx),
    ] {
        let c = parse(&format!("[agent]\ntee = \"{name}\"\n")).unwrap();
        assert_eq!(c.agent.tee, TeeChoice::Kind(kind));
    }
    assert_eq!(
        parse("[agent]\ntee = \"auto\"\n")
            .unwrap()
            .agent
            .tee,
        TeeChoice::Auto
    );
}

#[test]
fn ak_handle_is_optional_and_checked() {
    assert_eq!(
        parse("[agent]\n")
            .unwrap()
            .agent
            .ak_handle,
        None
    );
    let c = parse("[agent]\nak_handle = 0x81010003\n").unwrap();
    assert_eq!(c.agent.ak_handle, Some(0x8101_0003));
    let e = parse("[agent]\nak_handle = 0x01400001\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("agent.ak_handle") && e.contains("persistent"),
        "{e}"
    );
    // What the agent hands to the library's set-up.
    let c =
        parse("[agent]\ntpm_device = \"/dev/tpm0\"\ntee = \"azure-snp\"\nevent_log = \"ev.bin\"\n")
            .unwrap();
    let a = crate::machine::attester_config(&c.agent);
    assert_eq!(a.tpm_tcti.as_deref(), Some("device:/dev/tpm0"));
    assert_eq!(a.tee, TeeChoice::Kind(TeeKind::AzureSnp));
    assert_eq!(
        a.ak_handle_for(Some(TeeKind::AzureSnp))
            .unwrap()
            .0,
        0x8100_0003
    );
    assert_eq!(
        a.event_log,
        Some(PathBuf::from("/var/lib/cosmian_vm/ev.bin"))
    );
    assert_eq!(a.sim.dir, Some(PathBuf::from("/var/lib/cosmian_vm/sim")));
}

#[test]
fn app_sections_are_checked() {
    let e = parse("[app]\nservice_type = \"standalone\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("app.command"), "{e}");
    let e = parse("[app]\nservice_type = \"systemd\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("app.service_name"), "{e}");
    let e = parse("[app]\nservice_type = \"systemd\"\nservice_name = \"--now\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("app.service_name"), "{e}");
    let e = parse("[app]\nservice_type = \"initd\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("initd"), "{e}");
    let c =
        parse("[app]\nservice_type = \"standalone\"\ncommand = [\"sleep\", \"600\"]\n").unwrap();
    let app = c.app.unwrap();
    assert_eq!(app.command, vec!["sleep".to_owned(), "600".to_owned()]);
    assert_eq!(app.service_name, "app");
}

#[test]
fn bad_values_are_refused() {
    for (text, key) in [
        ("[agent]\ndata_dir = \"rel\"\n", "agent.data_dir"),
        (
            "[agent]\nrotation_period_secs = 0\n",
            "agent.rotation_period_secs",
        ),
        ("[agent]\nmax_body_bytes = 0\n", "agent.max_body_bytes"),
        ("[agent]\nsnapshot_roots = []\n", "agent.snapshot_roots"),
        (
            "[agent]\nsnapshot_excludes = [\"x\"]\n",
            "agent.snapshot_excludes",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    let e = parse("[agent]\nport = 70000\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("port"), "{e}");
}

#[test]
fn path_prefers_explicit_then_env() {
    assert_eq!(
        Config::path(Some(Path::new("/x.toml"))),
        PathBuf::from("/x.toml")
    );
}

#[test]
fn packaged_example_parses() {
    let text = include_str!("../../packaging/agent.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.agent.port, 5555);
    assert_eq!(c.app.unwrap().service_name, "my_app");
}

#[test]
fn luks_needs_a_size_and_a_recovery_password_file() {
    let err = parse("[agent]\nluks_size = \"1G\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("luks_recovery_password_file"), "{err}");
    let err = parse("[agent]\nluks_recovery_password_file = \"pw\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("luks_size"), "{err}");
    let c =
        parse("[agent]\nluks_size = \"1G\"\nluks_recovery_password_file = \"/root/pw\"\n").unwrap();
    let luks = c.agent.luks.unwrap();
    assert_eq!(
        luks.container,
        PathBuf::from("/var/lib/cosmian_vm/container")
    );
    assert_eq!(luks.mountpoint, PathBuf::from("/var/lib/cosmian_vm/data"));
    assert_eq!(luks.recovery_password_file, PathBuf::from("/root/pw"));
    assert_eq!(luks.fstool, PathBuf::from("cosmian_fstool"));
    assert!(parse("[agent]\n")
        .unwrap()
        .agent
        .luks
        .is_none());
}

#[test]
fn a_whole_block_device_container_needs_its_absolute_path() {
    let base = "[agent]\nluks_size = \"device\"\nluks_recovery_password_file = \"/root/pw\"\n";
    let err = parse(base).unwrap_err().to_string();
    assert!(
        err.contains("luks_container") && err.contains("block device"),
        "{err}"
    );
    let err = parse(&format!("{base}luks_container = \"vdb\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absolute"), "{err}");
    let c = parse(&format!("{base}luks_container = \"/dev/vdb\"\n")).unwrap();
    let luks = c.agent.luks.unwrap();
    assert!(luks.is_device());
    assert_eq!(luks.container, PathBuf::from("/dev/vdb"));
    let c = parse("[agent]\nluks_size = \"1G\"\nluks_recovery_password_file = \"/pw\"\n").unwrap();
    assert!(!c.agent.luks.unwrap().is_device());
}

#[test]
fn secrets_go_to_the_unmeasured_uid_of_the_shipped_ima_policy_by_default() {
    assert_eq!(
        parse("[agent]\n")
            .unwrap()
            .agent
            .unmeasured_uid,
        Some(DEFAULT_UNMEASURED_UID)
    );
    // The shipped policy names the same uid.
    let policy = include_str!("../../packaging/ima-policy");
    assert!(policy.contains(&format!("dont_measure fowner={DEFAULT_UNMEASURED_UID}\n")));
    assert_eq!(
        parse("[agent]\nunmeasured_uid = 1234\n")
            .unwrap()
            .agent
            .unmeasured_uid,
        Some(1234)
    );
    assert_eq!(
        parse("[agent]\nunmeasured_uid = -1\n")
            .unwrap()
            .agent
            .unmeasured_uid,
        None
    );
    let err = parse("[agent]\nunmeasured_uid = -2\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("agent.unmeasured_uid"), "{err}");
}

#[test]
fn limits_and_a_provisioned_owner() {
    let c = parse("[agent]\n").unwrap();
    assert_eq!(c.agent.limits, Limits::default());
    assert_eq!(c.agent.owner_spki_sha256, None);
    let c = parse(&format!(
        "[agent]\nmax_connections = 10\nmax_connections_per_peer = 2\nhandshake_timeout_secs = \
         3\nbody_timeout_secs = 5\nmax_buffered_bytes = 33554432\nmax_body_bytes = \
         1048576\nmax_evidence_in_flight = 1\nowner_spki_sha256 = \"{}\"\n",
        "ab".repeat(32)
    ))
    .unwrap();
    let l = &c.agent.limits;
    assert_eq!((l.max_connections, l.max_connections_per_peer), (10, 2));
    assert_eq!(l.handshake_timeout, Duration::from_secs(3));
    assert_eq!(l.body_timeout, Duration::from_secs(5));
    assert_eq!(l.max_evidence_in_flight, 1);
    assert_eq!(c.agent.owner_spki_sha256, Some([0xab; 32]));
    for (bad, key) in [
        ("max_connections = 0", "agent.max_connections"),
        ("header_timeout_secs = 0", "agent.header_timeout_secs"),
        ("max_buffered_bytes = 1024", "agent.max_buffered_bytes"),
        ("owner_spki_sha256 = \"abcd\"", "agent.owner_spki_sha256"),
        (
            "owner_spki_sha256 = \"00\"\nowner_certificate = \"o.pem\"",
            "agent.owner_spki_sha256",
        ),
    ] {
        let e = parse(&format!("[agent]\n{bad}\n")).unwrap_err();
        assert!(e.to_string().contains(key), "{bad}: {e}");
    }
}

#[test]
fn collateral_fetching_is_off_unless_asked_for() {
    let c = parse("[agent]\n").unwrap();
    assert_eq!(c.agent.collateral, None);
    let c = parse("[agent]\n[collateral]\nfetch = false\nkds_url = \"http://kds\"\n").unwrap();
    assert_eq!(c.agent.collateral, None);
    let c = parse(
        r#"
[agent]
data_dir = "/srv/vm"
[collateral]
fetch = true
pcs_url = "https://pccs.internal:8081"
thim_url = "http://thim.test/x"
timeout_secs = 7
"#,
    )
    .unwrap();
    let got = c.agent.collateral.unwrap();
    assert_eq!(got.pcs_url, "https://pccs.internal:8081");
    assert_eq!(got.kds_url, ratls::collateral::DEFAULT_KDS_URL);
    assert_eq!(got.thim_url, "http://thim.test/x");
    assert_eq!(got.cache_dir, Some(PathBuf::from("/srv/vm/collateral")));
    assert_eq!(got.timeout, Duration::from_secs(7));
    assert!(!got.offline);
    let e = parse("[agent]\n[collateral]\nfetch = true\nkds = \"x\"\n").unwrap_err();
    assert!(e.to_string().contains("kds"), "{e}");
}
