//! The commands about the command line itself: `--version [--verbose]`,
//! `completions`, `man`.

mod common;

use common::*;
use std::path::Path;

#[test]
fn version_verbose_names_the_format_versions_and_the_kernels() {
    let plain = run(&["--version"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let line = stdout(&plain);
    assert_eq!(
        line.trim(),
        format!("strata {}", env!("CARGO_PKG_VERSION")),
        "plain --version is the one line it always was"
    );
    assert_eq!(stdout(&run(&["-V"])), line);
    let o = run(&["--version", "--verbose"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with(&line), "{out}");
    let data = format!("format version {}", strata::format::FORMAT_VERSION);
    let dir = format!("directory version {}", strata::format::DIRECTORY_VERSION);
    assert!(out.contains(&data), "{out}");
    assert!(out.contains(&dir), "{out}");
    let kernels = strata::distance::Kernels::detect().name;
    assert!(
        out.contains(&format!("distance kernels: {kernels}")),
        "{out}"
    );
    // --verbose alone is a usage error, not a silent no-op.
    let o = run(&["--verbose"]);
    assert!(!o.status.success());
}

#[test]
fn forcing_scalar_kernels_shows_in_version_verbose() {
    let o = strata()
        .args(["--version", "--verbose"])
        .env("STRATA_FORCE_SCALAR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("distance kernels: scalar"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let out = stdout(&o);
        for sub in ["build", "search", "compact", "groundtruth", "man"] {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bash = stdout(&run(&["completions", "bash"]));
    assert!(bash.contains("complete -F _strata"), "{bash}");
    let o = run(&["completions", "tcsh"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
}

#[test]
fn man_prints_roff_and_writes_a_page_per_subcommand() {
    let o = run(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".TH") || page.starts_with(".ie"),
        "not roff: {}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains(".TH strata 1"), "{page}");
    assert!(page.contains("groundtruth"), "{page}");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    let o = run(&["man", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "strata.1",
        "strata-build.1",
        "strata-groundtruth.1",
        "strata-man.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}

/// Every subcommand, and every long flag of each, appears in the README's
/// command-line section (issue 14: it reflects every subcommand and flag).
#[test]
fn the_readme_command_line_section_names_every_subcommand_and_flag() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("## Command line")
        .expect("README has a command-line section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let help = stdout(&run(&["--help"]));
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&s| s != "help")
        .collect();
    assert!(subcommands.len() >= 11, "{subcommands:?}");
    let mut missing = Vec::new();
    for sub in &subcommands {
        if !section.contains(&format!("strata {sub}")) {
            missing.push(format!("strata {sub}"));
        }
        let help = stdout(&run(&[sub, "--help"]));
        for flag in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            let is_flag = flag.starts_with("--")
                && flag.len() > 2
                && flag.as_bytes()[2].is_ascii_lowercase()
                && flag != "--help";
            if is_flag && !section.contains(flag) {
                missing.push(format!("strata {sub} {flag}"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}
