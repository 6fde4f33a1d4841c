//! Variant order, colours and markers: fixed, so a variant looks the same in
//! every chart of every run and two reports can be compared side by side.

use std::cmp::Ordering;

use plotters::style::RGBColor;

/// The server variants in the order the report shows them (simplest model
/// first); unknown names come after these, alphabetically, and nginx last.
pub const KNOWN: [&str; 7] = [
    "blocking",
    "threadpool",
    "epoll",
    "epoll-threads",
    "fork",
    "prefork",
    "uring",
];

/// The reference server: always last, drawn dashed.
pub const NGINX: &str = "nginx";

/// One colour per known variant (tab10, which stays distinct when printed
/// and for the common forms of colour blindness), matched to [`KNOWN`].
const COLOURS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),  // blocking: blue
    RGBColor(255, 127, 14),  // threadpool: orange
    RGBColor(44, 160, 44),   // epoll: green
    RGBColor(214, 39, 40),   // epoll-threads: red
    RGBColor(148, 103, 189), // fork: purple
    RGBColor(140, 86, 75),   // prefork: brown
    RGBColor(227, 119, 194), // uring: pink
];

/// Colours for names the report does not know, handed out in order.
const EXTRA_COLOURS: [RGBColor; 4] = [
    RGBColor(188, 189, 34), // olive
    RGBColor(23, 190, 207), // cyan
    RGBColor(127, 127, 127),
    RGBColor(31, 60, 100),
];

const NGINX_COLOUR: RGBColor = RGBColor(30, 30, 30);

/// Marker shapes, so lines stay apart in grayscale too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
    Cross,
    Star,
}

const MARKERS: [Marker; 7] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
    Marker::Star,
];

/// Line pattern: nginx is dashed; a second client's line is dotted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Solid,
    Dashed,
    Dotted,
}

/// How one variant is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub colour: RGBColor,
    pub marker: Marker,
    pub line: Line,
}

/// Sort key: known variants by their place in [`KNOWN`], then unknown names
/// alphabetically, then nginx.
fn rank(name: &str) -> (usize, &str) {
    if name == NGINX {
        (usize::MAX, "")
    } else if let Some(i) = KNOWN.iter().position(|k| *k == name) {
        (i, "")
    } else {
        (KNOWN.len(), name)
    }
}

/// Report order of two variant names.
pub fn cmp(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b))
}

/// The look of `name`; `unknown` is the alphabetically sorted list of the
/// names present that are neither known nor nginx (gives them stable colours).
pub fn look(name: &str, unknown: &[String]) -> Look {
    if name == NGINX {
        return Look {
            colour: NGINX_COLOUR,
            marker: Marker::Square,
            line: Line::Dashed,
        };
    }
    if let Some(i) = KNOWN.iter().position(|k| *k == name) {
        return Look {
            colour: COLOURS[i],
            marker: MARKERS[i],
            line: Line::Solid,
        };
    }
    let i = unknown.iter().position(|u| u == name).unwrap_or(0);
    Look {
        colour: EXTRA_COLOURS[i % EXTRA_COLOURS.len()],
        marker: MARKERS[i % MARKERS.len()],
        line: Line::Solid,
    }
}

/// The names among `names` that are neither known nor nginx, sorted.
pub fn unknown_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| *n != NGINX && !KNOWN.contains(n))
        .map(str::to_string)
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_known_then_unknown_then_nginx() {
        let mut names = vec![
            "nginx",
            "zeta",
            "uring",
            "alpha",
            "blocking",
            "epoll-threads",
            "epoll",
        ];
        names.sort_by(|a, b| cmp(a, b));
        assert_eq!(
            names,
            [
                "blocking",
                "epoll",
                "epoll-threads",
                "uring",
                "alpha",
                "zeta",
                "nginx"
            ]
        );
    }

    #[test]
    fn colours_are_distinct() {
        let unknown = unknown_names(["x", "y"]);
        let mut all: Vec<_> = KNOWN
            .iter()
            .chain(&["x", "y", NGINX])
            .map(|n| look(n, &unknown).colour)
            .collect();
        let len = all.len();
        all.sort_by_key(|c| (c.0, c.1, c.2));
        all.dedup();
        assert_eq!(all.len(), len);
    }
}
