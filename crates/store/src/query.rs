//! Rows produced by SOQL query execution ([`crate::ReadTx::query_rows`] and
//! [`crate::ReadTx::query_aggregate`]), shaped after a [`soql::plan::Plan`].

use model::Value;

/// One result row. `cells` line up with the plan's columns at the same level of the tree:
/// [`soql::plan::Plan::columns`] for a root or child row, the `columns` of a
/// [`soql::plan::Column::Parent`] for a parent row.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRow {
    /// The record's sequence (its id is `Id::new(object.key_prefix, marker, seq)`); 0 for
    /// aggregate rows.
    pub seq: u64,
    /// One cell per column.
    pub cells: Vec<Cell>,
}

/// The value of one column of a [`QueryRow`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A field, grouped expression or aggregate ([`soql::plan::Column::Field`],
    /// [`soql::plan::Column::Group`], [`soql::plan::Column::Aggregate`]); `toLabel` already
    /// applied.
    Value(Value),
    /// A parent lookup ([`soql::plan::Column::Parent`]); `None` when the lookup is empty.
    Parent(Option<Box<QueryRow>>),
    /// A child subquery ([`soql::plan::Column::Children`]): the matching children of this row,
    /// after the subquery's ORDER BY / OFFSET / LIMIT (empty when there are none).
    Children(Vec<QueryRow>),
}
