//! A whole attested machine for RA-TLS tests: swtpm with a persistent AK and a simulated boot,
//! an IMA log with a few real files measured into PCR 10, and a TEE (the simulated one), put
//! together as a [`ratls::attest::Attester`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{AttestError, Attester, ImaFile, TeeAttester, TpmAttester};

use crate::{open_tpm, simulate_boot, ImaSimulator, Swtpm, TssTpm};

/// One simulated ARK/ASK/VCEK chain per test process (RSA-4096 generation takes seconds).
///
/// # Panics
/// When the chain cannot be generated (a test cannot go on without it).
#[allow(clippy::panic)]
pub fn sim_ca() -> Arc<SimCa> {
    static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
    CA.get_or_init(|| match SimCa::generate() {
        Ok(ca) => Arc::new(ca),
        Err(e) => panic!("generating the simulated CA: {e}"),
    })
    .clone()
}

/// A machine: swtpm, its TPM, the IMA log file, and the attester over them.
pub struct TestMachine {
    // Field order matters: everything holding a TPM client goes before the swtpm process.
    pub attester: Arc<Attester>,
    pub tpm: Arc<TssTpm>,
    pub ima_log: PathBuf,
    swtpm: Swtpm,
}

impl std::fmt::Debug for TestMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMachine")
            .field("tcti", &self.swtpm.tcti())
            .finish()
    }
}

impl TestMachine {
    /// Start swtpm, boot (`label` picks the PCR 0–9 values), measure `files` with IMA, and
    /// attest with `tee`. `None` only outside CI when swtpm is missing (see [`Swtpm::start`]).
    pub fn start(
        label: &str,
        tee: Option<SimTee>,
        files: &[&Path],
    ) -> Result<Option<Self>, AttestError> {
        let Some(swtpm) = Swtpm::start() else {
            return Ok(None);
        };
        let tpm = Arc::new(open_tpm(&swtpm)?);
        simulate_boot(&tpm, label)?;
        let ima_log = swtpm.state_dir().join("ima.log");
        {
            let mut ima = ImaSimulator::new(&ima_log, &tpm)?;
            for file in files {
                ima.measure_file(file)?;
            }
        }
        let attester = Arc::new(Attester::new(
            tee.map(|t| Arc::new(t) as Arc<dyn TeeAttester>),
            Some(tpm.clone() as Arc<dyn TpmAttester>),
            Some(Arc::new(ImaFile(ima_log.clone()))),
        ));
        Ok(Some(Self {
            attester,
            tpm,
            ima_log,
            swtpm,
        }))
    }

    /// Measure one more file into the IMA log and PCR 10 (an "unexpected program" ran).
    pub fn measure(&self, file: &Path) -> Result<(), AttestError> {
        let mut ima = ImaSimulator::resume(&self.ima_log, &self.tpm)?;
        ima.measure_file(file)?;
        Ok(())
    }

    pub fn swtpm(&self) -> &Swtpm {
        &self.swtpm
    }

    /// The IMA log as it is now.
    pub fn ima_log_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.ima_log).unwrap_or_default()
    }
}
