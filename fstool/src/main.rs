//! `cosmian_fstool`.

fn main() {
    eprintln!("cosmian_fstool: not yet implemented");
    std::process::exit(2);
}
