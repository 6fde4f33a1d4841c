//! summary.md is shared: the bench writes its tables, `harness profile
//! --all` its own section. The profile section is fenced by [`BEGIN`] and
//! [`END`] and only what lies between them is rewritten, so rerunning
//! either step leaves the other's text alone.

/// First and last line of the profile section of summary.md.
pub const BEGIN: &str =
    "<!-- profile:begin (written by `harness profile --all`; edits here are overwritten) -->";
/// Last line of the profile section of summary.md.
pub const END: &str = "<!-- profile:end -->";

/// `old` with its profile section replaced by `section` (which must
/// include the markers), or with `section` appended when it has none.
pub fn replace_section(old: &str, section: &str) -> String {
    if let (Some(b), Some(e)) = (old.find(BEGIN), old.find(END)) {
        if b < e {
            let mut s = String::with_capacity(old.len() + section.len());
            s.push_str(&old[..b]);
            s.push_str(section.trim_end());
            s.push_str(&old[e + END.len()..]);
            return s;
        }
    }
    let mut s = old.trim_end().to_string();
    if !s.is_empty() {
        s.push_str("\n\n");
    }
    s.push_str(section.trim_end());
    s.push('\n');
    s
}

/// The profile section of an existing summary.md, markers included, if any
/// (so the bench report can keep it when it rewrites the file).
pub fn existing_section(text: &str) -> Option<&str> {
    let b = text.find(BEGIN)?;
    let e = text[b..].find(END)? + b;
    Some(&text[b..e + END.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place_or_appended() {
        let s1 = format!("{BEGIN}\nfirst\n{END}\n");
        let s2 = format!("{BEGIN}\nsecond\n{END}\n");
        let bench = "# Bench results\n\ntable\n";
        let once = replace_section(bench, &s1);
        assert_eq!(once, format!("{bench}\n{s1}"));
        let twice = replace_section(&once, &s2);
        assert!(twice.starts_with(bench) && twice.contains("second") && !twice.contains("first"));
        assert_eq!(replace_section(&twice, &s2), twice, "idempotent");
        let with_tail = format!("{once}\n## Notes\n\n- kept\n");
        let replaced = replace_section(&with_tail, &s2);
        assert!(replaced.ends_with("## Notes\n\n- kept\n"), "{replaced}");
        assert_eq!(existing_section(&replaced), Some(s2.trim_end()));
    }
}
