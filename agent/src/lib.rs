//! `cosmian_vm_agent`: the daemon inside a confidential VM. It serves, over HTTPS on its RA-TLS
//! certificate, the evidence a verifier needs (IMA log, TEE and TPM quotes, fresh evidence bound
//! to the TLS session), runs the snapshot job (file hashes from IMA and a filesystem walk), and
//! lets the enrolled owner push app configuration and secrets into the encrypted storage and
//! (re)start the app. API: `docs/agent-api.md`.

#![forbid(unsafe_code)]

pub mod walk;
