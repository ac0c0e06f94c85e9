//! `cosmian_vm_agent`.

fn main() {
    eprintln!("cosmian_vm_agent: not yet implemented");
    std::process::exit(2);
}
