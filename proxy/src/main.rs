//! `cosmian_vm_proxy`.

fn main() {
    eprintln!("cosmian_vm_proxy: not yet implemented");
    std::process::exit(2);
}
