//! An attested TLS server and a client that verifies it, in one process over loopback.
//!
//! The server's certificate carries evidence from the simulated TEE (no TEE hardware needed),
//! bound to its key and rotated in the background; the client checks it during the handshake
//! with a policy that trusts the simulated root (and therefore prints SIMULATED). On a real
//! SEV-SNP or TDX VM, swap `SimTee` for the platform's attester (`ratls::attest::detect`), add the
//! TPM (`ratls::attest::tpm::TssTpm`, feature `tpm`) and the IMA log, and drop the
//! `danger::trust_simulated_root` call.
//!
//! Run: `cargo run -p ratls --features sim,issue --example attested_pair`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{Attester, TeeAttester};
use ratls::binding::Role;
use ratls::tls::cert::CertParams;
use ratls::tls::{danger, AttestationPolicy, AttestedServerVerifier, Mode, RotatingCert};
use ratls::{Policy, UnixTime};
use rustls::pki_types::ServerName;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --- In the VM: an attester, and a certificate that rotates every hour. ---
    let ca = Arc::new(SimCa::generate()?);
    let tee: Arc<dyn TeeAttester> = Arc::new(SimTee::new(ca.clone())?);
    let attester = Arc::new(Attester::new(Some(tee), None, None));
    let params = CertParams::new(Role::server(), "vm.example", vec!["localhost".into()]);
    let cert = RotatingCert::from_attester(attester, params, Duration::from_secs(3600))?;
    let server_config = Arc::new(ratls::tls::server_config(
        Arc::new(cert.clone()),
        None,
        Vec::new(),
    )?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut tcp, _) = listener
            .accept()
            .map_err(|e| e.to_string())?;
        let mut conn = rustls::ServerConnection::new(server_config).map_err(|e| e.to_string())?;
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut request = [0u8; 6];
        tls.read_exact(&mut request)
            .map_err(|e| e.to_string())?;
        tls.write_all(b"hello from inside the VM\n")
            .map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())
    });

    // --- On the user's machine: a policy and a verifier. ---
    // This machine has no TPM and no IMA: require only the TEE evidence.
    let mut policy =
        AttestationPolicy::for_server(Policy::default()).with_requirements(true, false, false);
    danger::trust_simulated_root(&mut policy, ca.ark_der()); // simulation only!
    let verifier = Arc::new(AttestedServerVerifier::new(policy, Mode::Certificate));
    let client_config = ratls::tls::client_config(verifier.clone(), None, Vec::new())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(client_config), ServerName::try_from("localhost")?)?;
    let mut tcp = TcpStream::connect(addr)?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"hello\n")?;
    let mut reply = String::new();
    tls.read_to_string(&mut reply).ok();
    server
        .join()
        .map_err(|_| "server thread panicked")??;

    let verdict =
        ratls::tls::peer_verdict(&conn, &verifier).ok_or("no verdict for this connection")?;
    println!("server said: {}", reply.trim_end());
    println!("verdict ({}):\n{verdict}", UnixTime::now());
    if !verdict.is_trusted() {
        return Err("the server's evidence was not trusted".into());
    }
    Ok(())
}
