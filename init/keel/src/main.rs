//! keel, PID 1. Everything happens in the library; see `keel::run`.

fn main() {
    keel::run()
}
