//! SOQL execution: turns a [`store::soql::plan::Plan`] into SQL over the per-object tables and runs it.
//!
//! * Every literal is a bound parameter (`?N`); identifiers come from metadata and are quoted by
//!   [`ident`]. Nothing the client wrote is ever interpolated into SQL text.
//! * Each query scope (the root, a child subquery, a semi-join) has a base alias (`t0`, `t1`, …)
//!   and one `LEFT JOIN` per distinct lookup path (`t0_1`, `t0_2`, …), shared by SELECT, WHERE
//!   and ORDER BY. Joined parents that are soft-deleted count as empty lookups unless the query
//!   includes deleted rows.
//! * Filters keep the indexed column bare on the left (`t0."AccountId" = ?1`), so equality on
//!   ids, references, unique / external-id fields and names is an index search; text equality
//!   uses the column's own collation (NOCASE for case-insensitive fields).
//! * Conditions are two-valued as SOQL expects: `NOT x` is written `NOT IFNULL((x), 0)`, `!=`
//!   is null-safe (`IS NOT`), and `NOT IN` / anti-joins also match null operands.
//! * Null ordering is always explicit (`NULLS FIRST` by default) and the record id breaks ties.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use model::{FieldDef, FieldType, KeyPrefix, ObjectDef, OrgMarker, Value};
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{params_from_iter, Connection, Row};
use store::soql::plan::{
    AggFunc, Aggregate, Column, CompareOp, DateFunction, Expr, FieldRef, Hop, LikePiece, Operand,
    OrderTerm, Plan, PlanKind, Scalar,
};
use store::{Cell, QueryRow, StoreError, StoreResult};

use crate::codec::decode;
use crate::ddl::ident;
use crate::tx::backend;

/// Most root sequences bound in one `IN (...)` list; longer pages are split.
const IN_CHUNK: usize = 2000;

/// A statement under construction: its bound parameters and alias counter.
struct Builder {
    params: Vec<Sql>,
    scopes: usize,
    marker: OrgMarker,
}

impl Builder {
    fn new(marker: OrgMarker) -> Builder {
        Builder {
            params: Vec::new(),
            scopes: 0,
            marker,
        }
    }

    /// Binds a parameter and returns its placeholder.
    fn bind(&mut self, v: Sql) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    /// A fresh scope over `object`.
    fn scope(&mut self, object: &Arc<ObjectDef>, include_deleted: bool) -> Scope {
        let base = format!("t{}", self.scopes);
        self.scopes += 1;
        Scope {
            base,
            object: object.clone(),
            include_deleted,
            joins: Vec::new(),
        }
    }
}

/// One `LEFT JOIN` to a parent table.
struct Join {
    /// Reference-field positions from the scope's object (identifies the lookup chain).
    path: Vec<usize>,
    alias: String,
    table: String,
    /// Alias and column the join hangs off.
    on: String,
}

/// A FROM scope: a base table and the parent joins its expressions need.
struct Scope {
    base: String,
    object: Arc<ObjectDef>,
    include_deleted: bool,
    joins: Vec<Join>,
}

impl Scope {
    /// The alias of the table reached through `path` (joining it if needed).
    fn alias_for(&mut self, path: &[Hop]) -> String {
        let mut alias = self.base.clone();
        let mut key = Vec::with_capacity(path.len());
        for (i, hop) in path.iter().enumerate() {
            key.push(hop.field);
            if let Some(j) = self.joins.iter().find(|j| j.path == key) {
                alias = j.alias.clone();
                continue;
            }
            let from: &ObjectDef = if i == 0 {
                &self.object
            } else {
                &path[i - 1].object
            };
            let next = format!("{}_{}", self.base, self.joins.len() + 1);
            self.joins.push(Join {
                path: key.clone(),
                alias: next.clone(),
                table: ident(&hop.object.table()),
                on: format!("{alias}.{}", ident(from.fields[hop.field].column())),
            });
            alias = next;
        }
        alias
    }

    /// `alias."Column"` of a field.
    fn col(&mut self, f: &FieldRef) -> String {
        let alias = self.alias_for(&f.path);
        format!("{alias}.{}", ident(f.def().column()))
    }

    /// `alias."IsDeleted" = 0` for the base table, or nothing for queryAll.
    fn live(&self) -> Option<String> {
        (!self.include_deleted).then(|| format!("{}.\"IsDeleted\" = 0", self.base))
    }

    /// The FROM clause body: the base table and its joins.
    fn table_sql(&self) -> String {
        let mut out = format!("{} AS {}", ident(&self.object.table()), self.base);
        for j in &self.joins {
            let _ = write!(
                out,
                " LEFT JOIN {} AS {a} ON {a}.\"Id\" = {}",
                j.table,
                j.on,
                a = j.alias
            );
            if !self.include_deleted {
                let _ = write!(out, " AND {}.\"IsDeleted\" = 0", j.alias);
            }
        }
        out
    }
}

/// An encoded comparison value.
enum Enc {
    Sql(Sql),
    /// An id that cannot be stored in the operand's column (another object type or org):
    /// how it orders against every id the column can hold.
    Foreign(std::cmp::Ordering),
}

/// The field an operand reads (the argument of an aggregate).
fn operand_field(op: &Operand) -> Option<&FieldRef> {
    match op {
        Operand::Scalar(s) => Some(s.field()),
        Operand::Aggregate(a) => a.arg.as_ref().map(Scalar::field),
    }
}

/// The key prefix of the ids an Id / reference operand holds.
fn id_prefix(op: &Operand) -> Option<KeyPrefix> {
    if let Operand::Aggregate(a) = op {
        if matches!(a.func, AggFunc::Count | AggFunc::CountDistinct) {
            return None;
        }
    }
    let f = operand_field(op)?;
    match f.def().ty {
        FieldType::Id => Some(f.object.key_prefix),
        FieldType::Reference => f.def().reference_prefix,
        _ => None,
    }
}

fn encode_plain(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Int(i) => Sql::Integer(*i),
        Value::Double(d) => Sql::Real(*d),
        Value::Text(s) => Sql::Text(s.clone()),
        Value::Date(d) => Sql::Text(model::value::format_date(*d)),
        Value::DateTime(ms) => Sql::Integer(*ms),
        Value::Time(ms) => Sql::Integer(i64::from(*ms)),
        Value::Id(id) => Sql::Text(id.to_18()),
    }
}

impl Builder {
    /// Encodes `v` for comparison with `left`.
    fn encode(&self, left: &Operand, v: &Value) -> Enc {
        let Value::Id(id) = v else {
            return Enc::Sql(encode_plain(v));
        };
        let Some(prefix) = id_prefix(left) else {
            return Enc::Sql(encode_plain(v));
        };
        if id.prefix() == prefix {
            if let Some(seq) = id.seq_in(self.marker) {
                if let Ok(seq) = i64::try_from(seq) {
                    return Enc::Sql(Sql::Integer(seq));
                }
            }
        }
        let ours = format!("{}{}", prefix.as_str(), self.marker.as_str());
        let head = &id.as_str()[..6];
        Enc::Foreign(head.cmp(ours.as_str()))
    }

    // ------------------------------------------------------------------ expressions

    fn scalar(&mut self, scope: &mut Scope, s: &Scalar) -> String {
        match s {
            Scalar::Field(f) => scope.col(f),
            Scalar::Date { func, arg } => {
                let c = scope.col(arg);
                let x = if arg.def().ty == FieldType::DateTime {
                    format!("{c} / 1000.0, 'unixepoch'")
                } else {
                    c
                };
                let part = |fmt: &str| format!("CAST(strftime('{fmt}', {x}) AS INTEGER)");
                match func {
                    DateFunction::CalendarYear => part("%Y"),
                    DateFunction::CalendarMonth => part("%m"),
                    DateFunction::CalendarQuarter => format!("(({} + 2) / 3)", part("%m")),
                    DateFunction::DayInMonth => part("%d"),
                    DateFunction::DayInWeek => format!("({} + 1)", part("%w")),
                    DateFunction::DayInYear => part("%j"),
                    DateFunction::DayOnly => format!("date({x})"),
                    DateFunction::HourInDay => part("%H"),
                    DateFunction::WeekInMonth => format!("(({} + 6) / 7)", part("%d")),
                    DateFunction::WeekInYear => format!("(({} + 6) / 7)", part("%j")),
                }
            }
        }
    }

    fn aggregate(&mut self, scope: &mut Scope, a: &Aggregate) -> String {
        let arg = match &a.arg {
            Some(s) => self.scalar(scope, s),
            None => return "COUNT(*)".to_string(),
        };
        match a.func {
            AggFunc::Count => format!("COUNT({arg})"),
            AggFunc::CountDistinct => format!("COUNT(DISTINCT {arg})"),
            AggFunc::Sum => format!("SUM({arg})"),
            AggFunc::Avg => format!("AVG({arg})"),
            AggFunc::Min => format!("MIN({arg})"),
            AggFunc::Max => format!("MAX({arg})"),
        }
    }

    fn operand(&mut self, scope: &mut Scope, op: &Operand) -> String {
        match op {
            Operand::Scalar(s) => self.scalar(scope, s),
            Operand::Aggregate(a) => self.aggregate(scope, a),
        }
    }

    fn expr(&mut self, scope: &mut Scope, e: &Expr) -> String {
        match e {
            Expr::And(xs) | Expr::Or(xs) if xs.is_empty() => {
                if matches!(e, Expr::And(_)) { "1" } else { "0" }.to_string()
            }
            Expr::And(xs) => {
                let parts: Vec<String> = xs.iter().map(|x| self.expr(scope, x)).collect();
                format!("({})", parts.join(" AND "))
            }
            Expr::Or(xs) => {
                let parts: Vec<String> = xs.iter().map(|x| self.expr(scope, x)).collect();
                format!("({})", parts.join(" OR "))
            }
            Expr::Not(x) => format!("(NOT IFNULL({}, 0))", self.expr(scope, x)),
            Expr::Const(b) => if *b { "1" } else { "0" }.to_string(),
            Expr::IsNull { left, negated } => {
                let l = self.operand(scope, left);
                format!("({l} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::Compare { left, op, value } => {
                let l = self.operand(scope, left);
                match self.encode(left, value) {
                    Enc::Sql(v) => {
                        let p = self.bind(v);
                        let op = match op {
                            CompareOp::Eq => "=",
                            CompareOp::Ne => "IS NOT",
                            CompareOp::Lt => "<",
                            CompareOp::Le => "<=",
                            CompareOp::Gt => ">",
                            CompareOp::Ge => ">=",
                        };
                        format!("({l} {op} {p})")
                    }
                    Enc::Foreign(ord) => {
                        // every id the column can hold is below (Greater) or above the value
                        let column_below = ord == std::cmp::Ordering::Greater;
                        let some = format!("({l} IS NOT NULL)");
                        match op {
                            CompareOp::Eq => "0".to_string(),
                            CompareOp::Ne => "1".to_string(),
                            CompareOp::Lt | CompareOp::Le if column_below => some,
                            CompareOp::Gt | CompareOp::Ge if !column_below => some,
                            _ => "0".to_string(),
                        }
                    }
                }
            }
            Expr::In {
                left,
                values,
                negated,
            } => {
                let l = self.operand(scope, left);
                let mut marks = Vec::with_capacity(values.len());
                for v in values {
                    if let Enc::Sql(x) = self.encode(left, v) {
                        marks.push(self.bind(x));
                    }
                }
                match (marks.is_empty(), *negated) {
                    (true, false) => "0".to_string(),
                    (true, true) => "1".to_string(),
                    (false, false) => format!("({l} IN ({}))", marks.join(", ")),
                    (false, true) => {
                        format!("({l} IS NULL OR {l} NOT IN ({}))", marks.join(", "))
                    }
                }
            }
            Expr::Like { left, pattern } => {
                let l = self.operand(scope, left);
                let p = self.bind(Sql::Text(like_pattern(pattern)));
                format!("({l} LIKE {p} ESCAPE '\\')")
            }
            Expr::Includes {
                left,
                any_of,
                excludes,
            } => {
                let l = self.operand(scope, left);
                let mut sets = Vec::with_capacity(any_of.len());
                for set in any_of {
                    let mut items = Vec::with_capacity(set.len());
                    for item in set {
                        let p = self.bind(Sql::Text(item.clone()));
                        items.push(format!(
                            "instr(';' || lower({l}) || ';', ';' || lower({p}) || ';') > 0"
                        ));
                    }
                    sets.push(format!("({})", items.join(" AND ")));
                }
                let any = format!("({})", sets.join(" OR "));
                if *excludes {
                    format!("(NOT IFNULL({any}, 0))")
                } else {
                    any
                }
            }
            Expr::SemiJoin {
                left,
                negated,
                query,
            } => {
                let l = self.operand(scope, left);
                let mut sub = self.scope(&query.object, query.include_deleted);
                let field = sub.col(&query.field);
                let mut conds = vec![format!("{field} IS NOT NULL")];
                conds.extend(sub.live());
                if let Some(f) = &query.filter {
                    conds.push(self.expr(&mut sub, f));
                }
                // ORDER BY only matters with LIMIT; render it (and bind its parameters) only then
                let mut tail = String::new();
                if let Some(limit) = query.limit {
                    let mut order = self.order_terms(&mut sub, &query.order_by);
                    order.push(format!("{}.\"Id\"", sub.base));
                    let l = self.bind(Sql::Integer(i64::from(limit)));
                    let _ = write!(tail, " ORDER BY {} LIMIT {l}", order.join(", "));
                }
                let inner = format!(
                    "SELECT {field} FROM {} WHERE {}{tail}",
                    sub.table_sql(),
                    conds.join(" AND ")
                );
                if *negated {
                    format!("({l} IS NULL OR {l} NOT IN ({inner}))")
                } else {
                    format!("({l} IN ({inner}))")
                }
            }
        }
    }

    /// `ORDER BY` items. Picklists sort in the order their values are defined (as Salesforce
    /// does), values outside the list after the defined ones, alphabetically.
    fn order_terms(&mut self, scope: &mut Scope, terms: &[OrderTerm]) -> Vec<String> {
        let mut out = Vec::with_capacity(terms.len());
        for t in terms {
            let dir = if t.descending { "DESC" } else { "ASC" };
            let nulls = if t.nulls_last { "LAST" } else { "FIRST" };
            let key = self.operand(scope, &t.key);
            let picklist = match &t.key {
                Operand::Scalar(Scalar::Field(f))
                    if f.def().ty == FieldType::Picklist && !f.def().picklist.is_empty() =>
                {
                    Some(f.def())
                }
                _ => None,
            };
            if let Some(def) = picklist {
                let mut case = format!("CASE WHEN {key} IS NULL THEN NULL");
                for (i, v) in def.picklist.iter().enumerate() {
                    let p = self.bind(Sql::Text(v.value.clone()));
                    let _ = write!(case, " WHEN {key} = {p} THEN {i}");
                }
                let _ = write!(case, " ELSE {} END", def.picklist.len());
                out.push(format!("{case} {dir} NULLS {nulls}"));
            }
            out.push(format!("{key} {dir} NULLS {nulls}"));
        }
        out
    }

    /// `WHERE` body: liveness, the plan's filter and any extra conditions.
    fn where_sql(
        &mut self,
        scope: &mut Scope,
        filter: Option<&Expr>,
        extra: Vec<String>,
    ) -> String {
        let mut conds: Vec<String> = scope.live().into_iter().collect();
        conds.extend(extra);
        if let Some(f) = filter {
            conds.push(self.expr(scope, f));
        }
        if conds.is_empty() {
            "1".to_string()
        } else {
            conds.join(" AND ")
        }
    }

    fn limit_offset(&mut self, limit: Option<u32>, offset: Option<u32>) -> String {
        let mut out = String::new();
        if limit.is_some() || offset.is_some() {
            let l = self.bind(Sql::Integer(limit.map(i64::from).unwrap_or(-1)));
            let o = self.bind(Sql::Integer(i64::from(offset.unwrap_or(0))));
            let _ = write!(out, " LIMIT {l} OFFSET {o}");
        }
        out
    }
}

/// A SOQL LIKE pattern as an SQL LIKE pattern with `\` as the escape character.
fn like_pattern(pieces: &[LikePiece]) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            LikePiece::AnyChars => out.push('%'),
            LikePiece::AnyChar => out.push('_'),
            LikePiece::Literal(s) => {
                for c in s.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------- statements

/// A statement ready to run.
pub(crate) struct Stmt {
    pub sql: String,
    pub params: Vec<Sql>,
}

/// `SELECT t0."Id" ...` for a records plan.
pub(crate) fn ids_stmt(plan: &Plan, marker: OrgMarker) -> Stmt {
    let mut b = Builder::new(marker);
    let mut scope = b.scope(&plan.object, plan.include_deleted);
    let wh = b.where_sql(&mut scope, plan.filter.as_ref(), Vec::new());
    let mut order = b.order_terms(&mut scope, &plan.order_by);
    order.push(format!("{}.\"Id\" ASC", scope.base));
    let lo = b.limit_offset(plan.limit, plan.offset);
    let sql = format!(
        "SELECT {}.\"Id\" FROM {} WHERE {wh} ORDER BY {}{lo}",
        scope.base,
        scope.table_sql(),
        order.join(", ")
    );
    Stmt {
        sql,
        params: b.params,
    }
}

/// `SELECT COUNT(*) ...` for a count plan.
pub(crate) fn count_stmt(plan: &Plan, marker: OrgMarker) -> Stmt {
    let mut b = Builder::new(marker);
    let mut scope = b.scope(&plan.object, plan.include_deleted);
    let wh = b.where_sql(&mut scope, plan.filter.as_ref(), Vec::new());
    let groups: Vec<String> = plan
        .group_by
        .iter()
        .map(|g| b.scalar(&mut scope, g))
        .collect();
    let having = plan.having.as_ref().map(|h| b.expr(&mut scope, h));
    let lo = b.limit_offset(plan.limit, plan.offset);
    let mut inner = format!("SELECT 1 FROM {} WHERE {wh}", scope.table_sql());
    if !groups.is_empty() {
        let _ = write!(inner, " GROUP BY {}", groups.join(", "));
        if let Some(h) = having {
            let _ = write!(inner, " HAVING {h}");
        }
    }
    let sql = if groups.is_empty() && lo.is_empty() {
        format!("SELECT COUNT(*) FROM {} WHERE {wh}", scope.table_sql())
    } else {
        format!("SELECT COUNT(*) FROM ({inner}{lo})")
    };
    Stmt {
        sql,
        params: b.params,
    }
}

/// `SELECT <groups and aggregates> ... GROUP BY ...` for an aggregate plan.
pub(crate) fn aggregate_stmt(plan: &Plan, marker: OrgMarker) -> Stmt {
    let mut b = Builder::new(marker);
    let mut scope = b.scope(&plan.object, plan.include_deleted);
    let mut cols = Vec::with_capacity(plan.columns.len());
    for c in &plan.columns {
        match c {
            Column::Group { expr, .. } => cols.push(b.scalar(&mut scope, expr)),
            Column::Aggregate { agg, .. } => cols.push(b.aggregate(&mut scope, agg)),
            // the resolver puts only groups and aggregates in aggregate plans
            _ => cols.push("NULL".to_string()),
        }
    }
    let wh = b.where_sql(&mut scope, plan.filter.as_ref(), Vec::new());
    let groups: Vec<String> = plan
        .group_by
        .iter()
        .map(|g| b.scalar(&mut scope, g))
        .collect();
    let having = plan.having.as_ref().map(|h| b.expr(&mut scope, h));
    let mut order = b.order_terms(&mut scope, &plan.order_by);
    if order.is_empty() {
        order = groups
            .iter()
            .map(|g| format!("{g} ASC NULLS FIRST"))
            .collect();
    }
    let lo = b.limit_offset(plan.limit, plan.offset);
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {wh}",
        if cols.is_empty() {
            "NULL".to_string()
        } else {
            cols.join(", ")
        },
        scope.table_sql()
    );
    if !groups.is_empty() {
        let _ = write!(sql, " GROUP BY {}", groups.join(", "));
    }
    if let Some(h) = having {
        let _ = write!(sql, " HAVING {h}");
    }
    if !order.is_empty() {
        let _ = write!(sql, " ORDER BY {}", order.join(", "));
    }
    sql.push_str(&lo);
    Stmt {
        sql,
        params: b.params,
    }
}

/// Adds the SQL columns of a column tree to `out` (parents contribute their id first).
fn select_list(b: &mut Scope, columns: &[Column], path: &mut Vec<Hop>, out: &mut Vec<String>) {
    for c in columns {
        match c {
            Column::Field { field, .. } => {
                let alias = b.alias_for(path);
                let obj: &ObjectDef = path.last().map(|h| &*h.object).unwrap_or(&b.object);
                out.push(format!("{alias}.{}", ident(obj.fields[*field].column())));
            }
            Column::Parent {
                field,
                object,
                columns,
                ..
            } => {
                path.push(Hop {
                    field: *field,
                    object: object.clone(),
                });
                let alias = b.alias_for(path);
                out.push(format!("{alias}.\"Id\""));
                select_list(b, columns, path, out);
                path.pop();
            }
            Column::Children { .. } | Column::Group { .. } | Column::Aggregate { .. } => {}
        }
    }
}

/// Number of SQL columns a column tree occupies.
fn width(columns: &[Column]) -> usize {
    columns
        .iter()
        .map(|c| match c {
            Column::Field { .. } => 1,
            Column::Parent { columns, .. } => 1 + width(columns),
            _ => 0,
        })
        .sum()
}

/// The `toLabel()` form of a stored picklist value.
fn to_label(f: &FieldDef, v: Value) -> Value {
    let Value::Text(s) = &v else {
        return v;
    };
    let label = |item: &str| -> String {
        f.picklist
            .iter()
            .find(|p| p.value.eq_ignore_ascii_case(item))
            .map(|p| p.label.clone())
            .unwrap_or_else(|| item.to_string())
    };
    match f.ty {
        FieldType::Picklist => Value::Text(label(s)),
        FieldType::MultiPicklist => {
            Value::Text(s.split(';').map(label).collect::<Vec<_>>().join(";"))
        }
        _ => v,
    }
}

/// Decodes the cells of a column tree from `row`, starting at column `*at`.
fn decode_cells(
    row: &Row<'_>,
    at: &mut usize,
    object: &ObjectDef,
    columns: &[Column],
    marker: OrgMarker,
) -> rusqlite::Result<Vec<Cell>> {
    let mut cells = Vec::with_capacity(columns.len());
    for c in columns {
        match c {
            Column::Field {
                field, to_label: l, ..
            } => {
                let f = &object.fields[*field];
                let v = decode(object, f, row.get_ref(*at)?, marker);
                *at += 1;
                cells.push(Cell::Value(if *l { to_label(f, v) } else { v }));
            }
            Column::Parent {
                object: parent,
                columns,
                ..
            } => {
                let id = row.get_ref(*at)?;
                *at += 1;
                match id {
                    ValueRef::Integer(seq) => {
                        let nested = decode_cells(row, at, parent, columns, marker)?;
                        cells.push(Cell::Parent(Some(Box::new(QueryRow {
                            seq: seq as u64,
                            cells: nested,
                        }))));
                    }
                    _ => {
                        *at += width(columns);
                        cells.push(Cell::Parent(None));
                    }
                }
            }
            Column::Children { .. } => cells.push(Cell::Children(Vec::new())),
            Column::Group { .. } | Column::Aggregate { .. } => cells.push(Cell::Value(Value::Null)),
        }
    }
    Ok(cells)
}

/// `SELECT t0."Id", <columns> ... WHERE t0."Id" IN (...)` for a page of root rows.
pub(crate) fn rows_stmt(plan: &Plan, seqs: &[u64], marker: OrgMarker) -> Stmt {
    let mut b = Builder::new(marker);
    let mut scope = b.scope(&plan.object, plan.include_deleted);
    let mut cols = vec![format!("{}.\"Id\"", scope.base)];
    select_list(&mut scope, &plan.columns, &mut Vec::new(), &mut cols);
    let marks: Vec<String> = seqs
        .iter()
        .map(|s| b.bind(Sql::Integer(*s as i64)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}.\"Id\" IN ({})",
        cols.join(", "),
        scope.table_sql(),
        scope.base,
        marks.join(", ")
    );
    Stmt {
        sql,
        params: b.params,
    }
}

/// The rows of child plan `child` for the given parent sequences, ordered by parent and then
/// by the child's ORDER BY, with OFFSET/LIMIT applied per parent.
pub(crate) fn children_stmt(child: &Plan, link: usize, parents: &[u64], marker: OrgMarker) -> Stmt {
    let mut b = Builder::new(marker);
    let mut scope = b.scope(&child.object, child.include_deleted);
    let link_col = format!(
        "{}.{}",
        scope.base,
        ident(child.object.fields[link].column())
    );
    let mut cols = vec![link_col.clone(), format!("{}.\"Id\"", scope.base)];
    select_list(&mut scope, &child.columns, &mut Vec::new(), &mut cols);
    let marks: Vec<String> = parents
        .iter()
        .map(|s| b.bind(Sql::Integer(*s as i64)))
        .collect();
    let wh = b.where_sql(
        &mut scope,
        child.filter.as_ref(),
        vec![format!("{link_col} IN ({})", marks.join(", "))],
    );
    let mut order = b.order_terms(&mut scope, &child.order_by);
    order.push(format!("{}.\"Id\" ASC", scope.base));
    let from = scope.table_sql();
    let sql = if child.limit.is_none() && child.offset.is_none() {
        format!(
            "SELECT {} FROM {from} WHERE {wh} ORDER BY {link_col}, {}",
            cols.join(", "),
            order.join(", ")
        )
    } else {
        let named: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} AS c{i}"))
            .collect();
        let outer: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
        let offset = i64::from(child.offset.unwrap_or(0));
        let mut bounds = format!("rn > {}", b.bind(Sql::Integer(offset)));
        if let Some(limit) = child.limit {
            let _ = write!(
                bounds,
                " AND rn <= {}",
                b.bind(Sql::Integer(offset + i64::from(limit)))
            );
        }
        format!(
            "SELECT {} FROM (SELECT {}, ROW_NUMBER() OVER (PARTITION BY {link_col} ORDER BY {}) AS rn FROM {from} WHERE {wh}) WHERE {bounds} ORDER BY c0, rn",
            outer.join(", "),
            named.join(", "),
            order.join(", ")
        )
    };
    Stmt {
        sql,
        params: b.params,
    }
}

// ---------------------------------------------------------------------- execution

fn wrong_kind(plan: &Plan, what: &str) -> StoreError {
    StoreError::Backend(format!(
        "{what} called with a {:?} plan of {}",
        plan.kind, plan.object.name
    ))
}

/// Runs [`ids_stmt`].
pub(crate) fn query_ids(
    conn: &Connection,
    marker: OrgMarker,
    plan: &Plan,
) -> StoreResult<Vec<u64>> {
    if plan.kind != PlanKind::Records {
        return Err(wrong_kind(plan, "query_ids"));
    }
    let st = ids_stmt(plan, marker);
    let mut stmt = conn.prepare_cached(&st.sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(st.params.iter()), |r| r.get::<_, i64>(0))
        .map_err(backend)?;
    rows.map(|r| r.map(|x| x as u64).map_err(backend)).collect()
}

/// Runs [`count_stmt`].
pub(crate) fn query_count(conn: &Connection, marker: OrgMarker, plan: &Plan) -> StoreResult<u64> {
    let st = count_stmt(plan, marker);
    let mut stmt = conn.prepare_cached(&st.sql).map_err(backend)?;
    stmt.query_row(params_from_iter(st.params.iter()), |r| r.get::<_, i64>(0))
        .map(|n| n.max(0) as u64)
        .map_err(backend)
}

/// Runs [`aggregate_stmt`] and decodes the cells.
pub(crate) fn query_aggregate(
    conn: &Connection,
    marker: OrgMarker,
    plan: &Plan,
) -> StoreResult<Vec<QueryRow>> {
    if plan.kind != PlanKind::Aggregate {
        return Err(wrong_kind(plan, "query_aggregate"));
    }
    let st = aggregate_stmt(plan, marker);
    let mut stmt = conn.prepare_cached(&st.sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(st.params.iter()), |r| {
            let mut cells = Vec::with_capacity(plan.columns.len());
            for (i, c) in plan.columns.iter().enumerate() {
                let v = r.get_ref(i)?;
                cells.push(Cell::Value(decode_aggregate(c, v, marker)));
            }
            Ok(QueryRow { seq: 0, cells })
        })
        .map_err(backend)?;
    rows.map(|r| r.map_err(backend)).collect()
}

fn decode_field_ref(f: &FieldRef, v: ValueRef<'_>, marker: OrgMarker) -> Value {
    decode(&f.object, f.def(), v, marker)
}

fn decode_aggregate(c: &Column, v: ValueRef<'_>, marker: OrgMarker) -> Value {
    match c {
        Column::Group {
            expr, to_label: l, ..
        } => match expr {
            Scalar::Field(f) => {
                let v = decode_field_ref(f, v, marker);
                if *l {
                    to_label(f.def(), v)
                } else {
                    v
                }
            }
            Scalar::Date {
                func: DateFunction::DayOnly,
                ..
            } => match v {
                ValueRef::Text(t) => model::value::parse_date(&String::from_utf8_lossy(t))
                    .map(Value::Date)
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            },
            Scalar::Date { .. } => int_value(v),
        },
        Column::Aggregate { agg, .. } => match (agg.func, &agg.arg) {
            (AggFunc::Count | AggFunc::CountDistinct, _) => int_value(v),
            (AggFunc::Avg, _) => match v {
                ValueRef::Integer(i) => Value::Double(i as f64),
                ValueRef::Real(d) => Value::Double(d),
                _ => Value::Null,
            },
            (_, Some(s)) => decode_field_ref(s.field(), v, marker),
            (_, None) => int_value(v),
        },
        _ => Value::Null,
    }
}

fn int_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(d) => Value::Int(d as i64),
        _ => Value::Null,
    }
}

/// Runs [`rows_stmt`] (in chunks) and the child subqueries of the page.
pub(crate) fn query_rows(
    conn: &Connection,
    marker: OrgMarker,
    plan: &Plan,
    seqs: &[u64],
) -> StoreResult<Vec<QueryRow>> {
    if plan.kind != PlanKind::Records {
        return Err(wrong_kind(plan, "query_rows"));
    }
    let mut found: HashMap<u64, QueryRow> = HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(IN_CHUNK) {
        let st = rows_stmt(plan, chunk, marker);
        let mut stmt = conn.prepare(&st.sql).map_err(backend)?;
        let rows = stmt
            .query_map(params_from_iter(st.params.iter()), |r| {
                let seq = r.get::<_, i64>(0)? as u64;
                let mut at = 1;
                let cells = decode_cells(r, &mut at, &plan.object, &plan.columns, marker)?;
                Ok(QueryRow { seq, cells })
            })
            .map_err(backend)?;
        for r in rows {
            let r = r.map_err(backend)?;
            found.insert(r.seq, r);
        }
    }
    let mut out: Vec<QueryRow> = seqs.iter().filter_map(|s| found.remove(s)).collect();
    for (k, c) in plan.columns.iter().enumerate() {
        let Column::Children { plan: child, .. } = c else {
            continue;
        };
        let link = child
            .link
            .as_ref()
            .ok_or_else(|| {
                StoreError::Backend(format!("child plan of {} has no link", child.object.name))
            })?
            .field;
        let parents: Vec<u64> = out.iter().map(|r| r.seq).collect();
        let mut by_parent = children(conn, marker, child, link, &parents)?;
        for row in out.iter_mut() {
            if let Some(kids) = by_parent.remove(&row.seq) {
                row.cells[k] = Cell::Children(kids);
            }
        }
    }
    Ok(out)
}

/// Runs [`children_stmt`] for a page of parents; rows grouped by parent sequence.
fn children(
    conn: &Connection,
    marker: OrgMarker,
    child: &Plan,
    link: usize,
    parents: &[u64],
) -> StoreResult<HashMap<u64, Vec<QueryRow>>> {
    let mut out: HashMap<u64, Vec<QueryRow>> = HashMap::new();
    for chunk in parents.chunks(IN_CHUNK) {
        let st = children_stmt(child, link, chunk, marker);
        let mut stmt = conn.prepare(&st.sql).map_err(backend)?;
        let rows = stmt
            .query_map(params_from_iter(st.params.iter()), |r| {
                let parent = r.get::<_, i64>(0)? as u64;
                let seq = r.get::<_, i64>(1)? as u64;
                let mut at = 2;
                let cells = decode_cells(r, &mut at, &child.object, &child.columns, marker)?;
                Ok((parent, QueryRow { seq, cells }))
            })
            .map_err(backend)?;
        for r in rows {
            let (parent, row) = r.map_err(backend)?;
            out.entry(parent).or_default().push(row);
        }
    }
    Ok(out)
}
