//! `WHERE` / `HAVING` conditions: operands, operator rules, and the typing of literals against
//! the field they are compared with.

use model::{ErrorCode, FieldType, Id, Value};

use super::{Resolver, Result, Scope};
use crate::ast::{self, FieldExpr, SelectItem, Span, ValueKind};
use crate::datelit::{date_literal_range_days, days_from_civil, CalendarSettings};
use crate::plan::{CompareOp, Expr, FieldRef, Operand, PlanKind, Scalar, SemiJoinQuery};

/// Which clause a condition belongs to.
#[derive(Clone, Copy)]
pub(super) enum Clause<'g> {
    /// `WHERE`: per-row operands only.
    Where,
    /// `HAVING`: aggregates, or expressions among the given `GROUP BY` list.
    Having(&'g [Scalar]),
}

/// A literal typed for its operand.
enum Lit {
    Null,
    Value(Value),
    /// A relative date literal: `[start, end)`.
    Range(Value, Value),
}

/// The type name Salesforce uses in filter messages, and whether such values are quoted.
fn type_label(ty: FieldType) -> (&'static str, bool) {
    match ty {
        FieldType::Id | FieldType::Reference => ("id", true),
        FieldType::Boolean => ("boolean", false),
        FieldType::Int => ("int", false),
        FieldType::Double | FieldType::Currency | FieldType::Percent => ("double", false),
        FieldType::Date => ("date", false),
        FieldType::DateTime => ("dateTime", false),
        FieldType::Time => ("time", false),
        _ => ("string", true),
    }
}

/// First and last day representable as `YYYY-MM-DD` text.
fn date_bounds() -> (i64, i64) {
    (days_from_civil(1, 1, 1), days_from_civil(9999, 12, 31))
}

/// The date `days` after 1970-01-01 (clamped to years 1-9999) as a value.
fn date_from_days(days: i64) -> Value {
    let (lo, hi) = date_bounds();
    let (y, m, d) = crate::datelit::civil_from_days(days.clamp(lo, hi));
    let text = format!("{y:04}-{m:02}-{d:02}");
    match model::value::parse_date(&text) {
        Some(date) => Value::Date(date),
        // unreachable for clamped, valid civil dates; keep the comparison well-typed anyway
        None => Value::Text(text),
    }
}

const DAY_MS: i64 = 86_400_000;

/// The object type an Id / reference field points at.
fn id_target(f: &FieldRef) -> Option<String> {
    let def = f.def();
    match def.ty {
        FieldType::Id => Some(f.object.name.clone()),
        FieldType::Reference => def.reference_to.clone(),
        _ => None,
    }
}

impl Resolver<'_> {
    /// Resolves a condition tree.
    pub(super) fn condition(
        &self,
        scope: &Scope,
        c: &ast::Condition,
        clause: Clause<'_>,
    ) -> Result<Expr> {
        Ok(match c {
            ast::Condition::And { operands, .. } => Expr::And(
                operands
                    .iter()
                    .map(|o| self.condition(scope, o, clause))
                    .collect::<Result<_>>()?,
            ),
            ast::Condition::Or { operands, .. } => Expr::Or(
                operands
                    .iter()
                    .map(|o| self.condition(scope, o, clause))
                    .collect::<Result<_>>()?,
            ),
            ast::Condition::Not { operand, .. } => {
                Expr::Not(Box::new(self.condition(scope, operand, clause)?))
            }
            ast::Condition::Compare(cmp) => {
                let left = self.operand(scope, &cmp.left, clause)?;
                self.compare(left, cmp.op, &cmp.value, cmp.left.span())?
            }
            ast::Condition::Like(l) => self.like(scope, l, clause)?,
            ast::Condition::InList(l) => {
                let left = self.operand(scope, &l.left, clause)?;
                self.in_list(left, &l.values, l.negated, l.left.span())?
            }
            ast::Condition::SemiJoin(s) => self.semi_join(scope, s, clause)?,
            ast::Condition::Includes(i) => self.includes(scope, i, clause)?,
        })
    }

    /// The left-hand side of a condition.
    fn operand(&self, scope: &Scope, fe: &FieldExpr, clause: Clause<'_>) -> Result<Operand> {
        let grouped_check = |s: &Scalar, span: Span, what: &str| -> Result<()> {
            if let Clause::Having(groups) = clause {
                if !groups.contains(s) {
                    return Err(self.malformed(
                        span,
                        &format!("Field must be grouped or aggregated: {what}"),
                    ));
                }
            }
            Ok(())
        };
        match fe {
            FieldExpr::Field(p) => {
                let f = self.path(scope, p)?;
                if !f.def().ty.is_filterable() {
                    return Err(self.caret(
                        ErrorCode::InvalidField,
                        p.span,
                        &format!(
                            "field '{}' can not be filtered in a query call",
                            f.def().name
                        ),
                    ));
                }
                let s = Scalar::Field(f);
                grouped_check(&s, p.span, &p.dotted())?;
                Ok(Operand::Scalar(s))
            }
            FieldExpr::Function(call) if call.kind.is_date_function() => {
                let s = self.date_function(scope, call)?;
                grouped_check(&s, call.span, &self.text[call.span.start..call.span.end])?;
                Ok(Operand::Scalar(s))
            }
            FieldExpr::Function(call) if call.kind.is_aggregate() => match clause {
                Clause::Having(_) => Ok(Operand::Aggregate(self.aggregate(scope, call)?)),
                Clause::Where => Err(self.malformed(
                    call.span,
                    &format!(
                        "Aggregate functions such as {}() cannot be used in WHERE; use HAVING",
                        call.kind.canonical_name()
                    ),
                )),
            },
            FieldExpr::Function(call) => Err(self.malformed(
                call.span,
                &format!(
                    "{}() cannot be used in a WHERE or HAVING condition",
                    call.kind.canonical_name()
                ),
            )),
        }
    }

    /// The field name shown in filter messages.
    fn operand_name(left: &Operand) -> String {
        match left {
            Operand::Scalar(s) => s.field().def().name.clone(),
            Operand::Aggregate(a) => match &a.arg {
                Some(s) => s.field().def().name.clone(),
                None => "COUNT()".to_string(),
            },
        }
    }

    fn type_mismatch(&self, left: &Operand, span: Span) -> super::QueryError {
        let (ty, quoted) = type_label(left.value_type());
        let should = if quoted { "should" } else { "should not" };
        self.caret(
            ErrorCode::InvalidField,
            span,
            &format!(
                "value of filter criterion for field '{}' must be of type {ty} and {should} be enclosed in quotes",
                Self::operand_name(left)
            ),
        )
    }

    fn bad_operator(&self, left: &Operand, span: Span) -> super::QueryError {
        let (ty, _) = type_label(left.value_type());
        self.caret(
            ErrorCode::InvalidQueryFilterOperator,
            span,
            &format!("invalid operator on {ty} field"),
        )
    }

    /// Types a literal for `left`; `span` is the left operand's (where Salesforce points).
    fn literal(&self, left: &Operand, v: &ast::Value, span: Span) -> Result<Lit> {
        let ty = left.value_type();
        let mismatch = || Err(self.type_mismatch(left, span));
        let number =
            |text: &str| -> Option<f64> { text.parse::<f64>().ok().filter(|d| d.is_finite()) };
        Ok(match (&v.kind, ty) {
            (ValueKind::Null, _) => Lit::Null,
            (ValueKind::String(s), FieldType::Id | FieldType::Reference) => match Id::parse(s) {
                Ok(id) => Lit::Value(Value::Id(id)),
                Err(_) => {
                    return Err(self.caret(
                        ErrorCode::InvalidQueryFilterOperator,
                        span,
                        &format!("invalid ID field: {s}"),
                    ))
                }
            },
            (ValueKind::String(s), t) if t.is_text() => Lit::Value(Value::Text(s.clone())),
            (ValueKind::Integer(i), FieldType::Int) => Lit::Value(Value::Int(*i)),
            (
                ValueKind::Integer(i),
                FieldType::Double | FieldType::Currency | FieldType::Percent,
            ) => Lit::Value(Value::Double(*i as f64)),
            (
                ValueKind::Decimal(d),
                FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent,
            ) => match number(d) {
                Some(x) => Lit::Value(Value::Double(x)),
                None => return mismatch(),
            },
            (ValueKind::Currency { amount, .. }, FieldType::Currency) => match number(amount) {
                Some(x) => Lit::Value(Value::Double(x)),
                None => return mismatch(),
            },
            (ValueKind::Boolean(b), FieldType::Boolean) => Lit::Value(Value::Bool(*b)),
            (ValueKind::Date(d), FieldType::Date) => {
                Lit::Value(date_from_days(days_from_civil(d.year, d.month, d.day)))
            }
            (ValueKind::DateTime(dt), FieldType::DateTime) => {
                Lit::Value(Value::DateTime(dt.to_unix_millis()))
            }
            (ValueKind::DateLiteral(lit), FieldType::Date | FieldType::DateTime) => {
                let (start, end) =
                    date_literal_range_days(lit, self.opts.today, &CalendarSettings::default());
                if ty == FieldType::Date {
                    Lit::Range(date_from_days(start), date_from_days(end))
                } else {
                    Lit::Range(
                        Value::DateTime(start.saturating_mul(DAY_MS)),
                        Value::DateTime(end.saturating_mul(DAY_MS)),
                    )
                }
            }
            _ => return mismatch(),
        })
    }

    /// `left op value`.
    fn compare(
        &self,
        left: Operand,
        op: ast::CompareOp,
        value: &ast::Value,
        span: Span,
    ) -> Result<Expr> {
        let op = match op {
            ast::CompareOp::Eq => CompareOp::Eq,
            ast::CompareOp::Ne => CompareOp::Ne,
            ast::CompareOp::Lt => CompareOp::Lt,
            ast::CompareOp::Le => CompareOp::Le,
            ast::CompareOp::Gt => CompareOp::Gt,
            ast::CompareOp::Ge => CompareOp::Ge,
        };
        let equality = matches!(op, CompareOp::Eq | CompareOp::Ne);
        if !equality
            && matches!(
                left.value_type(),
                FieldType::Boolean | FieldType::MultiPicklist
            )
        {
            return Err(self.bad_operator(&left, span));
        }
        Ok(match self.literal(&left, value, span)? {
            Lit::Null => match op {
                CompareOp::Eq => Expr::IsNull {
                    left,
                    negated: false,
                },
                CompareOp::Ne => Expr::IsNull {
                    left,
                    negated: true,
                },
                // nothing is smaller or larger than null
                _ => Expr::Const(false),
            },
            Lit::Value(value) => Expr::Compare { left, op, value },
            Lit::Range(start, end) => range(left, op, start, end),
        })
    }

    /// `left [NOT] IN (v1, v2, ...)`.
    fn in_list(
        &self,
        left: Operand,
        values: &[ast::Value],
        negated: bool,
        span: Span,
    ) -> Result<Expr> {
        let mut plain = Vec::new();
        let mut has_null = false;
        let mut alternatives = Vec::new();
        for v in values {
            match self.literal(&left, v, span)? {
                Lit::Null => has_null = true,
                Lit::Value(x) => plain.push(x),
                Lit::Range(s, e) => alternatives.push(range(left.clone(), CompareOp::Eq, s, e)),
            }
        }
        if !has_null && alternatives.is_empty() {
            return Ok(Expr::In {
                left,
                values: plain,
                negated,
            });
        }
        if !plain.is_empty() {
            alternatives.insert(
                0,
                Expr::In {
                    left: left.clone(),
                    values: plain,
                    negated: false,
                },
            );
        }
        if has_null {
            alternatives.push(Expr::IsNull {
                left,
                negated: false,
            });
        }
        let any = if alternatives.len() == 1 {
            alternatives.pop().expect("one alternative")
        } else {
            Expr::Or(alternatives)
        };
        Ok(if negated {
            Expr::Not(Box::new(any))
        } else {
            any
        })
    }

    /// `left LIKE 'pattern'` (text fields only).
    fn like(&self, scope: &Scope, l: &ast::LikeCondition, clause: Clause<'_>) -> Result<Expr> {
        let left = self.operand(scope, &l.left, clause)?;
        let text = matches!(&left, Operand::Scalar(Scalar::Field(f)) if f.def().ty.is_text());
        if !text {
            return Err(self.bad_operator(&left, l.left.span()));
        }
        Ok(Expr::Like {
            left,
            pattern: l.pattern.pieces.clone(),
        })
    }

    /// `left INCLUDES (...)` / `EXCLUDES (...)` (multi-select picklists only).
    fn includes(
        &self,
        scope: &Scope,
        i: &ast::IncludesCondition,
        clause: Clause<'_>,
    ) -> Result<Expr> {
        let left = self.operand(scope, &i.left, clause)?;
        if left.value_type() != FieldType::MultiPicklist
            || !matches!(left, Operand::Scalar(Scalar::Field(_)))
        {
            return Err(self.caret(
                ErrorCode::InvalidQueryFilterOperator,
                i.left.span(),
                "includes or excludes operator only valid on multipicklist field",
            ));
        }
        let mut any_of = Vec::new();
        for v in &i.values {
            let ValueKind::String(s) = &v.kind else {
                return Err(self.type_mismatch(&left, i.left.span()));
            };
            let set: Vec<String> = s
                .split(';')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            if !set.is_empty() {
                any_of.push(set);
            }
        }
        if any_of.is_empty() {
            // only empty strings: nothing includes them, everything excludes them
            return Ok(Expr::Const(i.excludes));
        }
        Ok(Expr::Includes {
            left,
            any_of,
            excludes: i.excludes,
        })
    }

    /// `left [NOT] IN (SELECT field FROM ...)`.
    fn semi_join(&self, scope: &Scope, s: &ast::SemiJoin, clause: Clause<'_>) -> Result<Expr> {
        let left = self.operand(scope, &s.left, clause)?;
        let left_field = match &left {
            Operand::Scalar(Scalar::Field(f)) => Some(f),
            _ => None,
        };
        let left_name = left_field
            .map(|f| f.def().name.clone())
            .unwrap_or_else(|| self.text[s.left.span().start..s.left.span().end].to_string());
        let Some(left_target) = left_field.and_then(id_target) else {
            return Err(self.malformed(
                s.left.span(),
                &format!(
                    "The left operand '{left_name}' of a semi join must be an Id or reference field"
                ),
            ));
        };
        let q = &s.query;
        self.check_clauses(q)?;
        let object = self.object(&q.from.object)?;
        let inner = Scope::new(object.clone(), &q.from);
        if let Some(g) = &q.group_by {
            return Err(self.malformed(
                g.span,
                "GROUP BY is not supported in a semi join sub-select",
            ));
        }
        if let Some(off) = q.offset {
            return Err(self.malformed(
                off.span,
                "OFFSET is not supported in a semi join sub-select",
            ));
        }
        let path = match q.select.as_slice() {
            [SelectItem::Field(p)] => p,
            _ => {
                return Err(self.malformed(
                    q.span,
                    "a semi join sub-select must select exactly one field",
                ))
            }
        };
        let field = self.path(&inner, path)?;
        if id_target(&field).as_deref() != Some(left_target.as_str()) {
            return Err(self.malformed(
                path.span,
                &format!(
                    "The selected field '{}' in the subquery and the left operand field in the where expression in the outer query '{left_name}' should point to the same object type",
                    path.dotted()
                ),
            ));
        }
        let filter = match &q.where_clause {
            Some(c) => Some(self.condition(&inner, c, Clause::Where)?),
            None => None,
        };
        let order_by = self.order_by(&inner, &q.order_by, PlanKind::Records, &[])?;
        Ok(Expr::SemiJoin {
            left,
            negated: s.negated,
            query: Box::new(SemiJoinQuery {
                object,
                include_deleted: self.opts.include_deleted,
                field,
                filter,
                order_by,
                limit: q.limit.map(|l| l.value),
            }),
        })
    }
}

/// A comparison with a relative date literal covering `[start, end)`.
fn range(left: Operand, op: CompareOp, start: Value, end: Value) -> Expr {
    let cmp = |op, value| Expr::Compare {
        left: left.clone(),
        op,
        value,
    };
    match op {
        CompareOp::Eq => Expr::And(vec![cmp(CompareOp::Ge, start), cmp(CompareOp::Lt, end)]),
        CompareOp::Ne => Expr::Or(vec![
            Expr::IsNull {
                left: left.clone(),
                negated: false,
            },
            cmp(CompareOp::Lt, start),
            cmp(CompareOp::Ge, end),
        ]),
        CompareOp::Lt => cmp(CompareOp::Lt, start),
        CompareOp::Le => cmp(CompareOp::Lt, end),
        CompareOp::Gt => cmp(CompareOp::Ge, end),
        CompareOp::Ge => cmp(CompareOp::Ge, start),
    }
}
