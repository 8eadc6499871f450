//! Command-line flags of the Rust benches: `--name value` pairs, `--bench`
//! (passed by `cargo bench`) skipped, a clear message and exit status 2 on
//! anything else.

/// Calls `set(flag, value)` for every `--flag value` pair of the process's
/// arguments; `set` returns whether it knows the flag.
pub fn parse(mut set: impl FnMut(&str, &str) -> bool) {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "--bench" {
            i += 1;
            continue;
        }
        let value = argv.get(i + 1).map(String::as_str).unwrap_or_default();
        if !set(&argv[i], value) {
            eprintln!("unknown argument {}", argv[i]);
            std::process::exit(2)
        }
        i += 2;
    }
}

/// `value` as a number, or a message naming `flag` and exit status 2.
pub fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value.parse().unwrap_or_else(|_| {
        eprintln!("{flag} needs a number, got {value:?}");
        std::process::exit(2)
    })
}
