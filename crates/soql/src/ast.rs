//! Typed syntax tree of a SOQL query, with byte spans into the original text.
//!
//! The tree is purely syntactic: names keep the spelling the client used and are not checked
//! against any org metadata (a later resolver does that, using the spans for caret diagrams).
//! Optional clauses are `Option`s / empty `Vec`s; defaults (e.g. `ASC`, `NULLS FIRST`) are *not*
//! filled in, so the tree reflects what was written.

pub use crate::error::Span;

/// A name as written in the query (object, field segment, alias, function, scope, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The original spelling (case preserved).
    pub name: String,
    /// Where the name appears in the query.
    pub span: Span,
}

impl Ident {
    /// Case-insensitive comparison with `other` (SOQL names are case-insensitive).
    pub fn eq_ignore_case(&self, other: &str) -> bool {
        self.name.eq_ignore_ascii_case(other)
    }
}

/// A complete `SELECT` statement (top-level query, child subquery or semi-join subquery).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The items of the `SELECT` list, in order.
    pub select: Vec<SelectItem>,
    /// The `FROM` clause.
    pub from: FromClause,
    /// `USING SCOPE <scope>`, if present.
    pub using_scope: Option<Ident>,
    /// The `WHERE` condition, if present.
    pub where_clause: Option<Condition>,
    /// The `WITH ...` filter, if present.
    pub with: Option<WithClause>,
    /// The `GROUP BY` clause, if present.
    pub group_by: Option<GroupBy>,
    /// The `HAVING` condition, if present.
    pub having: Option<Condition>,
    /// `ORDER BY` items, in order (empty when there is no `ORDER BY`).
    pub order_by: Vec<OrderItem>,
    /// `LIMIT n`, if present.
    pub limit: Option<RowCount>,
    /// `OFFSET n`, if present.
    pub offset: Option<RowCount>,
    /// `FOR VIEW | FOR REFERENCE | FOR UPDATE`, if present.
    pub for_clause: Option<ForClause>,
    /// `UPDATE TRACKING | UPDATE VIEWSTAT`, if present.
    pub update: Option<UpdateClause>,
    /// From `SELECT` to the end of the last clause (parentheses of a subquery excluded).
    pub span: Span,
}

/// The `FROM objectName [[AS] alias]` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct FromClause {
    /// In a child subquery written `FROM a.Contacts`, the leading `a` (outer alias or object name).
    pub qualifier: Option<Ident>,
    /// The object (top level, semi-join) or child relationship name (child subquery).
    pub object: Ident,
    /// The alias, if one was given (`FROM Contact c` / `FROM Contact AS c`).
    pub alias: Option<Ident>,
    /// Span of the object reference (qualifier included) and alias.
    pub span: Span,
}

/// One element of a `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// A field or relationship path such as `Name` or `Account.Owner.Name`.
    Field(FieldPath),
    /// A function call (aggregate, date function, `toLabel`, ...) with an optional alias.
    Function {
        /// The call itself.
        call: FunctionCall,
        /// `SELECT COUNT(Id) cnt` → `cnt`.
        alias: Option<Ident>,
    },
    /// `FIELDS(ALL | STANDARD | CUSTOM)`.
    Fields(FieldsSelector),
    /// A parent-to-child relationship subquery `(SELECT ... FROM Contacts ...)`.
    SubQuery(Box<Query>),
    /// `TYPEOF What WHEN Account THEN ... ELSE ... END`.
    TypeOf(TypeOf),
}

impl SelectItem {
    /// The span covered by this item.
    pub fn span(&self) -> Span {
        match self {
            SelectItem::Field(p) => p.span,
            SelectItem::Function { call, alias } => match alias {
                Some(a) => call.span.to(a.span),
                None => call.span,
            },
            SelectItem::Fields(f) => f.span,
            SelectItem::SubQuery(q) => q.span,
            SelectItem::TypeOf(t) => t.span,
        }
    }
}

/// A dotted path of identifiers, e.g. `Account.Owner.Name` or `c.LastName`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    /// The segments, at least one, in source order.
    pub segments: Vec<Ident>,
    /// From the first to the last segment.
    pub span: Span,
}

impl FieldPath {
    /// The segments joined with `.` in their original spelling.
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(&s.name);
        }
        out
    }
}

/// Which set of fields `FIELDS(...)` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsKind {
    /// `FIELDS(ALL)`.
    All,
    /// `FIELDS(STANDARD)`.
    Standard,
    /// `FIELDS(CUSTOM)`.
    Custom,
}

/// A `FIELDS(...)` select item.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldsSelector {
    /// The requested field set.
    pub kind: FieldsKind,
    /// From `FIELDS` to the closing parenthesis.
    pub span: Span,
}

/// `TYPEOF field WHEN Type THEN fields ... [ELSE fields] END`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeOf {
    /// The polymorphic relationship (e.g. `What`, `Owner`).
    pub field: Ident,
    /// The `WHEN` branches, at least one.
    pub whens: Vec<TypeOfWhen>,
    /// The `ELSE` field list, if present.
    pub else_fields: Option<Vec<FieldPath>>,
    /// From `TYPEOF` to `END`.
    pub span: Span,
}

/// One `WHEN ObjectType THEN f1, f2` branch of a `TYPEOF`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeOfWhen {
    /// The object type tested.
    pub object: Ident,
    /// The fields selected for that type.
    pub fields: Vec<FieldPath>,
    /// From `WHEN` to the last field.
    pub span: Span,
}

/// The functions SOQL knows (names are case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    /// `COUNT()` or `COUNT(f)`.
    Count,
    /// `COUNT_DISTINCT(f)`.
    CountDistinct,
    /// `SUM(f)`.
    Sum,
    /// `AVG(f)`.
    Avg,
    /// `MIN(f)`.
    Min,
    /// `MAX(f)`.
    Max,
    /// `CALENDAR_MONTH(d)`.
    CalendarMonth,
    /// `CALENDAR_QUARTER(d)`.
    CalendarQuarter,
    /// `CALENDAR_YEAR(d)`.
    CalendarYear,
    /// `DAY_IN_MONTH(d)`.
    DayInMonth,
    /// `DAY_IN_WEEK(d)`.
    DayInWeek,
    /// `DAY_IN_YEAR(d)`.
    DayInYear,
    /// `DAY_ONLY(dt)`.
    DayOnly,
    /// `FISCAL_MONTH(d)`.
    FiscalMonth,
    /// `FISCAL_QUARTER(d)`.
    FiscalQuarter,
    /// `FISCAL_YEAR(d)`.
    FiscalYear,
    /// `HOUR_IN_DAY(dt)`.
    HourInDay,
    /// `WEEK_IN_MONTH(d)`.
    WeekInMonth,
    /// `WEEK_IN_YEAR(d)`.
    WeekInYear,
    /// `convertTimezone(dt)`.
    ConvertTimezone,
    /// `toLabel(f)`.
    ToLabel,
    /// `FORMAT(f)`.
    Format,
    /// `convertCurrency(f)`.
    ConvertCurrency,
    /// `GROUPING(f)`.
    Grouping,
}

impl FunctionKind {
    /// Every known function, for table-driven code.
    pub const ALL: [FunctionKind; 24] = [
        FunctionKind::Count,
        FunctionKind::CountDistinct,
        FunctionKind::Sum,
        FunctionKind::Avg,
        FunctionKind::Min,
        FunctionKind::Max,
        FunctionKind::CalendarMonth,
        FunctionKind::CalendarQuarter,
        FunctionKind::CalendarYear,
        FunctionKind::DayInMonth,
        FunctionKind::DayInWeek,
        FunctionKind::DayInYear,
        FunctionKind::DayOnly,
        FunctionKind::FiscalMonth,
        FunctionKind::FiscalQuarter,
        FunctionKind::FiscalYear,
        FunctionKind::HourInDay,
        FunctionKind::WeekInMonth,
        FunctionKind::WeekInYear,
        FunctionKind::ConvertTimezone,
        FunctionKind::ToLabel,
        FunctionKind::Format,
        FunctionKind::ConvertCurrency,
        FunctionKind::Grouping,
    ];

    /// The documented spelling of the function name.
    pub fn canonical_name(self) -> &'static str {
        match self {
            FunctionKind::Count => "COUNT",
            FunctionKind::CountDistinct => "COUNT_DISTINCT",
            FunctionKind::Sum => "SUM",
            FunctionKind::Avg => "AVG",
            FunctionKind::Min => "MIN",
            FunctionKind::Max => "MAX",
            FunctionKind::CalendarMonth => "CALENDAR_MONTH",
            FunctionKind::CalendarQuarter => "CALENDAR_QUARTER",
            FunctionKind::CalendarYear => "CALENDAR_YEAR",
            FunctionKind::DayInMonth => "DAY_IN_MONTH",
            FunctionKind::DayInWeek => "DAY_IN_WEEK",
            FunctionKind::DayInYear => "DAY_IN_YEAR",
            FunctionKind::DayOnly => "DAY_ONLY",
            FunctionKind::FiscalMonth => "FISCAL_MONTH",
            FunctionKind::FiscalQuarter => "FISCAL_QUARTER",
            FunctionKind::FiscalYear => "FISCAL_YEAR",
            FunctionKind::HourInDay => "HOUR_IN_DAY",
            FunctionKind::WeekInMonth => "WEEK_IN_MONTH",
            FunctionKind::WeekInYear => "WEEK_IN_YEAR",
            FunctionKind::ConvertTimezone => "convertTimezone",
            FunctionKind::ToLabel => "toLabel",
            FunctionKind::Format => "FORMAT",
            FunctionKind::ConvertCurrency => "convertCurrency",
            FunctionKind::Grouping => "GROUPING",
        }
    }

    /// Looks a function up by name, case-insensitively.
    pub fn from_name(name: &str) -> Option<FunctionKind> {
        FunctionKind::ALL
            .iter()
            .copied()
            .find(|k| k.canonical_name().eq_ignore_ascii_case(name))
    }

    /// True for `COUNT`, `COUNT_DISTINCT`, `SUM`, `AVG`, `MIN`, `MAX`.
    pub fn is_aggregate(self) -> bool {
        matches!(
            self,
            FunctionKind::Count
                | FunctionKind::CountDistinct
                | FunctionKind::Sum
                | FunctionKind::Avg
                | FunctionKind::Min
                | FunctionKind::Max
        )
    }

    /// True for the date functions (`CALENDAR_*`, `DAY_*`, `FISCAL_*`, `HOUR_IN_DAY`, `WEEK_*`).
    pub fn is_date_function(self) -> bool {
        matches!(
            self,
            FunctionKind::CalendarMonth
                | FunctionKind::CalendarQuarter
                | FunctionKind::CalendarYear
                | FunctionKind::DayInMonth
                | FunctionKind::DayInWeek
                | FunctionKind::DayInYear
                | FunctionKind::DayOnly
                | FunctionKind::FiscalMonth
                | FunctionKind::FiscalQuarter
                | FunctionKind::FiscalYear
                | FunctionKind::HourInDay
                | FunctionKind::WeekInMonth
                | FunctionKind::WeekInYear
        )
    }

    /// The accepted number of arguments, as an inclusive range.
    pub fn arity(self) -> (usize, usize) {
        match self {
            FunctionKind::Count => (0, 1),
            _ => (1, 1),
        }
    }
}

/// A function call such as `COUNT(Id)` or `HOUR_IN_DAY(convertTimezone(CreatedDate))`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    /// Which function is called.
    pub kind: FunctionKind,
    /// The name as written (spelling and span).
    pub name: Ident,
    /// The arguments (none only for `COUNT()`).
    pub args: Vec<FieldExpr>,
    /// From the name to the closing parenthesis.
    pub span: Span,
}

/// Something that yields a value per row: a field path or a function call.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    /// A field path.
    Field(FieldPath),
    /// A function call.
    Function(FunctionCall),
}

impl FieldExpr {
    /// The span of the expression.
    pub fn span(&self) -> Span {
        match self {
            FieldExpr::Field(p) => p.span,
            FieldExpr::Function(f) => f.span,
        }
    }
}

/// A `WHERE` / `HAVING` condition tree. `AND` and `OR` are never mixed at one level.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `a AND b AND ...` (two or more operands).
    And {
        /// The operands, in order.
        operands: Vec<Condition>,
        /// From the first to the last operand, including their parentheses.
        span: Span,
    },
    /// `a OR b OR ...` (two or more operands).
    Or {
        /// The operands, in order.
        operands: Vec<Condition>,
        /// From the first to the last operand, including their parentheses.
        span: Span,
    },
    /// `NOT a`.
    Not {
        /// The negated condition.
        operand: Box<Condition>,
        /// From `NOT` to the end of the operand (including a closing parenthesis).
        span: Span,
    },
    /// `expr op value` with a comparison operator other than `LIKE`.
    Compare(Comparison),
    /// `expr LIKE 'pattern'`.
    Like(LikeCondition),
    /// `expr [NOT] IN (v1, v2, ...)`.
    InList(InList),
    /// `expr [NOT] IN (SELECT ...)` — semi-join / anti-join.
    SemiJoin(SemiJoin),
    /// `expr INCLUDES (...)` / `expr EXCLUDES (...)` on multi-select picklists.
    Includes(IncludesCondition),
}

impl Condition {
    /// The span of the condition.
    pub fn span(&self) -> Span {
        match self {
            Condition::And { span, .. }
            | Condition::Or { span, .. }
            | Condition::Not { span, .. } => *span,
            Condition::Compare(c) => c.span,
            Condition::Like(c) => c.span,
            Condition::InList(c) => c.span,
            Condition::SemiJoin(c) => c.span,
            Condition::Includes(c) => c.span,
        }
    }
}

/// A comparison operator (`LIKE` has its own condition kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`.
    Eq,
    /// `!=` or `<>`.
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

/// `expr op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Left-hand side.
    pub left: FieldExpr,
    /// The operator.
    pub op: CompareOp,
    /// Span of the operator token.
    pub op_span: Span,
    /// Right-hand side literal.
    pub value: Value,
    /// Whole condition.
    pub span: Span,
}

/// `expr LIKE 'pattern'`.
#[derive(Debug, Clone, PartialEq)]
pub struct LikeCondition {
    /// Left-hand side.
    pub left: FieldExpr,
    /// The decoded pattern.
    pub pattern: LikePattern,
    /// Span of the pattern string literal.
    pub pattern_span: Span,
    /// Whole condition.
    pub span: Span,
}

/// A decoded `LIKE` pattern: literal text runs and wildcards.
///
/// String escapes are already decoded; an escaped `\%` or `\_` becomes part of a
/// [`LikePiece::Literal`], while a bare `%` / `_` becomes [`LikePiece::AnyChars`] /
/// [`LikePiece::AnyChar`]. Adjacent literal text is merged into one piece.
#[derive(Debug, Clone, PartialEq)]
pub struct LikePattern {
    /// The pieces, in order.
    pub pieces: Vec<LikePiece>,
}

/// One element of a [`LikePattern`].
#[derive(Debug, Clone, PartialEq)]
pub enum LikePiece {
    /// Text that must match literally (case-insensitively at evaluation time).
    Literal(String),
    /// `%`: any run of characters, possibly empty.
    AnyChars,
    /// `_`: exactly one character.
    AnyChar,
}

/// `expr [NOT] IN (v1, ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct InList {
    /// Left-hand side.
    pub left: FieldExpr,
    /// True for `NOT IN`.
    pub negated: bool,
    /// The values, at least one.
    pub values: Vec<Value>,
    /// Whole condition.
    pub span: Span,
}

/// `expr [NOT] IN (SELECT field FROM ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SemiJoin {
    /// Left-hand side.
    pub left: FieldExpr,
    /// True for `NOT IN` (anti-join).
    pub negated: bool,
    /// The subquery; its select list is exactly one field path.
    pub query: Box<Query>,
    /// Whole condition.
    pub span: Span,
}

/// `expr INCLUDES ('a;b', 'c')` / `expr EXCLUDES (...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct IncludesCondition {
    /// Left-hand side.
    pub left: FieldExpr,
    /// True for `EXCLUDES`.
    pub excludes: bool,
    /// The values (string literals; `;` inside one string means "all of these").
    pub values: Vec<Value>,
    /// Whole condition.
    pub span: Span,
}

/// A literal value with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What kind of literal it is.
    pub kind: ValueKind,
    /// Where it appears.
    pub span: Span,
}

/// The literal kinds SOQL accepts on the right-hand side of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// `'text'`, escapes decoded.
    String(String),
    /// A signed integer that fits in `i64`.
    Integer(i64),
    /// A decimal number, or an integer too large for `i64`, as written (leading `+` dropped).
    Decimal(String),
    /// `TRUE` / `FALSE`.
    Boolean(bool),
    /// `NULL`.
    Null,
    /// `YYYY-MM-DD`.
    Date(Date),
    /// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`.
    DateTime(DateTime),
    /// A relative date literal such as `TODAY` or `LAST_N_DAYS:30`.
    DateLiteral(DateLiteral),
    /// A currency-prefixed number such as `USD5000` or `EUR12.50`.
    Currency {
        /// ISO currency code as written (three letters).
        code: String,
        /// The amount as written.
        amount: String,
    },
}

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 2024.
    pub year: i32,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31 (valid for the month).
    pub day: u32,
}

impl Date {
    /// `(year, month, day)`.
    pub fn to_tuple(self) -> (i32, u32, u32) {
        (self.year, self.month, self.day)
    }
}

/// A date-time with an explicit UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The calendar date as written (local to `offset_minutes`).
    pub date: Date,
    /// Hour 0-23.
    pub hour: u32,
    /// Minute 0-59.
    pub minute: u32,
    /// Second 0-59.
    pub second: u32,
    /// Milliseconds 0-999 (digits past the third are dropped).
    pub millis: u32,
    /// Offset from UTC in minutes (`Z` → 0, `-08:00` → -480).
    pub offset_minutes: i32,
}

impl DateTime {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub fn to_unix_millis(&self) -> i64 {
        let days = crate::datelit::days_from_civil(self.date.year, self.date.month, self.date.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60;
        secs * 1000 + i64::from(self.millis)
    }
}

/// A relative date literal. Parameterised variants carry their `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateLiteral {
    /// `YESTERDAY`.
    Yesterday,
    /// `TODAY`.
    Today,
    /// `TOMORROW`.
    Tomorrow,
    /// `LAST_WEEK`.
    LastWeek,
    /// `THIS_WEEK`.
    ThisWeek,
    /// `NEXT_WEEK`.
    NextWeek,
    /// `LAST_MONTH`.
    LastMonth,
    /// `THIS_MONTH`.
    ThisMonth,
    /// `NEXT_MONTH`.
    NextMonth,
    /// `LAST_90_DAYS`.
    Last90Days,
    /// `NEXT_90_DAYS`.
    Next90Days,
    /// `THIS_QUARTER`.
    ThisQuarter,
    /// `LAST_QUARTER`.
    LastQuarter,
    /// `NEXT_QUARTER`.
    NextQuarter,
    /// `THIS_YEAR`.
    ThisYear,
    /// `LAST_YEAR`.
    LastYear,
    /// `NEXT_YEAR`.
    NextYear,
    /// `THIS_FISCAL_QUARTER`.
    ThisFiscalQuarter,
    /// `LAST_FISCAL_QUARTER`.
    LastFiscalQuarter,
    /// `NEXT_FISCAL_QUARTER`.
    NextFiscalQuarter,
    /// `THIS_FISCAL_YEAR`.
    ThisFiscalYear,
    /// `LAST_FISCAL_YEAR`.
    LastFiscalYear,
    /// `NEXT_FISCAL_YEAR`.
    NextFiscalYear,
    /// `LAST_N_DAYS:n`.
    LastNDays(u32),
    /// `NEXT_N_DAYS:n`.
    NextNDays(u32),
    /// `N_DAYS_AGO:n`.
    NDaysAgo(u32),
    /// `LAST_N_WEEKS:n`.
    LastNWeeks(u32),
    /// `NEXT_N_WEEKS:n`.
    NextNWeeks(u32),
    /// `N_WEEKS_AGO:n`.
    NWeeksAgo(u32),
    /// `LAST_N_MONTHS:n`.
    LastNMonths(u32),
    /// `NEXT_N_MONTHS:n`.
    NextNMonths(u32),
    /// `N_MONTHS_AGO:n`.
    NMonthsAgo(u32),
    /// `LAST_N_QUARTERS:n`.
    LastNQuarters(u32),
    /// `NEXT_N_QUARTERS:n`.
    NextNQuarters(u32),
    /// `N_QUARTERS_AGO:n`.
    NQuartersAgo(u32),
    /// `LAST_N_YEARS:n`.
    LastNYears(u32),
    /// `NEXT_N_YEARS:n`.
    NextNYears(u32),
    /// `N_YEARS_AGO:n`.
    NYearsAgo(u32),
    /// `LAST_N_FISCAL_QUARTERS:n`.
    LastNFiscalQuarters(u32),
    /// `NEXT_N_FISCAL_QUARTERS:n`.
    NextNFiscalQuarters(u32),
    /// `N_FISCAL_QUARTERS_AGO:n`.
    NFiscalQuartersAgo(u32),
    /// `LAST_N_FISCAL_YEARS:n`.
    LastNFiscalYears(u32),
    /// `NEXT_N_FISCAL_YEARS:n`.
    NextNFiscalYears(u32),
    /// `N_FISCAL_YEARS_AGO:n`.
    NFiscalYearsAgo(u32),
}

/// Fixed date literals and their keywords.
const FIXED_DATE_LITERALS: [(&str, DateLiteral); 23] = [
    ("YESTERDAY", DateLiteral::Yesterday),
    ("TODAY", DateLiteral::Today),
    ("TOMORROW", DateLiteral::Tomorrow),
    ("LAST_WEEK", DateLiteral::LastWeek),
    ("THIS_WEEK", DateLiteral::ThisWeek),
    ("NEXT_WEEK", DateLiteral::NextWeek),
    ("LAST_MONTH", DateLiteral::LastMonth),
    ("THIS_MONTH", DateLiteral::ThisMonth),
    ("NEXT_MONTH", DateLiteral::NextMonth),
    ("LAST_90_DAYS", DateLiteral::Last90Days),
    ("NEXT_90_DAYS", DateLiteral::Next90Days),
    ("THIS_QUARTER", DateLiteral::ThisQuarter),
    ("LAST_QUARTER", DateLiteral::LastQuarter),
    ("NEXT_QUARTER", DateLiteral::NextQuarter),
    ("THIS_YEAR", DateLiteral::ThisYear),
    ("LAST_YEAR", DateLiteral::LastYear),
    ("NEXT_YEAR", DateLiteral::NextYear),
    ("THIS_FISCAL_QUARTER", DateLiteral::ThisFiscalQuarter),
    ("LAST_FISCAL_QUARTER", DateLiteral::LastFiscalQuarter),
    ("NEXT_FISCAL_QUARTER", DateLiteral::NextFiscalQuarter),
    ("THIS_FISCAL_YEAR", DateLiteral::ThisFiscalYear),
    ("LAST_FISCAL_YEAR", DateLiteral::LastFiscalYear),
    ("NEXT_FISCAL_YEAR", DateLiteral::NextFiscalYear),
];

/// Parameterised date literal keywords and their constructors.
type NConstructor = fn(u32) -> DateLiteral;
const PARAM_DATE_LITERALS: [(&str, NConstructor); 21] = [
    ("LAST_N_DAYS", DateLiteral::LastNDays),
    ("NEXT_N_DAYS", DateLiteral::NextNDays),
    ("N_DAYS_AGO", DateLiteral::NDaysAgo),
    ("LAST_N_WEEKS", DateLiteral::LastNWeeks),
    ("NEXT_N_WEEKS", DateLiteral::NextNWeeks),
    ("N_WEEKS_AGO", DateLiteral::NWeeksAgo),
    ("LAST_N_MONTHS", DateLiteral::LastNMonths),
    ("NEXT_N_MONTHS", DateLiteral::NextNMonths),
    ("N_MONTHS_AGO", DateLiteral::NMonthsAgo),
    ("LAST_N_QUARTERS", DateLiteral::LastNQuarters),
    ("NEXT_N_QUARTERS", DateLiteral::NextNQuarters),
    ("N_QUARTERS_AGO", DateLiteral::NQuartersAgo),
    ("LAST_N_YEARS", DateLiteral::LastNYears),
    ("NEXT_N_YEARS", DateLiteral::NextNYears),
    ("N_YEARS_AGO", DateLiteral::NYearsAgo),
    ("LAST_N_FISCAL_QUARTERS", DateLiteral::LastNFiscalQuarters),
    ("NEXT_N_FISCAL_QUARTERS", DateLiteral::NextNFiscalQuarters),
    ("N_FISCAL_QUARTERS_AGO", DateLiteral::NFiscalQuartersAgo),
    ("LAST_N_FISCAL_YEARS", DateLiteral::LastNFiscalYears),
    ("NEXT_N_FISCAL_YEARS", DateLiteral::NextNFiscalYears),
    ("N_FISCAL_YEARS_AGO", DateLiteral::NFiscalYearsAgo),
];

impl DateLiteral {
    /// Looks up a fixed (non-parameterised) date literal keyword, case-insensitively.
    pub fn fixed_from_name(name: &str) -> Option<DateLiteral> {
        FIXED_DATE_LITERALS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Looks up a parameterised keyword (e.g. `LAST_N_DAYS`) and applies `n`.
    pub fn with_n_from_name(name: &str, n: u32) -> Option<DateLiteral> {
        PARAM_DATE_LITERALS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, f)| f(n))
    }

    /// True if `name` is a parameterised keyword that needs `:n`.
    pub fn is_parameterised_name(name: &str) -> bool {
        PARAM_DATE_LITERALS
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The keyword (upper case) and, for parameterised literals, `n`.
    pub fn keyword(&self) -> (&'static str, Option<u32>) {
        for (k, v) in FIXED_DATE_LITERALS.iter() {
            if v == self {
                return (k, None);
            }
        }
        for (k, f) in PARAM_DATE_LITERALS.iter() {
            if let Some(n) = self.n() {
                if f(n) == *self {
                    return (k, Some(n));
                }
            }
        }
        ("", None)
    }

    /// The `n` of a parameterised literal.
    pub fn n(&self) -> Option<u32> {
        use DateLiteral::*;
        match *self {
            LastNDays(n)
            | NextNDays(n)
            | NDaysAgo(n)
            | LastNWeeks(n)
            | NextNWeeks(n)
            | NWeeksAgo(n)
            | LastNMonths(n)
            | NextNMonths(n)
            | NMonthsAgo(n)
            | LastNQuarters(n)
            | NextNQuarters(n)
            | NQuartersAgo(n)
            | LastNYears(n)
            | NextNYears(n)
            | NYearsAgo(n)
            | LastNFiscalQuarters(n)
            | NextNFiscalQuarters(n)
            | NFiscalQuartersAgo(n)
            | LastNFiscalYears(n)
            | NextNFiscalYears(n)
            | NFiscalYearsAgo(n) => Some(n),
            _ => None,
        }
    }
}

/// What follows `WITH`.
#[derive(Debug, Clone, PartialEq)]
pub enum WithKind {
    /// `WITH SECURITY_ENFORCED`.
    SecurityEnforced,
    /// `WITH USER_MODE`.
    UserMode,
    /// `WITH SYSTEM_MODE`.
    SystemMode,
    /// `WITH DATA CATEGORY group op category [AND ...]`.
    DataCategory(Vec<DataCategoryFilter>),
}

/// The `WITH` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct WithClause {
    /// Which filter.
    pub kind: WithKind,
    /// From `WITH` to the end of the clause.
    pub span: Span,
}

/// Operator of a data category filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCategoryOp {
    /// `AT`.
    At,
    /// `ABOVE`.
    Above,
    /// `BELOW`.
    Below,
    /// `ABOVE_OR_BELOW`.
    AboveOrBelow,
}

/// `groupName op category` or `groupName op (c1, c2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataCategoryFilter {
    /// The data category group (e.g. `Geography__c`).
    pub group: Ident,
    /// The operator.
    pub op: DataCategoryOp,
    /// The categories, at least one.
    pub categories: Vec<Ident>,
    /// Whole filter.
    pub span: Span,
}

/// Kind of `GROUP BY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupByKind {
    /// `GROUP BY a, b`.
    Plain,
    /// `GROUP BY ROLLUP(a, b)`.
    Rollup,
    /// `GROUP BY CUBE(a, b)`.
    Cube,
}

/// The `GROUP BY` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupBy {
    /// Plain, ROLLUP or CUBE.
    pub kind: GroupByKind,
    /// The grouping expressions, at least one.
    pub fields: Vec<FieldExpr>,
    /// From `GROUP` to the end of the clause.
    pub span: Span,
}

/// `ASC` / `DESC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    /// `ASC`.
    Asc,
    /// `DESC`.
    Desc,
}

/// `NULLS FIRST` / `NULLS LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    /// `NULLS FIRST`.
    First,
    /// `NULLS LAST`.
    Last,
}

/// One `ORDER BY` item; unspecified direction / null order stay `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// The sort key.
    pub expr: FieldExpr,
    /// `ASC` / `DESC` if written.
    pub direction: Option<SortDirection>,
    /// `NULLS FIRST` / `NULLS LAST` if written.
    pub nulls: Option<NullsOrder>,
    /// Whole item.
    pub span: Span,
}

/// A `LIMIT` or `OFFSET` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCount {
    /// The value (0 ..= 2,147,483,647).
    pub value: u32,
    /// Span of the number.
    pub span: Span,
}

/// `FOR VIEW | FOR REFERENCE | FOR UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForClause {
    /// `FOR VIEW`.
    View,
    /// `FOR REFERENCE`.
    Reference,
    /// `FOR UPDATE`.
    Update,
}

/// `UPDATE TRACKING | UPDATE VIEWSTAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateClause {
    /// `UPDATE TRACKING`.
    Tracking,
    /// `UPDATE VIEWSTAT`.
    Viewstat,
}
