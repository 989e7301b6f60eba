//! The resolved form of a SOQL query: what a storage backend executes and what a renderer turns
//! into a query result. Produced by [`crate::resolve()`] / [`crate::compile()`].
//!
//! Everything in a [`Plan`] is checked against the org's metadata: objects and fields are
//! positions into [`ObjectDef::fields`], names have their canonical casing, and every literal of
//! the query is a typed [`model::Value`] (never SQL text) ready to be bound as a parameter.
//!
//! # Shapes
//!
//! * [`PlanKind::Records`]: one row per record of [`Plan::object`]. The output shape is the tree
//!   [`Plan::columns`], in `SELECT` order: plain fields ([`Column::Field`]), parent lookups
//!   ([`Column::Parent`], nested; several paths through one relationship share one parent column,
//!   placed where the relationship is first mentioned) and child subqueries
//!   ([`Column::Children`], each with its own plan).
//! * [`PlanKind::Count`]: `SELECT COUNT() ...`; no columns, the answer is a number.
//! * [`PlanKind::Aggregate`]: one row per group; the columns are flat: [`Column::Group`] for
//!   grouped fields / date functions and [`Column::Aggregate`] for aggregate functions.
//!
//! # Semantics the backend must honour
//!
//! * Conditions are two-valued: a comparison involving a null operand is *false*, and
//!   [`Expr::Not`] of such a comparison is *true* (SQL backends write `NOT IFNULL(x, 0)`).
//! * [`CompareOp::Ne`] and negated [`Expr::In`] / [`Expr::SemiJoin`] also match rows whose
//!   operand is null (SOQL: `Industry != 'x'` returns accounts without an industry).
//! * Text comparisons (`=`, `IN`, `<`, ...) are case-insensitive unless the field is
//!   case-sensitive; `LIKE` is always case-insensitive.
//! * Id values ([`Value::Id`]) compared with an Id or reference field match nothing when the id
//!   belongs to another object type or another org (`=` is false, `!=` is true, `IN` ignores it).
//! * `ORDER BY` terms carry explicit null ordering; after them the backend orders by the
//!   record id so results are stable. Records without `ORDER BY` come in id order.
//! * Rows with `IsDeleted = 1` are excluded unless [`Plan::include_deleted`] (queryAll); the
//!   flag is copied into child plans and semi-join subqueries.

use std::sync::Arc;

use model::{FieldDef, FieldType, ObjectDef, Value};

pub use crate::ast::LikePiece;

/// What kind of result a plan produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// Records with the fields of [`Plan::columns`].
    Records,
    /// `SELECT COUNT() ...`: only the number of matching rows (`totalSize`), no records.
    Count,
    /// `AggregateResult` rows: one per group (or exactly one without `GROUP BY`).
    Aggregate,
}

/// A resolved query (top level or child subquery).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Records, count or aggregate.
    pub kind: PlanKind,
    /// The object queried (`FROM`); for a child subquery, the child object.
    pub object: Arc<ObjectDef>,
    /// Include soft-deleted rows (queryAll). Same value throughout one query.
    pub include_deleted: bool,
    /// The output shape, in `SELECT` order. Empty for [`PlanKind::Count`].
    pub columns: Vec<Column>,
    /// The `WHERE` condition.
    pub filter: Option<Expr>,
    /// `GROUP BY` expressions ([`PlanKind::Aggregate`], or a grouped [`PlanKind::Count`]).
    pub group_by: Vec<Scalar>,
    /// The `HAVING` condition (operands are aggregates or grouped expressions).
    pub having: Option<Expr>,
    /// `ORDER BY` terms, in order (without the implicit id tie-breaker).
    pub order_by: Vec<OrderTerm>,
    /// `LIMIT`; for a child subquery, per parent record.
    pub limit: Option<u32>,
    /// `OFFSET` (at most 2,000); for a child subquery, per parent record.
    pub offset: Option<u32>,
    /// For a child subquery: how its rows attach to the parent rows.
    pub link: Option<ChildLink>,
}

impl Plan {
    /// The canonical names of the columns at the top level, in order (handy for CSV headers
    /// and tests).
    pub fn column_keys(&self) -> Vec<&str> {
        self.columns.iter().map(Column::key).collect()
    }
}

/// How a child subquery's rows attach to their parents.
#[derive(Debug, Clone)]
pub struct ChildLink {
    /// Position, in the child object's fields, of the reference field pointing at the parent
    /// (e.g. `Contact.AccountId` for `Account.Contacts`).
    pub field: usize,
    /// The parent object.
    pub parent: Arc<ObjectDef>,
}

/// One output column. `key` is the JSON property name the REST API uses.
#[derive(Debug, Clone)]
pub enum Column {
    /// A field of the object at this level of the tree.
    Field {
        /// Canonical field name, or the alias of `FORMAT(f) alias` / `toLabel(f) alias`.
        key: String,
        /// Position of the field in this level's object (`Plan::object` at the top,
        /// `Column::Parent::object` inside a parent column).
        field: usize,
        /// `toLabel(f)`: return the picklist label instead of the stored value.
        to_label: bool,
    },
    /// A parent record reached through a lookup; `null` in results when the lookup is empty.
    Parent {
        /// Canonical relationship name (`Account`, `Owner`, `Parent__r`).
        key: String,
        /// Position of the reference field in this level's object (`AccountId`).
        field: usize,
        /// The parent object.
        object: Arc<ObjectDef>,
        /// The parent's selected columns, in first-mention order (fields and nested parents).
        columns: Vec<Column>,
    },
    /// A parent-to-child subquery; results carry a nested query result.
    Children {
        /// Canonical child relationship name (`Contacts`, `Invoices__r`).
        key: String,
        /// The subquery (kind [`PlanKind::Records`], with [`Plan::link`] set).
        plan: Box<Plan>,
    },
    /// Aggregate queries: a grouped expression. Grouped fields are keyed by their field name
    /// (last path segment: `Account.Name` → `Name`); date functions by alias or `exprN`.
    Group {
        /// JSON key.
        key: String,
        /// The grouped expression (one of [`Plan::group_by`]).
        expr: Scalar,
        /// `toLabel(f)` of a grouped picklist.
        to_label: bool,
    },
    /// Aggregate queries: an aggregate function, keyed by its alias or `exprN` (N counts the
    /// unaliased aggregate and date-function items, from 0, in `SELECT` order).
    Aggregate {
        /// JSON key.
        key: String,
        /// The aggregate.
        agg: Aggregate,
    },
}

impl Column {
    /// The JSON key of the column.
    pub fn key(&self) -> &str {
        match self {
            Column::Field { key, .. }
            | Column::Parent { key, .. }
            | Column::Children { key, .. }
            | Column::Group { key, .. }
            | Column::Aggregate { key, .. } => key,
        }
    }
}

/// One lookup followed from an object to its parent.
#[derive(Debug, Clone)]
pub struct Hop {
    /// Position of the reference field in the object the hop starts from.
    pub field: usize,
    /// The object the hop arrives at.
    pub object: Arc<ObjectDef>,
}

/// A field, possibly reached through lookups from the plan's object (`Account.Owner.Email`).
#[derive(Debug, Clone)]
pub struct FieldRef {
    /// Lookups followed from the plan's object, in order (empty for its own fields).
    pub path: Vec<Hop>,
    /// The object holding the field (the plan's object when `path` is empty).
    pub object: Arc<ObjectDef>,
    /// Position of the field in `object.fields`.
    pub field: usize,
}

impl FieldRef {
    /// The field's definition.
    pub fn def(&self) -> &FieldDef {
        &self.object.fields[self.field]
    }

    /// The positions of the reference fields along the path (identifies the join chain).
    pub fn path_key(&self) -> Vec<usize> {
        self.path.iter().map(|h| h.field).collect()
    }

    /// The canonical dotted name relative to the plan's object (`Account.Owner.Email`).
    pub fn dotted(&self, root: &ObjectDef) -> String {
        let mut out = String::new();
        let mut at: &ObjectDef = root;
        for hop in &self.path {
            let f = &at.fields[hop.field];
            out.push_str(f.relationship_name.as_deref().unwrap_or(&f.name));
            out.push('.');
            at = &hop.object;
        }
        out.push_str(&self.def().name);
        out
    }
}

impl PartialEq for FieldRef {
    /// Same field reached the same way (both relative to the same plan object).
    fn eq(&self, other: &FieldRef) -> bool {
        self.field == other.field
            && self.path.len() == other.path.len()
            && self
                .path
                .iter()
                .zip(&other.path)
                .all(|(a, b)| a.field == b.field)
    }
}

/// A date function (FISCAL_* resolve to their calendar counterparts: fiscal years start in
/// January).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateFunction {
    /// `CALENDAR_YEAR` / `FISCAL_YEAR`: the year, e.g. 2024.
    CalendarYear,
    /// `CALENDAR_QUARTER` / `FISCAL_QUARTER`: 1-4.
    CalendarQuarter,
    /// `CALENDAR_MONTH` / `FISCAL_MONTH`: 1-12.
    CalendarMonth,
    /// `DAY_IN_MONTH`: 1-31.
    DayInMonth,
    /// `DAY_IN_WEEK`: 1 = Sunday ... 7 = Saturday.
    DayInWeek,
    /// `DAY_IN_YEAR`: 1-366.
    DayInYear,
    /// `DAY_ONLY(dateTime)`: the (UTC) date of a date-time; a [`Value::Date`].
    DayOnly,
    /// `HOUR_IN_DAY(dateTime)`: 0-23 (UTC).
    HourInDay,
    /// `WEEK_IN_MONTH`: 1-5; days 1-7 are week 1.
    WeekInMonth,
    /// `WEEK_IN_YEAR`: 1-53; January 1-7 is week 1.
    WeekInYear,
}

/// A per-row value: a field or a date function of a Date / DateTime field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A field (possibly through lookups).
    Field(FieldRef),
    /// A date function; `arg` is a Date or DateTime field (`convertTimezone` is the identity:
    /// all times are UTC).
    Date {
        /// The function.
        func: DateFunction,
        /// Its argument.
        arg: FieldRef,
    },
}

impl Scalar {
    /// The field the scalar reads.
    pub fn field(&self) -> &FieldRef {
        match self {
            Scalar::Field(f) => f,
            Scalar::Date { arg, .. } => arg,
        }
    }

    /// The type of the values it yields (`Int` for date functions except `DAY_ONLY`).
    pub fn value_type(&self) -> FieldType {
        match self {
            Scalar::Field(f) => f.def().ty,
            Scalar::Date {
                func: DateFunction::DayOnly,
                ..
            } => FieldType::Date,
            Scalar::Date { .. } => FieldType::Int,
        }
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    /// `COUNT()` (rows) or `COUNT(f)` (non-null values).
    Count,
    /// `COUNT_DISTINCT(f)`: distinct non-null values (text compared case-insensitively).
    CountDistinct,
    /// `SUM(f)` on a numeric field.
    Sum,
    /// `AVG(f)` on a numeric field; a double.
    Avg,
    /// `MIN(f)`.
    Min,
    /// `MAX(f)`.
    Max,
}

/// An aggregate function applied to a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The function.
    pub func: AggFunc,
    /// The argument; `None` only for `COUNT()`.
    pub arg: Option<Scalar>,
}

impl Aggregate {
    /// The type of the result: `Int` for counts, `Double` for `AVG`, the argument's type for
    /// `SUM` / `MIN` / `MAX`.
    pub fn value_type(&self) -> FieldType {
        match (self.func, &self.arg) {
            (AggFunc::Count | AggFunc::CountDistinct, _) => FieldType::Int,
            (AggFunc::Avg, _) => FieldType::Double,
            (_, Some(a)) => a.value_type(),
            (_, None) => FieldType::Int,
        }
    }
}

/// The left-hand side of a condition or an `ORDER BY` key.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A per-row value (`WHERE`, `ORDER BY`, grouped expressions in `HAVING`).
    Scalar(Scalar),
    /// An aggregate (`HAVING` and `ORDER BY` of aggregate queries).
    Aggregate(Aggregate),
}

impl Operand {
    /// The type of the operand's values.
    pub fn value_type(&self) -> FieldType {
        match self {
            Operand::Scalar(s) => s.value_type(),
            Operand::Aggregate(a) => a.value_type(),
        }
    }
}

/// A comparison operator (`=` and `!=` never take a null value: see [`Expr::IsNull`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`.
    Eq,
    /// `!=` / `<>`; also true when the operand is null.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

/// A resolved condition (`WHERE` / `HAVING`). Values are typed for the operand: text for text
/// fields, [`Value::Id`] for id/reference fields, [`Value::Date`] for dates and `DAY_ONLY`,
/// [`Value::DateTime`] (UTC ms) for date-times, [`Value::Int`] for date functions and counts,
/// [`Value::Double`] / [`Value::Int`] for numbers, [`Value::Bool`] for checkboxes.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All operands hold.
    And(Vec<Expr>),
    /// At least one operand holds.
    Or(Vec<Expr>),
    /// The operand does not hold (an operand that is false because of a null is negated to
    /// true).
    Not(Box<Expr>),
    /// A constant (e.g. `IN` over ids of another object type only).
    Const(bool),
    /// `left op value` (value never null).
    Compare {
        /// Left-hand side.
        left: Operand,
        /// Operator.
        op: CompareOp,
        /// Right-hand side.
        value: Value,
    },
    /// `left = null` (`negated`: `left != null`).
    IsNull {
        /// Left-hand side.
        left: Operand,
        /// `!= null`.
        negated: bool,
    },
    /// `left IN (values)` / `NOT IN`; values are non-null (a null in the list becomes an
    /// [`Expr::IsNull`] alternative). Negated also matches null operands.
    In {
        /// Left-hand side.
        left: Operand,
        /// The values (at least one).
        values: Vec<Value>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `left LIKE pattern`, case-insensitive; the pieces are literal text and wildcards.
    Like {
        /// Left-hand side (a text field).
        left: Operand,
        /// The pattern.
        pattern: Vec<LikePiece>,
    },
    /// Multi-select picklists: `INCLUDES` holds when, for at least one entry of `any_of`, the
    /// stored value contains every item of that entry (`'a;b'` means a AND b). `EXCLUDES` is
    /// its negation (and holds for null values).
    Includes {
        /// Left-hand side (a multi-select picklist field).
        left: Operand,
        /// The value sets (each non-empty, items trimmed).
        any_of: Vec<Vec<String>>,
        /// `EXCLUDES`.
        excludes: bool,
    },
    /// `left IN (SELECT field FROM ...)` / `NOT IN` (anti-join; also matches null operands).
    SemiJoin {
        /// Left-hand side (an Id or reference field).
        left: Operand,
        /// `NOT IN`.
        negated: bool,
        /// The subquery.
        query: Box<SemiJoinQuery>,
    },
}

/// The subquery of a semi-join / anti-join. Null values of `field` never take part.
#[derive(Debug, Clone, PartialEq)]
pub struct SemiJoinQuery {
    /// The object queried.
    pub object: Arc<ObjectDef>,
    /// Include soft-deleted rows (same as the outer query).
    pub include_deleted: bool,
    /// The selected Id / reference field.
    pub field: FieldRef,
    /// Its `WHERE` condition.
    pub filter: Option<Expr>,
    /// Its `ORDER BY` (only meaningful together with `limit`).
    pub order_by: Vec<OrderTerm>,
    /// Its `LIMIT`.
    pub limit: Option<u32>,
}

/// One `ORDER BY` term with its defaults filled in (ascending, nulls first).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    /// The sort key.
    pub key: Operand,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS LAST` (default: nulls first, for both directions).
    pub nulls_last: bool,
}
