//! A real software TPM per test: [`Swtpm`] runs `swtpm socket --tpm2` on a free port pair of
//! 127.0.0.1, with its own state directory, and kills it by pid when dropped.
//!
//! The state is made by `swtpm_setup --tpm2 --pcr-banks sha1,sha256 --createek
//! --create-ek-cert`: both PCR banks active (swtpm_setup activates only sha256 otherwise), an
//! RSA-2048 EK at 0x81010001 and an ECC P-384 EK at 0x81010016, and their certificates in NV
//! (0x01c00002 and 0x01c00016), signed by a local CA that `swtpm_localca` makes once in
//! [`ca_dir`] (a per-user directory under the system temp dir, so the tests need neither root
//! nor `/var/lib/swtpm-localca`).
//!
//! The TCTI string is `swtpm:host=127.0.0.1,port=P`: the swtpm TCTI expects the control channel
//! on `P + 1`, hence port pairs. A busy port makes swtpm exit at once, so a random pair is tried
//! and another one picked when that happens.
//!
//! [`Swtpm::start`] returns `None` (after a loud SKIPPED line) when swtpm is not installed; under
//! `CI=true` it panics instead. The process environment gets `TSS2_LOG=all+none` (unless already
//! set) so libtss2 in the test process stays quiet; [`Swtpm::command`] sets it for child tools.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use crate::in_ci;

/// How long swtpm gets to open its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// swtpm that exits within this long after starting most likely found its port busy.
const EARLY_EXIT: Duration = Duration::from_millis(200);
/// How many port pairs to try.
const PORT_ATTEMPTS: usize = 20;
/// swtpm's control-channel command that makes it exit (`CMD_SHUTDOWN`, swtpm_ioctl `-s`).
const CMD_SHUTDOWN: u32 = 0x0000_0003;

/// A running swtpm, killed (by pid) and its state removed on drop.
#[derive(Debug)]
pub struct Swtpm {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The swtpm tools are installed (`swtpm`, `swtpm_setup`).
pub fn available() -> bool {
    on_path("swtpm").is_some() && on_path("swtpm_setup").is_some()
}

/// Whether `program` (from Debian `package`) is installed. When it is not: a loud SKIPPED line
/// and `false`, or under `CI=true` a panic.
pub fn require(program: &str, package: &str) -> bool {
    if on_path(program).is_some() {
        return true;
    }
    if in_ci() {
        panic!("{program} not found; CI requires it (apt-get install {package}, scripts/setup.sh)");
    }
    eprintln!("\n*** SKIPPED: {program} is not installed (apt-get install {package}) ***\n");
    false
}

/// Set `TSS2_LOG=all+none` once, before any TPM connection of this process.
pub fn quiet_tss() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TSS2_LOG").is_none() {
            // Called before the first libtss2 call of the tests that use a TPM (they all start
            // a Swtpm first), so no C code reads the environment concurrently.
            std::env::set_var("TSS2_LOG", "all+none");
        }
    });
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// A fresh directory under the system temp dir.
fn fresh_dir(prefix: &str) -> PathBuf {
    loop {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:016x}",
            std::process::id(),
            random_u64()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", dir.display()),
        }
    }
}

/// The local CA `swtpm_localca` signs EK certificates with: one per user, shared by every
/// instance and process (swtpm_localca locks it while signing).
pub fn ca_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("ratls-swtpm-localca-{uid}"));
        let state = dir.join("state");
        std::fs::create_dir_all(&state)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", state.display()));
        let localca = on_path("swtpm_localca")
            .unwrap_or_else(|| PathBuf::from("/usr/share/swtpm/swtpm-localca"));
        let files = [
            (
                "swtpm_setup.conf",
                format!(
                    "create_certs_tool = {}\ncreate_certs_tool_config = {}\n\
                     create_certs_tool_options = {}\nactive_pcr_banks = sha1,sha256\n",
                    localca.display(),
                    dir.join("swtpm-localca.conf").display(),
                    dir.join("swtpm-localca.options").display()
                ),
            ),
            (
                "swtpm-localca.conf",
                format!(
                    "statedir = {s}\nsigningkey = {s}/signkey.pem\nissuercert = {s}/issuercert.pem\n\
                     certserial = {s}/certserial\n",
                    s = state.display()
                ),
            ),
            (
                "swtpm-localca.options",
                "--platform-manufacturer ratls-test\n--platform-version 2.1\n\
                 --platform-model swtpm\n"
                    .to_owned(),
            ),
        ];
        for (name, text) in files {
            // Write-then-rename so concurrent processes never see a half-written file.
            let tmp = dir.join(format!("{name}.{:016x}", random_u64()));
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, dir.join(name)))
                .unwrap_or_else(|e| panic!("cannot write {name} in {}: {e}", dir.display()));
        }
        dir
    })
}

impl Swtpm {
    /// Manufacture a TPM in a fresh state directory and start it; `None` (SKIPPED) when swtpm
    /// is not installed.
    ///
    /// # Panics
    /// Under `CI=true` when swtpm is missing; always when it is installed but does not start.
    pub fn start() -> Option<Self> {
        if !available() {
            if in_ci() {
                panic!("swtpm/swtpm_setup not found; CI requires them (scripts/setup.sh)");
            }
            eprintln!(
                "\n*** SKIPPED: swtpm is not installed (apt-get install swtpm swtpm-tools) ***\n"
            );
            return None;
        }
        quiet_tss();
        let dir = fresh_dir("ratls-swtpm");
        manufacture(&dir);
        let mut tpm = Self {
            dir,
            port: 0,
            child: None,
        };
        tpm.launch(None);
        Some(tpm)
    }

    /// The TCTI string for tss-esapi and tpm2-tools: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The server port (the control channel is on the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TPM's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The swtpm process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A reboot: stop swtpm and start it again on the same state (PCRs reset, persistent
    /// objects and NV kept), on the same ports when they are still free. Open a new TPM
    /// connection afterwards (use [`tcti`](Self::tcti) again: the port may have changed).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.launch(Some(port));
    }

    /// A command (`tpm2_quote`, …) with `TPM2TOOLS_TCTI` pointing at this TPM and libtss2's
    /// logging silenced.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none");
        cmd
    }

    /// Start swtpm on `preferred` (when given and free), else on random free pairs.
    fn launch(&mut self, preferred: Option<u16>) {
        let mut last = String::new();
        for attempt in 0..PORT_ATTEMPTS {
            let port = match (attempt, preferred) {
                (0, Some(port)) => port,
                _ => random_port_pair(),
            };
            if !pair_free(port) {
                last = format!("ports {port}/{} busy", port + 1);
                continue;
            }
            match spawn(&self.dir, port) {
                Ok(child) => {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                Err(why) => last = why,
            }
        }
        panic!("swtpm did not start after {PORT_ATTEMPTS} attempts: {last}");
    }

    /// Ask swtpm to exit through its control channel; kill it by pid if it does not.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(mut ctrl) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port + 1)) {
            let _ = ctrl.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = ctrl.write_all(&CMD_SHUTDOWN.to_be_bytes());
            let mut answer = [0u8; 4];
            let _ = ctrl.read(&mut answer);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `swtpm_setup` into `dir`.
fn manufacture(dir: &Path) {
    let conf = ca_dir().join("swtpm_setup.conf");
    let out = Command::new("swtpm_setup")
        .arg("--tpm2")
        .args(["--pcr-banks", "sha1,sha256"])
        .arg("--tpmstate")
        .arg(dir)
        .args(["--createek", "--create-ek-cert"])
        .arg("--config")
        .arg(&conf)
        .env("TSS2_LOG", "all+none")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run swtpm_setup: {e}"));
    if !out.status.success() {
        panic!(
            "swtpm_setup failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// An even port in 20000..60000 (so `P + 1` stays in range).
fn random_port_pair() -> u16 {
    let offset = u16::try_from(random_u64() % 20_000).unwrap_or(0);
    20_000 + offset * 2
}

/// Both ports can be bound right now (a hint, not a guarantee: swtpm may still lose a race).
fn pair_free(port: u16) -> bool {
    let bind = |p: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).is_ok();
    port < u16::MAX && bind(port) && bind(port + 1)
}

/// Start `swtpm socket` and wait until both sockets accept; `Err` when it exits early (port
/// taken) or never listens.
fn spawn(dir: &Path, port: u16) -> Result<Child, String> {
    let mut child = Command::new("swtpm")
        .args(["socket", "--tpm2"])
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .args(["--log", "file=-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run swtpm: {e}"))?;
    let started = Instant::now();
    let exited = |child: &mut Child| -> Option<String> {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                Some(format!(
                    "swtpm on port {port} exited ({status}): {}",
                    err.trim()
                ))
            }
            _ => None,
        }
    };
    loop {
        if let Some(why) = exited(&mut child) {
            return Err(why);
        }
        let up = |p: u16| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
                Duration::from_millis(100),
            )
            .is_ok()
        };
        if up(port + 1) && up(port) {
            break;
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "swtpm on port {port} did not listen within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A port lost to another process between our check and swtpm's bind shows up as an exit
    // right after start; the connection above may then have reached the other process.
    while started.elapsed() < EARLY_EXIT {
        if let Some(why) = exited(&mut child) {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}
