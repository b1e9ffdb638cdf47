//! keel-init: see the library's documentation.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match keel_init::parse(&args).and_then(|a| keel_init::run(&a)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel-init: {e}");
            e.code()
        }
    };
    std::process::exit(code);
}
