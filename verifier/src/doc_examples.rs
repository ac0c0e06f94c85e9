//! The command lines in `docs/cli.md` and `docs/deploying.md` parse as written (every fenced
//! `cosmian_vm …` line, `\` continuations joined, `# comments` dropped, each `[optional]` part
//! both left out and given), and the agent's default port is the one the CLI assumes.

#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use clap::Parser;

use crate::cli::Cli;

const DOCS: [(&str, &str); 2] = [
    ("docs/cli.md", include_str!("../../docs/cli.md")),
    ("docs/deploying.md", include_str!("../../docs/deploying.md")),
];

/// Every `cosmian_vm` command line inside fenced code blocks.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let code = line
            .split(" #")
            .next()
            .unwrap_or("")
            .trim_end();
        let joined = match pending.take() {
            Some(mut p) => {
                p.push(' ');
                p.push_str(code.trim_start());
                p
            }
            None if code
                .trim_start()
                .starts_with("cosmian_vm ") =>
            {
                code.trim_start().to_owned()
            }
            None => continue,
        };
        match joined.strip_suffix('\\') {
            Some(head) => pending = Some(head.trim_end().to_owned()),
            None => out.push(joined),
        }
    }
    out
}

/// The line with its `[optional]` parts left out, and with them given.
fn variants(line: &str) -> [String; 2] {
    let mut without = String::new();
    let mut with = String::new();
    let mut depth = 0;
    for c in line.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {
                with.push(c);
                if depth == 0 {
                    without.push(c);
                }
            }
        }
    }
    [without, with]
}

#[test]
fn every_documented_command_line_parses() {
    let mut seen = 0;
    for (file, text) in DOCS {
        for line in commands(text) {
            for variant in variants(&line) {
                let words: Vec<&str> = variant.split_whitespace().collect();
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{file}: `{variant}` does not parse:\n{e}");
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 20, "only {seen} documented command lines found");
}

#[test]
fn the_cli_default_port_is_the_agents() {
    let agent_toml = include_str!("../../agent/packaging/agent.toml");
    let port = agent_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("port = "))
        .unwrap();
    assert_eq!(port.trim(), crate::net::AGENT_PORT.to_string());
}
