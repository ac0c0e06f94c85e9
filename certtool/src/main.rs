//! `cosmian_certtool`.

fn main() {
    eprintln!("cosmian_certtool: not yet implemented");
    std::process::exit(2);
}
