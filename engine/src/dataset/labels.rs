//! Labels files: the labels of each row of a vectors file, one line per
//! row, as `strata build --labels` and `strata insert --labels` read them.
//!
//! Each line holds the row's labels as decimal `u32`s separated by spaces,
//! tabs or commas (an empty line: no labels). A final newline is optional;
//! `\r\n` line ends are accepted.

use super::{input_error, open_input};
use crate::error::Result;
use crate::limits::MAX_LABELS_PER_VECTOR;
use std::io::Read;
use std::path::Path;

/// Reads a labels file (see the module docs): one entry per line.
pub fn read_labels(path: &Path) -> Result<Vec<Vec<u32>>> {
    let (mut file, len) = open_input(path)?;
    let mut text = String::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_string(&mut text).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            input_error(path, "not UTF-8 text")
        } else {
            crate::Error::io(path, e)
        }
    })?;
    parse_labels(&text, path)
}

/// Parses the text of a labels file; `name` is the path reported in errors.
pub fn parse_labels(text: &str, name: &Path) -> Result<Vec<Vec<u32>>> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(if text.is_empty() {
            Vec::new()
        } else {
            vec![Vec::new()]
        });
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let mut labels = Vec::new();
            for word in line
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
            {
                let label = word.parse::<u32>().map_err(|_| {
                    input_error(
                        name,
                        format!(
                            "line {}: {word:?} is not a label (an integer 0..=4294967295)",
                            i + 1
                        ),
                    )
                })?;
                labels.push(label);
            }
            labels.sort_unstable();
            labels.dedup();
            if labels.len() > MAX_LABELS_PER_VECTOR {
                return Err(input_error(
                    name,
                    format!(
                        "line {}: {} distinct labels, at most {MAX_LABELS_PER_VECTOR} per vector",
                        i + 1,
                        labels.len()
                    ),
                ));
            }
            Ok(labels)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_names_the_bad_one() {
        let p = Path::new("l.txt");
        let rows = parse_labels("3 1,1\n\n4294967295\r\n7\t8\n", p).unwrap();
        assert_eq!(rows, vec![vec![1, 3], vec![], vec![u32::MAX], vec![7, 8]]);
        assert_eq!(parse_labels("5", p).unwrap(), vec![vec![5]]);
        assert_eq!(parse_labels("", p).unwrap(), Vec::<Vec<u32>>::new());
        assert_eq!(parse_labels("\n", p).unwrap(), vec![Vec::<u32>::new()]);
        assert_eq!(parse_labels("\n\n", p).unwrap(), vec![vec![], vec![]]);
        for (text, line) in [
            ("1\n2\nx\n", "line 3"),
            ("4294967296", "line 1"),
            ("1\n-2", "line 2"),
        ] {
            let e = parse_labels(text, p).unwrap_err().to_string();
            assert!(e.contains(line), "{text:?}: {e}");
        }
        let many: String = (0..=MAX_LABELS_PER_VECTOR)
            .map(|i| format!("{i} "))
            .collect();
        assert!(parse_labels(&many, p).is_err());
    }
}
