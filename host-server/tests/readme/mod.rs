//! A program's `--help` against its options table in README.md: every long option
//! the program takes must have a row, and every row must be an option it takes.
//! host-server's and host-client's CLI tests share this file (host-client's by path).

/// The workspace's README.md.
const README: &str = include_str!("../../../README.md");

/// The long option that a line of `--help` introduces (`  -b, --bind <ADDR>`,
/// `      --no-web`, `      --attempts <N>   Connection attempts ...`), if it is one.
/// Descriptions are indented further than option names, so they never count.
pub fn long_option(line: &str) -> Option<&str> {
    let text = line.trim_start();
    if line.len() - text.len() > 6 {
        return None;
    }
    let text = match text.split_once(", ") {
        Some((short, rest)) if short.len() == 2 && short.starts_with('-') => rest,
        _ => text,
    };
    let name = text.split_whitespace().next()?;
    (name.starts_with("--") && name.len() > 2).then_some(name)
}

/// The options in the first table after the README heading `heading` (rows that
/// begin "| `--NAME ...` |").
fn readme_options(heading: &str) -> Vec<&'static str> {
    let mut lines = README.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "README.md has no heading {heading:?}"
    );
    lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.strip_prefix("| `")?.split([' ', '`']).next())
        .collect()
}

/// Panics, naming them, if an option `help` lists (but `--help` and `--version`)
/// has no row in the table under `heading`, or a row names an option `help` lacks.
pub fn assert_readme_lists_every_option(help: &str, heading: &str) {
    let taken: Vec<&str> = help
        .lines()
        .filter_map(long_option)
        .filter(|o| !["--help", "--version"].contains(o))
        .collect();
    assert!(!taken.is_empty(), "no options in {help}");
    let rows = readme_options(heading);
    let missing: Vec<&str> = taken
        .iter()
        .copied()
        .filter(|o| !rows.contains(o))
        .collect();
    let stale: Vec<&str> = rows
        .iter()
        .copied()
        .filter(|o| !taken.contains(o))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README.md's options table under {heading:?} lacks {missing:?}, \
         and has rows for options the program does not take: {stale:?}"
    );
}
