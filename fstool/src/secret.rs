//! Key material in memory: [`Secret`] wipes itself when dropped and never prints its bytes;
//! [`read_password`] takes the password from stdin (`--password -`) or a terminal prompt
//! without echo, never from the command line.

use std::fmt;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroize;

use crate::error::{Error, Result};

/// The longest password read from stdin (cryptsetup's own limit for interactive passphrases is
/// 512 characters; key files can be longer, passwords need not be).
const MAX_PASSWORD: usize = 4096;

/// Bytes that must not leak: wiped on drop, `Debug` shows only the length.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// `len` bytes from the operating system's CSPRNG (ring's `SystemRandom`).
    pub fn random(len: usize) -> Result<Self> {
        use ring::rand::SecureRandom;
        let mut bytes = vec![0u8; len];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Other("the system random generator failed".into()))?;
        Ok(Self(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Where the password comes from: `--password -` (stdin), or nothing given (a terminal prompt
/// when stdin is a terminal). Any other value is refused: a password on the command line is
/// visible to every user of the machine in the process list.
pub fn read_password(arg: Option<&str>, confirm: bool) -> Result<Secret> {
    match arg {
        Some("-") | None => {}
        Some(_) => {
            return Err(Error::Usage(
                "--password takes only `-` (read the password from stdin): a password on the \
                 command line is visible to every user in the process list"
                    .into(),
            ))
        }
    }
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt("Password: ")?;
        if confirm {
            let second = prompt("Repeat the password: ")?;
            if first.bytes() != second.bytes() {
                return Err(Error::Usage("the two passwords differ".into()));
            }
        }
        first
    } else if arg.is_none() {
        return Err(Error::Usage(
            "no password: pass `--password -` and write the password on stdin".into(),
        ));
    } else {
        let mut bytes = Vec::new();
        stdin
            .lock()
            .take(MAX_PASSWORD as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read the password from stdin", e))?;
        let mut secret = Secret::new(bytes);
        if secret.0.len() > MAX_PASSWORD {
            return Err(Error::Usage(format!(
                "the password on stdin is longer than {MAX_PASSWORD} bytes"
            )));
        }
        strip_newline(&mut secret.0);
        secret
    };
    if password.0.is_empty() {
        return Err(Error::Usage("the password is empty".into()));
    }
    Ok(password)
}

/// One trailing `\n` (or `\r\n`), as `echo pass | cosmian_fstool ... --password -` adds.
fn strip_newline(bytes: &mut Vec<u8>) {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
}

/// A line from the terminal with echo turned off (`stty -echo` on our stdin).
fn prompt(text: &str) -> Result<Secret> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{text}");
    let _ = stderr.flush();
    let echo_off = Command::new("stty")
        .arg("-echo")
        .stdin(Stdio::inherit())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !echo_off {
        return Err(Error::Usage(
            "cannot turn off the terminal echo (stty); pass `--password -` and write the \
             password on stdin"
                .into(),
        ));
    }
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line);
    let _ = Command::new("stty")
        .arg("echo")
        .stdin(Stdio::inherit())
        .status();
    let _ = writeln!(stderr);
    let mut secret = Secret::new(std::mem::take(&mut line).into_bytes());
    line.zeroize();
    read.map_err(|e| Error::io("read the password from the terminal", e))?;
    strip_newline(&mut secret.0);
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_stripped_once() {
        let mut a = b"pw\n".to_vec();
        strip_newline(&mut a);
        assert_eq!(a, b"pw");
        let mut b = b"pw\r\n".to_vec();
        strip_newline(&mut b);
        assert_eq!(b, b"pw");
        let mut c = b"pw\n\n".to_vec();
        strip_newline(&mut c);
        assert_eq!(c, b"pw\n");
    }

    #[test]
    fn debug_hides_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(7 bytes)");
    }

    #[test]
    fn password_on_argv_refused() {
        let err = read_password(Some("hunter2"), false)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("only `-`") && !e.contains("hunter2")));
    }
}
