//! keelctl: see `keelctl --help`.

fn main() {
    std::process::exit(keelctl::main());
}
