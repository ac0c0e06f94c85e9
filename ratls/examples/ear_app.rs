//! An application behind `cosmian_vm_proxy --metadata http-headers --ear-jwks FILE`: it serves a
//! request only with a valid attestation result (EAR) made for its own connection.
//!
//! ```text
//! cargo run --example ear_app -- 127.0.0.1:8080 /run/cosmian_vm_proxy/ear-jwks.json
//! ```
//!
//! Per connection: read the request head, take `X-Attestation-EAR`, check it with
//! [`ratls::ear::verify`] against the proxy's JWKS file (read again per connection: a restarted
//! proxy may have a new key) and this socket's two ends. `200` with what the EAR says, `401`
//! without one, `403` naming the failed step otherwise. The token is echoed in the answer to
//! show that it is useless elsewhere: it is bound to this connection and expires.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use ratls::ear::{verify, AppConnection, Jwks};
use ratls::UnixTime;

const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(jwks)) = (args.next(), args.next()) else {
        eprintln!("usage: ear_app LISTEN_ADDR JWKS_FILE");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ear_app: {listen}: {e}");
            std::process::exit(2);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("ear_app listening on {addr}");
    }
    let jwks = PathBuf::from(jwks);
    for conn in listener.incoming().flatten() {
        let jwks = jwks.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(conn, &jwks) {
                eprintln!("ear_app: {e}");
            }
        });
    }
}

fn serve(mut conn: TcpStream, jwks_path: &Path) -> std::io::Result<()> {
    let head = read_head(&mut conn)?;
    let token = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-attestation-ear")
            .then(|| value.trim().to_owned())
    });
    let (status, body) = match token {
        None => (
            "401 Unauthorized",
            "no X-Attestation-EAR header\n".to_owned(),
        ),
        Some(token) => match check(&conn, jwks_path, &token) {
            Ok(body) => ("200 OK", body),
            Err(why) => ("403 Forbidden", format!("{why}\n")),
        },
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The EAR's appraisal as JSON, or why it is refused.
fn check(conn: &TcpStream, jwks_path: &Path, token: &str) -> Result<String, String> {
    let jwks = std::fs::read_to_string(jwks_path)
        .map_err(|e| format!("{}: {e}", jwks_path.display()))
        .and_then(|text| Jwks::from_json(&text).map_err(|e| e.to_string()))?;
    let connection = AppConnection {
        app: conn
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string(),
        proxy: conn
            .peer_addr()
            .map_err(|e| e.to_string())?
            .to_string(),
    };
    let claims = verify(token, &jwks, &connection, UnixTime::now()).map_err(|e| e.to_string())?;
    let appraisal = claims
        .appraisal()
        .ok_or("no appraisal")?;
    let answer = serde_json::json!({
        "verified": true,
        "status": appraisal.status,
        "platform": appraisal.platform,
        "simulated": appraisal.simulated,
        "measurement": appraisal.measurement,
        "tcb": appraisal.tcb,
        "connection_id": appraisal.binding.connection_id,
        "expires": claims.exp,
        "ear": token,
    });
    Ok(format!("{answer}\n"))
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head
        .windows(4)
        .any(|w| w == b"\r\n\r\n")
    {
        let n = conn.read(&mut buf)?;
        if n == 0 || head.len() > MAX_HEAD {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
