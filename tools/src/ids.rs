//! Id lists given on the command line (`--ids`): a file of integers, or an
//! inline list such as `3,17,40-49`, held as runs so that a range is never
//! materialised (`0-100000000` is one run, not 100M ids).

use std::path::Path;

/// Ids in input order, as inclusive runs `(first, last)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdList {
    runs: Vec<(u64, u64)>,
}

impl IdList {
    /// Parses integers separated by commas or whitespace, with `a-b` ranges.
    pub fn parse(text: &str) -> Result<IdList, String> {
        let mut runs = Vec::new();
        for tok in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
        {
            let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{tok:?}: {e}"));
            match tok.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if b < a {
                        return Err(format!("{tok:?}: a range must not run backwards"));
                    }
                    runs.push((a, b));
                }
                None => {
                    let id = num(tok)?;
                    runs.push((id, id));
                }
            }
        }
        Ok(IdList { runs })
    }

    /// The ids of `--ids ARG`: standard input for `-`, the file ARG if it
    /// exists, else ARG itself as a list. A path that does not exist
    /// (anything that is not made of digits, commas, dashes and spaces) is
    /// an error about the path.
    pub fn from_arg(arg: &str) -> Result<IdList, String> {
        if arg == "-" {
            let text = crate::input::read_stdin_text()?;
            return IdList::parse(&text).map_err(|e| format!("<stdin>: {e}"));
        }
        let p = Path::new(arg);
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{arg}: {e}"))?;
                IdList::parse(&text).map_err(|e| format!("{arg}: {e}"))
            }
            Ok(_) => Err(format!(
                "{arg}: not a regular file (give a file of ids or a list such as 3,17,40-49)"
            )),
            Err(_) if looks_like_list(arg) => IdList::parse(arg),
            Err(e) => Err(format!(
                "{arg}: {e} (not an id file, and not a list such as 3,17,40-49)"
            )),
        }
    }

    /// Number of ids (a run counts all its ids; saturating).
    pub fn len(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |n, (a, b)| n.saturating_add(b - a).saturating_add(1))
    }

    /// The ids in order, generated lazily.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().flat_map(|&(a, b)| a..=b)
    }
}

fn looks_like_list(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == '-' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::IdList;

    #[test]
    fn parses_lists_and_ranges() {
        let l = IdList::parse("3, 17 40-42\n7").unwrap();
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![3, 17, 40, 41, 42, 7]);
        assert_eq!(l.len(), 6);
        assert!(IdList::parse("5-2").is_err());
        assert!(IdList::parse("x").is_err());
    }

    #[test]
    fn huge_ranges_are_not_materialised() {
        let l = IdList::parse("0-100000000,0-18446744073709551615").unwrap();
        assert_eq!(l.len(), u64::MAX);
        assert_eq!(l.iter().take(3).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn a_missing_path_is_an_error_about_the_path() {
        let e = IdList::from_arg("nosuchfile.txt").unwrap_err();
        assert!(
            e.contains("nosuchfile.txt") && e.contains("No such file"),
            "{e}"
        );
        assert!(!e.contains("invalid digit"), "{e}");
        assert_eq!(IdList::from_arg("1,2-3").unwrap().len(), 3);
    }
}
