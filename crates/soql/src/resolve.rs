//! Resolution: checks a parsed query against the org's metadata and the caller's access, and
//! produces a [`Plan`] with typed values.
//!
//! Names are matched case-insensitively and come out with their canonical casing. Objects and
//! fields the caller may not read behave exactly like ones that do not exist. Errors carry the
//! Salesforce error code and, when they concern a token of the query, the caret diagram
//! (pointing at the start of the offending field path, as Salesforce does).

use std::collections::HashSet;
use std::sync::Arc;

use model::{ErrorCode, FieldDef, FieldType, ObjectDef, ObjectKind, Schema};

use crate::ast::{self, FieldExpr, FunctionCall, FunctionKind, SelectItem, Span};
use crate::plan::{
    AggFunc, Aggregate, ChildLink, Column, DateFunction, FieldRef, Hop, Operand, OrderTerm, Plan,
    PlanKind, Scalar,
};

mod filter;

/// Most parent relationships in one field path (`Contact.Account.Owner.Manager.Profile.Name`).
pub const MAX_PARENT_HOPS: usize = 5;
/// Most parent-to-child subqueries in one query.
pub const MAX_CHILD_SUBQUERIES: usize = 20;
/// Largest `OFFSET`.
pub const MAX_OFFSET: u32 = 2000;

/// What the caller may read. An unreadable object or field behaves as if it did not exist.
pub trait Access {
    /// The caller may query records of `o`.
    fn object_readable(&self, o: &ObjectDef) -> bool;
    /// The caller may read field `f` of `o` (field-level security).
    fn field_readable(&self, o: &ObjectDef, f: &FieldDef) -> bool;
}

/// An [`Access`] that can read everything (system context, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct FullAccess;

impl Access for FullAccess {
    fn object_readable(&self, _o: &ObjectDef) -> bool {
        true
    }
    fn field_readable(&self, _o: &ObjectDef, _f: &FieldDef) -> bool {
        true
    }
}

/// Settings of one resolution.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Today in the user's time zone (relative date literals are computed from it).
    pub today: (i32, u32, u32),
    /// Now, in milliseconds since the epoch (UTC).
    pub now_ms: i64,
    /// `queryAll`: include soft-deleted rows.
    pub include_deleted: bool,
}

/// A query that cannot run: a Salesforce error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    /// `MALFORMED_QUERY`, `INVALID_FIELD`, `INVALID_TYPE`, ...
    pub code: ErrorCode,
    /// The message; starts with the caret diagram when the error points at a token.
    pub message: String,
}

impl QueryError {
    /// An error without a caret diagram.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> QueryError {
        QueryError {
            code,
            message: message.into(),
        }
    }
}

impl From<QueryError> for model::ApiError {
    fn from(e: QueryError) -> model::ApiError {
        model::ApiError::new(e.code, e.message)
    }
}

type Result<T> = std::result::Result<T, QueryError>;

/// Resolves a parsed query (`text` is the query it was parsed from, for caret diagrams).
pub fn resolve(
    query: &ast::Query,
    text: &str,
    schema: &Schema,
    access: &dyn Access,
    opts: &ResolveOptions,
) -> Result<Plan> {
    let r = Resolver {
        text,
        schema,
        access,
        opts,
    };
    r.top(query)
}

/// Parses and resolves `text`. Syntax errors are `MALFORMED_QUERY` with the parser's caret
/// diagram.
pub fn compile(
    text: &str,
    schema: &Schema,
    access: &dyn Access,
    opts: &ResolveOptions,
) -> Result<Plan> {
    let q = crate::parse(text).map_err(|e| QueryError {
        code: ErrorCode::MalformedQuery,
        message: e.salesforce_message(text),
    })?;
    resolve(&q, text, schema, access, opts)
}

const WSDL_HINT: &str =
    "Please reference your WSDL or the describe call for the appropriate names.";

/// The object a query (or subquery) ranges over, and the names that may prefix its fields.
#[derive(Clone)]
struct Scope {
    object: Arc<ObjectDef>,
    /// `FROM Contact c` → `c`.
    alias: Option<String>,
    /// Other accepted qualifiers: the object name, and for a child subquery the relationship
    /// name (`Contacts.LastName`).
    names: Vec<String>,
}

impl Scope {
    fn new(object: Arc<ObjectDef>, from: &ast::FromClause) -> Scope {
        let mut names = vec![object.name.clone()];
        if !from.object.eq_ignore_case(&object.name) {
            names.push(from.object.name.clone());
        }
        Scope {
            alias: from.alias.as_ref().map(|a| a.name.clone()),
            object,
            names,
        }
    }
}

/// Where a query appears.
#[derive(Clone, Copy)]
enum Nesting<'a> {
    Top,
    /// A child subquery of the top-level query (its scope and `LIMIT`).
    Child {
        parent: &'a Scope,
        parent_limit: Option<u32>,
    },
}

pub(crate) struct Resolver<'a> {
    text: &'a str,
    schema: &'a Schema,
    access: &'a dyn Access,
    opts: &'a ResolveOptions,
}

/// Parts of the `SELECT` list of a records query, built in order.
#[derive(Default)]
struct Columns {
    columns: Vec<Column>,
    /// Lower-cased dotted keys already selected.
    seen: HashSet<String>,
    children: usize,
}

impl Columns {
    /// Adds a field column, creating / reusing parent columns along its path.
    fn add_field(
        &mut self,
        root: &ObjectDef,
        f: &FieldRef,
        key: String,
        to_label: bool,
    ) -> Result<()> {
        let mut dotted = String::new();
        let mut at: &ObjectDef = root;
        for hop in &f.path {
            let rf = &at.fields[hop.field];
            dotted.push_str(rf.relationship_name.as_deref().unwrap_or(&rf.name));
            dotted.push('.');
            at = &hop.object;
        }
        dotted.push_str(&key);
        if !self.seen.insert(dotted.to_ascii_lowercase()) {
            return Err(QueryError::new(
                ErrorCode::InvalidField,
                format!("duplicate field selected: {dotted}"),
            ));
        }
        let mut level = &mut self.columns;
        let mut at: &ObjectDef = root;
        for hop in &f.path {
            let pos = level
                .iter()
                .position(|c| matches!(c, Column::Parent { field, .. } if *field == hop.field));
            let pos = match pos {
                Some(p) => p,
                None => {
                    let rf = &at.fields[hop.field];
                    level.push(Column::Parent {
                        key: rf
                            .relationship_name
                            .clone()
                            .unwrap_or_else(|| rf.name.clone()),
                        field: hop.field,
                        object: hop.object.clone(),
                        columns: Vec::new(),
                    });
                    level.len() - 1
                }
            };
            level = match &mut level[pos] {
                Column::Parent { columns, .. } => columns,
                _ => unreachable!("position found a parent column"),
            };
            at = &hop.object;
        }
        level.push(Column::Field {
            key,
            field: f.field,
            to_label,
        });
        Ok(())
    }
}

impl<'a> Resolver<'a> {
    // ------------------------------------------------------------------ errors

    fn caret(&self, code: ErrorCode, span: Span, detail: &str) -> QueryError {
        QueryError {
            code,
            message: crate::caret_message(self.text, span, detail),
        }
    }

    fn malformed(&self, span: Span, detail: &str) -> QueryError {
        self.caret(ErrorCode::MalformedQuery, span, detail)
    }

    fn unknown_object(&self, name: &ast::Ident) -> QueryError {
        self.caret(
            ErrorCode::InvalidType,
            name.span,
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. {WSDL_HINT}",
                name.name
            ),
        )
    }

    fn no_such_column(&self, obj: &ObjectDef, name: &str, span: Span) -> QueryError {
        self.caret(
            ErrorCode::InvalidField,
            span,
            &format!(
                "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. {WSDL_HINT}",
                obj.name
            ),
        )
    }

    fn bad_relationship(&self, name: &str, span: Span) -> QueryError {
        self.caret(
            ErrorCode::InvalidField,
            span,
            &format!(
                "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. {WSDL_HINT}"
            ),
        )
    }

    fn bad_child_relationship(&self, name: &str, span: Span) -> QueryError {
        self.caret(
            ErrorCode::InvalidType,
            span,
            &format!(
                "Didn't understand relationship '{name}' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. {WSDL_HINT}"
            ),
        )
    }

    // ------------------------------------------------------------------ metadata lookups

    /// A queryable object the caller may read.
    fn object(&self, name: &ast::Ident) -> Result<Arc<ObjectDef>> {
        match self.schema.object(&name.name) {
            Some(o) if self.object_visible(o) => Ok(o.clone()),
            _ => Err(self.unknown_object(name)),
        }
    }

    fn object_visible(&self, o: &ObjectDef) -> bool {
        o.kind != ObjectKind::PlatformEvent && o.caps.queryable && self.access.object_readable(o)
    }

    /// A readable field of `o` by name.
    fn field_index(&self, o: &ObjectDef, name: &str) -> Option<usize> {
        let i = o.field_index(name)?;
        self.access.field_readable(o, &o.fields[i]).then_some(i)
    }

    /// The reference field named by relationship `rel` and its (readable) target object.
    fn relationship(&self, o: &ObjectDef, rel: &str) -> Option<(usize, Arc<ObjectDef>)> {
        let f = o.relationship(rel)?;
        let i = o.field_index(&f.name)?;
        if !self.access.field_readable(o, f) {
            return None;
        }
        let target = self.schema.object(f.reference_to.as_deref()?)?;
        self.object_visible(target).then(|| (i, target.clone()))
    }

    /// Resolves a dotted field path in `scope`.
    fn path(&self, scope: &Scope, path: &ast::FieldPath) -> Result<FieldRef> {
        let segs = &path.segments;
        let mut start = 0;
        if segs.len() > 1 {
            let first = &segs[0];
            let is_alias = scope
                .alias
                .as_deref()
                .is_some_and(|a| first.eq_ignore_case(a));
            let is_name = scope.names.iter().any(|n| first.eq_ignore_case(n));
            if is_alias || (is_name && self.relationship(&scope.object, &first.name).is_none()) {
                start = 1;
            }
        }
        let segs = &segs[start..];
        let (last, hops) = segs.split_last().expect("a field path has segments");
        if hops.len() > MAX_PARENT_HOPS {
            return Err(self.malformed(
                path.span,
                &format!(
                    "A field path can follow at most {MAX_PARENT_HOPS} relationships: {}",
                    path.dotted()
                ),
            ));
        }
        let mut obj = scope.object.clone();
        let mut out = Vec::with_capacity(hops.len());
        for seg in hops {
            let (field, target) = self
                .relationship(&obj, &seg.name)
                .ok_or_else(|| self.bad_relationship(&seg.name, path.span))?;
            out.push(Hop {
                field,
                object: target.clone(),
            });
            obj = target;
        }
        let field = self
            .field_index(&obj, &last.name)
            .ok_or_else(|| self.no_such_column(&obj, &last.name, path.span))?;
        Ok(FieldRef {
            path: out,
            object: obj,
            field,
        })
    }

    // ------------------------------------------------------------------ queries

    fn top(&self, q: &ast::Query) -> Result<Plan> {
        let object = self.object(&q.from.object)?;
        let scope = Scope::new(object, &q.from);
        self.query(q, &scope, Nesting::Top)
    }

    /// Clauses every (sub)query shares that need no metadata.
    fn check_clauses(&self, q: &ast::Query) -> Result<()> {
        if let Some(scope) = &q.using_scope {
            if !scope.eq_ignore_case("everything") {
                return Err(self.malformed(
                    scope.span,
                    &format!(
                        "USING SCOPE {} is not supported (only USING SCOPE Everything)",
                        scope.name
                    ),
                ));
            }
        }
        if let Some(w) = &q.with {
            if let ast::WithKind::DataCategory(_) = w.kind {
                return Err(self.malformed(
                    w.span,
                    "WITH DATA CATEGORY is not supported: this org has no data categories",
                ));
            }
        }
        if let Some(off) = q.offset {
            if off.value > MAX_OFFSET {
                return Err(QueryError::new(
                    ErrorCode::NumberOutsideValidRange,
                    format!("Maximum SOQL offset allowed is {MAX_OFFSET}"),
                ));
            }
        }
        Ok(())
    }

    fn query(&self, q: &ast::Query, scope: &Scope, nesting: Nesting<'_>) -> Result<Plan> {
        self.check_clauses(q)?;
        let count = matches!(
            q.select.as_slice(),
            [SelectItem::Function { call, .. }] if call.kind == FunctionKind::Count && call.args.is_empty()
        );
        let aggregate = !count
            && (q.group_by.is_some()
                || q.select.iter().any(|i| {
                    matches!(i, SelectItem::Function { call, .. }
                        if call.kind.is_aggregate() || call.kind.is_date_function())
                }));
        let kind = if count {
            PlanKind::Count
        } else if aggregate {
            PlanKind::Aggregate
        } else {
            PlanKind::Records
        };
        if let Nesting::Child { .. } = nesting {
            if kind != PlanKind::Records {
                let span = q.select.first().map(SelectItem::span).unwrap_or(q.span);
                return Err(self.malformed(
                    span,
                    "Aggregate functions and GROUP BY are not supported in relationship subqueries",
                ));
            }
            if q.offset.is_some() {
                if let Nesting::Child { parent_limit, .. } = nesting {
                    if parent_limit != Some(1) {
                        let span = q.offset.map(|o| o.span).unwrap_or(q.span);
                        return Err(self.malformed(
                            span,
                            "OFFSET is only allowed in a relationship subquery when the outer query has LIMIT 1",
                        ));
                    }
                }
            }
        }

        // the grouping is needed to check the select list of an aggregate query
        let group_by = match &q.group_by {
            Some(g) => self.group_by(scope, g)?,
            None => Vec::new(),
        };
        let columns = match kind {
            PlanKind::Count => Vec::new(),
            PlanKind::Records => self.record_columns(q, scope)?,
            PlanKind::Aggregate => self.aggregate_columns(q, scope, &group_by)?,
        };
        let filter = match &q.where_clause {
            Some(c) => Some(self.condition(scope, c, filter::Clause::Where)?),
            None => None,
        };
        let having = match &q.having {
            Some(c) => Some(self.condition(scope, c, filter::Clause::Having(&group_by))?),
            None => None,
        };
        let order_by = self.order_by(scope, &q.order_by, kind, &group_by)?;
        let link = match nesting {
            Nesting::Top => None,
            Nesting::Child { parent, .. } => Some(self.child_link(q, scope, parent)?),
        };
        Ok(Plan {
            kind,
            object: scope.object.clone(),
            include_deleted: self.opts.include_deleted,
            columns,
            filter,
            group_by,
            having,
            order_by,
            limit: q.limit.map(|l| l.value),
            offset: q.offset.map(|o| o.value),
            link,
        })
    }

    /// The `SELECT` list of a records query.
    fn record_columns(&self, q: &ast::Query, scope: &Scope) -> Result<Vec<Column>> {
        let mut cols = Columns::default();
        for item in &q.select {
            match item {
                SelectItem::Field(p) => {
                    let f = self.path(scope, p)?;
                    let key = f.def().name.clone();
                    cols.add_field(&scope.object, &f, key, false)?;
                }
                SelectItem::Function { call, alias } => {
                    let to_label = match call.kind {
                        FunctionKind::ToLabel => true,
                        FunctionKind::Format | FunctionKind::ConvertCurrency => false,
                        FunctionKind::Count => {
                            return Err(self.malformed(
                                call.span,
                                "COUNT() must be the only element in the SELECT list",
                            ))
                        }
                        _ => {
                            return Err(self.malformed(
                                call.span,
                                &format!(
                                    "{}() cannot be used here",
                                    call.kind.canonical_name()
                                ),
                            ))
                        }
                    };
                    let p = self.field_arg(call)?;
                    let f = self.path(scope, p)?;
                    if call.kind == FunctionKind::ConvertCurrency
                        && f.def().ty != FieldType::Currency
                    {
                        return Err(self.malformed(
                            p.span,
                            &format!(
                                "convertCurrency() can only be used on currency fields, not on {}",
                                f.def().name
                            ),
                        ));
                    }
                    let key = alias
                        .as_ref()
                        .map(|a| a.name.clone())
                        .unwrap_or_else(|| f.def().name.clone());
                    cols.add_field(&scope.object, &f, key, to_label)?;
                }
                SelectItem::Fields(sel) => {
                    let obj = &scope.object;
                    for (i, f) in obj.fields.iter().enumerate() {
                        let wanted = match sel.kind {
                            ast::FieldsKind::All => true,
                            ast::FieldsKind::Standard => !f.custom,
                            ast::FieldsKind::Custom => f.custom,
                        };
                        if wanted && self.access.field_readable(obj, f) {
                            let fr = FieldRef {
                                path: Vec::new(),
                                object: obj.clone(),
                                field: i,
                            };
                            cols.add_field(obj, &fr, f.name.clone(), false)?;
                        }
                    }
                }
                SelectItem::SubQuery(sub) => {
                    cols.children += 1;
                    if cols.children > MAX_CHILD_SUBQUERIES {
                        return Err(self.malformed(
                            sub.span,
                            &format!(
                                "A query can contain at most {MAX_CHILD_SUBQUERIES} relationship subqueries"
                            ),
                        ));
                    }
                    let (key, plan) = self.child(sub, scope, q.limit.map(|l| l.value))?;
                    if !cols.seen.insert(key.to_ascii_lowercase()) {
                        return Err(QueryError::new(
                            ErrorCode::InvalidField,
                            format!("duplicate field selected: {key}"),
                        ));
                    }
                    cols.columns.push(Column::Children {
                        key,
                        plan: Box::new(plan),
                    });
                }
                SelectItem::TypeOf(t) => {
                    return Err(self.malformed(
                        t.span,
                        &format!(
                            "TYPEOF is not supported: '{}' is not a polymorphic relationship in this org",
                            t.field.name
                        ),
                    ))
                }
            }
        }
        Ok(cols.columns)
    }

    /// The single field-path argument of `toLabel(f)`, `FORMAT(f)`, an aggregate, ...
    fn field_arg<'q>(&self, call: &'q FunctionCall) -> Result<&'q ast::FieldPath> {
        match call.args.first() {
            Some(FieldExpr::Field(p)) => Ok(p),
            Some(FieldExpr::Function(inner)) => Err(self.malformed(
                inner.span,
                &format!(
                    "{}() cannot be nested inside {}()",
                    inner.kind.canonical_name(),
                    call.kind.canonical_name()
                ),
            )),
            None => Err(self.malformed(
                call.span,
                &format!("{}() needs a field", call.kind.canonical_name()),
            )),
        }
    }

    /// Resolves a child subquery: its key (the canonical relationship name) and plan.
    fn child(
        &self,
        sub: &ast::Query,
        parent: &Scope,
        parent_limit: Option<u32>,
    ) -> Result<(String, Plan)> {
        let from = &sub.from;
        if let Some(qual) = &from.qualifier {
            let ok = parent
                .alias
                .as_deref()
                .is_some_and(|a| qual.eq_ignore_case(a))
                || parent.names.iter().any(|n| qual.eq_ignore_case(n));
            if !ok {
                return Err(self.bad_child_relationship(
                    &format!("{}.{}", qual.name, from.object.name),
                    qual.span,
                ));
            }
        }
        let rel = parent
            .object
            .child_relationship(&from.object.name)
            .ok_or_else(|| self.bad_child_relationship(&from.object.name, from.object.span))?;
        let child = self
            .schema
            .object(&rel.child_object)
            .filter(|o| self.object_visible(o))
            .ok_or_else(|| self.bad_child_relationship(&from.object.name, from.object.span))?;
        let link_visible = child
            .field(&rel.field)
            .is_some_and(|f| self.access.field_readable(child, f));
        if !link_visible {
            return Err(self.bad_child_relationship(&from.object.name, from.object.span));
        }
        let key = rel
            .relationship_name
            .clone()
            .unwrap_or_else(|| from.object.name.clone());
        let mut scope = Scope::new(child.clone(), from);
        scope.names.push(key.clone());
        let plan = self.query(
            sub,
            &scope,
            Nesting::Child {
                parent,
                parent_limit,
            },
        )?;
        Ok((key, plan))
    }

    fn child_link(&self, q: &ast::Query, scope: &Scope, parent: &Scope) -> Result<ChildLink> {
        let rel = parent
            .object
            .child_relationship(&q.from.object.name)
            .ok_or_else(|| self.bad_child_relationship(&q.from.object.name, q.from.object.span))?;
        let field = scope
            .object
            .field_index(&rel.field)
            .ok_or_else(|| self.bad_child_relationship(&q.from.object.name, q.from.object.span))?;
        Ok(ChildLink {
            field,
            parent: parent.object.clone(),
        })
    }

    // ------------------------------------------------------------------ aggregates

    fn group_by(&self, scope: &Scope, g: &ast::GroupBy) -> Result<Vec<Scalar>> {
        if g.kind != ast::GroupByKind::Plain {
            return Err(self.malformed(
                g.span,
                "GROUP BY ROLLUP and GROUP BY CUBE are not supported",
            ));
        }
        let mut out: Vec<Scalar> = Vec::with_capacity(g.fields.len());
        for fe in &g.fields {
            let s = match fe {
                FieldExpr::Field(p) => {
                    let f = self.path(scope, p)?;
                    if !groupable(f.def().ty) {
                        return Err(self.malformed(
                            p.span,
                            &format!(
                                "field '{}' can not be grouped in a query call",
                                f.def().name
                            ),
                        ));
                    }
                    Scalar::Field(f)
                }
                FieldExpr::Function(call) if call.kind.is_date_function() => {
                    self.date_function(scope, call)?
                }
                FieldExpr::Function(call) => {
                    return Err(self.malformed(
                        call.span,
                        &format!(
                            "{}() cannot be used in GROUP BY",
                            call.kind.canonical_name()
                        ),
                    ))
                }
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// `CALENDAR_YEAR(CreatedDate)`, `DAY_ONLY(convertTimezone(CreatedDate))`, ...
    fn date_function(&self, scope: &Scope, call: &FunctionCall) -> Result<Scalar> {
        let func = match call.kind {
            FunctionKind::CalendarYear | FunctionKind::FiscalYear => DateFunction::CalendarYear,
            FunctionKind::CalendarQuarter | FunctionKind::FiscalQuarter => {
                DateFunction::CalendarQuarter
            }
            FunctionKind::CalendarMonth | FunctionKind::FiscalMonth => DateFunction::CalendarMonth,
            FunctionKind::DayInMonth => DateFunction::DayInMonth,
            FunctionKind::DayInWeek => DateFunction::DayInWeek,
            FunctionKind::DayInYear => DateFunction::DayInYear,
            FunctionKind::DayOnly => DateFunction::DayOnly,
            FunctionKind::HourInDay => DateFunction::HourInDay,
            FunctionKind::WeekInMonth => DateFunction::WeekInMonth,
            FunctionKind::WeekInYear => DateFunction::WeekInYear,
            other => {
                return Err(self.malformed(
                    call.span,
                    &format!("{}() is not a date function", other.canonical_name()),
                ))
            }
        };
        let path = match call.args.first() {
            Some(FieldExpr::Field(p)) => p,
            Some(FieldExpr::Function(inner)) if inner.kind == FunctionKind::ConvertTimezone => {
                self.field_arg(inner)?
            }
            _ => self.field_arg(call)?,
        };
        let arg = self.path(scope, path)?;
        let ty = arg.def().ty;
        let ok = match func {
            DateFunction::DayOnly | DateFunction::HourInDay => ty == FieldType::DateTime,
            _ => matches!(ty, FieldType::Date | FieldType::DateTime),
        };
        if !ok {
            return Err(self.malformed(
                path.span,
                &format!(
                    "{}() cannot be applied to field '{}' of type {}",
                    call.kind.canonical_name(),
                    arg.def().name,
                    ty.describe_name()
                ),
            ));
        }
        Ok(Scalar::Date { func, arg })
    }

    /// `COUNT(Id)`, `SUM(Amount)`, ... with the field-type rules of Salesforce.
    fn aggregate(&self, scope: &Scope, call: &FunctionCall) -> Result<Aggregate> {
        let func = match call.kind {
            FunctionKind::Count => AggFunc::Count,
            FunctionKind::CountDistinct => AggFunc::CountDistinct,
            FunctionKind::Sum => AggFunc::Sum,
            FunctionKind::Avg => AggFunc::Avg,
            FunctionKind::Min => AggFunc::Min,
            FunctionKind::Max => AggFunc::Max,
            other => {
                return Err(self.malformed(
                    call.span,
                    &format!("{}() is not an aggregate function", other.canonical_name()),
                ))
            }
        };
        if call.args.is_empty() && func == AggFunc::Count {
            return Ok(Aggregate { func, arg: None });
        }
        let path = match call.args.first() {
            Some(FieldExpr::Function(inner)) if inner.kind == FunctionKind::ConvertCurrency => {
                self.field_arg(inner)?
            }
            _ => self.field_arg(call)?,
        };
        let f = self.path(scope, path)?;
        let ty = f.def().ty;
        let supported = match func {
            AggFunc::Sum | AggFunc::Avg => ty.is_numeric(),
            _ => !matches!(
                ty,
                FieldType::Boolean
                    | FieldType::MultiPicklist
                    | FieldType::Time
                    | FieldType::LongTextArea
            ),
        };
        if !supported {
            return Err(self.malformed(
                path.span,
                &format!(
                    "field {} does not support aggregate operator {}",
                    f.def().name,
                    call.kind.canonical_name()
                ),
            ));
        }
        Ok(Aggregate {
            func,
            arg: Some(Scalar::Field(f)),
        })
    }

    /// The `SELECT` list of an aggregate query (flat; grouped fields and aggregates).
    fn aggregate_columns(
        &self,
        q: &ast::Query,
        scope: &Scope,
        group_by: &[Scalar],
    ) -> Result<Vec<Column>> {
        let mut out = Vec::with_capacity(q.select.len());
        let mut keys: HashSet<String> = HashSet::new();
        let mut expr_n = 0usize;
        let mut next_key = |alias: &Option<ast::Ident>| -> String {
            match alias {
                Some(a) => a.name.clone(),
                None => {
                    let k = format!("expr{expr_n}");
                    expr_n += 1;
                    k
                }
            }
        };
        for item in &q.select {
            let col = match item {
                SelectItem::Field(p) => {
                    let f = self.path(scope, p)?;
                    let s = Scalar::Field(f);
                    if !group_by.contains(&s) {
                        return Err(self.malformed(
                            p.span,
                            &format!("Field must be grouped or aggregated: {}", p.dotted()),
                        ));
                    }
                    Column::Group {
                        key: s.field().def().name.clone(),
                        expr: s,
                        to_label: false,
                    }
                }
                SelectItem::Function { call, alias } if call.kind.is_aggregate() => {
                    let agg = self.aggregate(scope, call)?;
                    Column::Aggregate {
                        key: next_key(alias),
                        agg,
                    }
                }
                SelectItem::Function { call, alias } if call.kind.is_date_function() => {
                    let s = self.date_function(scope, call)?;
                    if !group_by.contains(&s) {
                        return Err(self.malformed(
                            call.span,
                            &format!(
                                "Field must be grouped or aggregated: {}",
                                &self.text[call.span.start..call.span.end]
                            ),
                        ));
                    }
                    Column::Group {
                        key: next_key(alias),
                        expr: s,
                        to_label: false,
                    }
                }
                SelectItem::Function { call, alias }
                    if matches!(
                        call.kind,
                        FunctionKind::ToLabel | FunctionKind::Format | FunctionKind::ConvertCurrency
                    ) =>
                {
                    let p = self.field_arg(call)?;
                    let s = Scalar::Field(self.path(scope, p)?);
                    if !group_by.contains(&s) {
                        return Err(self.malformed(
                            p.span,
                            &format!("Field must be grouped or aggregated: {}", p.dotted()),
                        ));
                    }
                    Column::Group {
                        key: alias
                            .as_ref()
                            .map(|a| a.name.clone())
                            .unwrap_or_else(|| s.field().def().name.clone()),
                        expr: s,
                        to_label: call.kind == FunctionKind::ToLabel,
                    }
                }
                SelectItem::Function { call, .. } => {
                    return Err(self.malformed(
                        call.span,
                        &format!(
                            "{}() is not supported in this query",
                            call.kind.canonical_name()
                        ),
                    ))
                }
                SelectItem::Fields(f) => {
                    return Err(self.malformed(
                        f.span,
                        "FIELDS() cannot be used in a query with aggregate functions or GROUP BY",
                    ))
                }
                SelectItem::SubQuery(sub) => {
                    return Err(self.malformed(
                        sub.span,
                        "Relationship subqueries cannot be used in a query with aggregate functions or GROUP BY",
                    ))
                }
                SelectItem::TypeOf(t) => {
                    return Err(self.malformed(
                        t.span,
                        "TYPEOF cannot be used in a query with aggregate functions or GROUP BY",
                    ))
                }
            };
            if !keys.insert(col.key().to_ascii_lowercase()) {
                return Err(QueryError::new(
                    ErrorCode::InvalidField,
                    format!("duplicate field selected: {}", col.key()),
                ));
            }
            out.push(col);
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ ORDER BY

    fn order_by(
        &self,
        scope: &Scope,
        items: &[ast::OrderItem],
        kind: PlanKind,
        group_by: &[Scalar],
    ) -> Result<Vec<OrderTerm>> {
        let grouped = kind == PlanKind::Aggregate || !group_by.is_empty();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let key = match &item.expr {
                FieldExpr::Field(p) => {
                    let f = self.path(scope, p)?;
                    let ty = f.def().ty;
                    if matches!(ty, FieldType::LongTextArea | FieldType::MultiPicklist) {
                        return Err(self.malformed(
                            p.span,
                            &format!("field '{}' can not be sorted in a query call", f.def().name),
                        ));
                    }
                    let s = Scalar::Field(f);
                    if grouped && !group_by.contains(&s) {
                        return Err(self.malformed(
                            p.span,
                            &format!(
                                "Ordered field must be grouped or aggregated: {}",
                                p.dotted()
                            ),
                        ));
                    }
                    Operand::Scalar(s)
                }
                FieldExpr::Function(call) if call.kind.is_date_function() => {
                    let s = self.date_function(scope, call)?;
                    if grouped && !group_by.contains(&s) {
                        return Err(self.malformed(
                            call.span,
                            &format!(
                                "Ordered field must be grouped or aggregated: {}",
                                &self.text[call.span.start..call.span.end]
                            ),
                        ));
                    }
                    Operand::Scalar(s)
                }
                FieldExpr::Function(call) if call.kind.is_aggregate() => {
                    if !grouped {
                        return Err(self.malformed(
                            call.span,
                            "Aggregate functions in ORDER BY need an aggregate query",
                        ));
                    }
                    Operand::Aggregate(self.aggregate(scope, call)?)
                }
                FieldExpr::Function(call)
                    if matches!(
                        call.kind,
                        FunctionKind::ToLabel
                            | FunctionKind::Format
                            | FunctionKind::ConvertCurrency
                    ) =>
                {
                    let p = self.field_arg(call)?;
                    let s = Scalar::Field(self.path(scope, p)?);
                    if grouped && !group_by.contains(&s) {
                        return Err(self.malformed(
                            p.span,
                            &format!(
                                "Ordered field must be grouped or aggregated: {}",
                                p.dotted()
                            ),
                        ));
                    }
                    Operand::Scalar(s)
                }
                FieldExpr::Function(call) => {
                    return Err(self.malformed(
                        call.span,
                        &format!(
                            "{}() cannot be used in ORDER BY",
                            call.kind.canonical_name()
                        ),
                    ))
                }
            };
            out.push(OrderTerm {
                key,
                descending: item.direction == Some(ast::SortDirection::Desc),
                nulls_last: item.nulls == Some(ast::NullsOrder::Last),
            });
        }
        Ok(out)
    }
}

/// Field types Salesforce can group by (describe `groupable`).
fn groupable(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::Id
            | FieldType::Reference
            | FieldType::Boolean
            | FieldType::String
            | FieldType::TextArea
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Url
            | FieldType::Picklist
            | FieldType::Int
            | FieldType::Date
    )
}
