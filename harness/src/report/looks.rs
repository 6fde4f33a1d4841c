//! How each server is drawn: the catalog's colour and a marker by catalog
//! rank, nginx dark and dashed, names the catalog does not know in spare
//! colours. Fixed, so a variant looks the same in every chart of every run
//! and two reports can be compared side by side. (The order is
//! [`crate::catalog::cmp`].)

use plotters::style::RGBColor;

use crate::catalog::{self, NGINX};

/// Colours for names the report does not know, handed out in order.
const EXTRA_COLOURS: [RGBColor; 4] = [
    RGBColor(188, 189, 34), // olive
    RGBColor(23, 190, 207), // cyan
    RGBColor(127, 127, 127),
    RGBColor(31, 60, 100),
];

const NGINX_COLOUR: RGBColor = RGBColor(30, 30, 30);

/// Marker shapes by catalog rank (repeating past the seventh variant), so
/// lines stay apart in grayscale too.
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
    if let (Some(v), Some(i)) = (catalog::variant(name), servers::variants::rank(name)) {
        let (r, g, b) = v.colour;
        return Look {
            colour: RGBColor(r, g, b),
            marker: MARKERS[i % MARKERS.len()],
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

/// The names among `names` that are neither catalog variants nor nginx, sorted.
pub fn unknown_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|n| !catalog::is_known(n))
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
    fn catalog_colours_unknown_colours_and_nginx_are_distinct() {
        let unknown = unknown_names(["x", "y"]);
        let mut names = catalog::all();
        names.extend(["x", "y"]);
        let mut all: Vec<_> = names.iter().map(|n| look(n, &unknown).colour).collect();
        let len = all.len();
        all.sort_by_key(|c| (c.0, c.1, c.2));
        all.dedup();
        assert_eq!(all.len(), len);
        assert_eq!(look(NGINX, &unknown).line, Line::Dashed);
        let first = servers::variants::VARIANTS[0];
        let (r, g, b) = first.colour;
        assert_eq!(look(first.name, &unknown).colour, RGBColor(r, g, b));
    }
}
