//! Verdicts: what was checked, what was expected, what was presented.
//!
//! A [`Verdict`] is an ordered list of named [`Check`]s plus the claims read from the evidence.
//! It is *trusted* only when it holds at least one check and every check passed: the verifiers
//! fail closed, so a step that could not run is recorded as a failed check, never omitted.

use core::fmt;

use serde::Serialize;

use crate::codec::ParseError;

/// The kind of evidence a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Platform {
    /// An Azure CVM on SEV-SNP: HCL report (+ vTPM quote).
    #[serde(rename = "azure-snp")]
    AzureSnp,
    /// An Azure CVM on TDX: HCL report, TDX quote (+ vTPM quote).
    #[serde(rename = "azure-tdx")]
    AzureTdx,
    #[serde(rename = "ima")]
    Ima,
    #[serde(rename = "sev-snp")]
    SevSnp,
    /// Intel SGX (read from other projects' certificates; not verified by this crate).
    #[serde(rename = "sgx")]
    Sgx,
    #[serde(rename = "tdx")]
    Tdx,
    #[serde(rename = "tpm")]
    Tpm,
    /// Evidence whose platform could not be told (it did not parse, or none was found).
    #[serde(rename = "unknown")]
    Unknown,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AzureSnp => "azure-snp",
            Self::AzureTdx => "azure-tdx",
            Self::Ima => "ima",
            Self::SevSnp => "sev-snp",
            Self::Sgx => "sgx",
            Self::Tdx => "tdx",
            Self::Tpm => "tpm",
            Self::Unknown => "unknown",
        })
    }
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    Rejected,
    Trusted,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rejected => "rejected",
            Self::Trusted => "trusted",
        })
    }
}

/// One named verification step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Dotted step name, e.g. `tee.signature`, `tpm.pcr_digest`, `ima.replay`.
    pub step: String,
    pub ok: bool,
    pub expected: String,
    pub presented: String,
    /// Free text: why it failed, or what was skipped and why.
    pub detail: String,
}

impl Check {
    /// A passed step.
    pub fn pass(
        step: impl Into<String>,
        expected: impl Into<String>,
        presented: impl Into<String>,
    ) -> Self {
        Self {
            step: step.into(),
            ok: true,
            expected: expected.into(),
            presented: presented.into(),
            detail: String::new(),
        }
    }

    /// A failed step.
    pub fn fail(
        step: impl Into<String>,
        expected: impl Into<String>,
        presented: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            step: step.into(),
            ok: false,
            expected: expected.into(),
            presented: presented.into(),
            detail: detail.into(),
        }
    }

    /// Passed when `ok`, failed otherwise.
    pub fn expect(
        step: impl Into<String>,
        ok: bool,
        expected: impl Into<String>,
        presented: impl Into<String>,
    ) -> Self {
        Self {
            step: step.into(),
            ok,
            expected: expected.into(),
            presented: presented.into(),
            detail: String::new(),
        }
    }

    /// Compare two values and record both.
    pub fn equal<T: PartialEq + fmt::Display + ?Sized>(
        step: impl Into<String>,
        expected: &T,
        presented: &T,
    ) -> Self {
        Self::expect(
            step,
            expected == presented,
            expected.to_string(),
            presented.to_string(),
        )
    }

    /// Attach free text.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// A failed parse step for untrusted input.
    pub fn parse_failure(step: impl Into<String>, error: &ParseError) -> Self {
        Self::fail(
            step,
            "well-formed evidence",
            "malformed evidence",
            error.to_string(),
        )
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}", self.step)?;
        if !self.ok || !self.expected.is_empty() {
            write!(
                f,
                ": expected {}, presented {}",
                self.expected, self.presented
            )?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Claims read from the evidence, by platform. Claims are what the evidence *says*; whether it
/// can be believed is what the checks decide.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Claims {
    Azure(Box<crate::azure::AzureClaims>),
    Bundle(Box<crate::bundle::BundleClaims>),
    /// Evidence read from another project's RA-TLS certificate extension.
    Foreign(Box<crate::foreign::ForeignClaims>),
    Ima(crate::ima::ImaClaims),
    None {},
    Snp(Box<crate::snp::SnpClaims>),
    Tdx(Box<crate::tdx::TdxClaims>),
    Tpm(Box<crate::tpm::TpmClaims>),
}

/// The result of verifying one piece of evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    verdict: Outcome,
    pub platform: Platform,
    /// True when the evidence came from the simulated TEE; such a verdict is never production
    /// trust, and its display says SIMULATED.
    pub simulated: bool,
    pub checks: Vec<Check>,
    pub claims: Claims,
}

impl Verdict {
    /// An empty verdict; it is rejected until checks are added and all pass.
    pub fn new(platform: Platform) -> Self {
        Self {
            verdict: Outcome::Rejected,
            platform,
            simulated: false,
            checks: Vec::new(),
            claims: Claims::None {},
        }
    }

    /// Record a step.
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
        self.verdict = self.compute_outcome();
    }

    /// Record several steps.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
        self.verdict = self.compute_outcome();
    }

    /// Trusted only when there is at least one check and all passed.
    pub fn outcome(&self) -> Outcome {
        self.verdict
    }

    pub fn is_trusted(&self) -> bool {
        self.verdict == Outcome::Trusted
    }

    /// The failed checks, in order.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The first failed check, the one to quote in a one-line refusal.
    pub fn first_failure(&self) -> Option<&Check> {
        self.failures().next()
    }

    /// The check recorded for `step`, if any.
    pub fn check(&self, step: &str) -> Option<&Check> {
        self.checks
            .iter()
            .find(|c| c.step == step)
    }

    /// Whether `step` was recorded and passed.
    pub fn passed(&self, step: &str) -> bool {
        self.check(step).is_some_and(|c| c.ok)
    }

    fn compute_outcome(&self) -> Outcome {
        if !self.checks.is_empty() && self.checks.iter().all(|c| c.ok) {
            Outcome::Trusted
        } else {
            Outcome::Rejected
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sim = if self.simulated { " SIMULATED" } else { "" };
        writeln!(f, "{}: {}{sim}", self.platform, self.verdict)?;
        for check in &self.checks {
            writeln!(f, "  {check}")?;
        }
        Ok(())
    }
}
