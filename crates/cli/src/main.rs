//! The `evolution` command line tool (not built yet).
fn main() {}
