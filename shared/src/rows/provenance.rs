//! Which source each row of a bound array came from: the SQS message (ingest) or the staged
//! chunk (flush). A refused row is quarantined under its source, and a statement's answer settles
//! exactly the sources whose rows it held.

/// Runs of `(source, rows)` in row order: the first `rows` rows came from the first source, and
/// so on. Consecutive rows of one source make one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance<S> {
    runs: Vec<(S, usize)>,
}

impl<S> Default for Provenance<S> {
    fn default() -> Self {
        Provenance { runs: Vec::new() }
    }
}

impl<S: PartialEq> Provenance<S> {
    /// Records that the next `rows` rows came from `source`.
    pub fn push(&mut self, source: S, rows: usize) {
        match self.runs.last_mut() {
            Some((last, n)) if *last == source => *n += rows,
            _ => self.runs.push((source, rows)),
        }
    }

    /// The source of row `row`, or `None` past the last row.
    pub fn source_of(&self, row: usize) -> Option<&S> {
        let mut end = 0;
        self.runs.iter().find_map(|(source, rows)| {
            end += rows;
            (row < end).then_some(source)
        })
    }

    /// The sources, in row order, each once per run.
    pub fn sources(&self) -> impl Iterator<Item = &S> {
        self.runs.iter().map(|(source, _)| source)
    }

    /// The runs, in row order.
    pub fn runs(&self) -> &[(S, usize)] {
        &self.runs
    }

    /// Rows recorded.
    pub fn rows(&self) -> usize {
        self.runs.iter().map(|(_, rows)| rows).sum()
    }

    /// The same runs with each source mapped (runs whose sources map equal merge).
    pub fn map<T: PartialEq>(&self, f: impl Fn(&S) -> T) -> Provenance<T> {
        let mut mapped = Provenance::default();
        for (source, rows) in &self.runs {
            mapped.push(f(source), *rows);
        }
        mapped
    }

    /// Whether no row is recorded.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_map_to_their_sources_and_runs_merge() {
        let mut provenance = Provenance::default();
        provenance.push("a", 1);
        provenance.push("b", 2);
        provenance.push("b", 1);
        provenance.push("a", 1);
        assert_eq!(provenance.runs(), [("a", 1), ("b", 3), ("a", 1)]);
        let of: Vec<Option<&&str>> = (0..6).map(|row| provenance.source_of(row)).collect();
        assert_eq!(
            of,
            [
                Some(&"a"),
                Some(&"b"),
                Some(&"b"),
                Some(&"b"),
                Some(&"a"),
                None
            ]
        );
        assert_eq!(provenance.sources().collect::<Vec<_>>(), [&"a", &"b", &"a"]);
        assert_eq!(provenance.rows(), 5);
        assert!(!provenance.is_empty());
        assert!(Provenance::<u8>::default().is_empty());
        let named = provenance.map(|s| format!("m-{s}"));
        assert_eq!(named.source_of(3), Some(&"m-b".to_string()));
        assert_eq!(provenance.map(|_| 0).runs(), [(0, 5)]);
    }
}
