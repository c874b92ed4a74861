//! Prints the problems of each config file named on the command line.
fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match ramkey_config::Config::parse(&text, &path) {
            Ok(_) => println!("{path}: ok"),
            Err(e) => println!("{e}"),
        }
    }
}
