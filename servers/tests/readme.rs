//! The README's variant table ("## The variants": `| binary | model |
//! connection policy |`) says what the catalog (`servers::variants::VARIANTS`)
//! says: the same variants in the catalog's order, each row's model and
//! policy cells equal to the entry's `model` and `policy`. On a mismatch the
//! failure prints the table to paste.

use servers::variants::{Variant, VARIANTS};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
const SECTION: &str = "## The variants";
const HEADER: &str = "| binary | model | connection policy |";
const SEPARATOR: &str = "|---|---|---|";

/// The catalog as the README's table.
fn expected_table() -> String {
    let mut t = format!("{HEADER}\n{SEPARATOR}\n");
    for v in VARIANTS {
        t += &format!("| `{}` | {} | {} |\n", v.name, v.model, v.policy);
    }
    t
}

/// The lines of the first table in the README's variant section.
fn readme_table(readme: &str) -> Result<Vec<&str>, String> {
    let start = readme
        .lines()
        .position(|l| l.trim_end() == SECTION)
        .ok_or_else(|| format!("no `{SECTION}` heading"))?;
    let section: Vec<&str> = readme
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    let table: Vec<&str> = section
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    if table.is_empty() {
        return Err(format!("no table under `{SECTION}`"));
    }
    Ok(table)
}

/// The cells of a table row, trimmed.
fn cells(row: &str) -> Vec<&str> {
    let inner = row.trim();
    let inner = inner.strip_prefix('|').unwrap_or(inner);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(str::trim).collect()
}

/// Every way the README's table differs from the catalog.
fn differences(table: &[&str]) -> Vec<String> {
    let mut diffs = Vec::new();
    if table.first().map(|l| l.trim_end()) != Some(HEADER) {
        diffs.push(format!(
            "header row is {:?}, expected {HEADER:?}",
            table.first()
        ));
    }
    if table.get(1).map(|l| l.trim_end()) != Some(SEPARATOR) {
        diffs.push(format!(
            "separator row is {:?}, expected {SEPARATOR:?}",
            table.get(1)
        ));
    }
    let rows: Vec<Vec<&str>> = table.iter().skip(2).map(|r| cells(r)).collect();
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            r.first()
                .copied()
                .unwrap_or("")
                .trim_matches('`')
                .to_string()
        })
        .collect();
    let want: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    if names != want {
        diffs.push(format!(
            "binaries in the table: {names:?}; in the catalog (in order): {want:?}"
        ));
    }
    for (row, v) in rows.iter().zip(VARIANTS) {
        let name = row.first().copied().unwrap_or("");
        if row.len() != 3 {
            diffs.push(format!(
                "row `{name}` has {} cells, expected 3 (binary, model, connection policy)",
                row.len()
            ));
            continue;
        }
        if name != format!("`{}`", v.name) {
            // Already reported as a difference in the list of binaries.
            continue;
        }
        for (what, got, want) in [("model", row[1], v.model), ("policy", row[2], v.policy)] {
            if got != want {
                diffs.push(format!(
                    "`{}` {what}:\n  README:  {got}\n  catalog: {want}",
                    v.name
                ));
            }
        }
    }
    diffs
}

#[test]
fn catalog_text_fits_a_markdown_table() {
    let bad: Vec<&Variant> = VARIANTS
        .iter()
        .filter(|v| {
            [v.name, v.model, v.policy]
                .iter()
                .any(|s| s.contains(['|', '\n']))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "catalog text with `|` or a newline cannot be a table cell: {:?}",
        bad.iter().map(|v| v.name).collect::<Vec<_>>()
    );
}

#[test]
fn readme_variant_table_matches_the_catalog() {
    let readme = std::fs::read_to_string(README).unwrap_or_else(|e| panic!("read {README}: {e}"));
    let diffs = match readme_table(&readme) {
        Ok(table) => differences(&table),
        Err(e) => vec![e],
    };
    assert!(
        diffs.is_empty(),
        "README.md's variant table (`{SECTION}`) does not match servers::variants::VARIANTS:\n\n{}\n\n\
         Replace the table with (generated from the catalog):\n\n{}",
        diffs.join("\n"),
        expected_table()
    );
}

#[test]
fn differences_are_found() {
    let good = expected_table();
    let lines: Vec<&str> = good.lines().collect();
    assert!(differences(&lines).is_empty(), "{:?}", differences(&lines));

    // A row missing, rows swapped, a policy edited: each is reported.
    let missing: Vec<&str> = lines[..lines.len() - 1].to_vec();
    assert!(!differences(&missing).is_empty());
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert!(!differences(&swapped).is_empty());
    let edited_row = lines[2].replace(VARIANTS[0].policy, "something else");
    let mut edited = lines.clone();
    edited[2] = &edited_row;
    let d = differences(&edited);
    assert!(
        d.len() == 1 && d[0].contains("policy"),
        "an edited policy: {d:?}"
    );
}
